"""Evaluate a trained classifier: closed-set accuracy and open-set metrics at a threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from osr_train.data.datasets import ImageSet, OpenSetData
from osr_train.metrics import ood_report, open_set_report
from osr_train.scoring import ScoredClassifier
from osr_train.training import Normalizer


@dataclass
class Outputs:
    """Model outputs on one image set."""

    name: str
    labels: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    score: np.ndarray

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(1)


@torch.inference_mode()
def run_model(model: ScoredClassifier, images: ImageSet, device: torch.device | str = "cpu", batch_size: int = 2048) -> Outputs:
    model.eval()
    normalize = Normalizer()
    x = torch.from_numpy(images.images)
    parts = [model(normalize(x[i : i + batch_size].to(device))) for i in range(0, len(x), batch_size)]
    logits, probs, score = (torch.cat([p[k] for p in parts]).float().cpu().numpy() for k in range(3))
    return Outputs(images.name, images.labels, logits, probs, score)


def evaluate(model: ScoredClassifier, data: OpenSetData, threshold: float, device: torch.device | str = "cpu") -> tuple[dict, Outputs, list[Outputs]]:
    """Metrics on the test knowns and the (pooled) test unknowns, plus the raw outputs."""
    known = run_model(model, data.test, device)
    unknowns = [run_model(model, u, device) for u in data.unknown_test]
    pooled_pred = np.concatenate([u.pred for u in unknowns]) if unknowns else np.empty(0, dtype=np.int64)
    pooled_score = np.concatenate([u.score for u in unknowns]) if unknowns else np.empty(0)
    metrics = open_set_report(known.labels, known.pred, known.score, pooled_pred, pooled_score, threshold)
    metrics["score"] = model.score_name
    metrics["known_set"] = data.test.name
    metrics["unknown_sets"] = {u.name: len(u.labels) for u in unknowns}
    if unknowns:
        metrics["ood"] = ood_report(known.score, pooled_score)
    return metrics, known, unknowns
