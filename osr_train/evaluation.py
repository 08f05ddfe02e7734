"""Evaluate a classifier: closed-set accuracy, every score's OOD metrics, and open-set
metrics at the stored threshold, per unknown set and pooled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from osr_train.data.datasets import ImageSet, OpenSetData
from osr_train.metrics import ood_report, open_set_report
from osr_train.scoring import logit_score, mahalanobis_score
from osr_train.training import Normalizer, channels_last, full_fp32, inference_copy

LOGIT_SCORES = ("msp", "max_logit", "energy")


@dataclass
class Outputs:
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
    classifier: torch.nn.Module,
    images: ImageSet,
    device: torch.device | str = "cpu",
    mahalanobis: dict[str, Any] | None = None,
    batch_size: int = 512,
) -> Outputs:
    """Run ``classifier`` (with ``forward_with_features``) and compute every score."""
    fast = inference_copy(classifier)
    normalize = Normalizer()
    x = torch.from_numpy(images.images)
    parts = [fast.forward_with_features(channels_last(normalize(x[i : i + batch_size].to(device)))) for i in range(0, len(x), batch_size)]
    logits = torch.cat([p[0] for p in parts]).float()
    feats = torch.cat([p[1] for p in parts]).float()
    probs = torch.softmax(logits, 1)
    scores = {name: logit_score(name, logits, probs).cpu().numpy() for name in LOGIT_SCORES}
    if mahalanobis:
        means = torch.tensor(mahalanobis["means"], device=feats.device)
        precision = torch.tensor(mahalanobis["precision"], device=feats.device)
        scores["mahalanobis"] = mahalanobis_score(feats, means, precision).cpu().numpy()
    return Outputs(images.name, images.labels, logits.cpu().numpy(), feats.cpu().numpy(), scores)


def evaluate_outputs(known: Outputs, unknowns: list[Outputs], score: str, threshold: float) -> dict[str, Any]:
    """The metrics dictionary: top-level figures at the threshold on pooled unknowns, then
    per-score OOD metrics (pooled and per unknown set)."""
    pooled_pred = np.concatenate([u.pred for u in unknowns]) if unknowns else np.empty(0, np.int64)
    pooled = {s: (np.concatenate([u.scores[s] for u in unknowns]) if unknowns else np.empty(0)) for s in known.scores}
    metrics: dict[str, Any] = {"score": score}
    metrics.update(open_set_report(known.labels, known.pred, known.scores[score], pooled_pred, pooled[score], threshold))
    metrics["known_set"] = known.name
    metrics["unknown_sets"] = {u.name: len(u.labels) for u in unknowns}
    if unknowns:
        metrics["ood_pooled"] = {s: ood_report(known.scores[s], pooled[s]) for s in known.scores}
        metrics["per_unknown_set"] = {
            u.name: {
                "at_threshold": {
                    k: v
                    for k, v in open_set_report(known.labels, known.pred, known.scores[score], u.pred, u.scores[score], threshold).items()
                    if not k.startswith("confusion")
                },
                "ood": {s: ood_report(known.scores[s], u.scores[s]) for s in known.scores},
            }
            for u in unknowns
        }
    return metrics


def evaluate(
    classifier: torch.nn.Module,
    data: OpenSetData,
    score: str,
    threshold: float,
    device: torch.device | str = "cpu",
    mahalanobis: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Outputs, list[Outputs]]:
    known = run_model(classifier, data.test, device, mahalanobis)
    unknowns = [run_model(classifier, u, device, mahalanobis) for u in data.unknown_test]
    return evaluate_outputs(known, unknowns, score, threshold), known, unknowns
