"""``osr-infer``: classify images with an exported ONNX model (a known class, or unknown).

A thin client of `osr_infer.Model`: it parses the options, picks the model (``--model``,
else the card's ``artifacts/siamese/model.onnx`` where it exists, else the model shipped with
the package), streams `Model.predict_files` into the results file and a progress bar,
prints the report, and maps errors to exit codes. Torch-free unless ``--parity`` is given:
the parity observer (from the training install's ``osr_export``) is found only then.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NoReturn, Optional, Protocol

import typer
from rich.console import Console
from rich.markup import escape

from osr_infer import cli_support
from osr_infer.cli_support import printable, with_flags
from osr_infer.errors import EXIT_ERROR, EXIT_OK, EXIT_PARITY_FAILED, EXIT_SOME_INPUTS_FAILED, InputError, ModelError, ParameterError
from osr_infer.model import DECODERS, MAX_BATCH_SIZE, MAX_WORKERS
from osr_infer.outputs import DEFAULT_BATCH_SIZE, PARTITION_SIZE
from osr_infer.params import NONE, Constraint, Interval, OneOf, validate
from osr_infer.parity_rule import DEFAULT_ATOL
from osr_infer.scores import SCORES
from osr_infer.session import BOTH_THRESHOLDS

#: Runs of up to this many images print one row per image; larger ones a summary, rows in a file.
TABLE_ROWS = 50
#: The folder of the results files of large runs given no ``--output``.
DEFAULT_RESULTS_DIR = "artifacts/osr-infer"

if TYPE_CHECKING:
    import numpy as np
    from rich.progress import Progress

    from osr_infer.outputs import ModelOutputs

    from osr_infer.engines import ClusterEngine
    from osr_infer.model import FileRun, Model
    from osr_infer.pipeline import ClassifiedBatch
    from osr_infer.results import Interrupted
    from osr_infer.session import InferenceModel

#: The card's chain: ``osr-train siamese`` then ``osr-export`` write this; without ``--model``
#: osr-infer uses it where it exists, and the model shipped with the package otherwise.
CARD_MODEL = Path("artifacts/siamese/model.onnx")
#: The flags of the library's parameters whose names differ from ``--`` and the name dashed.
FLAGS = {"sources": "SOURCE", "provider_options": "--provider-option", **cli_support.THRESHOLD_FLAGS}

EPILOG = (
    "Exit status: 0 all inputs classified; 1 --parity out of tolerance; 2 error (nothing classified); "
    "3 some inputs unreadable (reported and skipped; the rest classified and written)."
)
SOURCES_HELP = (
    "Image files, folders (recursive), or data sets: mnist:test, mnist:train, cifar10:test (from --data-dir; "
    "every CIFAR-10 image counts as unknown), digits (bundled: the digits test split plus sample-photo crops as unknowns), "
    "folder:PATH (one subfolder per class, labelled by name), idx:PATH (the test split of IDX files). Classes the model "
    "does not know count as unknowns."
)
LISTED_FAILURES = 20  # unreadable files listed one per line; the rest are counted

THRESHOLD_HELP = (
    "Accept as known when the top softmax probability (msp: the largest of the model's probs) is at least this, "
    "a number in (0, 1) (e.g. 0.999, the seed notebook's rule), whatever score the model stores "
    "[default: the model's own score and threshold]."
)
SCORE_THRESHOLD_HELP = (
    f"Accept as known when the model's own score (osr.score: {', '.join(SCORES)}; the graph's score "
    "output) is at least this; checked against that score's range; not with --threshold [default: the model's osr.threshold]."
)
#: Plain help (no rich boxes), as osr-train and osr-export print it: rich markup would eat the [default: ...] texts.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help=__doc__.splitlines()[0], epilog=EPILOG)
err = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)
out = Console(highlight=False, soft_wrap=True, emoji=False)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    cli_support.fail(err, message, code)


@app.command(epilog=EPILOG)
@cli_support.interruptible(err, "no results file was written")
def infer(
    sources: Optional[list[str]] = typer.Argument(None, metavar="SOURCE...", help=SOURCES_HELP, show_default=False),
    model: Optional[str] = typer.Option(
        None, "--model", help="ONNX model exported by osr-export, a path or a URL (s3://..., https://...) "
        f"[default: {CARD_MODEL} where it exists (the card's osr-train then osr-export), else the model shipped with "
        "osr-toolkit (MNIST digits; docs/model-card.md)].", show_default=False,
    ),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=THRESHOLD_HELP, show_default=False),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help=SCORE_THRESHOLD_HELP, show_default=False),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", help="Images per ONNX Runtime call."),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Decoding processes [default: CPU count]; 0 decodes in the main process.", show_default=False
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Results file, .csv, .jsonl or .parquet (path,label,probability,score) [default: none for up to "
        f"{TABLE_ROWS} images, which are listed one a row; for more, {DEFAULT_RESULTS_DIR}/results-TIME.csv].",
        show_default=False,
    ),
    unknown: Optional[list[str]] = typer.Option(None, "--unknown", metavar="SOURCE", help="A source whose every image counts as unknown (repeatable)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data folder [default: $OSR_DATA_DIR or ./data].", show_default=False),
    parity: Optional[Path] = typer.Option(None, "--parity", metavar="CHECKPOINT", help="Also run this PyTorch checkpoint on the same batches and compare."),
    atol: float = typer.Option(
        DEFAULT_ATOL, "--atol", help="--parity tolerance on |delta| of logits and probs (the score gets atol + 1e-5 x |score|)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    decoder: str = typer.Option(
        "fast", "--decoder", help="fast: JPEGs through libjpeg-turbo directly (simplejpeg), PIL for the rest; pil: PIL for "
        "everything (the reference; the pixels are the same)."
    ),
    shard: Optional[str] = typer.Option(
        None, "--shard", metavar="I/N", help="Classify only shard I of N (0 <= I < N): the files whose path relative to their "
        "SOURCE hashes to I. N runs (a job array) classify every file exactly once [default: all the files].", show_default=False,
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the --output file of a run that was killed: its rows stay, the rest is classified "
        "(same sources and options); the file then equals an uninterrupted run's.",
    ),
    cluster: Optional[str] = typer.Option(
        None, "--cluster", metavar="ENGINE:ADDRESS", help="Classify on a running cluster instead of this machine's processes: "
        "dask:tcp://HOST:8786 (the [dask] extra) or ray:auto, ray:ray://HOST:10001 (the [ray] extra). The same rows, in the "
        "same order; the partitions of a lost worker run again [default: this machine].", show_default=False,
    ),
    provider: str = typer.Option(
        "cpu", "--provider", help="Where the model runs: cpu, cuda, tensorrt, coreml, dnnl, rocm, or auto (the best "
        "available, named in the report). A provider that is not available is an error, never a silent CPU run.",
    ),
    provider_option: Optional[list[str]] = typer.Option(
        None, "--provider-option", metavar="KEY=VALUE", help="An option of --provider's runtime (repeatable), e.g. "
        "device_id=1 for cuda, INFERENCE_PRECISION_HINT=bf16 for openvino [default: the provider's own; openvino: "
        "INFERENCE_PRECISION_HINT=f32].", show_default=False,
    ),
    partition_size: Optional[int] = typer.Option(
        None, "--partition-size", help=f"With --cluster: files per task (a lost worker loses at most a few of these) [default: "
        f"{PARTITION_SIZE} on Dask, 512 on Ray, whose rows come back in order: smaller blocks stream].", show_default=False,
    ),
) -> None:
    """Classify images with an exported model: each is one of its classes, or unknown."""
    with cli_support.library_errors(err, FLAGS):
        try:
            options = InferOptions(
                list(sources or []), model=model, threshold=threshold, score_threshold=score_threshold, batch_size=batch_size,
                workers=workers, output=output, unknown=list(unknown or []), data_dir=data_dir, parity=parity, atol=atol,
                progress=progress, decoder=decoder, shard=parse_shard(shard), resume=resume, cluster=cluster,
                partition_size=partition_size, provider=provider, provider_options=list(provider_option or []),
            )
            code = infer_command(options)
        except MemoryError:
            fail("out of memory: try a smaller --batch-size or fewer --workers")
    raise typer.Exit(code)


@dataclass
class InferOptions:
    """What ``osr-infer`` was asked for, validated once."""

    sources: list[str]
    model: str | Path | None = None  # a path or URL; None: CARD_MODEL where it exists, else the shipped model
    threshold: float | None = None  # on the top softmax probability
    score_threshold: float | None = None  # on the model's own score
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int | None = None
    output: Path | None = None
    unknown: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    parity: Path | None = None
    atol: float = DEFAULT_ATOL
    progress: bool = True
    decoder: str = "fast"  # "pil": the reference decoding path only
    shard: tuple[int, int] | None = None  # (index, count)
    resume: bool = False  # continue the output file of an interrupted run
    cluster: str | None = None  # ENGINE:ADDRESS (osr_infer.engines)
    partition_size: int | None = None  # items per cluster task (None: the engine's default)
    provider: str = "cpu"  # osr_infer.providers: a name, or auto
    provider_options: list[str] = field(default_factory=list)  # KEY=VALUE

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "decoder": [OneOf(DECODERS)],
        "threshold": [Interval(float, 0, 1, closed="neither"), NONE],
        "score_threshold": [Interval(float, None, None), NONE],
        "batch_size": [Interval(int, 1, MAX_BATCH_SIZE)],
        "workers": [Interval(int, 0, MAX_WORKERS), NONE],
        "atol": [Interval(float, 0, 1, closed="right")],
        "partition_size": [Interval(int, 1, None), NONE],
    }

    def __post_init__(self) -> None:
        try:
            validate(self, self.constraints)
        except ParameterError as exc:
            if exc.parameter == "threshold":
                raise ParameterError(
                    "threshold", f"{exc} (`threshold` is on the top softmax probability; use `score_threshold` for the model's own score)"
                ) from None
            raise
        if self.threshold is not None and self.score_threshold is not None:
            raise InputError(BOTH_THRESHOLDS)
        if not self.sources and not self.unknown:
            raise InputError("nothing to classify: give at least one SOURCE (files, folders, mnist:test, cifar10:test, digits)")
        if self.cluster is not None:
            from osr_infer.engines import parse_cluster

            parse_cluster(self.cluster)
            for name, given in (("parity", self.parity is not None), ("resume", self.resume), ("workers", self.workers is not None),
                                ("decoder", self.decoder != "fast"), ("provider", self.provider != "cpu")):
                if given:
                    raise ParameterError(name, f"`{name}` is for runs on this machine, not with `cluster` "
                                         + ("(a cluster re-runs a lost worker's partitions itself)" if name == "resume" else
                                            "(the cluster's workers decode and classify)"))


def resume_results(run_files: FileRun, output: Path) -> Interrupted | None:
    """``--resume``: the rows an interrupted run left for ``output`` (whole batches), and the
    run cut to start after them; None, with a note, when there is nothing to resume."""
    from osr_infer.results import FORMATS, csv_cell, read_interrupted

    prefix = read_interrupted(output, run_files.batch_size)
    if prefix is None:
        err.print(f"note: nothing to resume for {output} (no rows of an interrupted run): classifying from the start", markup=False)
        return None
    cell = csv_cell if FORMATS[output.suffix.lower()] == "csv" else str
    skipped = run_files.resume_after(prefix.last_id, cell)
    err.print(f"note: resuming {output}: {prefix.rows:,} rows kept from the interrupted run; "
              f"{skipped:,} items before them not classified again", markup=False)
    return prefix


def results_metadata(model: Model) -> dict[str, str]:
    """What a Parquet results file says of the run: the model (path and SHA-256), and the rule
    every label was decided by."""
    import json

    import osr_infer
    from osr_infer.io import file_sha256

    digest = file_sha256(model.session.path)
    return {"osr.model": str(model.session.path), "osr.model_sha256": digest, "osr.threshold": json.dumps(model.threshold),
            "osr.decision": model.decision_rule, "osr.toolkit_version": osr_infer.__version__}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard I/N`` as ``(I, N)``, checked: ``0 <= I < N``."""
    if text is None:
        return None
    from osr_infer.model import check_shard

    index, _, count = text.partition("/")
    try:
        return check_shard((int(index), int(count)))
    except ValueError:
        raise ParameterError("shard", f"shard must be I/N with 0 <= I < N, such as 0/4, not {text!r}") from None


