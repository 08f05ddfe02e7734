"""What gets exported: the scored single-branch classifier of a checkpoint, and its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import osr_train
from osr_export.metadata import MetadataError, ModelMetadata
from osr_train.checkpoint import CheckpointError, file_sha256, load_checkpoint
from osr_train.models import classifier_of
from osr_train.scoring import ScoredClassifier


def scored_from_checkpoint(path: str | Path) -> tuple[ScoredClassifier, dict[str, Any]]:
    """Load a checkpoint as the eval-mode module ``x -> (logits, probs, score)``."""
    model, config = load_checkpoint(path)
    scored = ScoredClassifier(classifier_of(model), config.get("score", "msp"), config.get("score_params") or {})
    return scored.eval(), config


def metadata_from_checkpoint(path: str | Path, config: dict[str, Any], threshold: float | None = None) -> ModelMetadata:
    """The ``osr.*`` metadata for an export of ``path``; ``threshold`` overrides the checkpoint's."""
    if not config.get("complete", True):
        raise CheckpointError(f"{path} is an intermediate checkpoint ({config.get('stage')} epoch {config.get('epoch')}); export the final model.pt")
    contract = config["preprocessing"]
    return ModelMetadata(
        threshold=float(config["threshold"] if threshold is None else threshold),
        score=config.get("score", "msp"),
        class_names=list(config["class_names"]),
        input_shape=["N", 1, contract["size"], contract["size"]],
        preprocessing=contract,
        architecture=config["architecture"],
        dataset=config.get("dataset", "unknown"),
        checkpoint_sha256=file_sha256(path),
        toolkit_version=osr_train.__version__,
        score_params=config.get("score_params") or {},
    )


__all__ = ["MetadataError", "metadata_from_checkpoint", "scored_from_checkpoint"]
