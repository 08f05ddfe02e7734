"""What ``osr-train`` does, as functions: load data, train, calibrate, evaluate, write artefacts."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.table import Table

from osr_infer.data.datasets import OpenSetData
from osr_infer.data.registry import OpenSetSource
from osr_infer.params import NONE, Constraint, Interval, OneOf, validate
from osr_infer.preprocess import PreprocessContract
from osr_infer.scores import SCORES, score_spec
from osr_infer.spec import ModelSpec
from osr_train.recipes import DEFAULT_RECIPE, NETWORKS, RECIPES, get_recipe
from osr_train.training import TrainConfig


class TrainingFailed(RuntimeError):
    """A user-facing failure: printed as one line, with an exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class TrainOptions:
    """What ``osr-train baseline|siamese`` was asked for, validated once; None means "the recipe's"."""

    model: str = "siamese"
    recipe: str = DEFAULT_RECIPE
    dataset: str = "mnist"
    data_dir: Path | None = None
    ood_dirs: list[Path] = field(default_factory=list)
    download: bool = False
    known_classes: str | None = None
    input_size: int | None = None
    channels: int | None = None
    layout: bool | None = None
    epochs: int | None = None
    pretrain_epochs: int | None = None
    margin: float = 2.0
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    out: Path | None = None
    threshold: float | None = None
    target_tpr: float | None = None
    score: str | None = None
    resume: bool = False
    threads: int | None = None  # torch's CPU threads; None: torch's default (one per core)
    network: str | None = None  # the layers; None: the recipe's
    rotation_weight: float | None = None  # the rotation-prediction task's weight; None: the recipe's
    script_outliers: float | None = None  # how often letters of other scripts are outliers; None: the recipe's

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "model": [OneOf(("baseline", "siamese"))],
        "recipe": [OneOf(tuple(RECIPES))],
        "input_size": [Interval(int, 8, 256), NONE],
        "channels": [OneOf((1, 3)), NONE],
        "epochs": [Interval(int, 1, 100_000), NONE],
        "pretrain_epochs": [Interval(int, 0, 100_000), NONE],
        "margin": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 2, 1 << 20), NONE],
        "lr": [Interval(float, 0, 10, closed="right"), NONE],
        "seed": [Interval(int, 0, 2**32 - 1)],
        "device": [OneOf(("auto", "cpu", "cuda"))],
        "threshold": [Interval(float, None, None), NONE],
        "target_tpr": [Interval(float, 0, 1, closed="neither"), NONE],
        "score": [OneOf(tuple(SCORES)), NONE],
        "threads": [Interval(int, 1, 1024), NONE],
        "network": [OneOf(tuple(NETWORKS)), NONE],
        "rotation_weight": [Interval(float, 0, 100), NONE],
        "script_outliers": [Interval(float, 0, 100), NONE],
    }

    def __post_init__(self) -> None:
        validate(self, self.constraints)
        if self.threshold is not None:
            score_spec(self.score or get_recipe(self.recipe).score).check_threshold(self.threshold)

    @property
    def out_dir(self) -> Path:
        default_name = self.model if self.recipe == DEFAULT_RECIPE else f"{self.model}-{self.recipe}"
        return Path(self.out) if self.out is not None else Path("artifacts") / default_name

    def train_config(self, use_photo_outliers: bool) -> TrainConfig:
        """The hyper-parameters: these options over the recipe's defaults."""
        rec = get_recipe(self.recipe)
        return TrainConfig(
            model=self.model,
            epochs=self.epochs if self.epochs is not None else rec.epochs,
            pretrain_epochs=self.pretrain_epochs if self.pretrain_epochs is not None else rec.pretrain_epochs,
            batch_size=self.batch_size or (rec.batch_size_baseline if self.model == "baseline" else rec.batch_size_siamese),
            lr=self.lr if self.lr is not None else rec.lr,
            margin=self.margin, seed=self.seed, device=self.device, schedule=rec.schedule, augment=rec.augment,
            outlier_weight=rec.outlier_weight, outlier_batch=rec.outlier_batch, use_photo_outliers=use_photo_outliers,
            drawn_knowns=rec.drawn_knowns, network=self.network or rec.network,
            rotation_weight=self.rotation_weight if self.rotation_weight is not None else rec.rotation_weight,
            script_outliers=self.script_outliers if self.script_outliers is not None else rec.script_outliers,
        )


