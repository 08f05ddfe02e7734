import numpy as np
import pytest

from osr_train.calibration import threshold_for_tpr
from osr_infer.metrics import UNKNOWN, ood_report, open_set_predictions, open_set_report


def test_open_set_report_by_hand():
    labels = np.array([0, 1, 2, 3])
    pred = np.array([0, 1, 2, 2])  # last one wrong
    score = np.array([0.9, 0.5, 0.95, 0.99])  # second rejected at 0.8
    u_pred = np.array([4, 5, 6])
    u_score = np.array([0.1, 0.85, 0.3])  # one unknown accepted
    r = open_set_report(labels, pred, score, u_pred, u_score, threshold=0.8)
    assert r["closed_set_accuracy"] == 0.75
    assert r["known_acceptance"] == 0.75
    assert r["unknown_rejection"] == pytest.approx(2 / 3)
    # correct: known 0, known 2, unknown 1, unknown 3 -> 4 of 7
    assert r["open_set_accuracy"] == pytest.approx(4 / 7)
    cm = np.array(r["confusion_matrix_11"])
    assert cm.shape == (11, 11) and cm.sum() == 7 and cm[1, UNKNOWN] == 1 and cm[UNKNOWN, 5] == 1
    assert open_set_predictions(pred, score, 0.8).tolist() == [0, UNKNOWN, 2, 2]


def test_ood_report_perfect_and_reversed():
    perfect = ood_report(np.array([5.0, 6, 7]), np.array([1.0, 2]))
    assert perfect["auroc"] == 1.0 and perfect["fpr_at_95_tpr"] == 0.0 and perfect["aupr_out"] == 1.0
    reversed_ = ood_report(np.array([1.0, 2]), np.array([5.0, 6, 7]))
    assert reversed_["auroc"] == 0.0 and reversed_["fpr_at_95_tpr"] == 1.0


def test_fpr_at_95_tpr_counts_unknowns_above_the_95_percent_threshold():
    known = np.arange(100, dtype=float)  # threshold accepting 95 of them is 5.0
    unknown = np.array([4.0, 5.5, 10.0, -1.0])
    assert ood_report(known, unknown)["fpr_at_95_tpr"] == 0.5


@pytest.mark.parametrize("tpr", [0.5, 0.9, 0.99, 0.995, 1.0])
def test_threshold_for_tpr_accepts_at_least_target(tpr):
    scores = np.random.default_rng(0).normal(size=1000)
    t = threshold_for_tpr(scores, tpr)
    accepted = np.mean(scores >= t)
    assert accepted >= tpr and accepted - tpr < 2 / 1000


def test_threshold_for_tpr_rejects_bad_input():
    with pytest.raises(ValueError):
        threshold_for_tpr(np.array([1.0]), 0.0)
    with pytest.raises(ValueError):
        threshold_for_tpr(np.array([]), 0.9)
