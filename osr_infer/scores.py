"""The score registry: every known-vs-unknown score as one object (torch-free facts).

Every score is "higher means more like a known class"; an input is accepted when
``score >= threshold``. The checkpoint and the exported metadata name the score; the ONNX
graph computes it as its ``score`` output, so an edge client never recomputes it. The torch
implementation and the fitting step of each score live beside the network, in
`osr_train.scoring`, keyed by the same name; a new score is one entry here and one there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreSpec:
    name: str
    description: str
    low: float | None  # open bounds of the score's range (None: unbounded)
    high: float | None
    uses: str = "logits"  # what the graph computes it from: "logits", "features" (penultimate) or "hidden" (fc1, before its activation)
    fitted: bool = False  # needs statistics fitted on training knowns (stored as score_params)
    params: tuple[str, ...] = ()  # the names of those statistics

    def check_threshold(self, threshold: float) -> None:
        """A threshold must be a finite number inside the score's open range: an infinite one
        would switch the decision off (everything known, or everything unknown)."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        if (self.low is not None and threshold <= self.low) or (self.high is not None and threshold >= self.high):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            raise ValueError(f"threshold {threshold:g} is outside ({lo}, {hi}), the range of the {self.name} score")

    def range_text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"({lo}, {hi})"


SCORES: dict[str, ScoreSpec] = {
    "msp": ScoreSpec("msp", "maximum softmax probability", 0.0, 1.0),
    "max_logit": ScoreSpec("max_logit", "maximum logit", None, None),
    "energy": ScoreSpec("energy", "negative free energy, logsumexp of the logits", None, None),
    # KL(uniform || softmax) = logsumexp(logits) - mean(logits) - log(classes): 0 for a uniform
    # posterior, which is what outlier exposure trains outliers towards. Unlike max_logit and
    # energy it ignores a shift of all logits; unlike msp it does not saturate at 1. Its range
    # is [0, inf) in exact arithmetic; rounding can take a uniform posterior a hair below 0.
    "kl_uniform": ScoreSpec("kl_uniform", "KL divergence of the softmax from the uniform distribution", None, None),
    "mahalanobis": ScoreSpec(
        "mahalanobis", "minus the Mahalanobis distance of the embedding to the nearest class mean", None, None,
        uses="features", fitted=True, params=("means", "precision"),
    ),
    # A feature-space score in the spirit of kNN (Sun et al. 2022) with an edge-sized bank: the
    # training knowns' hidden features are summarised by a few k-means centres per class, and an
    # input scores the cosine similarity of its own to the nearest centre. In [-1, 1] (rounding
    # can take it a hair outside; a threshold must be inside).
    "prototype": ScoreSpec(
        "prototype", "cosine similarity of the first hidden layer's output to the nearest class prototype", -1.0, 1.0,
        uses="hidden", fitted=True, params=("prototypes",),
    ),
    # The two above, each standardised by its mean and standard deviation on training knowns held
    # out of the prototypes' fit, added: kl_uniform knows what outlier exposure taught (letters,
    # symbols, textures), the prototype score how far an input lies from every known class's
    # centres (other digits); an unknown must look known to both to pass. Given in the prototype
    # score's units: prototype + (s_p / s_kl) * (kl_uniform - m_kl), the standardised sum's ranking.
    "kl_prototype": ScoreSpec(
        "kl_prototype", "kl_uniform plus prototype, each standardised on held-out training knowns", None, None,
        uses="hidden", fitted=True, params=("prototypes", "standardisation"),
    ),
    # OpenMax (Bendale & Boult 2016), which the seed notebook cites after contrastive training: per
    # class, the mean logit vector of the correctly classified training knowns and a Weibull fitted
    # to the largest distances from it; an input's top-ranked logits are discounted by how far out
    # in their class's tail it lies, the discount goes to an "unknown" logit, and the score is the
    # highest known probability of the revised softmax (the unknown's share lowers it). In (0, 1).
    "openmax": ScoreSpec(
        "openmax", "OpenMax: the highest known-class probability after Weibull recalibration of the logits", 0.0, 1.0,
        fitted=True, params=("mean_logits", "weibull"),
    ),
}


def score_spec(name: str) -> ScoreSpec:
    try:
        return SCORES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown score {name!r}; known: {', '.join(SCORES)}") from None
