"""osr-infer's two thresholds (issue #10): --threshold is always on the top softmax probability
(msp, max of probs), on every model; --score-threshold is on the model's own score. Every run
says on its first stderr line which model, score and threshold it decides with.

The model here is the shared trained-digits checkpoint re-scored with the energy score (as
tests/test_export_matrix.py does), so that the two quantities differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from infer_testing import digit_images, export_onnx, invoke, write_pngs
from osr_infer.errors import EXIT_ERROR, EXIT_OK
from osr_infer.outputs import ModelOutputs
from osr_infer.preprocess import load_image
from osr_infer.results import read_results
from osr_infer.session import InferenceModel

MSP_THRESHOLD = 0.999


@pytest.fixture(scope="module")
def energy_model(tmp_path_factory, trained_digits) -> dict:
    """trained-digits with the energy score and a threshold calibrated to accept 90 % of validation knowns."""
    from osr_infer.data.registry import open_set_source
    from osr_train.checkpoint import load_checkpoint, save_checkpoint
    from osr_train.models import classifier_of
    from osr_train.scoring import ScoredClassifier

    model, spec, record = load_checkpoint(trained_digits / "model.pt")
    scored = ScoredClassifier(classifier_of(model), "energy", {}).eval()
    _, val, _, _ = open_set_source(spec.dataset).known_splits(spec.preprocessing)
    with torch.inference_mode():
        energies = scored(torch.from_numpy(spec.preprocessing.normalize(val.images)))[2].numpy()
    threshold = float(np.quantile(energies, 0.1))
    calibration = {"method": "target_tpr", "target_tpr": 0.9, "on": val.name, "n": len(val)}
    spec = spec.replace(score="energy", score_params={}, threshold=threshold, calibration=calibration)
    folder = tmp_path_factory.mktemp("energy-model")
    checkpoint = save_checkpoint(folder / "model.pt", model, spec, record)
    onnx_path = export_onnx(checkpoint, folder / "model.onnx")
    assert InferenceModel(onnx_path).score_name == "energy"
    return {"checkpoint": checkpoint, "onnx": onnx_path, "threshold": threshold}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """40 test digits and 20 noise images: decisions go both ways on either quantity."""
    folder = tmp_path_factory.mktemp("threshold-images")
    write_pngs(folder, digit_images(40, seed=5)[0], prefix="digit")
    write_pngs(folder, np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8), prefix="noise")
    return folder


def _direct(onnx_path: Path, folder: Path) -> tuple[list[str], ModelOutputs]:
    """The files of ``folder`` in osr-infer's order, and the model's outputs on them, run directly."""
    model = InferenceModel(onnx_path, threshold=0.5)  # any threshold: only the outputs are used
    files = sorted(str(p) for p in folder.glob("*.png"))
    x = model.contract.normalize(np.stack([load_image(p, model.contract) for p in files]))
    return files, model.run(x)


def _expected_labels(outputs: ModelOutputs, known: np.ndarray) -> list[str]:
    return [str(int(k)) if ok else "unknown" for k, ok in zip(outputs.logits.argmax(axis=1), known, strict=True)]


@pytest.mark.parametrize("level", ["card", "median"])
def test_threshold_decides_on_msp_even_on_an_energy_model(energy_model, images, tmp_path, level):
    """``--threshold P`` means ``max(probs) >= P`` on an energy model too; before issue #10 it replaced
    the energy threshold (``energy >= P``, which accepts nearly everything)."""
    files, outputs = _direct(energy_model["onnx"], images)
    msp = outputs.probs.max(axis=1)
    p = MSP_THRESHOLD if level == "card" else round(float(np.median(msp)), 4)  # the card's 0.999, or both ways
    out = tmp_path / "r.csv"
    result = invoke([images, "--model", energy_model["onnx"], "--threshold", str(p), "-o", out, "--workers", "0"])
    assert result.exit_code == EXIT_OK, result.output
    rows = read_results(out)
    assert [r["path"] for r in rows] == files
    labels = [r["label"] for r in rows]
    assert labels == _expected_labels(outputs, msp >= p)
    assert labels != _expected_labels(outputs, outputs.score >= p)  # the old meaning
    if level == "median":
        assert 0 < labels.count("unknown") < len(labels)
        assert np.any((outputs.score >= energy_model["threshold"]) != (msp >= p))  # not the model's own decision either
    # The columns keep their meaning: probability is the msp, score is the model's own (energy) score.
    np.testing.assert_allclose([r["probability"] for r in rows], msp, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([r["score"] for r in rows], outputs.score, rtol=1e-6, atol=1e-6)
    # Everything said about the decision names msp: the start line, the note, and the report.
    assert result.stderr.splitlines()[0] == (
        f"model: {energy_model['onnx']} (SiameseNet, 10 classes, 1x28x28; decides on msp >= {p:g} (--threshold))"
    )
    assert "note: --threshold is on the top softmax probability (msp), not on model.onnx's own energy score" in result.stderr
    assert f"known when msp >= {p:g} (--threshold)" in result.stdout
    assert f"label = the class where probability >= {p:g} (msp, --threshold), else unknown" in result.stdout


def test_score_threshold_decides_on_the_model_score(energy_model, images, tmp_path):
    files, outputs = _direct(energy_model["onnx"], images)
    threshold = float(np.median(outputs.score))  # some accepted, some not
    out = tmp_path / "r.csv"
    result = invoke([images, "--model", energy_model["onnx"], "--score-threshold", repr(threshold), "-o", out, "--workers", "0"])
    assert result.exit_code == EXIT_OK, result.output
    rows = read_results(out)
    assert [r["path"] for r in rows] == files
    assert [r["label"] for r in rows] == _expected_labels(outputs, outputs.score >= threshold)
    assert 0 < sum(r["label"] == "unknown" for r in rows) < len(rows)
    assert result.stderr.splitlines()[0] == (
        f"model: {energy_model['onnx']} (SiameseNet, 10 classes, 1x28x28; decides on energy >= {threshold:g} (--score-threshold))"
    )
    assert "label = the class where score >=" in result.stdout


def test_without_a_threshold_option_the_model_decides_with_its_own(energy_model, images, tmp_path):
    out = tmp_path / "r.csv"
    result = invoke([images, "--model", energy_model["onnx"], "-o", out, "--workers", "0"])
    assert result.exit_code == EXIT_OK, result.output
    files, outputs = _direct(energy_model["onnx"], images)
    thr = energy_model["threshold"]
    assert [r["label"] for r in read_results(out)] == _expected_labels(outputs, outputs.score >= thr)
    assert result.stderr.splitlines()[0] == (
        f"model: {energy_model['onnx']} (SiameseNet, 10 classes, 1x28x28; decides on energy >= {thr:g}, "
        "the model's calibrated threshold)"
    )
    assert "note: --threshold" not in result.stderr


def test_an_msp_model_says_its_threshold_is_its_own(trained_digits, tmp_path_factory, images):
    from infer_testing import cached_digits_onnx

    onnx_model = cached_digits_onnx(tmp_path_factory, trained_digits)
    result = invoke([images, "--model", onnx_model, "--workers", "0"])
    assert result.exit_code == EXIT_OK, result.output
    assert result.stderr.splitlines()[0] == (
        f"model: {onnx_model} (SiameseNet, 10 classes, 1x28x28; decides on msp >= 0.999, the model's threshold)"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threshold", "0.999", "--score-threshold", "4.0"],
         "error: give --threshold (on the top softmax probability) or --score-threshold (on the model's own score), not both"),
        (["--threshold", "4.4"],
         "error: --threshold must be a number in (0, 1), got 4.4 (--threshold is on the top softmax probability; "
         "use --score-threshold for the model's own score)"),
        (["--threshold", "-0.5"], "error: --threshold must be a number in (0, 1), got -0.5"),
        (["--threshold", "nan"], "error: --threshold must be a number in (0, 1), got nan"),
        (["--score-threshold", "inf"], "error: --score-threshold must be a number in (-inf, inf), got inf"),
    ],
)
def test_bad_threshold_options_are_one_line_errors(energy_model, images, extra, message):
    result = invoke([images, "--model", energy_model["onnx"], *extra])
    assert result.exit_code == EXIT_ERROR == 2
    assert result.stderr.strip() == message or result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_score_threshold_is_checked_against_the_score_range(trained_digits, tmp_path_factory, images):
    """An msp model's own score is a probability: --score-threshold outside (0, 1) is refused."""
    from infer_testing import cached_digits_onnx

    onnx_model = cached_digits_onnx(tmp_path_factory, trained_digits)
    result = invoke([images, "--model", onnx_model, "--score-threshold", "4.4"])
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.strip() == "error: --score-threshold: threshold 4.4 is outside (0, 1), the range of the msp score"


