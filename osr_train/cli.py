"""``osr-train``: train the baseline or the Siamese model of the seed notebook."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from osr_train import cli_support

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="Train an open-set digit recogniser.")
console = Console(stderr=True)


class Dataset(str, Enum):
    mnist = "mnist"
    digits = "digits"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def fail(message: str, code: int = 2) -> NoReturn:
    cli_support.fail(console, message, code)


#: Every file osr-train writes is written atomically (temp file, then rename).
interruptible = cli_support.interruptible(console, "the files already written are complete; none is half-written")


def _train(model_kind: str, **options) -> None:
    from osr_train.pipeline import TrainingFailed, train_command

    try:
        train_command(model_kind, console=console, **options)
    except TrainingFailed as exc:
        fail(str(exc), exc.exit_code)


class Recipe(str, Enum):
    seed = "seed"
    best = "best"


class Score(str, Enum):
    msp = "msp"
    max_logit = "max_logit"
    energy = "energy"
    mahalanobis = "mahalanobis"


def _common(
    recipe: Recipe, dataset: Dataset, data_dir: Optional[Path], ood_dir: Optional[list[Path]], download: bool,
    epochs: Optional[int], batch_size: Optional[int], lr: Optional[float], seed: int, device: Device,
    out: Optional[Path], threshold: Optional[float], target_tpr: Optional[float], score: Optional[Score],
) -> dict:
    return dict(
        recipe=recipe.value, dataset=dataset.value, data_dir=data_dir, ood_dirs=ood_dir or [], download=download,
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device.value, out=out, threshold=threshold,
        target_tpr=target_tpr, score=score.value if score else None,
    )


DatasetOpt = typer.Option(Dataset.mnist, "--dataset", help="mnist (real data) or digits (bundled, offline).")
DataDirOpt = typer.Option(None, "--data-dir", help="Data folder [default: $OSR_DATA_DIR or ./data].", show_default=False)
OodOpt = typer.Option(None, "--ood-dir", help="Folder of unknown images (repeatable) [default: CIFAR-10 test in --data-dir].")
DownloadOpt = typer.Option(False, "--download", help="Fetch MNIST (checksum-verified) when it is missing.")
RecipeOpt = typer.Option(Recipe.seed, "--recipe", help="seed: the notebook's recipe; best: augmentation, outlier exposure, calibrated threshold.")
BatchOpt = typer.Option(None, "--batch-size", help="Batch size [default: the recipe's; seed: 64 baseline, 128 siamese].", show_default=False)
LrOpt = typer.Option(None, "--lr", help="Adam learning rate [default: the recipe's; seed: 1e-3].", show_default=False)
SeedOpt = typer.Option(0, "--seed", help="Random seed (split, init, shuffling).")
DeviceOpt = typer.Option(Device.auto, "--device", help="auto picks CUDA when available.")
OutOpt = typer.Option(None, "--out", help="Output folder [default: artifacts/<model>/, or artifacts/<model>-<recipe>/].", show_default=False)
ThresholdOpt = typer.Option(None, "--threshold", help="Accept as known when the score reaches this [default: seed recipe 0.999 on msp; best recipe calibrated].", show_default=False)
TprOpt = typer.Option(None, "--target-tpr", help="Calibrate the threshold to accept this fraction of validation knowns (e.g. 0.99).", show_default=False)
ScoreOpt = typer.Option(None, "--score", help="Known-vs-unknown score stored in the model [default: the recipe's; seed: msp].", show_default=False)


@app.command()
@interruptible
def baseline(
    recipe: Recipe = RecipeOpt, dataset: Dataset = DatasetOpt, data_dir: Optional[Path] = DataDirOpt,
    ood_dir: Optional[list[Path]] = OodOpt, download: bool = DownloadOpt,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Cross-entropy epochs [seed: 30].", show_default=False),
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    out: Optional[Path] = OutOpt, threshold: Optional[float] = ThresholdOpt, target_tpr: Optional[float] = TprOpt,
    score: Optional[Score] = ScoreOpt,
) -> None:
    """The seed's baseline: the CNN trained with cross-entropy."""
    _train("baseline", **_common(recipe, dataset, data_dir, ood_dir, download, epochs, batch_size, lr, seed, device, out, threshold, target_tpr, score))


