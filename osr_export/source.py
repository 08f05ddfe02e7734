"""What gets exported: the scored single-branch classifier of a checkpoint, and its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import osr_infer
from osr_infer.metadata import MetadataError, ModelMetadata
from osr_infer.spec import ModelSpec, SpecError
from osr_train.checkpoint import CheckpointError, file_sha256, load_checkpoint
from osr_train.models import classifier_of
from osr_train.scoring import ScoredClassifier


def scored_from_checkpoint(path: str | Path) -> tuple[ScoredClassifier, ModelSpec, dict[str, Any]]:
    """Load a checkpoint as the eval-mode module ``x -> (logits, probs, score)``, its spec and record."""
    model, spec, config = load_checkpoint(path)
    try:
        scored = ScoredClassifier(classifier_of(model), spec.score, spec.score_params, spec.temperature)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return scored.eval(), spec, config


def metadata_from_checkpoint(path: str | Path, spec: ModelSpec, config: dict[str, Any], threshold: float | None = None) -> ModelMetadata:
    """The ``osr.*`` metadata for an export of ``path``; ``threshold`` overrides the spec's."""
    if not config.get("complete", True):
        raise CheckpointError(f"{path} is an intermediate checkpoint ({config.get('stage')} epoch {config.get('epoch')}); finish "
                              "the run with osr-train ... `resume`, then export its model.pt")
    if threshold is not None:
        try:
            spec = spec.replace(threshold=threshold, calibration={"method": "fixed", "overridden_at_export": True,
                                                                  "trained_with": spec.threshold})
        except SpecError as exc:
            raise MetadataError(f"`score_threshold`: {exc}") from None
    return ModelMetadata(spec, file_sha256(path), osr_infer.__version__)


__all__ = ["MetadataError", "metadata_from_checkpoint", "scored_from_checkpoint"]
