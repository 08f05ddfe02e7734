"""``osr-train``: train the baseline or the Siamese model of the seed notebook."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn, Optional, TypeAlias

import typer
from rich.console import Console
from rich.logging import RichHandler

from osr_infer import cli_support
from osr_infer.data.registry import DATASETS
from osr_infer.scores import SCORES
from osr_train.recipes import DEFAULT_RECIPE, NETWORKS, RECIPES


app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="Train an open-set recogniser: a known class, or unknown.")
console = Console(stderr=True, emoji=False)


def _choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A Typer choice type from a registry's names (so a new entry is a new choice)."""
    choices: type[Enum] = Enum(name, {v: v for v in values}, type=str)  # type: ignore[misc]  # the functional API, values from a registry
    return choices


class StrEnumChoice(str, Enum):
    """What a choice made by `_choices` is: a string enum."""


if TYPE_CHECKING:  # made at run time from the registries: to the type checker, string enums
    Device: TypeAlias = StrEnumChoice
    Recipe: TypeAlias = StrEnumChoice
    Score: TypeAlias = StrEnumChoice
    Network: TypeAlias = StrEnumChoice
else:
    Device = _choices("Device", ("auto", "cpu", "cuda"))
    Recipe = _choices("Recipe", RECIPES)
    Score = _choices("Score", SCORES)
    Network = _choices("Network", NETWORKS)


def fail(message: str, code: int = 2) -> NoReturn:
    cli_support.fail(console, message, code)


#: Every file osr-train writes is written atomically (temp file, then rename).
interruptible = cli_support.interruptible(console, "the files already written are complete; none is half-written")
#: The flags of the library's parameters whose names differ from ``--`` and the name dashed.
FLAGS = {"ood_dirs": "--ood-dir", "work_dir": "--out"}


def _train(model: str, recipe: Recipe, out: Optional[Path], threshold: Optional[float], **options) -> None:  # noqa: ANN003
    """``osr-train baseline|siamese``: the configuration from the recipe and the options given,
    `osr_train.train`, then the model, metrics and plots in the output folder."""
    from osr_train.config import TrainConfig
    from osr_train.pipeline import train

    if threshold is not None:
        fail("--threshold is osr-infer's rule on the top softmax probability; the threshold stored with the model's own "
             "score is --score-threshold")
    values = {k: (v.value if isinstance(v, Enum) else v) for k, v in options.items()}
    run = {k: values.pop(k) for k in ("dataset", "data_dir", "ood_dir", "download", "known_classes", "input_size", "channels",
                                      "resume", "threads")}
    recipe_name = getattr(recipe, "value", recipe)
    with cli_support.library_errors(console, FLAGS):
        config = TrainConfig.from_recipe(recipe_name, model=model, **values)
        out_dir = Path(out) if out is not None else Path("artifacts") / (model if recipe_name == DEFAULT_RECIPE else f"{model}-{recipe_name}")
        reporter = cli_support.ConsoleReporter(console, flags=FLAGS)
        trained = train(
            config, run["dataset"], data_dir=run["data_dir"], ood_dirs=run["ood_dir"] or [], known_classes=run["known_classes"],
            input_size=run["input_size"], channels=run["channels"], download=run["download"], work_dir=out_dir,
            resume=run["resume"], threads=run["threads"], reporter=reporter,
        )
        from osr_train.distributed import Group

        group = Group.from_environment()
        if group is not None and not group.main:
            return  # under torchrun, rank 0 writes the model and reports for the group
        model_path = trained.save(out_dir / "model.pt")
        trained.save_report(out_dir)
    print_summary(console, trained.metrics)
    console.print(f"model:   {model_path}\nmetrics: {out_dir / 'metrics.json'}\nplots:   {out_dir}/*.png", highlight=False, markup=False)


def _default(field: str, model: str | None = None) -> str:
    """``[default: the recipe's; best: 40; seed: 30]``, from the recipes themselves."""
    from osr_train.config import recipe_defaults

    return f"[default: the recipe's; {recipe_defaults(field, model)}]"


