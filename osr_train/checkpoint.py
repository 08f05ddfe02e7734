"""Checkpoints: a state dict, the model spec and a training record, loadable with weights_only=True."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import osr_infer
from osr_infer.errors import ModelError
from osr_infer.io import atomic_path, file_sha256  # noqa: F401 - file_sha256: re-exported, osr_export names it here
from osr_infer.spec import ModelSpec, SpecError
from osr_train.models import ConvNet, build_model

FORMAT = "osr-toolkit/checkpoint"
#: 1: the config held the spec's facts loosely; 2: the config holds the model spec under "spec".
FORMAT_VERSION = 2


class CheckpointError(ModelError, ValueError):
    """A file is missing or is not a usable osr-toolkit checkpoint."""


def versions() -> dict[str, str]:
    return {
        "osr_toolkit": osr_infer.__version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(path: str | Path, model: torch.nn.Module, spec: ModelSpec, record: dict[str, Any] | None = None,
                    resume: dict[str, Any] | None = None) -> Path:
    """Write ``{"format", "format_version", "spec", "config", "state_dict"}`` atomically.

    ``record`` is what training knows besides the spec (recipe, hyper-parameters, stage...);
    ``resume`` (intermediate checkpoints) what ``osr-train --resume`` needs to continue exactly:
    optimiser and schedule states, random generator states, the history so far.
    """
    config = dict(record or {}, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), versions=versions())
    # CPU tensors: a checkpoint trained on a GPU loads anywhere, even with a plain torch.load.
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec.to_dict(), "config": config, "state_dict": state}
    if resume is not None:
        payload["resume"] = resume
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _spec_of(payload: dict[str, Any], path: Path) -> ModelSpec:
    version = payload.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer osr-toolkit (checkpoint format {version!r}): upgrade osr-toolkit")
    config = payload.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has no training config")
    if version >= 2:
        return ModelSpec.from_dict(payload.get("spec"))
    # Format 1: the spec's facts were loose config keys.
    dataset = config.get("dataset", "mnist")
    return ModelSpec.from_dict({
        "schema_version": 1, "architecture": config["architecture"], "class_names": config["class_names"],
        "preprocessing": config["preprocessing"], "score": config.get("score", "msp"),
        "score_params": config.get("score_params") or {}, "threshold": config["threshold"],
        "calibration": config.get("calibration") or {"method": "fixed"},
        "dataset": {"reference": dataset, "split_seed": int(config.get("seed", 0)),
                    "all_classes": list(config["class_names"])},
    })


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[ConvNet, ModelSpec, dict[str, Any]]:
    """Rebuild the model (eval mode) from its spec; return it with the spec and the training record."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign files
        raise CheckpointError(f"{path} is not a loadable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an osr-toolkit checkpoint (no '{FORMAT}' format marker)")
    try:
        spec = _spec_of(payload, path)
        model = build_model(spec)
    except (SpecError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model spec ({exc})") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit {spec.architecture} {spec.input_shape} ({exc})") from None
    return model.eval(), spec, payload["config"]


def load_resume_state(path: str | Path) -> tuple[ModelSpec, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An interrupted run's checkpoint: (spec, record, state_dict, resume state), weights_only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist (it is written after every epoch)")
    _, spec, record = load_checkpoint(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    resume = payload.get("resume")
    if record.get("complete") or not isinstance(resume, dict):
        raise CheckpointError(f"{path} holds no interrupted run to resume")
    return spec, record, payload["state_dict"], resume


