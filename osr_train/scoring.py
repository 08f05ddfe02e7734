"""The torch side of the scores: a module ``x -> (logits, probs, score)``.

The same module is used to evaluate in PyTorch and is what gets exported, so the ONNX
graph's ``score`` output is by construction the score the threshold was chosen for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from osr_train.scores import score_spec


class ScoredClassifier(nn.Module):
    """Wraps a single-branch classifier and appends softmax probabilities and a score."""

    def __init__(self, classifier: nn.Module, score: str = "msp", score_params: dict[str, Any] | None = None) -> None:
        super().__init__()
        score_spec(score)  # validates the name
        self.classifier = classifier
        self.score_name = score
        self.score_params = dict(score_params or {})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.classifier(x)
        probs = torch.softmax(logits, dim=1)
        if self.score_name == "msp":
            score = probs.max(dim=1).values
        elif self.score_name == "max_logit":
            score = logits.max(dim=1).values
        else:  # energy
            score = torch.logsumexp(logits, dim=1)
        return logits, probs, score