def test_the_api_refuses_both_thresholds_and_out_of_range_values(energy_model):
    from osr_infer.errors import ParameterError

    with pytest.raises(ParameterError, match="not both"):
        InferenceModel(energy_model["onnx"], 0.9, score_threshold=3.0)
    with pytest.raises(ParameterError, match=r"^threshold: threshold 4.4 is outside \(0, 1\), the range of the msp score$"):
        InferenceModel(energy_model["onnx"], 4.4)
    model = InferenceModel(energy_model["onnx"], score_threshold=-1e6)  # energy is unbounded
    assert (model.decision_score, model.threshold, model.decides_on_probs) == ("energy", -1e6, False)


def test_metrics_are_measured_on_the_decision_quantity(energy_model):
    """The report's metrics describe the labels the run gave: with --threshold, msp at that threshold."""
    from osr_infer.decode import DecodePool
    from osr_infer.pipeline import run_inference
    from osr_infer.report import run_metrics
    from osr_infer.sources import resolve_sources
    from osr_infer.spec import UNKNOWN

    for kwargs, name in ((dict(threshold=0.9), "msp"), ({}, "energy")):
        model = InferenceModel(energy_model["onnx"], **kwargs)
        sources = resolve_sources(["digits"], [], Path("unused"), model.contract, model.spec, model.class_names)
        with DecodePool(model.contract, 0) as pool:
            run = run_inference(sources, model, pool)
        p, labels = run.predictions, run.true_labels()
        values = p.probability if name == "msp" else p.score
        np.testing.assert_array_equal(p.known, values >= model.threshold)
        assert 0 < p.known.sum() < len(p)
        metrics = run_metrics(run)["digits"]
        assert metrics["decision"] == f"{name} >= {model.threshold:g}"
        assert metrics["known_acceptance"] == pytest.approx(np.mean(values[labels >= 0] >= model.threshold))
        assert metrics["unknown_rejection"] == pytest.approx(np.mean(values[labels == UNKNOWN] < model.threshold))