DATASET_HELP = "Data set reference: " + "; ".join(f"{e.example}: {e.summary}" for e in DATASETS.values()) + "."
DatasetOpt = typer.Option("mnist", "--dataset", help=DATASET_HELP)
DataDirOpt = typer.Option(None, "--data-dir", help="Data folder [default: $OSR_DATA_DIR or ./data].", show_default=False)
OodOpt = typer.Option(None, "--ood-dir", help="Folder of unknown images (repeatable) [default: the data set's own unknowns, e.g. CIFAR-10 test for mnist].")
DownloadOpt = typer.Option(False, "--download", help="Fetch MNIST (checksum-verified) when it is missing.")
KnownOpt = typer.Option(None, "--known-classes", help="Train on these classes only (indices or names, e.g. 2,4,5,9,8,3); the test images of the others are "
                                                      "unknowns [default: all the data set's classes].", show_default=False)
SizeOpt = typer.Option(None, "--input-size", help="Network input side in pixels [default: from the data: 28 for MNIST, a folder's common square size "
                                                  "or 32].", show_default=False)
ChannelsOpt = typer.Option(None, "--channels", help="1 (grey) or 3 (RGB) [default: from the data].", show_default=False)
RecipeOpt = typer.Option(DEFAULT_RECIPE, "--recipe", help="best: wider network, augmentation, outlier exposure, kl_uniform score, calibrated threshold, layout "
                                                          "step (writes artifacts/<model>/); seed: the notebook's recipe (writes artifacts/<model>-seed/).")
LayoutOpt = typer.Option(None, "--layout/--no-layout",
    help=f"Lay greyscale inputs out MNIST-style (crop to the ink, fit, centre) {_default('layout')} (none: on "
                                                            "for greyscale inputs).", show_default=False)
LrOpt = typer.Option(None, "--lr", help=f"Adam learning rate (the peak of a one-cycle schedule) {_default('lr')}.", show_default=False)
SeedOpt = typer.Option(0, "--seed", help="Random seed (split, init, shuffling).")
DeviceOpt = typer.Option("auto", "--device", help="auto picks CUDA when available.")
OutOpt = typer.Option(None, "--out", help="Output folder [default: artifacts/<model>/ for the best recipe, artifacts/<model>-seed/ for the "
                                          "seed's].", show_default=False)
ThresholdOpt = typer.Option(None, "--threshold", hidden=True,
    help="Refused: osr-infer's rule on the top softmax probability (use --score-threshold).", show_default=False)
ScoreThresholdOpt = typer.Option(None, "--score-threshold",
    help="Store this threshold on the model's score (accept when score >= it) instead of calibrating one "
                                                                 f"{_default('score_threshold')}.", show_default=False)
TprOpt = typer.Option(None, "--target-tpr", help="Calibrate the score's threshold to accept this fraction of validation knowns, e.g. 0.99 "
                                                 f"{_default('target_tpr')}.", show_default=False)
ResumeOpt = typer.Option(False, "--resume", help="Continue the interrupted run in the output folder from its last complete epoch (give the same "
                                                 "options); the result is the model an uninterrupted run makes.")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads for torch [default: one per core; on a machine where other processes keep cores busy, "
                                                  "fewer train faster, and osr-train says so].", show_default=False)
NetworkOpt = typer.Option(None, "--network", help="The layers: seed (the notebook's CNN, 108k parameters, 0.9 M multiply-adds an image), wide (three "
                                                  "3x3 conv blocks with batch norm and a leaky-ReLU head, 102k parameters, 2.0 M multiply-adds) or "
                                                  f"wide-relu (the same with a ReLU head, the previous default) {_default('network')}.", show_default=False)
RotationOpt = typer.Option(None, "--rotation-weight", help="Weight of rotation prediction as an auxiliary task (a training-only head names the quarter turn of "
                                                           f"turned known images; not exported) {_default('rotation_weight')}.", show_default=False)
ScriptsOpt = typer.Option(None, "--script-outliers", help="How often letters of other scripts (48 scripts that no near-OOD evaluation set uses, from a bank of "
                                                          "outline-font glyphs shipped with the package) are drawn among the outliers, relative to a texture "
                                                          f"kind; 0: never {_default('script_outliers')}.", show_default=False)
