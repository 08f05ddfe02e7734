"""Every score x every format (ONNX, TorchScript, INT8) x two input shapes (1x28x28 grey, 3x32x32 RGB).

For each combination the checkpoint is re-scored (the fitted Mahalanobis statistics come from
training), given a threshold at the median validation score so that decisions go both ways,
exported by ``osr-export --format all --quantize int8`` (which verifies before writing), and
then checked here independently: each format against PyTorch on the test split, the INT8
graph's score path left in float, and ``osr-infer`` on PNG files against a direct run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from osr_infer.data.registry import open_set_source
from osr_infer.results import read_results
from osr_infer.scores import SCORES
from osr_train.checkpoint import load_checkpoint, save_checkpoint
from osr_train.models import classifier_of
from osr_train.scoring import ScoredClassifier

pytestmark = pytest.mark.slow

N_IMAGES = 96


@pytest.fixture(scope="module", params=["1x28x28", "3x32x32"])
def base(request, trained_digits, trained_rgb) -> Path:
    return trained_digits / "model.pt" if request.param == "1x28x28" else trained_rgb[1] / "model.pt"


@pytest.fixture(scope="module", params=list(SCORES))
def exported(request, base, tmp_path_factory) -> dict:
    """The checkpoint re-scored with one score, exported to every format; images to check on."""
    model, spec, record = load_checkpoint(base)
    score = request.param
    params = (record.get("fitted_scores") or {}).get(score, {}) if SCORES[score].fitted else {}
    # The msp combinations carry a fitted softmax temperature: every format must apply it.
    temperature = 2.0 if score == "msp" else 1.0  # above 1: the median msp stays below 1
    scored = ScoredClassifier(classifier_of(model), score, params, temperature).eval()
    _, val, test, _ = open_set_source(spec.dataset).known_splits(spec.preprocessing, progress=False)
    with torch.inference_mode():
        val_scores = scored(torch.from_numpy(spec.preprocessing.normalize(val.images)))[2].numpy()
    spec = spec.replace(score=score, score_params=params, threshold=float(np.median(val_scores)), temperature=temperature)
    folder = tmp_path_factory.mktemp(f"matrix-{spec.preprocessing.channels}-{score}")
    checkpoint = save_checkpoint(folder / "model.pt", model, spec, record)

    from osr_export.cli import app

    result = CliRunner().invoke(app, [str(checkpoint), "--format", "all", "--quantize", "int8", "--int8-min-agreement", "0.8"])
    assert result.exit_code == 0, result.output
    assert "PASS onnx" in result.output and "PASS torchscript" in result.output and "PASS int8" in result.output
    images = test.images[:N_IMAGES]
    with torch.inference_mode():
        reference = [t.numpy() for t in scored(torch.from_numpy(spec.preprocessing.normalize(images)))]
    return {"folder": folder, "spec": spec, "images": images, "reference": reference}


def run_format(exported: dict, fmt: str) -> list[np.ndarray]:
    x = exported["spec"].preprocessing.normalize(exported["images"])
    folder = exported["folder"]
    if fmt == "torchscript":
        module = torch.jit.load(str(folder / "model.torchscript.pt"))
        with torch.inference_mode():
            return [t.numpy() for t in module(torch.from_numpy(x))]
    name = "model.onnx" if fmt == "onnx" else "model.int8.onnx"
    session = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
    return session.run(["logits", "probs", "score"], {"input": x})


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "int8"])
def test_each_format_decides_like_pytorch(exported, fmt):
    logits, probs, score = run_format(exported, fmt)
    ref_logits, _, ref_score = exported["reference"]
    threshold = exported["spec"].threshold
    spec = exported["spec"]
    assert logits.shape == (N_IMAGES, spec.n_classes) and score.shape == (N_IMAGES,)
    decisions, ref_decisions = score >= threshold, ref_score >= threshold
    assert 0 < ref_decisions.sum() < N_IMAGES or N_IMAGES < 10  # the threshold splits the images
    if fmt == "int8":
        assert np.mean(decisions == ref_decisions) >= 0.8
        assert np.mean(logits.argmax(1) == ref_logits.argmax(1)) >= 0.9
    else:
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4)
        z = logits / spec.temperature  # the probabilities are the spec's: softmax at its temperature
        expected = np.exp(z - z.max(1, keepdims=True))
        np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-5)
        near = np.abs(ref_score - threshold) <= 1e-4 + 1e-5 * np.abs(ref_score)
        assert np.array_equal(decisions[~near], ref_decisions[~near])


def test_int8_keeps_the_whole_score_path_in_float(exported):
    """No node computing the score from the logits or the embedding feeds a QuantizeLinear."""
    model = onnx.load(str(exported["folder"] / "model.int8.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert "osr.quantization" in meta
    producers = {out: node for node in model.graph.node for out in node.output}
    score_path, stack = set(), [producers["score"]]
    while stack:  # every node upstream of the score output, up to the first dequantised tensor
        node = stack.pop()
        if node.name in score_path or node.op_type == "DequantizeLinear":
            continue
        score_path.add(node.name)
        stack.extend(producers[i] for i in node.input if i in producers)
    assert score_path
    quantized = [n.name for n in model.graph.node if n.name in score_path and n.op_type == "QuantizeLinear"]
    assert not quantized
    ops = {n.op_type for n in model.graph.node if n.name in score_path}
    if exported["spec"].score == "mahalanobis":
        assert {"Sub", "MatMul"} <= ops or {"Sub", "Einsum"} <= ops, ops


@pytest.mark.parametrize("fmt", ["onnx", "int8"])
def test_osr_infer_rows_equal_a_direct_run(exported, fmt, tmp_path):
    from osr_infer.cli import app

    images = exported["images"][:24]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")
    model = exported["folder"] / ("model.onnx" if fmt == "onnx" else "model.int8.onnx")
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(app, [str(tmp_path), "--model", str(model), "--output", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    rows = read_results(out)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits, _, score = session.run(["logits", "probs", "score"], {"input": exported["spec"].preprocessing.normalize(images)})
    names = [*exported["spec"].class_names, "unknown"]
    expected = [names[int(k)] if s >= exported["spec"].threshold else "unknown" for k, s in zip(logits.argmax(1), score, strict=True)]
    assert [r["label"] for r in rows] == expected
    np.testing.assert_allclose([r["score"] for r in rows], score, rtol=1e-6, atol=1e-6)
