"""Training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveLoss(nn.Module):
    """The seed's contrastive loss on pairs of embeddings.

    ``label`` is 0 for a same-class pair and 1 otherwise;
    ``loss = mean((1 - y) * d**2 + 2 * y * max(0, margin - d)**2)`` with ``d`` the Euclidean
    distance (the factor 2 on dissimilar pairs is the seed's).
    """

    def __init__(self, margin: float = 2.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, out1: torch.Tensor, out2: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        d = F.pairwise_distance(out1, out2)
        label = label.to(d.dtype)
        return torch.mean((1 - label) * d.pow(2) + 2 * label * torch.clamp(self.margin - d, min=0).pow(2))


def pair_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a batch in two halves and label each pair: 0 same class, 1 different."""
    half = len(labels) // 2
    first, second = labels[:half], labels[half : 2 * half]
    return first, second, (first != second).long()
