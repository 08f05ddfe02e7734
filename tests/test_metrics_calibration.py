import numpy as np
import pytest

from osr_train.calibration import threshold_for_tpr
from osr_infer.metrics import UNKNOWN, auroc, average_precision, confusion_matrix, ood_report, open_set_predictions, open_set_report, roc_curve


def test_open_set_report_by_hand():
    labels = np.array([0, 1, 2, 3])
    pred = np.array([0, 1, 2, 2])  # last one wrong
    score = np.array([0.9, 0.5, 0.95, 0.99])  # second rejected at 0.8
    u_pred = np.array([4, 5, 6])
    u_score = np.array([0.1, 0.85, 0.3])  # one unknown accepted
    r = open_set_report(labels, pred, score, u_pred, u_score, threshold=0.8, n_classes=10)
    assert UNKNOWN == -1
    assert (r["threshold"], r["n_known"], r["n_unknown"]) == (0.8, 4, 3)
    assert r["closed_set_accuracy"] == 0.75
    assert r["known_acceptance"] == 0.75
    assert r["unknown_rejection"] == pytest.approx(2 / 3)
    # correct: known 0, known 2, unknown 1, unknown 3 -> 4 of 7
    assert r["open_set_accuracy"] == pytest.approx(4 / 7)
    cm = np.array(r["confusion_matrix_open_set"])  # 10 classes, then unknown in the last row and column
    assert cm.shape == (11, 11) and cm.sum() == 7 and cm[1, 10] == 1 and cm[10, 5] == 1
    assert cm[10, 10] == 2 and np.trace(cm) == 4
    closed = np.array(r["confusion_matrix"])  # knowns only, argmax class whatever the score
    assert closed.shape == (10, 10) and closed.sum() == 4 and closed[3, 2] == 1 and np.trace(closed) == 3
    assert open_set_predictions(pred, score, 0.8).tolist() == [0, UNKNOWN, 2, 2]


def test_open_set_report_sizes_its_matrices_by_the_class_count():
    """A model of 4 classes: a 5x5 open-set matrix; labels outside the classes are left out."""
    r = open_set_report(np.array([0, 3, 3]), np.array([0, 3, 1]), np.array([0.9, 0.9, 0.1]), np.array([2]), np.array([0.95]), 0.5, 4)
    cm = np.array(r["confusion_matrix_open_set"])
    assert cm.tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 1, 0, 0]]
    assert np.array(r["confusion_matrix"]).shape == (4, 4)
    assert confusion_matrix(np.array([0, 7, UNKNOWN]), np.array([1, 1, 1]), 4).tolist() == [[0, 1, 0, 0]] + [[0] * 4] * 3
    assert confusion_matrix(np.array([UNKNOWN]), np.array([UNKNOWN]), 2, open_set=True).tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_open_set_report_without_unknowns():
    r = open_set_report(np.array([0, 1]), np.array([0, 1]), np.array([0.9, 0.2]), np.array([], int), np.array([]), 0.5, 2)
    assert r["n_unknown"] == 0 and r["unknown_rejection"] is None
    assert r["open_set_accuracy"] == 0.5 and r["known_acceptance"] == 0.5


