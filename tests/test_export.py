"""osr-export end to end: the files, their metadata, parity with PyTorch, refusal of bad exports, INT8.

One export of the briefly trained digits model (``--format all --quantize int8``) is shared by
the module; the tests then check the written files independently of the exporter's own report.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import write_fake_mnist
from osr_infer.data.mnist import MNIST_CLASSES
from osr_infer.spec import DatasetSpec
from export_testing import resave, run_export, write_cifar_jpegs, write_cifar_pickle
from osr_infer.metadata import TORCHSCRIPT_EXTRA_FILE, ModelMetadata
from osr_export.source import scored_from_checkpoint
from osr_train.checkpoint import file_sha256, load_checkpoint
from osr_infer.data import load_cifar10, load_mnist
from osr_infer.data.cifar import load_cifar10_test
from osr_infer.data.digits import load_digits_open_set
from osr_infer.preprocess import PREPROCESSING, find_images, load_image

ATOL = 1e-4
BATCHES = (1, 7, 1024)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_digits) -> dict:
    out = tmp_path_factory.mktemp("export-all")
    report = out / "report.json"
    result = run_export(trained_digits / "model.pt", "--format", "all", "--quantize", "int8", "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    return {"out": out, "output": result.output, "report": json.loads(report.read_text()), "checkpoint": trained_digits / "model.pt"}


@pytest.fixture(scope="module")
def pytorch(exported):
    scored, spec, _ = scored_from_checkpoint(exported["checkpoint"])
    return scored, spec


def _ort(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torchscript(path: Path):
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream, still the format asked for
        module = torch.jit.load(str(path), _extra_files=extra)
    return module, extra[TORCHSCRIPT_EXTRA_FILE]


def _outputs(kind: str, model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind == "onnx":
        return tuple(model.run(["logits", "probs", "score"], {"input": x}))  # type: ignore[return-value]
    with torch.inference_mode():
        return tuple(t.numpy() for t in model(torch.from_numpy(x)))  # type: ignore[return-value]


# --- the files ------------------------------------------------------------------------------


def test_format_all_writes_both_files_and_nothing_else(exported):
    names = sorted(p.name for p in exported["out"].iterdir())
    assert names == ["model.int8.onnx", "model.onnx", "model.torchscript.pt", "report.json"]  # no temp or .onnx.data file
    assert "PASS onnx" in exported["output"] and "PASS torchscript" in exported["output"]
    assert exported["report"]["passed"] and [f["format"] for f in exported["report"]["formats"]] == ["onnx", "torchscript"]


def test_onnx_is_one_valid_file_at_opset_18_with_a_dynamic_batch_axis(exported):
    path = exported["out"] / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits", "probs", "score"]
    for tensor in list(model.graph.input) + list(model.graph.output):
        assert tensor.type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_runs_at_batch_1_7_1024(exported, kind):
    model = _ort(exported["out"] / "model.onnx") if kind == "onnx" else _torchscript(exported["out"] / "model.torchscript.pt")[0]
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        x = PREPROCESSING.normalize(rng.integers(0, 256, size=(batch, 28, 28), dtype=np.uint8))
        logits, probs, score = _outputs(kind, model, x)
        assert logits.shape == (batch, 10) and probs.shape == (batch, 10) and score.shape == (batch,)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(score, probs.max(1), atol=1e-6)  # the checkpoint's score is msp


def test_metadata_is_readable_with_onnxruntime_and_torch_jit_load(exported):
    _, spec, _ = load_checkpoint(exported["checkpoint"])
    props = _ort(exported["out"] / "model.onnx").get_modelmeta().custom_metadata_map
    assert json.loads(props["osr.threshold"]) == spec.threshold
    assert json.loads(props["osr.preprocessing"]) == PREPROCESSING.to_dict()
    assert json.loads(props["osr.dataset"])["reference"] == "digits" and json.loads(props["osr.unknown_label"]) == -1
    from_onnx = ModelMetadata.from_props(props)
    _, text = _torchscript(exported["out"] / "model.torchscript.pt")
    from_torchscript = ModelMetadata.from_json(text)
    for meta in (from_onnx, from_torchscript):
        assert meta.threshold == spec.threshold and meta.score == "msp"
        assert meta.contract == PREPROCESSING and meta.contract.to_dict() == PREPROCESSING.to_dict()
        assert meta.class_names == tuple(str(d) for d in range(10)) and meta.input_shape == ["N", 1, 28, 28]
        assert meta.checkpoint_sha256 == file_sha256(exported["checkpoint"])
        assert meta.spec.architecture == "SiameseNet" and meta.spec.dataset.reference == "digits" and meta.quantization is None
        assert meta.spec == spec  # the checkpoint's spec, whole, travels with the export
    assert from_onnx.to_dict() == from_torchscript.to_dict()


# --- parity with PyTorch on MNIST-format and CIFAR-format inputs ----------------------------


def _assert_parity(exported, pytorch, images: np.ndarray, *, band: float = 1e-5) -> dict:
    """Logits within 1e-4, identical argmax, identical accept/reject decisions.

    Decisions are compared where PyTorch's score is more than ``band`` from the threshold;
    closer than that, float32 noise in PyTorch itself decides, so those are only counted.
    """
    scored, spec = pytorch
    threshold = spec.threshold
    x = PREPROCESSING.normalize(images)
    ref = _outputs("torchscript", scored, x)  # the eager module, called like a script module
    near = np.abs(ref[2] - threshold) <= band
    checked = {}
    for kind, model in (("onnx", _ort(exported["out"] / "model.onnx")), ("torchscript", _torchscript(exported["out"] / "model.torchscript.pt")[0])):
        got = _outputs(kind, model, x)
        assert np.abs(got[0] - ref[0]).max() <= ATOL, kind
        assert np.abs(got[1] - ref[1]).max() <= ATOL, kind
        assert np.array_equal(got[0].argmax(1), ref[0].argmax(1)), kind
        same = (got[2] >= threshold) == (ref[2] >= threshold)
        assert same[~near].all(), f"{kind}: {(~same[~near]).sum()} decisions differ"
        checked[kind] = int(near.sum())
    return checked


def test_parity_on_mnist_format_files(exported, pytorch, fake_mnist):
    for split in ("train", "test"):
        _assert_parity(exported, pytorch, load_mnist(fake_mnist, split).images)


@pytest.mark.parametrize("layout", ["pickle", "jpeg"])
def test_parity_on_cifar_format_files(exported, pytorch, tmp_path, layout):
    if layout == "pickle":
        images = load_cifar10(write_cifar_pickle(tmp_path, n=120)).images
    else:
        images = load_cifar10_test(write_cifar_jpegs(tmp_path, n=60)).images
    _assert_parity(exported, pytorch, images)


def test_parity_on_the_bundled_digits_and_photos(exported, pytorch):
    data = load_digits_open_set(seed=0)
    _assert_parity(exported, pytorch, np.concatenate([data.test.images, data.unknown_test[0].images]))


@pytest.mark.slow
def test_parity_on_real_mnist_and_cifar10(exported, pytorch, shared_data):
    mnist = load_mnist(shared_data, "test").images
    jpegs = find_images(shared_data / "cifar10-test-jpeg")[::4]  # 2,500 of the 10,000: decoding takes a while
    cifar = np.stack([load_image(p) for p in jpegs])
    near = _assert_parity(exported, pytorch, np.concatenate([mnist, cifar]))
    assert near["onnx"] < 20  # a handful at most sit within 1e-5 of the threshold


# --- the exporter's own verification on MNIST / CIFAR probes, and --threshold ----------------


def test_threshold_override_and_a_full_mnist_cifar_probe(tmp_path, trained_digits):
    """A checkpoint trained on 'mnist' is probed with MNIST test + CIFAR-10 from --data-dir."""
    checkpoint = resave(trained_digits / "model.pt", tmp_path / "ckpt" / "model.pt", dataset=DatasetSpec("mnist", all_classes=MNIST_CLASSES))
    data = tmp_path / "data"
    write_fake_mnist(data, n_train=60, n_test=50)
    write_cifar_pickle(data, n=70)
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run_export(checkpoint, "--format", "onnx", "--score-threshold", "0.9", "--probe-size", "all",
                        "--data-dir", data, "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    props = _ort(out / "model.onnx").get_modelmeta().custom_metadata_map
    assert json.loads(props["osr.threshold"]) == 0.9
    assert ModelMetadata.from_props(props).spec.dataset.reference == "mnist"
    data_report = json.loads(report.read_text())
    assert data_report["threshold"] == 0.9 and data_report["probe"]["real_data"]
    assert [(s["name"], s["role"], s["n"]) for s in data_report["probe"]["sources"]] == [
        ("mnist-test", "known", 50), ("cifar10-test", "unknown", 70)
    ]
    rows = data_report["formats"][0]["rows"]
    assert {r["batch"] for r in rows} == {1, 120} and all(r["decision_disagree"] == 0 for r in rows)


@pytest.mark.slow
def test_exporter_report_on_real_mnist_and_cifar10(tmp_path, trained_digits, shared_data):
    checkpoint = resave(trained_digits / "model.pt", tmp_path / "ckpt" / "model.pt", dataset=DatasetSpec("mnist", all_classes=MNIST_CLASSES))
    report = tmp_path / "report.json"
    result = run_export(checkpoint, "--format", "torchscript", "--probe-size", "2000", "--data-dir", shared_data,
                        "--out", tmp_path / "out", "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert [(s["name"], s["n"]) for s in data["probe"]["sources"]] == [("mnist-test", 1000), ("cifar10-test", 1000)]
    assert all(r["decision_disagree"] == 0 and r["argmax_disagree"] == 0 for r in data["formats"][0]["rows"])


# --- corrupted exports are refused, and nothing is written -----------------------------------


def test_perturbed_onnx_weights_are_refused_and_nothing_is_written(tmp_path, trained_digits, monkeypatch):
    from osr_export import onnx_export

    real = onnx_export.to_onnx_model

    def corrupted(scored, metadata, opset=18):
        model = real(scored, metadata, opset)
        bias = next(t for t in model.graph.initializer if t.name.endswith("fc3.bias"))
        values = onnx.numpy_helper.to_array(bias) + np.float32(3e-4)  # 3x the tolerance: small, but wrong
        bias.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), bias.name))
        return model

    monkeypatch.setattr(onnx_export, "to_onnx_model", corrupted)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"previous export")
    result = run_export(trained_digits / "model.pt", "--format", "all", "--out", out, "--probe-size", "256")
    assert result.exit_code == 1, result.output
    assert "FAIL onnx" in result.output and "PASS torchscript" in result.output
    assert "error: verification failed" in result.output
    # all or nothing: the passing TorchScript file is not written either, the old file is untouched
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert (out / "model.onnx").read_bytes() == b"previous export"


def test_perturbed_torchscript_weights_are_refused(tmp_path, trained_digits, monkeypatch):
    import copy

    from osr_export import torchscript_export

    real = torchscript_export.to_torchscript

    def corrupted(scored, metadata):
        broken = copy.deepcopy(scored)
        with torch.no_grad():
            next(broken.parameters()).mul_(1.01)
        return real(broken, metadata)

    monkeypatch.setattr(torchscript_export, "to_torchscript", corrupted)
    result = run_export(trained_digits / "model.pt", "--format", "torchscript", "--out", tmp_path / "out", "--probe-size", "128")
    assert result.exit_code == 1, result.output
    assert "FAIL torchscript" in result.output
    assert not (tmp_path / "out").exists()  # not even the folder it would have created


# --- INT8 ------------------------------------------------------------------------------------


def test_int8_model_runs_with_metadata_and_agrees_with_fp32(exported):
    path = exported["out"] / "model.int8.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert path.stat().st_size < 0.5 * (exported["out"] / "model.onnx").stat().st_size
    session = _ort(path)
    meta = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    fp32_meta = ModelMetadata.from_props(_ort(exported["out"] / "model.onnx").get_modelmeta().custom_metadata_map)
    assert meta.quantization is not None and meta.quantization["format"] == "QDQ"
    assert {k: v for k, v in meta.to_dict().items() if k != "quantization"} == fp32_meta.to_dict()
    for batch in BATCHES:
        logits, probs, score = _outputs("onnx", session, np.zeros((batch, 1, 28, 28), np.float32))
        assert logits.shape == (batch, 10) and score.shape == (batch,)

    data = load_digits_open_set(seed=0)  # the test split: calibration used the validation split
    x = PREPROCESSING.normalize(np.concatenate([data.test.images, data.unknown_test[0].images]))
    fp32 = _outputs("onnx", _ort(exported["out"] / "model.onnx"), x)
    int8 = _outputs("onnx", session, x)
    assert np.mean(fp32[0].argmax(1) == int8[0].argmax(1)) >= 0.95
    threshold = meta.threshold
    assert np.mean((fp32[2] >= threshold) == (int8[2] >= threshold)) >= 0.95
    labels = data.test.labels
    n = len(labels)
    assert np.mean(int8[0][:n].argmax(1) == labels) >= np.mean(fp32[0][:n].argmax(1) == labels) - 0.03
    int8_report = exported["report"]["int8"]
    assert int8_report["passed"] and int8_report["open_set_agreement"] >= 0.95
