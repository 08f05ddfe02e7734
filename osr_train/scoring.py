"""The torch side of the scores: a module ``x -> (logits, probs, score)``.

The same module is used to evaluate in PyTorch and is what gets exported, so the ONNX
graph's ``score`` output is by construction the score the threshold was chosen for. Scores
that need fitted statistics (Mahalanobis) keep them as buffers, and as ``score_params`` in
the checkpoint and the exported metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from osr_train.scores import score_spec
from osr_train.training import full_fp32


class ScoredClassifier(nn.Module):
    """Wraps a single-branch classifier and appends softmax probabilities and a score."""

    def __init__(self, classifier: nn.Module, score: str = "msp", score_params: dict[str, Any] | None = None) -> None:
        super().__init__()
        score_spec(score)  # validates the name
        self.classifier = classifier
        self.score_name = score
        self.score_params = dict(score_params or {})
        if score == "mahalanobis":
            if not {"means", "precision"} <= set(self.score_params):
                raise ValueError("the mahalanobis score needs fitted 'means' and 'precision' (see fit_mahalanobis)")
            self.register_buffer("means", torch.tensor(self.score_params["means"], dtype=torch.float32))
            self.register_buffer("precision", torch.tensor(self.score_params["precision"], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.score_name == "mahalanobis":
            logits, feats = self.classifier.forward_with_features(x)
            return logits, torch.softmax(logits, dim=1), mahalanobis_score(feats, self.means, self.precision)
        logits = self.classifier(x)
        probs = torch.softmax(logits, dim=1)
        return logits, probs, logit_score(self.score_name, logits, probs)


def logit_score(name: str, logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    if name == "msp":
        return probs.max(dim=1).values
    if name == "max_logit":
        return logits.max(dim=1).values
    if name == "energy":
        return torch.logsumexp(logits, dim=1)
    raise ValueError(f"{name} is not a logit-based score")


def mahalanobis_score(feats: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """Minus the smallest Mahalanobis distance (squared) to a class mean, tied covariance."""
    diff = feats.unsqueeze(1) - means.unsqueeze(0)  # (N, C, D)
    dist = ((diff @ precision) * diff).sum(-1)  # (N, C)
    return -dist.min(dim=1).values


@torch.inference_mode()
@full_fp32()
def fit_mahalanobis(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize, batch_size: int = 4096) -> dict[str, Any]:
    """Class means and a shared (Ledoit-Wolf shrunk) precision of the penultimate features."""
    from sklearn.covariance import LedoitWolf

    classifier.eval()
    feats = torch.cat([classifier.forward_with_features(normalize(images[i : i + batch_size]))[1] for i in range(0, len(images), batch_size)])
    feats_np = feats.double().cpu().numpy()
    labels_np = labels.cpu().numpy()
    classes = np.unique(labels_np)
    means = np.stack([feats_np[labels_np == c].mean(0) for c in classes])
    centred = feats_np - means[np.searchsorted(classes, labels_np)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return {"means": means.astype(np.float32).tolist(), "precision": precision.astype(np.float32).tolist()}

