"""Issue #5 pieces: outliers, augmentation, scores, calibration and the evaluation report."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from osr_train.augment import RandomAffine
from osr_train.cli import app
from osr_train.models import ConvNet
from osr_train.outliers import OutlierGenerator
from osr_train.scoring import ScoredClassifier, fit_mahalanobis, mahalanobis_score
from osr_train.training import Normalizer

runner = CliRunner()


def test_outliers_are_in_range_varied_and_reproducible():
    digits = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    a = OutlierGenerator(digits, use_photos=False, seed=3)(256)
    b = OutlierGenerator(digits, use_photos=False, seed=3)(256)
    assert a.shape == (256, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert a.flatten(1).std(1).median() > 0.05  # not blank images
    assert "photo" not in OutlierGenerator(digits, use_photos=False).kinds


def test_random_affine_with_no_motion_is_identity():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    same = RandomAffine(degrees=0, translate_px=0, scale=(1, 1))(x)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    moved = RandomAffine(degrees=0, translate_px=3, scale=(1, 1))(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(moved, x)


def test_mahalanobis_score_matches_a_direct_computation():
    torch.manual_seed(0)
    model = ConvNet().eval()
    images = torch.randint(0, 256, (200, 28, 28), dtype=torch.uint8)
    labels = torch.arange(200) % 10
    params = fit_mahalanobis(model, images, labels, Normalizer())
    scored = ScoredClassifier(model, "mahalanobis", params)
    x = Normalizer()(images[:5])
    _, _, score = scored(x)
    feats = model.features(x).double().detach().numpy()
    means, prec = np.array(params["means"], np.float64), np.array(params["precision"], np.float64)
    direct = -np.min([[(f - m) @ prec @ (f - m) for m in means] for f in feats], axis=1)
    np.testing.assert_allclose(score.detach().numpy(), direct, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="means"):
        ScoredClassifier(model, "mahalanobis", {})


def test_mahalanobis_of_the_means_is_zero():
    means = torch.randn(3, 4)
    assert torch.allclose(mahalanobis_score(means, means, torch.eye(4)), torch.zeros(3))


@pytest.fixture(scope="module")
def best_digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("best")
    args = ["baseline", "--recipe", "best", "--dataset", "digits", "--epochs", "15", "--target-tpr", "0.95", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_best_recipe_calibrates_on_validation_knowns(best_digits):
    payload = torch.load(best_digits / "model.pt", weights_only=True)
    config = payload["config"]
    assert config["recipe"] == "best" and config["score"] == "energy"
    cal = config["calibration"]
    assert cal["method"] == "target_tpr" and cal["on"] == "digits-val" and cal["target_tpr"] == 0.95
    assert 0.95 <= cal["val_known_acceptance"] < 0.96
    metrics = json.loads((best_digits / "metrics.json").read_text())
    assert metrics["threshold"] == config["threshold"]
    assert metrics["closed_set_accuracy"] > 0.8
    assert set(metrics["ood_pooled"]) == {"msp", "max_logit", "energy", "mahalanobis"}


def test_evaluate_writes_report_and_figures(best_digits, tmp_path):
    result = runner.invoke(app, ["evaluate", str(best_digits / "model.pt"), "--out", str(tmp_path), "--no-tsne"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report.md").read_text()
    for figure in ("roc.png", "score_histograms.png", "confusion_11.png"):
        assert f"]({figure})" in report and (tmp_path / figure).stat().st_size > 1000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_unknown_set"]) == {"sample-photos"}
    assert 0 <= metrics["ood_pooled"]["energy"]["auroc"] <= 1
    assert "| energy (stored) | pooled |" in report


def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "checkpoint not found" in result.output
