"""Training as a function: `train` loads the data, trains, calibrates and evaluates, and
returns a `TrainedModel` (``.spec``, ``.metrics``, ``.save(path)``). It prints nothing:
what it has to say goes to the `Reporter` it is given.

>>> from osr_train import TrainConfig, train
>>> trained = train(TrainConfig.from_recipe("seed", epochs=2, pretrain_epochs=1), dataset="digits")  # doctest: +SKIP
>>> trained.metrics["closed_set_accuracy"], trained.save("artifacts/digits/model.pt")               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Sequence

from osr_infer.data.datasets import OpenSetData
from osr_infer.data.registry import OpenSetSource
from osr_infer.errors import ModelError, OSRError, OutputError, ParameterError, TrainingError, TrainingInterrupted
from osr_infer.params import NONE, Interval, OneOf, check
from osr_infer.preprocess import PreprocessContract
from osr_infer.reporting import SILENT, Reporter
from osr_infer.scores import score_spec
from osr_infer.spec import ModelSpec
from osr_train.config import TrainConfig

if TYPE_CHECKING:  # torch is imported when training starts, not with this module
    from osr_infer.data.datasets import ImageSet
    from osr_train.models import Classifier
    from osr_train.training import Normalizer


@dataclass
class TrainedModel:
    """What `train` returns: the network, its spec, and what training measured.

    ``metrics`` are the test figures (closed-set accuracy, known acceptance, unknown rejection,
    AUROC per unknown set...), ``history`` one record per epoch. `save` writes the
    checkpoint that ``osr-export`` reads; `save_report` the metrics, history and plots.
    """

    spec: ModelSpec
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    network: Any  # the torch module, on the CPU
    record: dict[str, Any]
    config: TrainConfig

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint (``model.pt``) atomically; returns its path."""
        from osr_train.checkpoint import save_checkpoint

        return save_checkpoint(Path(path), self.network, self.spec, self.record)

    def save_report(self, folder: str | Path) -> list[Path]:
        """Write ``history.json``, ``metrics.json`` and the plots (``curves.png``, ``confusion.png``,
        ``confusion_open_set.png``) into ``folder``; returns their paths."""
        from osr_infer.io import write_json
        from osr_train.plots import plot_confusion, plot_history

        folder = Path(folder)
        write_json(folder / "history.json", self.history)
        write_json(folder / "metrics.json", self.metrics)
        plot_history(self.history, folder / "curves.png")
        plot_confusion(self.metrics["confusion_matrix"], list(self.spec.class_names), folder / "confusion.png",
                       "Closed-set confusion (test knowns)")
        plot_confusion(self.metrics["confusion_matrix_open_set"], self.spec.label_names(), folder / "confusion_open_set.png",
                       f"Open-set confusion ({self.spec.score} >= {self.spec.threshold:.4g})")
        return [folder / n for n in ("history.json", "metrics.json", "curves.png", "confusion.png", "confusion_open_set.png")]


def load_data(source: OpenSetSource, contract: PreprocessContract, download: bool, reporter: Reporter) -> OpenSetData:
    t0 = time.perf_counter()
    data = source.load(contract, download=download)
    reporter.info(f"data: {data.describe()}  ({time.perf_counter() - t0:.1f} s)")
    return data