def load_data(source: OpenSetSource, contract: PreprocessContract, download: bool, console: Console) -> OpenSetData:
    from osr_infer.data import DataError
    from osr_infer.data.idx import IdxFormatError

    t0 = time.perf_counter()
    try:
        data = source.load(contract, download=download)
    except (DataError, IdxFormatError) as exc:
        raise TrainingFailed(str(exc)) from None
    console.print(f"data: {data.describe()}  ({time.perf_counter() - t0:.1f} s)", highlight=False, markup=False)
    return data


def train_command(options: TrainOptions, console: Console | None = None) -> dict[str, Any]:
    """Train, calibrate, evaluate; write ``model.pt``, ``history.json``, ``metrics.json``, plots.

    The threshold is, in order: ``--threshold``; calibrated at ``--target-tpr`` on validation
    knowns; the recipe's fixed threshold; or calibrated at the recipe's target TPR.
    """
    console = console or Console(stderr=True, emoji=False)
    from osr_infer.data import DataError, describe_dataset, open_set_source
    from osr_infer.data.idx import IdxFormatError
    from osr_infer.io import check_writable_dir

    rec = get_recipe(options.recipe)
    score = options.score or rec.score
    out_dir = options.out_dir
    try:
        check_writable_dir(out_dir)
    except PermissionError as exc:
        raise TrainingFailed(str(exc)) from None
    try:
        dataset, contract = describe_dataset(
            options.dataset, options.data_dir, known_classes=options.known_classes, split_seed=options.seed,
            input_size=options.input_size, channels=options.channels,
        )
    except (DataError, IdxFormatError) as exc:
        raise TrainingFailed(str(exc)) from None
    layout = rec.layout if options.layout is None else options.layout
    if layout and contract.channels != 1:
        if options.layout:
            raise TrainingFailed("--layout lays out greyscale characters: it needs --channels 1")
        layout = False  # the recipe's layout is for greyscale characters; colour inputs are resized
    if layout:
        contract = dataclasses.replace(contract, steps=(*contract.steps, "layout"))
    source = open_set_source(dataset, options.data_dir, options.ood_dirs)
    data = load_data(source, contract, options.download, console)

    from osr_infer.io import write_json
    from osr_train.checkpoint import save_checkpoint
    from osr_train.evaluation import evaluate, run_model
    from osr_train.plots import plot_confusion, plot_history
    from osr_train.scoring import TORCH_SCORES
    from osr_train.training import Normalizer, Trainer, config_to_json, history_to_json, resolve_device

    try:
        config = options.train_config(use_photo_outliers=dataset.name != "digits")  # the digits set's test unknowns are those photos
        # The spec as training starts: the threshold and fitted score parameters are settled after training.
        start_threshold = options.threshold if options.threshold is not None else (rec.threshold or _placeholder_threshold(score))
        spec = ModelSpec(
            class_names=data.class_names, architecture=config.architecture, preprocessing=contract, score=score,
            threshold=start_threshold, dataset=dataset,
            calibration={"method": "fixed"} if options.threshold is not None or rec.threshold is not None else {"method": "pending"},
        )
        record = {"model": options.model, "recipe": options.recipe, "hyperparameters": config_to_json(config)}
        resume = _resume_state(out_dir / "checkpoint.pt", spec, record) if options.resume else None
        # Before the trainer: its outlier pool and drawn glyphs are torch work too.
        threads = _set_threads(options.threads, resolve_device(config.device), console)
        trainer = Trainer(config, data, spec, out_dir, console, record)
        if resume is not None:
            trainer.restore(*resume)
    except (ValueError, RuntimeError) as exc:
        raise TrainingFailed(str(exc)) from None
    n_params = sum(p.numel() for p in trainer.model.parameters())
    console.print(
        f"training {options.model} ({options.recipe} recipe) on {trainer.device}{threads}: input {contract.describe()}, "
        f"{spec.n_classes} classes, {n_params:,} parameters", highlight=False, markup=False,
    )
    if resume is not None:
        console.print(f"resuming after {resume[1]['stage']} epoch {resume[1]['epoch']} ({out_dir / 'checkpoint.pt'})",
                      highlight=False, markup=False)
    result = trainer.fit()
    if result.interrupted:
        if trainer.last_saved is None:
            raise TrainingFailed("interrupted before the first epoch finished; nothing was saved", 130)
        stage, epoch = trainer.last_saved
        raise TrainingFailed(
            f"interrupted; the last complete checkpoint ({stage} epoch {epoch}) is {trainer.checkpoint_path}: "
            "run the same command with --resume to continue", 130)

    # Score statistics come from training knowns; the threshold from validation knowns only.
    classifier = trainer.classifier
    normalize = Normalizer(contract)
    fitted = {name: s.fit(classifier, trainer.train.x, trainer.train.y, normalize) for name, s in TORCH_SCORES.items() if s.fit}
    temperature, temperature_note = 1.0, None
    if rec.msp_target_tpr is not None:
        from osr_train.calibration import msp_acceptance, temperature_for_msp
        from osr_train.recipes import CARD_MSP_THRESHOLD

        val_logits = run_model(classifier, data.val, normalize, trainer.device).logits
        fitted_temperature = temperature_for_msp(val_logits, CARD_MSP_THRESHOLD, rec.msp_target_tpr)
        if fitted_temperature is None:
            console.print(f"warning: no softmax temperature makes msp >= {CARD_MSP_THRESHOLD:g} accept "
                          f"{rec.msp_target_tpr:.0%} of validation knowns; keeping 1", highlight=False, markup=False)
        temperature = 1.0 if fitted_temperature is None else fitted_temperature
        temperature_note = {"method": "msp_target_tpr", "msp_threshold": CARD_MSP_THRESHOLD, "target_tpr": rec.msp_target_tpr,
                            "temperature": temperature, "reached": fitted_temperature is not None,
                            "val_known_acceptance": msp_acceptance(val_logits, temperature, CARD_MSP_THRESHOLD)}
    calibration: dict[str, Any]
    if options.threshold is None and (options.target_tpr is not None or rec.threshold is None):
        tpr = options.target_tpr if options.target_tpr is not None else rec.target_tpr
        threshold, calibration = calibrate_threshold(classifier, data.val, normalize, trainer.device, fitted, temperature, score, tpr)
    else:
        threshold = options.threshold if options.threshold is not None else rec.threshold
        calibration = {"method": "fixed"}
    if temperature_note is not None:
        calibration["temperature"] = temperature_note
    try:
        spec = spec.replace(threshold=threshold, score_params=fitted.get(score, {}), calibration=calibration, temperature=temperature)
    except ValueError as exc:  # e.g. a calibrated threshold on a degenerate score
        raise TrainingFailed(f"the trained model cannot be described: {exc}") from None
    metrics, _, _ = evaluate(classifier, data, spec, trainer.device, fitted)
    metrics.update(dataset=dataset.reference, model=options.model, recipe=options.recipe, architecture=spec.architecture, calibration=calibration,
                   training_seconds=round(sum(h.seconds for h in result.history), 1), training_device=_device_name(trainer.device))
    history = history_to_json(result.history)
    final_record = dict(record, fitted_scores=fitted, stage="final", complete=True, epochs_trained=len(history))
    model_path = save_checkpoint(out_dir / "model.pt", trainer.model.cpu(), spec, final_record)
    trainer.checkpoint_path.unlink(missing_ok=True)  # superseded by model.pt
    write_json(out_dir / "history.json", history)
    write_json(out_dir / "metrics.json", metrics)
    plot_history(history, out_dir / "curves.png")
    names = list(spec.class_names)
    plot_confusion(metrics["confusion_matrix"], names, out_dir / "confusion.png", "Closed-set confusion (test knowns)")
    plot_confusion(metrics["confusion_matrix_open_set"], spec.label_names(), out_dir / "confusion_open_set.png",
                   f"Open-set confusion ({score} >= {threshold:.4g})")
    print_summary(console, metrics)
    console.print(f"model:   {model_path}\nmetrics: {out_dir / 'metrics.json'}\nplots:   {out_dir}/*.png", highlight=False, markup=False)
    return metrics