# --- --parity compares the run's own decisions ---------------------------------------------------------


def test_parity_with_threshold_compares_msp_decisions(energy_model, images):
    result = invoke([images, "--model", energy_model["onnx"], "--threshold", "0.999", "--parity", energy_model["checkpoint"]])
    assert result.exit_code == EXIT_OK, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith(("[I]", "[E]"))]
    assert lines[0].endswith("atol 0.0001, decision msp >= 0.999")
    assert any("decision : 60/60 agree at msp >= 0.999" in line for line in lines)
    assert lines[-1].startswith("[I] PASSED | parity ONNX Runtime vs PyTorch")


def test_parity_decision_check_follows_the_decision_quantity(energy_model):
    """Tamper with one image's probabilities only: a flip of max(probs) across 0.999 is a decision
    disagreement when the run decides on msp, and none when it decides on the energy score."""
    from osr_export.infer_parity import ParityCheck

    images, _ = digit_images(8, seed=2)
    found = {}
    for kwargs in (dict(threshold=MSP_THRESHOLD), {}):
        model = InferenceModel(energy_model["onnx"], **kwargs)
        check = ParityCheck(energy_model["checkpoint"], model, ["digits"])
        x = model.contract.normalize(images)
        outputs = model.run(x)
        low = int(np.argmin(outputs.probs.max(axis=1)))
        assert outputs.probs[low].max() < MSP_THRESHOLD
        probs = outputs.probs.copy()
        probs[low] = 0.0
        probs[low, int(outputs.logits[low].argmax())] = 1.0  # msp 1.0 >= 0.999; logits and score untouched
        check.observe(x, ModelOutputs(outputs.logits, probs, outputs.score), np.zeros(len(x), dtype=np.int32))
        stats = check.sources[0].stats
        found[model.decision_score] = stats["decision_disagree"] + stats["near_threshold_disagree"]
        assert "probs" in check.sources[0].failures(check.atol)  # the tampering itself is caught either way
    assert found == {"msp": 1, "energy": 0}


def test_threshold_reads_the_probabilities_at_the_models_fitted_temperature(energy_model, images, tmp_path):
    """The best recipe fits a softmax temperature so that the card's rule stays usable on an
    outlier-exposed model; ``--threshold`` is then on ``max(softmax(logits / T))``, and says so."""
    from osr_train.checkpoint import load_checkpoint, save_checkpoint

    model, spec, record = load_checkpoint(energy_model["checkpoint"])
    fit = {"method": "msp_target_tpr", "msp_threshold": 0.999, "target_tpr": 0.98, "temperature": 0.5}
    spec = spec.replace(temperature=0.5, calibration={**spec.calibration, "temperature": fit})
    folder = tmp_path / "tempered"
    folder.mkdir()
    onnx_path = export_onnx(save_checkpoint(folder / "model.pt", model, spec, record), folder / "model.onnx")
    files, outputs = _direct(onnx_path, images)
    z = outputs.logits / 0.5
    tempered = np.exp(z - z.max(1, keepdims=True))
    tempered = (tempered / tempered.sum(1, keepdims=True)).max(1)
    np.testing.assert_allclose(outputs.probs.max(1), tempered, atol=1e-6)
    p = round(float(np.median(tempered)), 4)
    out = tmp_path / "r.csv"
    result = invoke([images, "--model", onnx_path, "--threshold", str(p), "-o", out, "--workers", "0"])
    assert result.exit_code == EXIT_OK, result.output
    labels = [r["label"] for r in read_results(out)]
    assert labels == _expected_labels(outputs, tempered >= p)
    z1 = np.exp(outputs.logits - outputs.logits.max(1, keepdims=True))
    assert labels != _expected_labels(outputs, (z1 / z1.sum(1, keepdims=True)).max(1) >= p)  # not the plain softmax
    assert ("probabilities are softmax(logits / 0.5), its temperature, fitted in training so that msp >= 0.999 "
            "accepts 98% of validation knowns") in " ".join(result.stderr.split())