def resolve_model_path(model: str | Path | None) -> str | Path | None:
    """``--model`` (a path or a URL), else the card's chain's model where it exists, else None (the shipped one)."""
    if model is not None:
        from osr_infer.remote import is_url

        return model if isinstance(model, Path) or is_url(model) else Path(model)
    return CARD_MODEL if CARD_MODEL.is_file() else None


def default_results_path() -> Path:
    """Where the rows of a run too large to list go without ``--output``: a new file a run."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(DEFAULT_RESULTS_DIR) / f"results-{stamp}.csv"
    n = 1
    while path.exists():
        n += 1
        path = Path(DEFAULT_RESULTS_DIR) / f"results-{stamp}-{n}.csv"
    return path


def infer_command(options: InferOptions) -> int:
    """The whole command as a function (tests and benchmarks call it); returns the exit status."""
    from osr_infer.model import Model, ort_threading
    from osr_infer.report import print_report
    from osr_infer.results import ResultsWriter, check_output
    from osr_infer.workers import prepare_workers

    specs, unknown, output = options.sources, options.unknown, options.output
    if output is not None:
        check_output(output)
    if options.resume and output is None:
        raise ParameterError("resume", "`resume` continues the results file of an interrupted run: give `output`")
    workers = Model.auto_workers([*specs, *unknown]) if options.workers is None else options.workers
    decoding = workers > 0 and options.cluster is None and _decodes_files([*specs, *unknown], options.data_dir)
    if decoding:
        prepare_workers()  # boots while the model loads and the files are listed
    # The run's threading is known now: the session is made once, for it.
    threads, spin = ort_threading(workers if decoding else 0, options.batch_size)
    from osr_infer.providers import parse_options

    model = Model.load(resolve_model_path(options.model), threshold=options.threshold, score_threshold=options.score_threshold,
                       threads=threads, spin=spin, provider=options.provider, provider_options=parse_options(options.provider_options))
    run_files = model.predict_files(
        specs, unknown=unknown, workers=options.workers, batch_size=options.batch_size, decoder=options.decoder,
        data_dir=options.data_dir, shard=options.shard, cluster=_engine(options),
    )
    run_files.closes_engine = run_files.engine is not None
    prefix = resume_results(run_files, output) if options.resume and output is not None else None
    if output is None and run_files.total > TABLE_ROWS:  # too many to list: the rows go to a file, and the report says where
        output = default_results_path()
        check_output(output)
    session = model.session
    if session.fixed_batch is not None and session.fixed_batch != options.batch_size:
        session.notes.append(f"{session.path.name} takes batches of exactly {session.fixed_batch}: using --batch-size {session.fixed_batch}")
    err.print(f"model: {model.describe(FLAGS)}", markup=False)
    err.print(f"provider: {model.provider.describe()}", markup=False)
    if model.shipped:
        err.print(f"note: no --model and no {CARD_MODEL}: classifying with the model shipped with osr-toolkit "
                  "(MNIST digits, the default recipe; see docs/model-card.md)", markup=False)
    if run_files.engine is not None:
        err.print(f"cluster: {run_files.engine.describe()}", markup=False)
    for note in session.notes + run_files.notes:
        err.print(f"note: {with_flags(note, FLAGS)}", markup=False)

    observers: list[ReportingObserver] = []
    if options.parity is not None:
        check = _parity_check(options.parity, session, [s.name for s in run_files.sources], options.atol)
        for note in check.notes:
            err.print(f"[yellow]warning:[/] {escape(note)}", markup=True)
        observers.append(check)
        run_files.observe(check)
    listed = 0
    bar = _progress(err) if options.progress else None
    task = bar.add_task("classifying", total=run_files.total) if bar else None

    def report_batch(batch: ClassifiedBatch) -> None:
        nonlocal listed
        for path, reason in batch.failures:
            listed += 1
            if listed <= LISTED_FAILURES:
                err.print(f"[yellow]skipped[/] {escape(printable(path))}: {escape(printable(reason))}", markup=True)
        if bar and task is not None:
            bar.advance(task, len(batch.rows) + len(batch.failures))

    # The results file is committed only if the run completes with at least one row.
    # Only Parquet has room for the model's identity (hashing a large model for a CSV would be wasted).
    metadata = results_metadata(model) if output is not None and output.suffix.lower() == ".parquet" else None
    with ResultsWriter(output, metadata, prefix) if output is not None else contextlib.nullcontext() as writer:
        if bar:
            bar.start()
        try:
            run = run_files.collect(writer=writer, on_batch=report_batch)
        finally:
            if bar:
                bar.stop()
        empty_shard = options.shard is not None and run_files.total == 0
        finished = prefix is not None and run_files.total == 0  # the interrupted run had classified everything
        if not len(run.predictions) and not empty_shard and not finished:
            n = len(run.failures)
            raise InputError(f"none of the {n:,} input file(s) could be read" if n else "nothing to classify")
    if finished:
        err.print(f"results: {output} ({prefix.rows if prefix else 0:,} rows, all from the interrupted run)", markup=False)
        return EXIT_OK
    if empty_shard:  # a job array over a small folder: this shard has nothing, and that is no error
        index, count = options.shard or (0, 1)
        err.print(f"note: shard {index}/{count} holds none of the sources' items" + (f"; {output} has the header only" if output else ""),
                  markup=False)
        return EXIT_OK
    print_report(run, out, output=str(output) if output is not None else None, list_up_to=TABLE_ROWS)
    for note in run_files.decode_notes():
        err.print(f"[yellow]warning:[/] {escape(note)}", markup=True)
    if run.failures:
        more = len(run.failures) - LISTED_FAILURES
        err.print(
            f"[yellow]warning:[/] {len(run.failures):,} input(s) unreadable and skipped"
            f"{f' ({more:,} not listed above)' if more > 0 else ' (listed above)'}",
            markup=True,
        )
    if observers:
        for line in observers[0].lines():
            out.print(line, markup=False, style="red" if line.startswith("[E]") else None)
        if not observers[0].passed:
            return EXIT_PARITY_FAILED
    return EXIT_SOME_INPUTS_FAILED if run.failures else EXIT_OK


def _engine(options: InferOptions) -> ClusterEngine | None:
    """The cluster ``--cluster`` names, connected (None: this machine)."""
    if options.cluster is None:
        return None
    from osr_infer.engines import connect

    return connect(options.cluster, partition_size=options.partition_size)


def _progress(console: Console) -> Progress:
    """rich's progress bar, imported here: small runs start faster without it."""
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:,.0f} img/s" if task.speed else "", style="progress.data.speed")

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True, refresh_per_second=4,
    )


