"""``osr-train``: train the baseline or the Siamese model of the seed notebook."""

from __future__ import annotations

import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train an open-set digit recogniser.")
console = Console(stderr=True)


class Dataset(str, Enum):
    mnist = "mnist"
    digits = "digits"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _train(model_kind: str, **options) -> None:
    from osr_train.pipeline import TrainingFailed, train_command

    try:
        train_command(model_kind, console=console, **options)
    except TrainingFailed as exc:
        fail(str(exc), exc.exit_code)


def _common(
    dataset: Dataset, data_dir: Optional[Path], ood_dir: Optional[list[Path]], download: bool, epochs: int,
    batch_size: Optional[int], lr: float, seed: int, device: Device, out: Optional[Path], threshold: float,
) -> dict:
    return dict(
        dataset=dataset.value, data_dir=data_dir, ood_dirs=ood_dir or [], download=download, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, device=device.value, out=out, threshold=threshold,
    )


DatasetOpt = typer.Option(Dataset.mnist, "--dataset", help="mnist (real data) or digits (bundled, offline).")
DataDirOpt = typer.Option(None, "--data-dir", help="Data folder [default: $OSR_DATA_DIR or ./data].", show_default=False)
OodOpt = typer.Option(None, "--ood-dir", help="Folder of unknown images (repeatable) [default: CIFAR-10 test in --data-dir].")
DownloadOpt = typer.Option(False, "--download", help="Fetch MNIST (checksum-verified) when it is missing.")
BatchOpt = typer.Option(None, "--batch-size", help="Batch size [default: 64 baseline, 128 siamese].", show_default=False)
LrOpt = typer.Option(1e-3, "--lr", help="Adam learning rate.")
SeedOpt = typer.Option(0, "--seed", help="Random seed (split, init, shuffling).")
DeviceOpt = typer.Option(Device.auto, "--device", help="auto picks CUDA when available.")
OutOpt = typer.Option(None, "--out", help="Output folder [default: artifacts/<model>/].", show_default=False)
ThresholdOpt = typer.Option(0.999, "--threshold", help="Accept as known when the top softmax probability reaches this.")


@app.command()
def baseline(
    dataset: Dataset = DatasetOpt, data_dir: Optional[Path] = DataDirOpt, ood_dir: Optional[list[Path]] = OodOpt,
    download: bool = DownloadOpt, epochs: int = typer.Option(30, "--epochs", help="Cross-entropy epochs."),
    batch_size: Optional[int] = BatchOpt, lr: float = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    out: Optional[Path] = OutOpt, threshold: float = ThresholdOpt,
) -> None:
    """The seed's baseline: the CNN trained with cross-entropy."""
    _train("baseline", **_common(dataset, data_dir, ood_dir, download, epochs, batch_size, lr, seed, device, out, threshold))


@app.command()
def siamese(
    dataset: Dataset = DatasetOpt, data_dir: Optional[Path] = DataDirOpt, ood_dir: Optional[list[Path]] = OodOpt,
    download: bool = DownloadOpt, epochs: int = typer.Option(30, "--epochs", help="Stage 2 (cross-entropy) epochs."),
    pretrain_epochs: int = typer.Option(40, "--pretrain-epochs", help="Stage 1 (contrastive) epochs."),
    margin: float = typer.Option(2.0, "--margin", help="Contrastive margin."),
    batch_size: Optional[int] = BatchOpt, lr: float = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    out: Optional[Path] = OutOpt, threshold: float = ThresholdOpt,
) -> None:
    """The seed's two-stage Siamese model: contrastive pre-training, then cross-entropy."""
    _train(
        "siamese", pretrain_epochs=pretrain_epochs, margin=margin,
        **_common(dataset, data_dir, ood_dir, download, epochs, batch_size, lr, seed, device, out, threshold),
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_time=False, show_path=False)])
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