def calibrate_threshold(classifier, val, normalize, device, fitted: dict[str, Any], temperature: float, score: str,  # noqa: ANN001
                        tpr: float) -> tuple[float, dict[str, Any]]:
    """The threshold on ``score`` that accepts ``tpr`` of the validation knowns ``val``, and the
    calibration record the model spec keeps of it."""
    from osr_train.calibration import threshold_for_tpr
    from osr_train.evaluation import run_model

    val_scores = run_model(classifier, val, normalize, device, fitted, temperature=temperature).scores[score]
    threshold = threshold_for_tpr(val_scores, tpr)
    return threshold, {"method": "target_tpr", "target_tpr": tpr, "on": val.name, "n": len(val_scores),
                       "val_known_acceptance": float((val_scores >= threshold).mean())}


def fit_scores(names, classifier, train, device, normalize, fitted: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN001
    """``fitted`` plus the statistics, fitted on the training knowns ``train``, of those scores of
    ``names`` that need them and lack them (a checkpoint older than the score)."""
    from osr_train.scoring import TORCH_SCORES
    from osr_train.training import TensorSplit

    missing = [name for name in names if TORCH_SCORES[name].fit and name not in fitted]
    if not missing:
        return dict(fitted)
    split = TensorSplit.from_imageset(train, device)
    return {**fitted, **{name: TORCH_SCORES[name].fit(classifier, split.x, split.y, normalize) for name in missing}}


def _device_name(device: object) -> str:
    """What trained the model, for metrics.json: timings and seeds are only comparable on one kind."""
    import os
    import platform

    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s))"