@app.command()
@interruptible
def siamese(
    recipe: Recipe = RecipeOpt, dataset: Dataset = DatasetOpt, data_dir: Optional[Path] = DataDirOpt,
    ood_dir: Optional[list[Path]] = OodOpt, download: bool = DownloadOpt,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Stage 2 (cross-entropy) epochs [seed: 30].", show_default=False),
    pretrain_epochs: Optional[int] = typer.Option(None, "--pretrain-epochs", help="Stage 1 (contrastive) epochs [seed: 40].", show_default=False),
    margin: float = typer.Option(2.0, "--margin", help="Contrastive margin."),
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    out: Optional[Path] = OutOpt, threshold: Optional[float] = ThresholdOpt, target_tpr: Optional[float] = TprOpt,
    score: Optional[Score] = ScoreOpt,
) -> None:
    """The seed's two-stage Siamese model: contrastive pre-training, then cross-entropy."""
    _train(
        "siamese", pretrain_epochs=pretrain_epochs, margin=margin,
        **_common(recipe, dataset, data_dir, ood_dir, download, epochs, batch_size, lr, seed, device, out, threshold, target_tpr, score),
    )


@app.command()
@interruptible
def evaluate(
    checkpoint: Path = typer.Argument(Path("artifacts/siamese/model.pt"), help="A model.pt written by osr-train."),
    data_dir: Optional[Path] = DataDirOpt,
    ood_dir: Optional[list[Path]] = OodOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder [default: <checkpoint folder>/evaluation/].", show_default=False),
    tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="Draw the t-SNE of the embedding (about a minute)."),
    device: Device = DeviceOpt,
) -> None:
    """Every score (MSP, max-logit, energy, Mahalanobis) on every unknown set, plots and report.md."""
    from osr_train.pipeline import TrainingFailed
    from osr_train.report import evaluate_command

    try:
        evaluate_command(checkpoint, data_dir=data_dir, ood_dirs=ood_dir or [], out=out, tsne=tsne, device=device.value, console=console)
    except TrainingFailed as exc:
        fail(str(exc), exc.exit_code)


@app.command("sample-images")
@interruptible
def sample_images(
    out: Path = typer.Argument(..., help="Folder to write PNG files into (created)."),
    dataset: Dataset = DatasetOpt,
    data_dir: Optional[Path] = DataDirOpt,
    n: int = typer.Option(100, "--n", help="Images per group (knowns, and each unknown set)."),
    seed: int = SeedOpt,
) -> None:
    """Write test knowns (<out>/<digit>/) and unknowns (<out>/unknown-<set>/) as PNG files, to try osr-infer on."""
    import numpy as np
    from PIL import Image

    from osr_train.data import DataError, load_open_set_data
    from osr_train.io import atomic_path

    try:
        data = load_open_set_data(dataset.value, data_dir, seed=seed, progress=False)
    except DataError as exc:
        fail(str(exc))
    rng = np.random.default_rng(seed)
    groups = [(data.test, lambda i, s: str(s.labels[i]))] + [(u, lambda i, s: f"unknown-{s.name}") for u in data.unknown_test]
    written = 0
    for images, folder_of in groups:
        for i in rng.choice(len(images), min(n, len(images)), replace=False):
            path = out / folder_of(i, images) / f"{images.name}-{i:05d}.png"
            with atomic_path(path) as tmp:  # creates the folder too
                Image.fromarray(images.images[i]).save(tmp, format="PNG")
            written += 1
    console.print(f"wrote {written} PNG files under {out}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    app()


if __name__ == "__main__":
    main()
