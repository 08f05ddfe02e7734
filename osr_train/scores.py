"""Known-vs-unknown scores: the registry is torch-free, the torch implementations are traced.

Every score is "higher means more like a known digit". The checkpoint and the exported
metadata name the score; the ONNX graph computes it as its ``score`` output.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreSpec:
    name: str
    description: str
    low: float | None  # open bounds of the score's range (None: unbounded)
    high: float | None

    def check_threshold(self, threshold: float) -> None:
        if not isinstance(threshold, (int, float)) or threshold != threshold:
            raise ValueError(f"threshold must be a number, got {threshold!r}")
        if (self.low is not None and threshold <= self.low) or (self.high is not None and threshold >= self.high):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            raise ValueError(f"threshold {threshold:g} is outside ({lo}, {hi}), the range of the {self.name} score")


SCORES: dict[str, ScoreSpec] = {
    "msp": ScoreSpec("msp", "maximum softmax probability", 0.0, 1.0),
    "max_logit": ScoreSpec("max_logit", "maximum logit", None, None),
    "energy": ScoreSpec("energy", "negative free energy, logsumexp of the logits", None, None),
    "mahalanobis": ScoreSpec("mahalanobis", "minus the Mahalanobis distance of the embedding to the nearest class mean", None, None),
}


def score_spec(name: str) -> ScoreSpec:
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(f"unknown score {name!r}; known: {', '.join(SCORES)}") from None
