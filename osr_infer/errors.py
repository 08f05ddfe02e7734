"""The one user-facing failure type of osr-infer: printed as a single line, with an exit code."""

from __future__ import annotations

#: Exit codes of ``osr-infer`` (documented in ``osr-infer --help``).
EXIT_OK = 0
EXIT_PARITY_FAILED = 1
EXIT_ERROR = 2
EXIT_SOME_INPUTS_FAILED = 3


class InferError(RuntimeError):
    """Bad model, bad source, bad option: nothing was classified (or nothing could be)."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