def train(
    config: TrainConfig | None = None,
    dataset: str = "mnist",
    *,
    data_dir: str | Path | None = None,
    ood_dirs: Sequence[str | Path] = (),
    known_classes: str | Sequence[str | int] | None = None,
    input_size: int | None = None,
    channels: int | None = None,
    download: bool = False,
    work_dir: str | Path | None = None,
    resume: bool = False,
    threads: int | None = None,
    reporter: Reporter = SILENT,
) -> TrainedModel:
    """Train, calibrate and evaluate a model on ``dataset`` (a registry reference: ``mnist``,
    ``digits``, ``folder:PATH``, ``idx:PATH``) with ``config`` (default: the default recipe).

    The spec is made here, once, from the data and the configuration. ``known_classes``
    trains on those classes only (the others become test unknowns). ``work_dir`` keeps a
    checkpoint after every epoch (``checkpoint.pt``), which ``resume=True`` continues from;
    without it, a temporary folder is used and removed. ``threads`` sets torch's CPU threads for
    this call (the process's count is restored on return).
    The threshold is ``config.score_threshold``, or calibrated at ``config.target_tpr`` on
    validation knowns. Raises `DataError`, ``ParameterError``,
    ``TrainingError`` or ``TrainingInterrupted`` (Ctrl-C; the checkpoint to resume from is named).
    """
    import tempfile

    from osr_infer.data import describe_dataset, open_set_source
    from osr_infer.io import check_writable_dir

    config = config if config is not None else TrainConfig.from_recipe()
    check("input_size", input_size, Interval(int, 8, 256), NONE)
    check("channels", channels, OneOf((1, 3)), NONE)
    check("threads", threads, Interval(int, 1, 1024), NONE)
    if isinstance(known_classes, (list, tuple)):
        known_classes = ",".join(str(c) for c in known_classes)
    if resume and work_dir is None:
        raise ParameterError("resume", "`resume` continues the run in `work_dir`: give it")
    import torch

    from osr_train.distributed import Group, process_group

    group = Group.from_environment()  # started by torchrun: one rank of a data-parallel group
    with contextlib.ExitStack() as stack:
        # `threads` holds for this call: torch's process-wide count is put back on return
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="osr-train-"))
        work_dir = Path(work_dir)
        try:
            check_writable_dir(work_dir)
        except PermissionError as exc:
            raise OutputError(str(exc)) from None
        if group is not None:
            from osr_train.training import resolve_device

            stack.enter_context(process_group(group, resolve_device(config.device)))
            if not group.main:
                reporter = SILENT  # rank 0 reports for the group
            if group.restarts and not resume and (work_dir / "checkpoint.pt").is_file():
                resume = True  # torchrun restarted the group after a failure: continue, not start again
                reporter.info(f"torchrun restarted the group (restart {group.restarts}): resuming from {work_dir / 'checkpoint.pt'}")
        dataset_spec, contract = describe_dataset(
            dataset, data_dir, known_classes=known_classes, split_seed=config.seed, input_size=input_size, channels=channels,
        )
        layout = config.layout
        if layout and contract.channels != 1:
            raise ParameterError("layout", "`layout` lays out greyscale characters: it needs `channels` 1")
        if layout is None:
            layout = contract.channels == 1  # on for greyscale characters; colour inputs are resized
        if layout:
            contract = dataclasses.replace(contract, steps=(*contract.steps, "layout"))
        source = open_set_source(dataset_spec, data_dir, [Path(d) for d in ood_dirs])
        data = load_data(source, contract, download, reporter)
        return _train_on(config, data, dataset_spec, contract, work_dir, resume, threads, reporter, group)


def _train_on(config: TrainConfig, data: OpenSetData, dataset: Any, contract: PreprocessContract, work_dir: Path, resume: bool,
              threads: int | None, reporter: Reporter, group: Any = None) -> TrainedModel:
    from osr_train.evaluation import evaluate, run_model
    from osr_train.scoring import TORCH_SCORES
    from osr_train.training import Normalizer, Trainer, config_to_json, history_to_json, resolve_device

    score = config.score
    try:
        # The spec as training starts: the threshold and fitted score parameters are settled after training.
        start_threshold = config.score_threshold if config.score_threshold is not None else _placeholder_threshold(score)
        spec = ModelSpec(
            class_names=data.class_names, architecture=config.architecture, preprocessing=contract, score=score,
            threshold=start_threshold, dataset=dataset,
            calibration={"method": "fixed"} if config.score_threshold is not None else {"method": "pending"},
        )
        record = {"model": config.model, "recipe": config.recipe, "hyperparameters": config_to_json(config)}
        resume_state = _resume_state(work_dir / "checkpoint.pt", spec, record) if resume else None
        # Before the trainer: its outlier pool and drawn glyphs are torch work too.
        threads_note = _set_threads(threads, resolve_device(config.device), reporter, group)
        trainer = Trainer(config, data, spec, work_dir, reporter, record,
                          use_photo_outliers=dataset.name != "digits",  # the digits set's test unknowns are those photos
                          group=group)
        if resume_state is not None:
            trainer.restore(*resume_state)
    except OSRError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise TrainingError(str(exc)) from None
    n_params = sum(p.numel() for p in trainer.model.parameters())
    ranks = f" x {group.world} ranks (torchrun; global batch {config.batch_size})" if group is not None else ""
    reporter.info(
        f"training {config.model} ({config.recipe} recipe) on {trainer.device}{threads_note}{ranks}: input {contract.describe()}, "
        f"{spec.n_classes} classes, {n_params:,} parameters"
    )
    if resume_state is not None:
        reporter.info(f"resuming after {resume_state[1]['stage']} epoch {resume_state[1]['epoch']} ({work_dir / 'checkpoint.pt'})")
    result = trainer.fit()
    if result.interrupted:
        if trainer.last_saved is None:
            raise TrainingInterrupted("interrupted before the first epoch finished; nothing was saved")
        stage, epoch = trainer.last_saved
        raise TrainingInterrupted(
            f"interrupted; the last complete checkpoint ({stage} epoch {epoch}) is {trainer.checkpoint_path}: "
            "run the same command with `resume` to continue")
    if group is not None and not group.main:
        # Rank 0 calibrates, evaluates and writes for the group (the ranks hold the same weights).
        return TrainedModel(spec, {}, history_to_json(result.history), trainer.model.cpu(), dict(record, rank=group.rank), config)

    # Score statistics come from training knowns; the threshold from validation knowns only.
    classifier = trainer.classifier
    normalize = Normalizer(contract)
    fitted = {name: s.fit(classifier, trainer.train.x, trainer.train.y, normalize) for name, s in TORCH_SCORES.items() if s.fit}
    temperature, temperature_note = 1.0, None
    if config.msp_target_tpr is not None:
        from osr_train.calibration import msp_acceptance, temperature_for_msp
        from osr_train.recipes import CARD_MSP_THRESHOLD

        val_logits = run_model(classifier, data.val, normalize, trainer.device).logits
        fitted_temperature = temperature_for_msp(val_logits, CARD_MSP_THRESHOLD, config.msp_target_tpr)
        if fitted_temperature is None:
            reporter.warning(f"no softmax temperature makes msp >= {CARD_MSP_THRESHOLD:g} accept "
                             f"{config.msp_target_tpr:.0%} of validation knowns; keeping 1")
        temperature = 1.0 if fitted_temperature is None else fitted_temperature
        temperature_note = {"method": "msp_target_tpr", "msp_threshold": CARD_MSP_THRESHOLD, "target_tpr": config.msp_target_tpr,
                            "temperature": temperature, "reached": fitted_temperature is not None,
                            "val_known_acceptance": msp_acceptance(val_logits, temperature, CARD_MSP_THRESHOLD)}
    calibration: dict[str, Any]
    if config.score_threshold is None:
        assert config.target_tpr is not None  # TrainConfig demands one of them
        threshold, calibration = calibrate_threshold(classifier, data.val, normalize, trainer.device, fitted, temperature, score,
                                                     config.target_tpr)
    else:
        threshold, calibration = config.score_threshold, {"method": "fixed"}
    if temperature_note is not None:
        calibration["temperature"] = temperature_note
    try:
        spec = spec.replace(threshold=threshold, score_params=fitted.get(score, {}), calibration=calibration, temperature=temperature)
    except ValueError as exc:  # e.g. a calibrated threshold on a degenerate score
        raise TrainingError(f"the trained model cannot be described: {exc}") from None
    metrics, _, _ = evaluate(classifier, data, spec, trainer.device, fitted)
    metrics.update(dataset=dataset.reference, model=config.model, recipe=config.recipe, architecture=spec.architecture,
                   calibration=calibration, training_seconds=round(sum(h.seconds for h in result.history), 1),
                   training_device=_device_name(trainer.device))
    history = history_to_json(result.history)
    final_record = dict(record, fitted_scores=fitted, stage="final", complete=True, epochs_trained=len(history))
    trainer.checkpoint_path.unlink(missing_ok=True)  # superseded by the trained model
    return TrainedModel(spec, metrics, history, trainer.model.cpu(), final_record, config)


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


