"""Closed-set, open-set and out-of-distribution metrics in numpy (no scikit-learn, no torch).

Convention: a higher score means "more like a known class"; an input is accepted as known
when ``score >= threshold``. Labels are ``0..C-1`` for the known classes and
`osr_infer.spec.UNKNOWN` (-1) for unknowns, in truths and in open-set predictions.
Open-set confusion matrices put *unknown* in the last row and column. The ranking metrics
match scikit-learn's ``roc_auc_score``, ``roc_curve`` and ``average_precision_score``
(tests compare them); they are written here so that the edge install needs numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from osr_infer.spec import UNKNOWN


def open_set_predictions(pred: np.ndarray, score: np.ndarray, threshold: float) -> np.ndarray:
    """Argmax class where accepted, ``UNKNOWN`` where rejected."""
    return np.where(np.asarray(score) >= threshold, np.asarray(pred), UNKNOWN)


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int, *, open_set: bool = False) -> np.ndarray:
    """Counts ``[true, predicted]`` over classes ``0..n_classes-1`` (and ``UNKNOWN`` last, when
    ``open_set``); labels outside those are left out, as scikit-learn does with ``labels=``."""
    size = n_classes + int(open_set)
    def index(a: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(a) == UNKNOWN, n_classes if open_set else -1, np.asarray(a))

    t, p = index(truth), index(pred)
    keep = (t >= 0) & (t < size) & (p >= 0) & (p < size)
    return np.bincount(t[keep] * size + p[keep], minlength=size * size).reshape(size, size)


def open_set_report(
    known_labels: np.ndarray,
    known_pred: np.ndarray,
    known_score: np.ndarray,
    unknown_pred: np.ndarray,
    unknown_score: np.ndarray,
    threshold: float,
    n_classes: int,
) -> dict[str, Any]:
    """Metrics at a threshold, as fractions in [0, 1], with the sizes they were measured on.

    With no unknowns, ``unknown_rejection`` is None and the open-set accuracy covers the
    knowns only (``n_unknown`` says so). ``open_set_accuracy`` is the (C+1)-class accuracy.
    """
    known_labels = np.asarray(known_labels)
    known_open = open_set_predictions(known_pred, known_score, threshold)
    unknown_open = open_set_predictions(unknown_pred, unknown_score, threshold)
    y_true = np.concatenate([known_labels, np.full(len(unknown_open), UNKNOWN)])
    y_pred = np.concatenate([known_open, unknown_open])
    return {
        "threshold": float(threshold),
        "n_known": int(len(known_labels)),
        "n_unknown": int(len(unknown_open)),
        "closed_set_accuracy": float(np.mean(np.asarray(known_pred) == known_labels)) if len(known_labels) else None,
        "known_acceptance": float(np.mean(np.asarray(known_score) >= threshold)) if len(known_labels) else None,
        "unknown_rejection": float(np.mean(np.asarray(unknown_score) < threshold)) if len(unknown_open) else None,
        "open_set_accuracy": float(np.mean(y_true == y_pred)),
        "confusion_matrix": confusion_matrix(known_labels, known_pred, n_classes).tolist(),
        "confusion_matrix_open_set": confusion_matrix(y_true, y_pred, n_classes, open_set=True).tolist(),
    }


def roc_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` with positives scoring high, one point per distinct score
    (plus the origin), as scikit-learn's ``roc_curve(..., drop_intermediate=False)``."""
    y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    s = np.concatenate([np.asarray(positive, np.float64), np.asarray(negative, np.float64)])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / max(len(positive), 1)]
    fpr = np.r_[0.0, fps / max(len(negative), 1)]
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # noqa: B009 - numpy < 2 has only trapz
    return float(trapezoid(tpr, fpr))


def _average_precision(fpr: np.ndarray, tpr: np.ndarray, n_positive: int, n_negative: int) -> float:
    """Sum over thresholds of (recall step) x precision, from a ROC curve."""
    tps, fps = tpr[1:] * n_positive, fpr[1:] * n_negative
    return float(np.sum(np.diff(tpr) * (tps / np.maximum(tps + fps, 1))))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(positive scores above negative), ties counting one half."""
    fpr, tpr, _ = roc_curve(positive, negative)
    return _area(fpr, tpr)


def average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """Average precision with ``positive`` as the class to retrieve (scikit-learn's definition:
    sum over thresholds of (recall step) x precision)."""
    fpr, tpr, _ = roc_curve(positive, negative)
    return _average_precision(fpr, tpr, len(positive), len(negative))


def ood_report(known_score: np.ndarray, unknown_score: np.ndarray) -> dict[str, float]:
    """Threshold-free separation of knowns (positive) from unknowns.

    AUROC, AUPR with knowns as positives (``aupr_in``) and with unknowns as positives
    (``aupr_out``), and the false-positive rate on unknowns at 95 % true-positive rate.
    """
    known_score = np.asarray(known_score, dtype=np.float64)
    unknown_score = np.asarray(unknown_score, dtype=np.float64)
    fpr, tpr, _ = roc_curve(known_score, unknown_score)  # one sort serves the AUROC, AUPR-in and FPR@95
    return {
        "auroc": _area(fpr, tpr),
        "aupr_in": _average_precision(fpr, tpr, len(known_score), len(unknown_score)),
        "aupr_out": average_precision(-unknown_score, -known_score),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "n_known": int(len(known_score)),
        "n_unknown": int(len(unknown_score)),
    }
