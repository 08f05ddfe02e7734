"""The parity rule: when do two runtimes' outputs agree? Defined once, torch-free.

osr-export checks every artefact with it before writing, and ``osr-infer --parity`` merges it
batch by batch over whole data sets, so both can never disagree about "within tolerance".
Logits and probabilities must be within ``atol``; the score within ``atol + SCORE_RTOL * |score|``
(unbounded scores can be large). Two kinds of disagreement are reported but not counted as
failures, because within the tolerance either answer is equally right: argmax flips where the
reference's top two logits are within ``2 * atol`` (ties), and decision flips where the
reference's score is within the score tolerance of the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from osr_infer.outputs import ModelOutputs

DEFAULT_ATOL = 1e-4
SCORE_RTOL = 1e-5


@dataclass
class ParityRow:
    """One format on one probe source at one batch size."""

    format: str
    batch: int
    source: str
    n: int
    max_abs_logits: float
    mean_abs_logits: float
    max_abs_probs: float
    max_abs_score: float
    score_excess: float  # max over images of |Δscore| - (atol + SCORE_RTOL * |score|); > 0 fails
    nonfinite: int
    argmax_disagree: int  # outside ties: failures
    argmax_ties: int  # PyTorch's top-2 logits within 2*atol
    argmax_tie_disagree: int
    decision_disagree: int  # outside the threshold band: failures
    near_threshold: int  # PyTorch's score within the score tolerance of the threshold
    near_threshold_disagree: int

    def failed_checks(self, atol: float) -> list[str]:
        """Which of ``finite``, ``logits``, ``probs``, ``score``, ``argmax``, ``decision`` fail."""
        bad = {
            "finite": self.nonfinite > 0,
            "logits": not self.max_abs_logits <= atol,
            "probs": not self.max_abs_probs <= atol,
            "score": self.score_excess > 0,
            "argmax": self.argmax_disagree > 0,
            "decision": self.decision_disagree > 0,
        }
        return [name for name, failed in bad.items() if failed]

    def failures(self, atol: float) -> list[str]:
        messages = {
            "finite": lambda: f"{self.nonfinite} non-finite outputs",
            "logits": lambda: f"max |Δlogits| {self.max_abs_logits:.3g} > atol {atol:g}",
            "probs": lambda: f"max |Δprobs| {self.max_abs_probs:.3g} > atol {atol:g}",
            "score": lambda: f"max |Δscore| {self.max_abs_score:.3g} beyond the score tolerance",
            "argmax": lambda: f"{self.argmax_disagree} argmax disagreements",
            "decision": lambda: f"{self.decision_disagree} threshold-decision disagreements",
        }
        return [messages[name]() for name in self.failed_checks(atol)]


def compare(ref: ModelOutputs, got: ModelOutputs, threshold: float, atol: float) -> dict[str, Any]:
    """Difference statistics of ``got`` against the reference ``ref`` (same inputs)."""
    n = len(ref)
    finite = np.isfinite(got.logits).all(1) & np.isfinite(got.probs).all(1) & np.isfinite(got.score)
    d_logits = np.abs(got.logits.astype(np.float64) - ref.logits)
    d_probs = np.abs(got.probs.astype(np.float64) - ref.probs)
    d_score = np.abs(got.score.astype(np.float64) - ref.score)
    score_tol = atol + SCORE_RTOL * np.abs(ref.score.astype(np.float64))

    top2 = np.sort(ref.logits, axis=1)[:, -2:] if ref.logits.shape[1] > 1 else np.zeros((n, 2))
    tie = (top2[:, 1] - top2[:, 0]) <= 2 * atol
    argmax_differs = ref.logits.argmax(1) != got.logits.argmax(1)

    near = np.abs(ref.score.astype(np.float64) - threshold) <= score_tol
    decision_differs = (ref.score >= threshold) != (got.score >= threshold)

    def nanmax(a: np.ndarray) -> float:
        return float(np.nanmax(np.where(np.isfinite(a), a, np.inf))) if a.size else 0.0

    return dict(
        n=n,
        max_abs_logits=nanmax(d_logits),
        mean_abs_logits=float(d_logits[np.isfinite(d_logits)].mean()) if d_logits.size else 0.0,
        max_abs_probs=nanmax(d_probs),
        max_abs_score=nanmax(d_score),
        score_excess=nanmax(d_score - score_tol) if n else 0.0,
        nonfinite=int((~finite).sum()),
        argmax_disagree=int((argmax_differs & ~tie).sum()),
        argmax_ties=int(tie.sum()),
        argmax_tie_disagree=int((argmax_differs & tie).sum()),
        decision_disagree=int((decision_differs & ~near).sum()),
        near_threshold=int(near.sum()),
        near_threshold_disagree=int((decision_differs & near).sum()),
    )


_SUMMED = ("n", "nonfinite", "argmax_disagree", "argmax_ties", "argmax_tie_disagree", "decision_disagree", "near_threshold", "near_threshold_disagree")
_MAXED = ("max_abs_logits", "max_abs_probs", "max_abs_score", "score_excess")


def merge_stats(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """`compare` statistics of two disjoint sets of images, as if compared in one go
    (osr-infer compares batch by batch)."""
    if a is None or not a["n"]:
        return dict(b)
    if not b["n"]:
        return dict(a)
    out = {key: a[key] + b[key] for key in _SUMMED}
    out.update({key: max(a[key], b[key]) for key in _MAXED})
    out["mean_abs_logits"] = (a["mean_abs_logits"] * a["n"] + b["mean_abs_logits"] * b["n"]) / out["n"]
    return out