ScoreOpt = typer.Option(None, "--score", help=f"Known-vs-unknown score stored in the model {_default('score')}.", show_default=False)


@app.command()
@interruptible
def baseline(
    recipe: Recipe = RecipeOpt, dataset: str = DatasetOpt, data_dir: Optional[Path] = DataDirOpt,
    ood_dir: Optional[list[Path]] = OodOpt, download: bool = DownloadOpt, known_classes: Optional[str] = KnownOpt,
    input_size: Optional[int] = SizeOpt, channels: Optional[int] = ChannelsOpt, layout: Optional[bool] = LayoutOpt,
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Cross-entropy epochs {_default('epochs')}.", show_default=False),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Batch size {_default('batch_size', 'baseline')}.", show_default=False),
    lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    out: Optional[Path] = OutOpt, threshold: Optional[float] = ThresholdOpt, score_threshold: Optional[float] = ScoreThresholdOpt,
    target_tpr: Optional[float] = TprOpt,
    score: Optional[Score] = ScoreOpt, resume: bool = ResumeOpt, threads: Optional[int] = ThreadsOpt,
    network: Optional[Network] = NetworkOpt, rotation_weight: Optional[float] = RotationOpt,
    script_outliers: Optional[float] = ScriptsOpt,
) -> None:
    """The seed's baseline: the CNN trained with cross-entropy."""
    _train("baseline", **{k: v for k, v in locals().items()})


@app.command()
@interruptible
def siamese(
    recipe: Recipe = RecipeOpt, dataset: str = DatasetOpt, data_dir: Optional[Path] = DataDirOpt,
    ood_dir: Optional[list[Path]] = OodOpt, download: bool = DownloadOpt, known_classes: Optional[str] = KnownOpt,
    input_size: Optional[int] = SizeOpt, channels: Optional[int] = ChannelsOpt, layout: Optional[bool] = LayoutOpt,
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Stage 2 (cross-entropy) epochs {_default('epochs')}.", show_default=False),
    pretrain_epochs: Optional[int] = typer.Option(None, "--pretrain-epochs",
        help=f"Stage 1 (contrastive) epochs {_default('pretrain_epochs')}.", show_default=False),
    margin: Optional[float] = typer.Option(None, "--margin", help=f"Contrastive margin {_default('margin')}.", show_default=False),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Batch size {_default('batch_size', 'siamese')}.", show_default=False),
    lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    out: Optional[Path] = OutOpt, threshold: Optional[float] = ThresholdOpt, score_threshold: Optional[float] = ScoreThresholdOpt,
    target_tpr: Optional[float] = TprOpt,
    score: Optional[Score] = ScoreOpt, resume: bool = ResumeOpt, threads: Optional[int] = ThreadsOpt,
    network: Optional[Network] = NetworkOpt, rotation_weight: Optional[float] = RotationOpt,
    script_outliers: Optional[float] = ScriptsOpt,
) -> None:
    """The seed's two-stage Siamese model: contrastive pre-training, then cross-entropy."""
    _train("siamese", **{k: v for k, v in locals().items()})


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
    from osr_train.report import evaluate_command

    with cli_support.library_errors(console, FLAGS):
        metrics = evaluate_command(checkpoint, data_dir=data_dir, ood_dirs=ood_dir or [], out=out, tsne=tsne,
                                   device=getattr(device, "value", device), reporter=cli_support.ConsoleReporter(console, flags=FLAGS))
    print_summary(console, metrics)


@app.command()
@interruptible
def rescore(
    checkpoint: Path = typer.Argument(Path("artifacts/siamese/model.pt"), help="A model.pt written by osr-train."),
    score: Score = typer.Option(..., "--score", help="The score to store instead (its statistics are fitted on the training knowns)."),
    target_tpr: Optional[float] = typer.Option(None, "--target-tpr",
        help="Calibrate the threshold to accept this fraction of validation knowns [default: the model's own].", show_default=False),
    data_dir: Optional[Path] = DataDirOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="The new checkpoint [default: model-<score>.pt beside the checkpoint].", show_default=False),
    device: Device = DeviceOpt,
) -> None:
    """Store another known-vs-unknown score in a trained model, without training again (then osr-export it)."""
    from osr_train.report import RescoreOptions, rescore_command

    with cli_support.library_errors(console, FLAGS):
        options = RescoreOptions(getattr(score, "value", score), target_tpr)
        rescore_command(checkpoint, options, data_dir=data_dir, out=out, device=getattr(device, "value", device),
                        reporter=cli_support.ConsoleReporter(console, flags=FLAGS))


