"""TorchScript export: ``torch.jit.trace`` of the same ScoredClassifier, metadata as ``osr.json``.

Tracing records the one branch the module takes for its score, so the file holds exactly the
graph the ONNX export holds. ``torch.jit`` is deprecated upstream but still the format C++
(libtorch) and mobile runtimes load; its deprecation warnings are silenced here on purpose.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from osr_infer.metadata import TORCHSCRIPT_EXTRA_FILE, ModelMetadata
from osr_train.scoring import ScoredClassifier


def to_torchscript(scored: ScoredClassifier, metadata: ModelMetadata) -> torch.jit.ScriptModule:
    """Trace ``scored`` (eval mode, CPU) on a batch of 2; the batch axis stays dynamic."""
    scored = scored.eval().cpu()
    c = metadata.contract
    example = torch.zeros(2, c.channels, c.size, c.size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(scored, example, check_trace=True)
    return traced


def save_torchscript(module: torch.jit.ScriptModule, metadata: ModelMetadata, path: str | Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(module, str(path), _extra_files={TORCHSCRIPT_EXTRA_FILE: metadata.to_json()})


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, ModelMetadata]:
    """Load a TorchScript export (CPU, eval) and its ``osr.json`` metadata."""
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), ModelMetadata.from_json(extra[TORCHSCRIPT_EXTRA_FILE])
