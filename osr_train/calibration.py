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


def msp_acceptance(logits: np.ndarray, temperature: float, msp_threshold: float) -> float:
    """The share of ``logits`` rows whose top softmax probability at ``temperature`` reaches ``msp_threshold``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    top = 1.0 / np.exp(z).sum(axis=1)  # the top class's probability: exp(0) / sum
    return float((top >= msp_threshold).mean())


def temperature_for_msp(logits: np.ndarray, msp_threshold: float, target_tpr: float, *, lowest: float = 0.05) -> float | None:
    """The softmax temperature (at most 1) at which the top-probability rule ``msp >= msp_threshold``
    accepts at least ``target_tpr`` of validation knowns' ``logits``.

    Outlier exposure teaches a model to spread its probabilities, so the card's fixed 0.999 rule
    rejects many knowns of a model that ranks them well; the top probability only grows as the
    temperature falls, so a bisection finds the largest temperature that meets the target (1 if
    the model already does; None if not even ``lowest`` does: a model that ranks its knowns too
    poorly). Only the probabilities change, not the classes, the logits or any other score.
    """
    if not 0.0 < target_tpr <= 1.0 or not 0.0 < msp_threshold < 1.0:
        raise ValueError(f"need a target TPR in (0, 1] and an msp threshold in (0, 1), got {target_tpr}, {msp_threshold}")
    if msp_acceptance(logits, 1.0, msp_threshold) >= target_tpr:
        return 1.0
    if msp_acceptance(logits, lowest, msp_threshold) < target_tpr:
        return None
    low, high = lowest, 1.0  # acceptance(low) >= target > acceptance(high)
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if msp_acceptance(logits, mid, msp_threshold) >= target_tpr else (low, mid)
    return round(low, 6) if msp_acceptance(logits, round(low, 6), msp_threshold) >= target_tpr else low
