"""Evaluate a classifier: closed-set accuracy, every score's OOD metrics, and open-set
metrics at the stored threshold, per unknown set and pooled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from osr_train.models import Classifier

from osr_infer.data.datasets import ImageSet, OpenSetData
from osr_infer.metrics import ood_report, open_set_report
from osr_infer.spec import ModelSpec
from osr_train.scoring import scores_of
from osr_train.training import Normalizer, channels_last, full_fp32, inference_copy


@dataclass
class SetOutputs:
    """Model outputs on one image set: logits, embedding, and every available score."""

    name: str
    labels: np.ndarray
    logits: np.ndarray
    features: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(1)


@torch.inference_mode()
@full_fp32()
def run_model(
    classifier: Classifier,
    images: ImageSet,
    normalize: Normalizer,
    device: torch.device | str = "cpu",
    fitted: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 512,
    temperature: float = 1.0,
) -> SetOutputs:
    """Run ``classifier`` (with ``forward_with_layers``) and compute every registered score
    (fitted ones where ``fitted`` has their parameters)."""
    fast = inference_copy(classifier)
    x = torch.from_numpy(images.images)
    parts = [fast.forward_with_layers(channels_last(normalize(x[i : i + batch_size].to(device)))) for i in range(0, len(x), batch_size)]
    logits = torch.cat([p[0] for p in parts]).float()
    feats = torch.cat([p[1] for p in parts]).float()
    hidden = torch.cat([p[2] for p in parts]).float()
    scores = scores_of(logits, feats, fitted or {}, temperature, hidden)
    return SetOutputs(images.name, images.labels, logits.cpu().numpy(), feats.cpu().numpy(), scores)


def evaluate_outputs(known: SetOutputs, unknowns: list[SetOutputs], score: str, threshold: float, n_classes: int) -> dict[str, Any]:
    """The metrics dictionary: top-level figures at the threshold on pooled unknowns, then
    per-score OOD metrics (pooled and per unknown set)."""
    pooled_pred = np.concatenate([u.pred for u in unknowns]) if unknowns else np.empty(0, np.int64)
    pooled = {s: (np.concatenate([u.scores[s] for u in unknowns]) if unknowns else np.empty(0)) for s in known.scores}
    metrics: dict[str, Any] = {"score": score}
    metrics.update(open_set_report(known.labels, known.pred, known.scores[score], pooled_pred, pooled[score], threshold, n_classes))
    metrics["known_set"] = known.name
    metrics["unknown_sets"] = {u.name: len(u.labels) for u in unknowns}
    if unknowns:
        metrics["ood_pooled"] = {s: ood_report(known.scores[s], pooled[s]) for s in known.scores}
        metrics["per_unknown_set"] = {
            u.name: {
                "at_threshold": {
                    k: v
                    for k, v in open_set_report(known.labels, known.pred, known.scores[score], u.pred, u.scores[score], threshold, n_classes).items()
                    if not k.startswith("confusion")
                },
                "ood": {s: ood_report(known.scores[s], u.scores[s]) for s in known.scores},
            }
            for u in unknowns
        }
    return metrics


def evaluate(
    classifier: Classifier,
    data: OpenSetData,
    spec: ModelSpec,
    device: torch.device | str = "cpu",
    fitted: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], SetOutputs, list[SetOutputs]]:
    """Test knowns and every unknown set through ``classifier``; metrics at the spec's score and threshold."""
    normalize = Normalizer(spec.preprocessing)
    known = run_model(classifier, data.test, normalize, device, fitted, temperature=spec.temperature)
    unknowns = [run_model(classifier, u, normalize, device, fitted, temperature=spec.temperature) for u in data.unknown_test]
    metrics = evaluate_outputs(known, unknowns, spec.score, spec.threshold, spec.n_classes)
    metrics["card_rule"] = card_rule_report(known, unknowns, spec.temperature)
    return metrics, known, unknowns


def card_rule_report(known: SetOutputs, unknowns: list[SetOutputs], temperature: float) -> dict[str, Any]:
    """The card's rule, ``osr-infer --threshold 0.999`` (top probability at the model's
    temperature): knowns accepted with the right class, and unknowns rejected."""
    from osr_train.recipes import CARD_MSP_THRESHOLD

    accepted = known.scores["msp"] >= CARD_MSP_THRESHOLD
    report: dict[str, Any] = {
        "msp_threshold": CARD_MSP_THRESHOLD, "temperature": temperature,
        "known_correct": float((accepted & (known.pred == known.labels)).mean()),
        "known_acceptance": float(accepted.mean()), "unknown_rejection": None,
    }
    if unknowns:
        report["unknown_rejection"] = float((np.concatenate([u.scores["msp"] for u in unknowns]) < CARD_MSP_THRESHOLD).mean())
    return report