class ReportingObserver(Protocol):
    """A batch observer that reports at the end (``--parity``): notes before the run, the lines of
    its report, and whether it passed."""

    notes: list[str]

    @property
    def passed(self) -> bool: ...

    def observe(self, x: np.ndarray, outputs: ModelOutputs, source: np.ndarray) -> None: ...

    def lines(self) -> list[str]: ...


#: Batch observers are plug-ins: the training install's osr_export registers ``parity`` under this
#: entry-point group (pyproject.toml), so osr_infer never imports the layers above it.
OBSERVERS_GROUP = "osr_infer.observers"


def _parity_check(checkpoint: Path, session: InferenceModel, names: list[str], atol: float) -> ReportingObserver:
    """The PyTorch side of ``--parity``: the ``parity`` observer that ``osr_export`` supplies,
    loaded only now (the edge install has no torch)."""
    from importlib.metadata import entry_points

    needs = "--parity runs the PyTorch model, which needs the training install (pip install 'osr-toolkit[train]')"
    found = [ep for ep in entry_points(group=OBSERVERS_GROUP) if ep.name == "parity"]
    if not found:
        raise ModelError(f"{needs}: no '{OBSERVERS_GROUP}' plug-in named parity is installed")
    try:
        factory = found[0].load()
    except ImportError as exc:
        raise ModelError(f"{needs}: {exc}") from None
    observer: ReportingObserver = factory(checkpoint, session, names, atol)
    return observer


def _decodes_files(specs: list[str], data_dir: Path | None) -> bool:
    """Will any source need image decoding (files, folders, CIFAR-10 as JPEGs)?"""
    from osr_infer.data import default_data_dir
    from osr_infer.data.registry import is_reference

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    for spec in specs:
        if not is_reference(spec) or spec.startswith("folder:"):
            return True
        if spec == "cifar10:test":
            from osr_infer.data.cifar import find_cifar10

            found = find_cifar10(data_dir)
            if found is not None and not (found / "test_batch").is_file():
                return True
    return False


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    app()


if __name__ == "__main__":
    main()
