"""What the three command-line tools share: how they fail, and how they stop on Ctrl-C.

Torch-free (osr-infer imports it). The library raises `OSRError` s
whose messages name Python parameters; `library_errors` turns them into the commands'
one-line errors: the parameter becomes its flag, and the exception's branch its exit code
(`EXIT_CODES`, the one table). Typer turns Ctrl-C inside a command into a silent exit
130, so a command that should say what an interruption left behind catches it itself,
through `interruptible`.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Callable, Iterator, Mapping, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from osr_infer.reporting import ProgressTask, Reporter
from osr_infer.errors import (
    EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PARITY_FAILED, OSRError, ParameterError, TrainingInterrupted, VerificationError,
)
from osr_infer.params import option_name

#: The two thresholds, named the same way in all three commands.
THRESHOLD_FLAGS = {"threshold": "--threshold", "score_threshold": "--score-threshold"}
#: Exit status by branch of the exception tree, most specific first.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (VerificationError, EXIT_PARITY_FAILED),
    (TrainingInterrupted, EXIT_INTERRUPTED),
    (OSRError, EXIT_ERROR),
)


def exit_code(exc: BaseException) -> int:
    """The exit status of a command that stopped on ``exc`` (`EXIT_CODES`)."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), EXIT_ERROR)


def with_flags(text: str, flags: Mapping[str, str] | None = None) -> str:
    """A library message as a command says it: each parameter it names in backquotes
    (```score_threshold```) becomes its flag (``flags``, else ``--`` and the name dashed)."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: (flags or {}).get(m.group(1), option_name(m.group(1))), text)


def error_line(exc: BaseException, flags: Mapping[str, str] | None = None) -> str:
    """The one line a command prints for ``exc``: the parameter at the start of a
    ParameterError's message, and every parameter named in backquotes, become flags."""
    message = str(exc)
    if isinstance(exc, ParameterError) and message.startswith(exc.parameter):
        flag = (flags or {}).get(exc.parameter, option_name(exc.parameter))
        message = flag + message[len(exc.parameter):]
    return with_flags(message, flags)


@contextlib.contextmanager
def library_errors(console: Console, flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Run library code; what it raises about its inputs ends the command with one line and
    the exit status of `EXIT_CODES` (a full disk or a refused path: 2)."""
    try:
        yield
    except OSRError as exc:
        fail(console, error_line(exc, flags), exit_code(exc))
    except OSError as exc:  # disk full, a file system gone read-only, ... while reading or writing
        fail(console, file_error_message(exc))

F = TypeVar("F", bound=Callable[..., object])


def fail(console: Console, message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` (taken literally, never as markup) and exit with ``code``."""
    console.print(f"[bold red]error:[/] {escape(printable(message))}", markup=True, highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(code)


def interruptible(console: Console, message: str) -> Callable[[F], F]:
    """Decorate a command so that Ctrl-C prints ``message`` and exits with status 130."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: object, **kwargs: object) -> object:
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                console.print(f"interrupted: {message}", highlight=False, soft_wrap=True, emoji=False)
                raise typer.Exit(EXIT_INTERRUPTED) from None

        return run  # type: ignore[return-value]

    return decorate


def require_training_install(console: Console, command: str) -> None:
    """One line and exit 2, not an ImportError traceback, when ``command`` runs on the edge install."""
    import importlib.util

    missing = [m for m in ("torch", "onnx", "sklearn", "matplotlib", "HersheyFonts") if importlib.util.find_spec(m) is None]
    if missing:
        message = (
            f"{command} needs the training install, which adds torch, onnx, scikit-learn, matplotlib and Hershey-Fonts "
            f"(missing here: {', '.join(missing)}): pip install 'osr-toolkit[train]'"
        )
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, emoji=False)
        raise SystemExit(2)


def printable(text: str) -> str:
    """``text`` safe for a terminal: bytes of a file name that are not UTF-8 as ``\\xNN``, control
    characters (escape sequences, newlines) as Python escapes, so a name cannot move the cursor,
    recolour the screen or fake a line."""
    from osr_infer.io import escape_undecodable

    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in escape_undecodable(text))


def file_error_message(exc: BaseException) -> str:
    """One line for an OSError (disk full, read-only, permission) or a refused output path."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or exc}"
    return str(exc)



class ConsoleReporter(Reporter):
    """A `Reporter` that prints with rich: lines as they come,
    progress as a bar (kept on screen with ``transient=False``)."""

    def __init__(self, console: Console, *, flags: Mapping[str, str] | None = None, transient: bool = False) -> None:
        self.console = console
        self.flags = flags  # parameters named in messages become these flags (with_flags)
        self.transient = transient

    def info(self, text: str) -> None:
        self.console.print(with_flags(text, self.flags), highlight=False, markup=False, soft_wrap=True)

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(with_flags(text, self.flags))}", highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, description: str, total: float | None = None, completed: float = 0) -> Iterator["_RichTask"]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, console=self.console, transient=self.transient, refresh_per_second=4) as bar:
            yield _RichTask(bar, bar.add_task(description, total=total, completed=int(completed), status=""))

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        with self.console.status(description):
            yield


class _RichTask(ProgressTask):
    def __init__(self, bar: object, task: object) -> None:
        self.bar, self.task = bar, task

    def advance(self, n: float = 1) -> None:
        self.bar.advance(self.task, n)  # type: ignore[attr-defined]

    def update(self, **fields: object) -> None:
        self.bar.update(self.task, **fields)  # type: ignore[attr-defined]