@app.command("sample-images")
@interruptible
def sample_images(
    out: Path = typer.Argument(..., help="Folder to write PNG files into (created)."),
    dataset: str = DatasetOpt,
    data_dir: Optional[Path] = DataDirOpt,
    known_classes: Optional[str] = KnownOpt,
    n: int = typer.Option(100, "--n", help="Images per group (knowns, and each unknown set)."),
    seed: int = SeedOpt,
) -> None:
    """Write test knowns (<out>/<class>/) and unknowns (<out>/unknown-<set>/) as PNG files, to try osr-infer on
    (osr-infer folder:<out> scores them with metrics)."""
    import numpy as np
    from PIL import Image

    from osr_infer.data import DataError, describe_dataset, open_set_source
    from osr_infer.io import atomic_path

    if n < 1:
        fail(f"--n must be at least 1, not {n}")
    try:
        spec, contract = describe_dataset(dataset, data_dir, known_classes=known_classes, split_seed=seed)
        data = open_set_source(spec, data_dir).load(contract, progress=False)
    except DataError as exc:
        fail(cli_support.error_line(exc, FLAGS))
    rng = np.random.default_rng(seed)
    groups = [(data.test, lambda i, s: data.class_names[s.labels[i]])] + [(u, lambda i, s: f"unknown-{s.name}") for u in data.unknown_test]
    written = 0
    for images, folder_of in groups:
        for i in rng.choice(len(images), min(n, len(images)), replace=False):
            path = out / folder_of(i, images) / f"{images.name}-{i:05d}.png"
            with atomic_path(path) as tmp:  # creates the folder too
                Image.fromarray(images.images[i]).save(tmp, format="PNG")
            written += 1
    console.print(f"wrote {written} PNG files under {out}", highlight=False, markup=False)


def print_summary(console: Console, metrics: dict) -> None:
    """The test figures of a training or an evaluation, as a table."""
    from rich.table import Table

    table = Table(title="Test metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("measured on", justify="right")
    n_k, n_u = metrics["n_known"], metrics["n_unknown"]
    table.add_row("closed-set accuracy", f"{metrics['closed_set_accuracy']:.2%}", f"{n_k:,} knowns")
    table.add_row(f"known acceptance ({metrics['score']} >= {metrics['threshold']:.4g})", f"{metrics['known_acceptance']:.2%}", f"{n_k:,} knowns")
    if metrics["unknown_rejection"] is not None:
        table.add_row("unknown rejection", f"{metrics['unknown_rejection']:.2%}", f"{n_u:,} unknowns")
        table.add_row("open-set accuracy (classes + unknown)", f"{metrics['open_set_accuracy']:.2%}", f"{n_k + n_u:,} images")
        for name, ood in metrics["ood_pooled"].items():
            table.add_row(f"AUROC / FPR@95%TPR ({name})", f"{ood['auroc']:.2%} / {ood['fpr_at_95_tpr']:.2%}", f"{n_k + n_u:,} images")
    card = metrics.get("card_rule")
    if card:
        rule = f"msp >= {card['msp_threshold']:g} at temperature {card['temperature']:.3g}"
        table.add_row(f"card rule ({rule}): knowns correct", f"{card['known_correct']:.2%}", f"{n_k:,} knowns")
        if card["unknown_rejection"] is not None:
            table.add_row(f"card rule ({rule}): unknowns rejected", f"{card['unknown_rejection']:.2%}", f"{n_u:,} unknowns")
    console.print(table)


def main() -> None:
    cli_support.require_training_install(console, "osr-train")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    app()


if __name__ == "__main__":
    main()
