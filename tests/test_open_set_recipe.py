"""Issue #5 pieces: outliers, augmentation, scores, calibration and the evaluation report."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.spec import ModelSpec
from osr_train.augment import RandomAffine
from osr_train.checkpoint import load_checkpoint
from osr_train.cli import app
from osr_train.models import ConvNet
from osr_train.outliers import OutlierGenerator, photo_crop_pool
from osr_train.scoring import (OPENMAX_EUCLIDEAN_SCALE, TORCH_SCORES, ScoredClassifier, fit_kl_prototype, fit_mahalanobis, fit_openmax,
                               fit_prototypes, fit_weibull_tail, kl_from_uniform, mahalanobis_score, openmax_score, prototype_score,
                               weibull_cdf)
from osr_train.training import Normalizer

runner = CliRunner()
RGB32 = PreprocessContract.for_shape(32, 3)


@pytest.mark.slow
def test_outliers_are_in_range_varied_and_reproducible():
    digits = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    a = OutlierGenerator(digits, PREPROCESSING, use_photos=False, seed=3)(256)
    b = OutlierGenerator(digits, PREPROCESSING, use_photos=False, seed=3)(256)
    # uint8 pixels of the contract's shape, normalised later like any digit.
    assert a.dtype == torch.uint8 and a.shape == (256, *PREPROCESSING.pixel_shape) == (256, 28, 28)
    assert torch.equal(a, b)
    x = Normalizer(PREPROCESSING)(a)
    assert x.shape == (256, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert x.flatten(1).std(1).median() > 0.05  # not blank images
    assert "photo" not in OutlierGenerator(digits, PREPROCESSING, use_photos=False).kinds


@pytest.mark.slow
def test_glyph_outliers_are_letters_never_a_digit_lookalike_or_a_class_name():
    from osr_train.glyphs import LOOKALIKES, glyph_characters, render_glyphs

    digits = tuple(str(d) for d in range(10))
    chars = glyph_characters(digits)
    assert chars and not set(chars) & LOOKALIKES and not set(chars) & set(digits)
    assert {"A", "C", "D", "P", "T", "a", "e", "#"} <= set(chars)  # the letters a digit reader confuses
    assert "A" not in glyph_characters(("A", "C", "E")) and "C" not in glyph_characters(("A", "C", "E"))
    a = render_glyphs(64, 28, np.random.default_rng(1), chars)
    assert a.shape == (64, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, render_glyphs(64, 28, np.random.default_rng(1), chars))
    ink = (a > 128).mean(axis=(1, 2))
    assert (ink > 0.03).all() and (ink < 0.6).all()  # strokes, not blank frames or blobs
    gen = OutlierGenerator(torch.zeros(8, 28, 28, dtype=torch.uint8), PREPROCESSING, use_photos=False, seed=0, class_names=digits)
    assert "glyphs" in gen.kinds and gen.weights[gen.kinds.index("glyphs")] > gen.weights[gen.kinds.index("noise")]


@pytest.mark.slow
def test_symbol_outliers_are_other_scripts_and_symbols_never_latin_greek_cyrillic_or_a_lookalike():
    from osr_train.glyphs import _PLAIN_FONTS, SYMBOL_FONTS, SYMBOL_LOOKALIKES, _shape, render_pieces, render_symbols, symbol_glyphs

    items = symbol_glyphs()
    assert len(items) > 150 and len(set(items)) == len(items)
    fonts = {font for font, _ in items}
    assert {"japanese", "astrology", "symbolic"} <= fonts <= set(SYMBOL_FONTS)
    assert not fonts & {"greek", "greekc", "greeks", "cyrillic", "cyrilc_1"}  # the near-OOD sets' scripts stay unseen
    assert not set(items) & SYMBOL_LOOKALIKES
    for font, key in items:  # no plain ASCII glyph (a Latin letter, digit or bracket) under a symbol font's name
        assert _shape(font, key) and not any(_shape(plain, key) == _shape(font, key) for plain in _PLAIN_FONTS)
    assert len({_shape(*item) for item in items}) == len(items)  # no glyph twice (mathlow = mathupp)
    for render in (lambda rng: render_symbols(48, 28, rng), lambda rng: render_pieces(48, 28, rng, "ACDEFHK")):
        a = render(np.random.default_rng(5))
        assert a.shape == (48, 28, 28) and a.dtype == np.uint8
        assert np.array_equal(a, render(np.random.default_rng(5)))
        ink = (a > 128).mean(axis=(1, 2))
        assert (ink > 0.02).all() and (ink < 0.7).all()
        assert len({x.tobytes() for x in a}) == len(a)
    gen = OutlierGenerator(torch.zeros(8, 28, 28, dtype=torch.uint8), PREPROCESSING, use_photos=False, seed=0,
                           class_names=tuple(str(d) for d in range(10)))
    assert {"glyphs", "symbols", "pieces"} <= set(gen.kinds)
    kana = OutlierGenerator(torch.zeros(8, 28, 28, dtype=torch.uint8), PREPROCESSING, use_photos=False, seed=0,
                            class_names=("あ", "い", "う"))
    assert "glyphs" in kana.kinds and not {"symbols", "pieces"} & set(kana.kinds)  # its own letters could be drawn
    assert len(kana.symbol_pool) == len(kana.piece_pool) == 0


def test_one_line_or_one_loop_is_no_symbol_outlier():
    from osr_train.glyphs import _shape_lookalike

    line = [((0.0, 0.0), (0.1, 5.0))]
    loop = [tuple((float(np.cos(t)), 1.5 * float(np.sin(t))) for t in np.linspace(0, 2 * np.pi, 20))]
    cross = [((0.0, 0.0), (1.0, 1.0)), ((0.0, 1.0), (1.0, 0.0))]
    assert _shape_lookalike(line, 5.0) and _shape_lookalike(loop, 3.0)
    assert not _shape_lookalike(cross, 1.0)
    assert _shape_lookalike(cross, 10.0)  # a dot beside the font's glyphs


@pytest.mark.slow
def test_outliers_for_a_3_channel_32x32_contract_are_colour_uint8_images():
    known = torch.randint(0, 256, (50, 32, 32, 3), dtype=torch.uint8)
    a = OutlierGenerator(known, RGB32, use_photos=False, seed=3)(256)
    b = OutlierGenerator(known, RGB32, use_photos=False, seed=3)(256)
    assert a.dtype == torch.uint8 and a.shape == (256, *RGB32.pixel_shape) == (256, 32, 32, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, OutlierGenerator(known, RGB32, use_photos=False, seed=4)(256))
    x = Normalizer(RGB32)(a)
    assert x.shape == (256, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert x.flatten(1).std(1).median() > 0.05  # not blank images
    # Grey patterns are tinted or stacked per channel: most outliers are not grey.
    coloured = (a[..., 0] != a[..., 1]).flatten(1).any(1) | (a[..., 1] != a[..., 2]).flatten(1).any(1)
    assert coloured.float().mean() > 0.5


def test_photo_crop_pool_is_uint8_of_the_contract_pixel_shape():
    for contract in (PREPROCESSING, RGB32):
        crops = photo_crop_pool(contract, 12, seed=5)
        assert crops.dtype == np.uint8 and crops.shape == (12, *contract.pixel_shape)
        np.testing.assert_array_equal(crops, photo_crop_pool(contract, 12, seed=5))
        assert crops.reshape(12, -1).std(1).min() > 0  # real crops, not blank


def test_random_affine_with_no_motion_is_identity():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    same = RandomAffine(degrees=0, translate_px=0, scale=(1, 1))(x)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    moved = RandomAffine(degrees=0, translate_px=3, scale=(1, 1))(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(moved, x)


def test_random_affine_pads_with_the_contract_background_per_channel():
    contract = PreprocessContract(size=32, channels=3, color="RGB", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    background = torch.tensor(contract.background).view(1, 3, 1, 1)
    assert len(set(contract.background)) == 3  # a different normalised black per channel
    x = background.expand(4, 3, 32, 32).clone()  # all black
    moved = RandomAffine(degrees=20, translate_px=4, fill=contract.background, scale_px=32 / 28)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(moved, x, atol=1e-5, rtol=0)


def test_mahalanobis_score_matches_a_direct_computation():
    torch.manual_seed(0)
    model = ConvNet(10, PREPROCESSING.input_shape).eval()
    images = torch.randint(0, 256, (200, 28, 28), dtype=torch.uint8)
    labels = torch.arange(200) % 10
    normalize = Normalizer(PREPROCESSING)
    params = fit_mahalanobis(model, images, labels, normalize)
    assert TORCH_SCORES["mahalanobis"].fit is fit_mahalanobis
    scored = ScoredClassifier(model, "mahalanobis", params)
    x = normalize(images[:5])
    _, _, score = scored(x)
    feats = model.features(x).double().detach().numpy()
    means, prec = np.array(params["means"], np.float64), np.array(params["precision"], np.float64)
    direct = -np.min([[(f - m) @ prec @ (f - m) for m in means] for f in feats], axis=1)
    np.testing.assert_allclose(score.detach().numpy(), direct, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="means"):
        ScoredClassifier(model, "mahalanobis", {})


def test_scored_classifier_names_the_missing_mahalanobis_parameters():
    """A partial set is refused when the module is built, not with a KeyError at the first forward."""
    model = ConvNet(10, PREPROCESSING.input_shape).eval()
    with pytest.raises(ValueError, match="means, precision"):
        ScoredClassifier(model, "mahalanobis", {})
    with pytest.raises(ValueError, match=r"needs fitted parameters: precision missing"):
        ScoredClassifier(model, "mahalanobis", {"means": [[0.0] * 32] * 10})


@pytest.mark.parametrize("architecture", ["ConvNet", "WideLeakySiameseNet"])
def test_prototype_score_is_the_cosine_similarity_to_the_nearest_kmeans_centre(architecture):
    from osr_train.models import ARCHITECTURES, classifier_of

    torch.manual_seed(0)
    model = classifier_of(ARCHITECTURES[architecture](3, PREPROCESSING.input_shape).eval())
    images = torch.randint(0, 256, (90, 28, 28), dtype=torch.uint8)
    labels = torch.arange(90) % 3
    normalize = Normalizer(PREPROCESSING)
    params = fit_prototypes(model, images, labels, normalize, per_class=4)
    assert TORCH_SCORES["prototype"].fit is fit_prototypes
    prototypes = np.array(params["prototypes"], np.float64)
    assert prototypes.shape == (3 * 4, 128)  # per_class centres of each class, fc1's width
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, rtol=1e-5)
    # Each class's centres lie among that class's own hidden features: the nearest centre of a
    # training image's features is more often one of its class's than chance (1/3) would give.
    with torch.no_grad():
        hidden = model.forward_with_layers(normalize(images))[2].double().numpy()
    unit = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
    assert ((unit @ prototypes.T).argmax(1) // 4 == labels.numpy()).mean() > 0.5
    scored = ScoredClassifier(model, "prototype", params)
    x = normalize(images[:7])
    logits, _, score = scored(x)
    torch.testing.assert_close(logits, model(x))  # the score's pass computes the same logits
    np.testing.assert_allclose(score.detach().numpy(), (unit[:7] @ prototypes.T).max(1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="prototypes"):
        ScoredClassifier(model, "prototype", {})


def test_prototype_score_of_a_prototype_is_one_and_ignores_length():
    prototypes = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    torch.testing.assert_close(prototype_score(prototypes * 3.0, prototypes), torch.ones(5))
    torch.testing.assert_close(prototype_score(-prototypes[:1], prototypes[:1]), -torch.ones(1))


def test_kl_prototype_adds_the_two_scores_standardised_on_knowns_held_out_of_the_centres():
    from osr_train.models import ARCHITECTURES, classifier_of

    torch.manual_seed(0)
    model = classifier_of(ARCHITECTURES["WideLeakySiameseNet"](3, PREPROCESSING.input_shape).eval())
    images = torch.randint(0, 256, (150, 28, 28), dtype=torch.uint8)
    labels = torch.arange(150) % 3
    normalize = Normalizer(PREPROCESSING)
    assert TORCH_SCORES["kl_prototype"].fit is fit_kl_prototype
    params = fit_kl_prototype(model, images, labels, normalize, held_out=40)
    assert len(params["prototypes"]) == 3 * 10 and len(params["standardisation"]) == 4
    # The held-out draw: the same 30 images (a fifth of 150, below 40) whatever the call.
    held = torch.randperm(150, generator=torch.Generator().manual_seed(0))[:30]
    rest = torch.randperm(150, generator=torch.Generator().manual_seed(0))[30:]
    assert params["prototypes"] == fit_prototypes(model, images[rest], labels[rest], normalize)["prototypes"]
    with torch.no_grad():
        logits, _, hidden = model.forward_with_layers(normalize(images[held]))
    kl = kl_from_uniform(logits).double().numpy()
    proto = prototype_score(hidden, torch.tensor(params["prototypes"])).double().numpy()
    np.testing.assert_allclose(params["standardisation"], [kl.mean(), kl.std(), proto.mean(), proto.std()], rtol=1e-5)
    # Inside the exported module: the sum of the two standardised scores, on any input.
    scored = ScoredClassifier(model, "kl_prototype", params)
    x = normalize(torch.randint(0, 256, (9, 28, 28), dtype=torch.uint8))
    with torch.no_grad():
        logits, _, score = scored(x)
        _, _, hidden = model.forward_with_layers(x)
    m_kl, s_kl, m_p, s_p = params["standardisation"]
    standardised = (kl_from_uniform(logits).numpy() - m_kl) / s_kl + (prototype_score(hidden, torch.tensor(params["prototypes"])).numpy() - m_p) / s_p
    np.testing.assert_allclose(score.numpy(), m_p + s_p * standardised, rtol=1e-4, atol=1e-5)  # in the prototype's units
    # On the held-out knowns themselves the sum is centred at the prototype score's mean.
    with torch.no_grad():
        assert float(scored(normalize(images[held]))[2].mean()) == pytest.approx(m_p, abs=1e-3 * s_p)
    with pytest.raises(ValueError, match="standardisation"):
        ScoredClassifier(model, "kl_prototype", {"prototypes": params["prototypes"]})


def _openmax_reference(logits: np.ndarray, means: np.ndarray, weibull: np.ndarray) -> np.ndarray:
    """OpenMax as Bendale & Boult write it, with a sort and loops: the reference for the graph form."""
    from scipy.stats import weibull_min

    out = []
    classes = logits.shape[1]
    for v in logits.astype(np.float64):
        revised, unknown = v.copy(), 0.0
        for rank, c in enumerate(np.argsort(-v, kind="stable")):
            mean = means[c].astype(np.float64)
            distance = np.linalg.norm(v - mean) / OPENMAX_EUCLIDEAN_SCALE + 1 - v @ mean / (np.linalg.norm(v) * np.linalg.norm(mean))
            shape, scale, shift = weibull[c]
            cdf = weibull_min.cdf(distance - shift, shape, scale=scale)
            weight = 1 - (classes - rank) / classes * cdf
            unknown += v[c] * (1 - weight)
            revised[c] = v[c] * weight
        full = np.exp(np.concatenate([[unknown], revised]) - max(unknown, revised.max()))
        out.append((full / full.sum())[1:].max())
    return np.array(out)


def test_openmax_score_is_bendale_and_boults_recalibration():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 4)) * 3
    weibull = np.array([[3.0, 0.5, 0.1], [1.5, 0.8, 0.0], [6.0, 0.3, 0.2], [2.0, 1.0, -0.5]])
    logits = np.concatenate([rng.normal(size=(50, 4)) * 4, means])  # random inputs, then the means themselves
    score = openmax_score(torch.tensor(logits, dtype=torch.float32), torch.tensor(means, dtype=torch.float32),
                          torch.tensor(weibull, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(score, _openmax_reference(logits, means, weibull), rtol=1e-4, atol=1e-5)
    assert 0 < score.min() and score.max() < 1
    # Further out in every class's tail, the unknown takes more: a class's mean (positive logits, its
    # own the highest) scaled up, in the same direction, scores lower than the mean itself.
    positive = torch.tensor(np.abs(means) + 5 * np.eye(4), dtype=torch.float32)
    near, far = (openmax_score(x, positive, torch.tensor(weibull, dtype=torch.float32)) for x in (positive, positive * 30))
    assert bool((far < 0.01).all()) and bool((near > 0.5).all())


def test_weibull_is_fitted_to_the_largest_distances():
    from scipy.stats import weibull_min

    distances = np.concatenate([np.linspace(0, 1, 500), weibull_min.rvs(2.5, scale=0.5, size=20, random_state=1) + 3])
    shape, scale, shift = fit_weibull_tail(distances, tail=20)
    assert shift == pytest.approx(np.sort(distances)[-20] - 1)  # the smallest of the tail at 1, as libMR's FitHigh
    cdf = weibull_cdf(torch.tensor([[np.sort(distances)[-20], np.median(distances[-20:]), 1.0, 100.0]]),
                      torch.tensor([[shape, scale, shift]] * 4, dtype=torch.float64)).numpy()[0]
    assert cdf[2] == 0.0 and cdf[3] == pytest.approx(1.0)  # the bulk is inside, far beyond the tail is out
    assert 0.2 < cdf[1] < 0.8 and cdf[0] < cdf[1]  # the tail spans the CDF
    # Degenerate tails (too few, or all equal) give a steep step at the largest distance, not an error.
    for few in (np.array([0.3]), np.full(30, 0.3)):
        shape, scale, shift = fit_weibull_tail(few)
        assert shape >= 10 and shift + scale == pytest.approx(few.max())


def test_fit_openmax_on_correct_training_knowns():
    from osr_train.models import ARCHITECTURES, classifier_of

    torch.manual_seed(0)
    model = classifier_of(ARCHITECTURES["WideLeakySiameseNet"](3, PREPROCESSING.input_shape).eval())
    images = torch.randint(0, 256, (90, 28, 28), dtype=torch.uint8)
    normalize = Normalizer(PREPROCESSING)
    with torch.no_grad():
        logits = model(normalize(images)).double()
    labels = logits.argmax(1)
    labels[:6] = (labels[:6] + 1) % 3  # six wrongly classified knowns: left out of the means
    assert TORCH_SCORES["openmax"].fit is fit_openmax
    params = fit_openmax(model, images, labels, normalize)
    assert np.array(params["mean_logits"]).shape == (3, 3) and np.array(params["weibull"]).shape == (3, 3)
    for c in range(3):
        members = logits[6:][labels[6:] == c]
        if len(members):
            np.testing.assert_allclose(params["mean_logits"][c], members.mean(0).numpy(), rtol=1e-5, atol=1e-5)
    scored = ScoredClassifier(model, "openmax", params)
    with torch.no_grad():
        _, _, score = scored(normalize(images))
    np.testing.assert_allclose(score.numpy(), openmax_score(logits.float(), torch.tensor(params["mean_logits"]),
                                                            torch.tensor(params["weibull"])).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="weibull"):
        ScoredClassifier(model, "openmax", {"mean_logits": params["mean_logits"]})


def test_mahalanobis_of_the_means_is_zero():
    means = torch.randn(3, 4)
    assert torch.allclose(mahalanobis_score(means, means, torch.eye(4)), torch.zeros(3))


@pytest.fixture(scope="module")
def best_digits(tmp_path_factory):
    from conftest import train_model

    out = tmp_path_factory.mktemp("best")
    train_model(out, recipe="best", model="baseline", dataset="digits", epochs=15, target_tpr=0.95)
    return out


@pytest.mark.slow
def test_best_recipe_calibrates_on_validation_knowns(best_digits):
    payload = torch.load(best_digits / "model.pt", weights_only=True)
    spec, record = payload["spec"], payload["config"]
    assert record["recipe"] == "best" and spec["score"] == "kl_uniform" and spec["architecture"] == "WideLeakyConvNet"
    cal = spec["calibration"]
    assert cal["method"] == "target_tpr" and cal["on"] == "digits-val" and cal["target_tpr"] == 0.95
    assert 0.95 <= cal["val_known_acceptance"] < 0.96
    _, loaded, _ = load_checkpoint(best_digits / "model.pt")
    assert loaded == ModelSpec.from_dict(spec) and loaded.calibration == cal
    metrics = json.loads((best_digits / "metrics.json").read_text())
    assert metrics["threshold"] == spec["threshold"] == loaded.threshold
    assert metrics["calibration"] == cal
    assert metrics["closed_set_accuracy"] > 0.8
    assert metrics["training_device"].startswith("CPU (") and "torch thread" in metrics["training_device"]  # no GPU in CI
    assert set(metrics["ood_pooled"]) == {"msp", "max_logit", "energy", "kl_uniform", "mahalanobis", "prototype",
                                           "kl_prototype", "openmax"}


@pytest.mark.slow
def test_evaluate_writes_report_and_figures(best_digits, tmp_path):
    result = runner.invoke(app, ["evaluate", str(best_digits / "model.pt"), "--out", str(tmp_path), "--no-tsne"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report.md").read_text()
    for figure in ("roc.png", "score_histograms.png", "confusion.png", "confusion_open_set.png"):
        assert f"]({figure})" in report and (tmp_path / figure).stat().st_size > 1000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_unknown_set"]) == {"sample-photos"}
    assert 0 <= metrics["ood_pooled"]["energy"]["auroc"] <= 1
    assert len(metrics["confusion_matrix"]) == 10 and len(metrics["confusion_matrix_open_set"]) == 11
    assert "| kl_uniform (stored) | pooled |" in report
    assert metrics["architecture"] == "WideLeakyConvNet" and metrics["epochs"] == 15
    # The same figures as training reported, every score's: msp at the model's fitted temperature
    # (what the exported graph computes), fitted scores from the checkpoint's own statistics.
    trained = json.loads((best_digits / "metrics.json").read_text())
    assert torch.load(best_digits / "model.pt", weights_only=True)["spec"]["temperature"] != 1.0
    for score, report_of_score in trained["ood_pooled"].items():
        assert metrics["ood_pooled"][score]["auroc"] == pytest.approx(report_of_score["auroc"], abs=1e-9), score


@pytest.mark.slow
def test_rescore_stores_another_score_with_its_own_calibrated_threshold(best_digits, tmp_path):
    from osr_train.checkpoint import load_checkpoint

    out = tmp_path / "proto.pt"
    result = runner.invoke(app, ["rescore", str(best_digits / "model.pt"), "--score", "prototype", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "prototype stored (was kl_uniform)" in result.output
    model, spec, record = load_checkpoint(out)
    before, old_spec, _ = load_checkpoint(best_digits / "model.pt")
    assert spec.score == "prototype" and len(spec.score_params["prototypes"]) == 10 * 10  # 10 centres for each digit
    assert spec.calibration["target_tpr"] == old_spec.calibration["target_tpr"] == 0.95  # the model's own, by default
    assert spec.calibration["rescored_from"] == "kl_uniform" and spec.calibration["val_known_acceptance"] >= 0.95
    assert -1 < spec.threshold < 1 and spec.temperature == old_spec.temperature
    for name, tensor in before.state_dict().items():  # the same network
        assert torch.equal(tensor, model.state_dict()[name]), name
    # The stored score is what evaluation reports as stored, at the new threshold.
    result = runner.invoke(app, ["evaluate", str(out), "--out", str(tmp_path / "ev"), "--no-tsne"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["score"] == "prototype" and metrics["threshold"] == pytest.approx(spec.threshold)
    # Refused: writing over the checkpoint itself, an unknown score, a target outside (0, 1).
    result = runner.invoke(app, ["rescore", str(out), "--score", "energy", "--out", str(out)])
    assert result.exit_code == 2 and "the checkpoint itself" in result.output
    assert runner.invoke(app, ["rescore", str(out), "--score", "nope"]).exit_code == 2
    result = runner.invoke(app, ["rescore", str(out), "--score", "energy", "--target-tpr", "1.5", "--out", str(tmp_path / "e.pt")])
    assert result.exit_code == 2 and "(0, 1)" in result.output


def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "checkpoint not found" in result.output


def test_drawn_knowns_join_their_class_and_never_outweigh_it():
    """500 pen-drawn glyphs per class named by one drawable character, at most a quarter of the
    class's own images, laid out like every image; classes with other names get none."""
    from types import SimpleNamespace

    from osr_train.training import Trainer, TensorSplit

    contract = PreprocessContract(steps=("layout",))
    spec = SimpleNamespace(preprocessing=contract, class_names=("7", "cat", "A"))
    labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 4000)
    train = TensorSplit(torch.zeros(len(labels), 28, 28, dtype=torch.uint8), labels)
    stub = SimpleNamespace(spec=spec, config=SimpleNamespace(drawn_knowns=500, seed=0))
    grown = Trainer._with_drawn_knowns(stub, train)
    added = grown.y[len(labels):]
    assert torch.equal(grown.y[: len(labels)], labels)
    assert (added == 0).sum() == 10 and (added == 1).sum() == 0 and (added == 2).sum() == 500
    drawn = grown.x[len(labels):].float()
    assert drawn.amax(dim=(1, 2)).min() > 200  # strokes, laid out to full brightness
