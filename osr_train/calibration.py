"""Threshold calibration on validation knowns only (never on test unknowns)."""

from __future__ import annotations

import numpy as np


def threshold_for_tpr(known_scores: np.ndarray, target_tpr: float) -> float:
    """The largest threshold that still accepts at least ``target_tpr`` of ``known_scores``."""
    if not 0.0 < target_tpr <= 1.0:
        raise ValueError(f"target TPR must be in (0, 1], got {target_tpr}")
    scores = np.sort(np.asarray(known_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no validation scores to calibrate on")
    # Accept score >= t: choosing t = scores[k] accepts n - k samples (ties only add more).
    k = int(np.floor(scores.size * (1.0 - target_tpr) + 1e-9))
    return float(scores[min(k, scores.size - 1)])