def _resume_state(path: Path, spec: ModelSpec, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The interrupted run's weights and resume state, if it was started with these options."""
    from osr_train.checkpoint import CheckpointError, load_resume_state

    try:
        saved_spec, saved, state_dict, resume = load_resume_state(path)
    except CheckpointError as exc:
        raise TrainingFailed(f"--resume: {exc}") from None
    for key in ("model", "recipe", "hyperparameters"):
        if saved.get(key) != record[key]:
            differ = key
            if key == "hyperparameters":
                differ = ", ".join(k for k in record[key] if saved[key].get(k) != record[key][k]) or key
            raise TrainingFailed(f"--resume: {path} was started with other options ({differ} differ): give the same options")
    if saved_spec.to_dict() != spec.to_dict():
        raise TrainingFailed(f"--resume: {path} was started on other data or preprocessing: give the same options")
    return state_dict, resume


def _set_threads(threads: int | None, device: object, console: Console) -> str:
    """Set torch's CPU threads (``--threads``); with the default, say when other processes keep
    the cores busy: there one thread per core waits on the slowest core at every operation
    (benchmarks/training_threads.py: half the speed of one thread with one of two cores busy).
    The count is never changed behind the user's back: results depend on it in the last bits."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    elif str(device) == "cpu" and torch.get_num_threads() > 1:
        from osr_infer.decode import default_workers

        cores = default_workers()  # the cores this process may run on
        busy = _busy_cores(cores)
        if busy is not None and busy >= 0.75 and cores - busy < torch.get_num_threads() - 0.25:
            console.print(f"note: other processes keep about {busy:.1f} of the {cores} cores busy; with {torch.get_num_threads()} "
                          f"threads training waits on them: --threads {max(1, round(cores - busy))} is likely faster here",
                          highlight=False, markup=False)
    return f", {torch.get_num_threads()} thread(s)" if str(device) == "cpu" else ""


def _busy_cores(cores: int, seconds: float = 0.25) -> float | None:
    """How many cores other processes keep busy, from /proc/stat over a short sleep of ours
    (None where there is no /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return cores * (elapsed - (idle1 - idle0)) / elapsed if elapsed > 0 else None


def _placeholder_threshold(score: str) -> float:
    """A threshold inside the score's range for the spec of a run whose threshold is calibrated
    after training (intermediate checkpoints only; the final model has the calibrated one)."""
    spec = score_spec(score)
    if spec.low is not None and spec.high is not None:
        return (spec.low + spec.high) / 2
    return 0.0


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
