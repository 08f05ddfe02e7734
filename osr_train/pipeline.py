"""What ``osr-train`` does, as functions: load data, train, calibrate, evaluate, write artefacts."""

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


def load_data(dataset: str, data_dir: Path | None, ood_dirs: list[Path] | None, download: bool, seed: int, console: Console):
    from osr_train.data import DataError
    from osr_train.data import load_open_set_data
    from osr_train.data.idx import IdxFormatError

    t0 = time.perf_counter()
    try:
        data = load_open_set_data(dataset, data_dir, ood_dirs=ood_dirs, download=download, seed=seed)
    except (DataError, IdxFormatError) as exc:
        raise TrainingFailed(str(exc)) from None
    console.print(f"data: {data.describe()}  ({time.perf_counter() - t0:.1f} s)", highlight=False)
    return data


def train_command(
    model_kind: str,
    *,
    recipe: str = "seed",
    dataset: str = "mnist",
    data_dir: Path | None = None,
    ood_dirs: list[Path] | None = None,
    download: bool = False,
    epochs: int | None = None,
    pretrain_epochs: int | None = None,
    margin: float = 2.0,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    out: Path | None = None,
    threshold: float | None = None,
    target_tpr: float | None = None,
    score: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train, calibrate, evaluate; write ``model.pt``, ``history.json``, ``metrics.json``, plots.

    Options left as None take the recipe's value. The threshold is, in order: ``threshold``;
    calibrated at ``target_tpr`` on validation knowns; the recipe's fixed threshold; or
    calibrated at the recipe's target TPR.
    """
    console = console or Console(stderr=True)
    from osr_train.io import check_writable_dir
    from osr_train.recipes import get_recipe
    from osr_train.scores import score_spec

    try:
        rec = get_recipe(recipe)
        score = score or rec.score
        spec = score_spec(score)
        if threshold is not None:
            spec.check_threshold(threshold)
        if target_tpr is not None and not 0 < target_tpr < 1:
            raise ValueError(f"--target-tpr must be in (0, 1), got {target_tpr}")
    except ValueError as exc:
        raise TrainingFailed(str(exc)) from None
    default_name = model_kind if recipe == "seed" else f"{model_kind}-{recipe}"
    out_dir = Path(out) if out is not None else Path("artifacts") / default_name
    try:
        check_writable_dir(out_dir)
    except PermissionError as exc:
        raise TrainingFailed(str(exc)) from None
    data = load_data(dataset, data_dir, ood_dirs, download, seed, console)

    from osr_train.calibration import threshold_for_tpr
    from osr_train.checkpoint import save_checkpoint
    from osr_train.evaluation import evaluate, run_model
    from osr_train.io import write_json
    from osr_train.plots import plot_confusion, plot_history
    from osr_train.scoring import fit_mahalanobis
    from osr_train.training import Normalizer, TrainConfig, Trainer, config_to_json, history_to_json

    try:
        config = TrainConfig(
            model=model_kind,
            epochs=epochs if epochs is not None else rec.epochs,
            pretrain_epochs=pretrain_epochs if pretrain_epochs is not None else rec.pretrain_epochs,
            batch_size=batch_size or (rec.batch_size_baseline if model_kind == "baseline" else rec.batch_size_siamese),
            lr=lr if lr is not None else rec.lr,
            margin=margin, seed=seed, device=device, score=score, schedule=rec.schedule, augment=rec.augment,
            outlier_weight=rec.outlier_weight, outlier_batch=rec.outlier_batch,
            use_photo_outliers=dataset != "digits",  # the digits set's test unknowns are those photos
        )
        checkpoint_config = {
            "architecture": config.architecture,
            "model": model_kind,
            "recipe": recipe,
            "preprocessing": PREPROCESSING.to_dict(),
            "class_names": list(data.class_names),
            "threshold": threshold if threshold is not None else rec.threshold,
            "score": score,
            "score_params": {},
            "dataset": dataset,
            "seed": seed,
            "hyperparameters": config_to_json(config),
        }
        trainer = Trainer(config, data, out_dir, console, checkpoint_config)
    except (ValueError, RuntimeError) as exc:
        raise TrainingFailed(str(exc)) from None
    n_params = sum(p.numel() for p in trainer.model.parameters())
    console.print(f"training {model_kind} ({recipe} recipe) on {trainer.device} ({n_params:,} parameters)")
    result = trainer.fit()
    if result.interrupted:
        if trainer.last_saved is None:
            raise TrainingFailed("interrupted before the first epoch finished; nothing was saved", 130)
        stage, epoch = trainer.last_saved
        raise TrainingFailed(f"interrupted; the last complete checkpoint ({stage} epoch {epoch}) is {trainer.checkpoint_path}", 130)

    # Score statistics come from training knowns; the threshold from validation knowns only.
    classifier = trainer.classifier
    mahalanobis = fit_mahalanobis(classifier, trainer.train.x, trainer.train.y, Normalizer())
    score_params = mahalanobis if score == "mahalanobis" else {}
    calibration: dict[str, Any]
    if threshold is None and (target_tpr is not None or rec.threshold is None):
        tpr = target_tpr if target_tpr is not None else rec.target_tpr
        val_scores = run_model(classifier, data.val, trainer.device, mahalanobis).scores[score]
        threshold = threshold_for_tpr(val_scores, tpr)
        calibration = {"method": "target_tpr", "target_tpr": tpr, "on": data.val.name, "n": len(val_scores),
                       "val_known_acceptance": float((val_scores >= threshold).mean())}
    else:
        threshold = threshold if threshold is not None else rec.threshold
        calibration = {"method": "fixed"}
    metrics, _, _ = evaluate(classifier, data, score, threshold, trainer.device, mahalanobis)
    metrics.update(dataset=dataset, model=model_kind, recipe=recipe, calibration=calibration,
                   training_seconds=round(sum(h.seconds for h in result.history), 1))
    history = history_to_json(result.history)
    final_config = dict(checkpoint_config, threshold=threshold, score_params=score_params, calibration=calibration,
                        mahalanobis=mahalanobis, stage="final", complete=True, epochs_trained=len(history))
    model_path = save_checkpoint(out_dir / "model.pt", trainer.model.cpu(), final_config)
    trainer.checkpoint_path.unlink(missing_ok=True)  # superseded by model.pt
    write_json(out_dir / "history.json", history)
    write_json(out_dir / "metrics.json", metrics)
    plot_history(history, out_dir / "curves.png")
    names = list(data.class_names)
    plot_confusion(metrics["confusion_matrix_10"], names, out_dir / "confusion_10.png", "Closed-set confusion (test knowns)")
    plot_confusion(metrics["confusion_matrix_11"], names + ["unknown"], out_dir / "confusion_11.png",
                   f"Open-set confusion ({score} >= {threshold:.4g})")
    print_summary(console, metrics)
    console.print(f"model:   {model_path}\nmetrics: {out_dir / 'metrics.json'}\nplots:   {out_dir}/*.png")
    return metrics


def print_summary(console: Console, metrics: dict) -> None:
    table = Table(title="Test metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("measured on", justify="right")
    n_k, n_u = metrics["n_known"], metrics["n_unknown"]
    table.add_row("closed-set accuracy", f"{metrics['closed_set_accuracy']:.2%}", f"{n_k:,} knowns")
    table.add_row(f"known acceptance ({metrics['score']} >= {metrics['threshold']:.4g})", f"{metrics['known_acceptance']:.2%}", f"{n_k:,} knowns")
    if metrics["unknown_rejection"] is not None:
        table.add_row("unknown rejection", f"{metrics['unknown_rejection']:.2%}", f"{n_u:,} unknowns")
        table.add_row("11-class open-set accuracy", f"{metrics['open_set_accuracy']:.2%}", f"{n_k + n_u:,} images")
        for name, ood in metrics["ood_pooled"].items():
            table.add_row(f"AUROC / FPR@95%TPR ({name})", f"{ood['auroc']:.2%} / {ood['fpr_at_95_tpr']:.2%}", f"{n_k + n_u:,} images")
    console.print(table)
