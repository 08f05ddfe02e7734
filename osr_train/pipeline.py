"""What ``osr-train`` does, as a function: load data, train, evaluate, write artefacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from osr_train.preprocess import PREPROCESSING


class TrainingFailed(RuntimeError):
    """A user-facing failure: printed as one line, with an exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def train_command(
    model_kind: str,
    *,
    dataset: str = "mnist",
    data_dir: Path | None = None,
    ood_dirs: list[Path] | None = None,
    download: bool = False,
    epochs: int = 30,
    pretrain_epochs: int = 40,
    margin: float = 2.0,
    batch_size: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    out: Path | None = None,
    threshold: float = 0.999,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train, evaluate, and write ``model.pt``, ``history.json``, ``metrics.json`` and plots."""
    console = console or Console(stderr=True)
    from osr_train.data import DataError, load_open_set_data
    from osr_train.data.idx import IdxFormatError
    from osr_train.scores import score_spec

    try:
        score_spec("msp").check_threshold(threshold)
    except ValueError as exc:
        raise TrainingFailed(str(exc)) from None
    out_dir = Path(out) if out is not None else Path("artifacts") / model_kind
    try:
        from osr_train.io import check_writable_dir

        check_writable_dir(out_dir)
    except PermissionError as exc:
        raise TrainingFailed(str(exc)) from None
    t0 = time.perf_counter()
    try:
        data = load_open_set_data(dataset, data_dir, ood_dirs=ood_dirs, download=download, seed=seed)
    except (DataError, IdxFormatError) as exc:
        raise TrainingFailed(str(exc)) from None
    console.print(f"data: {data.describe()}  ({time.perf_counter() - t0:.1f} s)", highlight=False)

    import torch

    from osr_train.checkpoint import save_checkpoint
    from osr_train.evaluation import evaluate
    from osr_train.io import write_json
    from osr_train.plots import plot_confusion, plot_history
    from osr_train.scoring import ScoredClassifier
    from osr_train.training import TrainConfig, Trainer, config_to_json, history_to_json

    try:
        config = TrainConfig(
            model=model_kind, epochs=epochs, pretrain_epochs=pretrain_epochs, batch_size=batch_size, lr=lr,
            margin=margin, seed=seed, device=device, threshold=threshold,
        )
        checkpoint_config = {
            "architecture": config.architecture,
            "model": model_kind,
            "recipe": "seed",
            "preprocessing": PREPROCESSING.to_dict(),
            "class_names": list(data.class_names),
            "threshold": threshold,
            "score": "msp",
            "score_params": {},
            "dataset": dataset,
            "seed": seed,
            "hyperparameters": config_to_json(config),
        }
        trainer = Trainer(config, data, out_dir, console, checkpoint_config)
    except (ValueError, RuntimeError) as exc:
        raise TrainingFailed(str(exc)) from None
    console.print(f"training {model_kind} on {trainer.device} ({sum(p.numel() for p in trainer.model.parameters()):,} parameters)")
    result = trainer.fit()
    if result.interrupted:
        if trainer.last_saved is None:
            raise TrainingFailed("interrupted before the first epoch finished; nothing was saved", 130)
        stage, epoch = trainer.last_saved
        raise TrainingFailed(
            f"interrupted; the last complete checkpoint ({stage} epoch {epoch}) is {trainer.checkpoint_path}", 130
        )

    scored = ScoredClassifier(trainer.classifier, "msp").to(trainer.device)
    metrics, known, unknowns = evaluate(scored, data, threshold, trainer.device)
    metrics["dataset"] = dataset
    metrics["model"] = model_kind
    metrics["training_seconds"] = round(sum(h.seconds for h in result.history), 1)
    history = history_to_json(result.history)
    final_config = dict(checkpoint_config, stage="final", complete=True, epochs_trained=len(history))
    model_path = save_checkpoint(out_dir / "model.pt", trainer.model.cpu(), final_config)
    trainer.checkpoint_path.unlink(missing_ok=True)  # superseded by model.pt
    write_json(out_dir / "history.json", history)
    write_json(out_dir / "metrics.json", metrics)
    plot_history(history, out_dir / "curves.png")
    names = list(data.class_names)
    plot_confusion(metrics["confusion_matrix_10"], names, out_dir / "confusion_10.png", "Closed-set confusion (test knowns)")
    plot_confusion(
        metrics["confusion_matrix_11"], names + ["unknown"], out_dir / "confusion_11.png",
        f"Open-set confusion at threshold {threshold:g}",
    )
    _print_summary(console, metrics, out_dir, model_path)
    return metrics


def _print_summary(console: Console, metrics: dict, out_dir: Path, model_path: Path) -> None:
    table = Table(title="Test metrics", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("measured on", justify="right")
    n_k, n_u = metrics["n_known"], metrics["n_unknown"]
    table.add_row("closed-set accuracy", f"{metrics['closed_set_accuracy']:.2%}", f"{n_k:,} knowns")
    table.add_row(f"known acceptance @ {metrics['threshold']:g}", f"{metrics['known_acceptance']:.2%}", f"{n_k:,} knowns")
    if metrics["unknown_rejection"] is not None:
        table.add_row("unknown rejection", f"{metrics['unknown_rejection']:.2%}", f"{n_u:,} unknowns")
        table.add_row("11-class open-set accuracy", f"{metrics['open_set_accuracy']:.2%}", f"{n_k + n_u:,} images")
        table.add_row("AUROC (msp)", f"{metrics['ood']['auroc']:.2%}", f"{n_k + n_u:,} images")
    console.print(table)
    console.print(f"model:   {model_path}\nmetrics: {out_dir / 'metrics.json'}\nplots:   {out_dir}/*.png")
