"""Closed-set, open-set and out-of-distribution metrics (numpy + scikit-learn, torch-free).

scikit-learn is imported by the functions that use it: importing it takes about 0.6 s, which
``osr-infer`` on an unlabelled folder (no metrics to compute) should not pay.

Convention: a higher score means "more like a known digit"; an input is accepted as known
when ``score >= threshold``. Open-set predictions use label 10 for *unknown*.
"""

from __future__ import annotations

import numpy as np

from osr_train.data.datasets import UNKNOWN_LABEL as UNKNOWN


def open_set_predictions(pred: np.ndarray, score: np.ndarray, threshold: float) -> np.ndarray:
    """Argmax class where accepted, ``UNKNOWN`` (10) where rejected."""
    return np.where(np.asarray(score) >= threshold, np.asarray(pred), UNKNOWN)


def open_set_report(
    known_labels: np.ndarray,
    known_pred: np.ndarray,
    known_score: np.ndarray,
    unknown_pred: np.ndarray,
    unknown_score: np.ndarray,
    threshold: float,
) -> dict:
    """Metrics at a threshold, as fractions in [0, 1], with the sizes they were measured on.

    With no unknowns, ``unknown_rejection`` is None and the open-set accuracy covers the
    knowns only (``n_unknown`` says so).
    """
    from sklearn.metrics import confusion_matrix

    known_labels = np.asarray(known_labels)
    known11 = open_set_predictions(known_pred, known_score, threshold)
    unknown11 = open_set_predictions(unknown_pred, unknown_score, threshold)
    y_true = np.concatenate([known_labels, np.full(len(unknown11), UNKNOWN)])
    y_pred = np.concatenate([known11, unknown11])
    return {
        "threshold": float(threshold),
        "n_known": int(len(known_labels)),
        "n_unknown": int(len(unknown11)),
        "closed_set_accuracy": float(np.mean(np.asarray(known_pred) == known_labels)),
        "known_acceptance": float(np.mean(np.asarray(known_score) >= threshold)),
        "unknown_rejection": float(np.mean(np.asarray(unknown_score) < threshold)) if len(unknown11) else None,
        "open_set_accuracy": float(np.mean(y_true == y_pred)),
        "confusion_matrix_10": confusion_matrix(known_labels, known_pred, labels=list(range(10))).tolist(),
        "confusion_matrix_11": confusion_matrix(y_true, y_pred, labels=list(range(11))).tolist(),
    }


def ood_report(known_score: np.ndarray, unknown_score: np.ndarray) -> dict:
    """Threshold-free separation of knowns (positive) from unknowns.

    AUROC, AUPR with knowns as positives (``aupr_in``) and with unknowns as positives
    (``aupr_out``), and the false-positive rate on unknowns at 95 % true-positive rate.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    known_score = np.asarray(known_score, dtype=np.float64)
    unknown_score = np.asarray(unknown_score, dtype=np.float64)
    y = np.concatenate([np.ones(len(known_score)), np.zeros(len(unknown_score))])
    s = np.concatenate([known_score, unknown_score])
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(y, s)),
        "aupr_out": float(average_precision_score(1 - y, -s)),
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "n_known": int(len(known_score)),
        "n_unknown": int(len(unknown_score)),
    }