def _random_scores_with_ties(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives drawn from a few values (many ties, within and across classes)."""
    rng = np.random.default_rng(seed)
    n_pos, n_neg = rng.integers(1, 80, size=2)
    positive = rng.integers(0, 8, n_pos) / 4.0
    negative = rng.integers(0, 6, n_neg) / 4.0
    if seed % 3 == 0:  # some distinct continuous scores too
        positive = positive + rng.normal(0, 1, n_pos).astype(np.float32)
    return positive, negative


@pytest.mark.parametrize("seed", range(25))
def test_numpy_ranking_metrics_match_scikit_learn(seed):
    """The edge install's numpy AUROC, ROC curve and average precision are scikit-learn's, ties included."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc_curve

    positive, negative = _random_scores_with_ties(seed)
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    s = np.r_[positive, negative].astype(np.float64)
    assert auroc(positive, negative) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(positive, negative) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thresholds = roc_curve(positive, negative)
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    assert thresholds[0] == np.inf and sk_thresholds[0] > s.max()  # "above every score" (sklearn >= 1.3 writes inf too)
    np.testing.assert_array_equal(thresholds[1:], sk_thresholds[1:])
    report = ood_report(positive, negative)
    assert report["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert report["aupr_in"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert report["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert report["fpr_at_95_tpr"] == sk_fpr[np.argmax(sk_tpr >= 0.95)]


def test_all_scores_tied_is_chance():
    positive, negative = np.full(5, 0.3), np.full(7, 0.3)
    assert auroc(positive, negative) == 0.5
    assert average_precision(positive, negative) == pytest.approx(5 / 12)
    fpr, tpr, thresholds = roc_curve(positive, negative)
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0] and thresholds.tolist() == [np.inf, 0.3]


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


def _top_probability(logits, temperature):
    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).max(1)


def test_the_fitted_temperature_makes_the_card_rule_accept_the_target_share():
    from osr_train.calibration import msp_acceptance, temperature_for_msp

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (2000, 10))
    logits[np.arange(2000), rng.integers(0, 10, 2000)] += rng.uniform(2, 9, 2000)  # soft, like an OE model
    assert msp_acceptance(logits, 1.0, 0.999) < 0.5
    t = temperature_for_msp(logits, 0.999, 0.9)
    assert 0.05 < t < 1
    assert np.mean(_top_probability(logits, t) >= 0.999) >= 0.9  # reached ...
    assert np.mean(_top_probability(logits, t * 1.01) >= 0.999) < 0.9  # ... by the largest such temperature


def test_a_confident_model_keeps_temperature_one_and_a_hopeless_one_gets_none():
    from osr_train.calibration import temperature_for_msp

    confident = np.zeros((100, 10))
    confident[:, 3] = 20.0
    assert temperature_for_msp(confident, 0.999, 0.98) == 1.0
    flat = np.zeros((100, 10))  # every class equally likely at any temperature
    assert temperature_for_msp(flat, 0.999, 0.98) is None
    with pytest.raises(ValueError):
        temperature_for_msp(confident, 1.5, 0.98)


def test_kl_uniform_is_the_softmaxs_divergence_from_uniform_and_ignores_a_shift_of_the_logits():
    """The best recipe's score: KL(uniform || softmax), 0 for a uniform posterior (what outlier
    exposure trains outliers to), growing with confidence, unchanged when every logit moves
    together (which moves max_logit and energy), and not saturating where msp reaches 1."""
    import torch

    from osr_train.scoring import torch_score

    score = torch_score("kl_uniform")
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 4, size=(64, 10)))
    kl = score.compute(logits, torch.softmax(logits, 1), None, {}).numpy()
    p = torch.softmax(logits, 1).numpy()
    by_hand = (np.log(0.1 / p) * 0.1).sum(1)
    np.testing.assert_allclose(kl, by_hand, rtol=1e-9, atol=1e-9)
    shifted = score.compute(logits + 7.5, torch.softmax(logits, 1), None, {}).numpy()
    np.testing.assert_allclose(shifted, kl, atol=1e-9)
    uniform = torch.full((3, 10), 2.0, dtype=torch.float64)
    np.testing.assert_allclose(score.compute(uniform, torch.softmax(uniform, 1), None, {}).numpy(), 0.0, atol=1e-12)
    confident = torch.tensor([[40.0] + [0.0] * 9, [80.0] + [0.0] * 9])
    msp = torch.softmax(confident, 1).max(1).values
    assert msp[0] == msp[1] == 1.0  # float32 msp can no longer tell them apart
    ranked = score.compute(confident, torch.softmax(confident, 1), None, {})
    assert ranked[1] > ranked[0] > 0