def fit_scores(names: Iterable[str], classifier: Classifier, train: ImageSet, device: Any, normalize: Normalizer,
               fitted: dict[str, Any]) -> dict[str, Any]:
    """``fitted`` plus the statistics, fitted on the training knowns ``train``, of those scores of
    ``names`` that need them and lack them (a checkpoint older than the score)."""
    from osr_train.scoring import TORCH_SCORES
    from osr_train.training import TensorSplit

    missing = [name for name in names if TORCH_SCORES[name].fit and name not in fitted]
    if not missing:
        return dict(fitted)
    split = TensorSplit.from_imageset(train, device)
    fits = {name: fit for name in missing if (fit := TORCH_SCORES[name].fit) is not None}
    return {**fitted, **{name: fit(classifier, split.x, split.y, normalize) for name, fit in fits.items()}}


def _device_name(device: Any) -> str:
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
        raise ModelError(f"`resume`: {exc}") from None
    for key in ("model", "recipe", "hyperparameters"):
        if saved.get(key) != record[key]:
            differ = key
            if key == "hyperparameters":
                differ = ", ".join(k for k in record[key] if saved[key].get(k) != record[key][k]) or key
            raise ParameterError("resume", f"`resume`: {path} was started with other options ({differ} differ): give the same options")
    if saved_spec.to_dict() != spec.to_dict():
        raise ParameterError("resume", f"`resume`: {path} was started on other data or preprocessing: give the same options")
    return state_dict, resume


def _set_threads(threads: int | None, device: object, reporter: Reporter, group: Any = None) -> str:
    """Set torch's CPU threads (``--threads``); with the default, say when other processes keep
    the cores busy: there one thread per core waits on the slowest core at every operation
    (benchmarks/training_threads.py: half the speed of one thread with one of two cores busy).
    The count is never changed behind the user's back: results depend on it in the last bits."""
    import torch

    if threads is None and group is not None and str(device) == "cpu":
        from osr_infer.decode import default_workers

        threads = max(1, default_workers() // group.local_world)  # the ranks on this machine share its cores
    if threads is not None:
        torch.set_num_threads(threads)
    elif str(device) == "cpu" and torch.get_num_threads() > 1:
        from osr_infer.decode import default_workers

        cores = default_workers()  # the cores this process may run on
        busy = _busy_cores(cores)
        if busy is not None and busy >= 0.75 and cores - busy < torch.get_num_threads() - 0.25:
            reporter.info(f"note: other processes keep about {busy:.1f} of the {cores} cores busy; with {torch.get_num_threads()} "
                          f"threads training waits on them: `threads` {max(1, round(cores - busy))} is likely faster here")
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


