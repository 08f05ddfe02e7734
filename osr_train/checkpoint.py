"""Checkpoints: a state dict plus a JSON-serialisable config, loadable with weights_only=True."""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import osr_train
from osr_train.io import atomic_path
from osr_train.models import ConvNet, build_model

FORMAT = "osr-toolkit/checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is missing or is not an osr-toolkit checkpoint."""


def versions() -> dict[str, str]:
    return {
        "osr_toolkit": osr_train.__version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: dict[str, Any]) -> Path:
    """Write ``{"format", "config", "state_dict"}`` atomically."""
    config = dict(config, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), versions=versions())
    # CPU tensors: a checkpoint trained on a GPU loads anywhere, even with a plain torch.load.
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config, "state_dict": state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[ConvNet, dict[str, Any]]:
    """Rebuild the model (eval mode) and return it with its config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise CheckpointError(f"{path} is not a loadable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an osr-toolkit checkpoint (no '{FORMAT}' format marker)")
    config = payload["config"]
    model = build_model(config["architecture"], len(config["class_names"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {config['architecture']} ({exc})") from None
    return model.eval(), config


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
