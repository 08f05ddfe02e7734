"""What the three command-line tools share: how they fail, and how they stop on Ctrl-C.

Torch-free (osr-infer imports it). Typer turns Ctrl-C inside a command into a silent exit
130, so a command that should say what an interruption left behind catches it itself,
through :func:`interruptible`.
"""

from __future__ import annotations

import functools
from typing import Callable, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

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

