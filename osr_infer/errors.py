"""The exceptions osr-toolkit raises on purpose: one tree under `OSRError`.

Catch `OSRError` for everything the toolkit reports about its inputs; catch a branch
for one kind of trouble (as with httpx's exception tree)::

    OSRError
    ├── ParameterError   (also a ValueError)  a configuration value out of its range; names the parameter
    ├── DataError                             a data set missing or malformed (IDX files, folders, MNIST)
    ├── ModelError                            a model file, checkpoint, spec or metadata unusable
    ├── InputError       (also a ValueError)  an input image or source that cannot be read
    ├── OutputError      (also a ValueError)  an output path refused (a link, a folder, not writable)
    ├── InferenceError                        the runtime failed on a batch, or the decoding workers kept dying
    ├── ExportError                           an export could not be made
    │   └── VerificationError                 an exported artefact disagrees with PyTorch (nothing written)
    └── TrainingError                         training could not run or finish
        └── TrainingInterrupted               stopped by Ctrl-C (its checkpoint says where to resume)

The library's messages name Python parameters (``lr must be ...``); the command-line tools map
them to their flags and each branch to an exit code in one table (``cli_support.EXIT_CODES``).
"""

from __future__ import annotations

from typing import Any

#: Exit codes of the command-line tools (documented in each ``--help``).
EXIT_OK = 0
EXIT_PARITY_FAILED = 1
EXIT_ERROR = 2
EXIT_SOME_INPUTS_FAILED = 3
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


class OSRError(Exception):
    """Base of every error osr-toolkit raises about what it was given."""


class ParameterError(OSRError, ValueError):
    """A parameter's value is outside what it accepts; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class DataError(OSRError):
    """A data set cannot be read: missing files, malformed IDX files, an unusable folder."""


class ModelError(OSRError):
    """A model (ONNX file, checkpoint, spec or metadata) is missing or cannot be used."""


class InputError(OSRError, ValueError):
    """An input (an image, a file, a source) cannot be read; the message names it."""


class OutputError(OSRError, ValueError):
    """An output path is refused: a link, a folder where a file is meant, not writable."""


class InferenceError(OSRError):
    """The runtime failed on a batch, or decoding could not go on."""


class ExportError(OSRError):
    """An export could not be made."""


class VerificationError(ExportError):
    """An exported artefact failed verification against PyTorch; nothing was written.

    ``report`` is the export's `osr_export.ExportReport` (its parity tables say what
    failed), where the export got that far; else None."""

    report: Any = None


class TrainingError(OSRError):
    """Training could not run or finish."""


class TrainingInterrupted(TrainingError):
    """Training stopped on Ctrl-C; the message names the checkpoint to resume from."""


__all__ = [
    "DataError", "ExportError", "InferenceError", "InputError", "ModelError", "OSRError", "OutputError", "ParameterError",
    "TrainingError", "TrainingInterrupted", "VerificationError",
]
