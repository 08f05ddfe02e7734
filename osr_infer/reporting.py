"""How long work tells what it is doing, without printing: a `Reporter` the caller supplies.

The library reports through it and prints nothing itself; the base class is silent. The
command-line tools supply one that prints with rich (`osr_infer.cli_support.ConsoleReporter`);
a program can log instead::

    class LogReporter(Reporter):
        def info(self, text): logging.info(text)
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


class ProgressTask:
    """A piece of work with a known size; the base class ignores everything."""

    def advance(self, n: float = 1) -> None:
        """``n`` more units done."""

    def update(self, **fields: Any) -> None:
        """New ``description``, ``total``, ``completed`` or ``status`` text."""


class Reporter:
    """Receives what long work has to say; silent unless a subclass overrides it."""

    def info(self, text: str) -> None:
        """A line worth showing (an epoch's losses, where a file was written)."""

    def warning(self, text: str) -> None:
        """Something the user should act on or know (a fallback, a slow setting)."""

    @contextlib.contextmanager
    def progress(self, description: str, total: float | None = None, completed: float = 0) -> Iterator[ProgressTask]:
        """Work of ``total`` units (None: unknown), of which ``completed`` are done."""
        yield ProgressTask()

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        """Work of unknown length (a quantisation, a t-SNE)."""
        yield


#: The reporter of a library call that was given none: it says nothing.
SILENT = Reporter()
