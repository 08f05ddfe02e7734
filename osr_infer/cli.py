"""``osr-infer``: classify images with an exported ONNX model (digit or unknown).

Torch-free unless ``--parity`` is given: the parity module is imported only then.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from osr_infer import cli_support
from osr_infer.cli_support import printable
from osr_infer.errors import EXIT_ERROR, EXIT_OK, EXIT_PARITY_FAILED, EXIT_SOME_INPUTS_FAILED, InferError
from osr_infer.outputs import DEFAULT_BATCH_SIZE
from osr_infer.params import NONE, Constraint, Interval, OneOf, validate
from osr_infer.parity_rule import DEFAULT_ATOL
from osr_infer.scores import SCORES
from osr_infer.session import BOTH_THRESHOLDS, DEFAULT_MODEL
from osr_infer.workers import few_plain_files, small_run

#: Bounds that keep memory and processes proportionate (a batch of 65,536 RGB 32x32 images is 800 MB of floats).
MAX_BATCH_SIZE = 65_536
MAX_WORKERS = 256

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
    model: Path = typer.Option(DEFAULT_MODEL, "--model", help="ONNX model exported by osr-export."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=THRESHOLD_HELP, show_default=False),
    score_threshold: Optional[float] = typer.Option(None, "--score-threshold", help=SCORE_THRESHOLD_HELP, show_default=False),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", help="Images per ONNX Runtime call."),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Decoding processes [default: CPU count]; 0 decodes in the main process.", show_default=False
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Results file, .csv or .jsonl (path,label,probability,score) [default: none, the report only].",
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
) -> None:
    """Classify images with an exported model: each is a digit, or unknown."""
    try:
        options = InferOptions(
            list(sources or []), model=model, threshold=threshold, score_threshold=score_threshold, batch_size=batch_size,
            workers=workers, output=output,
            unknown=list(unknown or []), data_dir=data_dir, parity=parity, atol=atol, progress=progress, decoder=decoder,
        )
        code = infer_command(options)
    except ValueError as exc:
        fail(str(exc))
    except InferError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:  # disk full, a file system gone read-only, ... while reading or writing
        fail(cli_support.file_error_message(exc))
    except MemoryError:
        fail("out of memory: try a smaller --batch-size or fewer --workers")
    raise typer.Exit(code)


@dataclass
class InferOptions:
    """What ``osr-infer`` was asked for, validated once."""

    sources: list[str]
    model: Path = DEFAULT_MODEL
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

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "decoder": [OneOf(("fast", "pil"))],
        "threshold": [Interval(float, 0, 1, closed="neither"), NONE],
        "score_threshold": [Interval(float, None, None), NONE],
        "batch_size": [Interval(int, 1, MAX_BATCH_SIZE)],
        "workers": [Interval(int, 0, MAX_WORKERS), NONE],
        "atol": [Interval(float, 0, 1, closed="right")],
    }

    def __post_init__(self) -> None:
        try:
            validate(self, self.constraints)
        except ValueError as exc:
            if str(exc).startswith("--threshold "):
                raise ValueError(
                    f"{exc} (--threshold is on the top softmax probability; use --score-threshold for the model's own score)"
                ) from None
            raise
        if self.threshold is not None and self.score_threshold is not None:
            raise ValueError(BOTH_THRESHOLDS)
        if not self.sources and not self.unknown:
            raise ValueError("nothing to classify: give at least one SOURCE (files, folders, mnist:test, cifar10:test, digits)")


def infer_command(options: InferOptions, *, pool_kind: str = "process", chunk_files: int | None = None, ort_threads: int | None = None) -> int:
    """The whole command as a function (tests and the benchmark call it); returns the exit status.

    ``pool_kind``, ``chunk_files`` and ``ort_threads`` are tuning knobs for the benchmark.
    """
    from osr_infer.data import default_data_dir
    from osr_infer.decode import CHUNK_FILES, DecodePool, decode_files, decode_files_pil, default_workers, prepare_workers
    from osr_infer.pipeline import run_inference
    from osr_infer.report import print_report
    from osr_infer.results import ResultsWriter, check_output
    from osr_infer.session import InferenceModel
    from osr_infer.sources import resolve_sources

    specs, unknown, output, batch_size = options.sources, options.unknown, options.output, options.batch_size
    if output is not None:
        check_output(output)
    workers = default_workers() if options.workers is None else options.workers
    data_dir = Path(options.data_dir) if options.data_dir is not None else default_data_dir()

    if options.workers is None and few_plain_files([*specs, *unknown]):
        workers = 0  # starting worker processes costs more than decoding a handful of files here
    decoding = workers > 0 and _decodes_files([*specs, *unknown], data_dir)
    if decoding and pool_kind == "process":
        prepare_workers()  # boots while the model loads and the files are listed
    threads, spin = ort_threading(workers if decoding else 0, batch_size)
    session = InferenceModel(
        options.model, options.threshold, score_threshold=options.score_threshold, threads=ort_threads or threads, spin=spin
    )
    if session.fixed_batch is not None and session.fixed_batch != batch_size:
        session.notes.append(f"{session.path.name} takes batches of exactly {session.fixed_batch}: using --batch-size {session.fixed_batch}")
        batch_size = session.fixed_batch
    resolved = resolve_sources(specs, unknown, data_dir, session.contract, session.spec, session.class_names)
    err.print(f"model: {session.describe()}", markup=False)
    for note in session.notes + [s.note for s in resolved if s.note]:
        err.print(f"note: {note}", markup=False)

    if options.workers is None and small_run([path for s in resolved if s.from_files for path in s.paths]):
        workers = 0  # a small folder: in-process decoding is done before a worker would have started
    decode = decode_files if options.decoder == "fast" else decode_files_pil
    with DecodePool(session.contract, workers, kind=pool_kind, chunk_files=chunk_files or CHUNK_FILES, decode=decode) as pool:
        if any(s.from_files for s in resolved):
            pool.start()
        observers = []
        if options.parity is not None:
            check = _parity_check(options.parity, session, [s.name for s in resolved], options.atol)
            for note in check.notes:
                err.print(f"[yellow]warning:[/] {escape(note)}", markup=True)
            observers.append(check)
        listed = 0

        def report_failure(path: str, reason: str) -> None:
            nonlocal listed
            listed += 1
            if listed <= LISTED_FAILURES:
                err.print(f"[yellow]skipped[/] {escape(printable(path))}: {escape(printable(reason))}", markup=True)

        # The results file is committed only if the run completes with at least one row.
        with ResultsWriter(output) if output is not None else contextlib.nullcontext() as writer:
            run = run_inference(
                resolved, session, pool, batch_size=batch_size, writer=writer, observers=observers, console=err,
                progress=options.progress, on_failure=report_failure,
            )
            if not len(run.predictions):
                n = len(run.failures)
                raise InferError(f"none of the {n:,} input file(s) could be read" if n else "nothing to classify")
    print_report(run, out, output=str(output) if output is not None else None)
    for note in pool.notes():
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


def _parity_check(checkpoint: Path, session, names: list[str], atol: float):  # noqa: ANN001, ANN202
    """The PyTorch side of ``--parity``, loaded only now: the edge install has no torch."""
    try:
        from osr_export.infer_parity import ParityCheck
    except ImportError as exc:
        raise InferError(
            f"--parity runs the PyTorch model, which needs the training install (pip install 'osr-toolkit[train]'): {exc}"
        ) from None
    return ParityCheck(checkpoint, session, names, atol)


def ort_threading(decode_workers: int, batch_size: int) -> tuple[int, bool]:
    """ONNX Runtime intra-op threads and spinning for a run (measured in benchmarks/).

    While worker processes decode, ONNX Runtime takes the cores they leave, and at least a
    quarter of them, without busy-waiting (its idle threads then cost nothing). A single
    inference thread starves a many-core machine: on 16 cores with 16 workers, end to end
    went from 13.4k images/s with 1 thread to 23.8k with 4 (pipeline_threads_16core.json);
    on 2 cores, 1 and 2 threads measure the same. One image per call is fastest on one
    thread; in-memory data gets all cores.
    """
    from osr_infer.decode import default_workers

    cores = default_workers()
    if decode_workers > 0:
        return max(1, cores - decode_workers, cores // 4), False
    if batch_size <= 4:
        return 1, False
    return cores, True


def _decodes_files(specs: list[str], data_dir: Path) -> bool:
    """Will any source need image decoding (files, folders, CIFAR-10 as JPEGs)?"""
    from osr_infer.data.registry import is_reference

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
