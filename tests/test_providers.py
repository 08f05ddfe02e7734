"""Execution providers (#34, item 1): one registry, strict. A provider that is not here, or that
ONNX Runtime could not start, is one error line and exit 2; every run says where it ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osr_infer import Model, ParameterError
from osr_infer import providers
from osr_infer.providers import ResolvedProvider, check_started, resolve

OSR_INFER = str(Path(sys.executable).with_name("osr-infer"))


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "seven.png"
    canvas = np.zeros((28, 28), dtype=np.uint8)
    canvas[5:23, 13:16] = 255
    Image.fromarray(canvas).save(path)
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OSR_INFER, *args], capture_output=True, text=True)


def test_a_provider_that_is_not_here_is_one_line_and_exit_2(image, tmp_path):
    if "cuda" in providers.available():
        pytest.skip("this machine has CUDA: the provider is available")
    out = tmp_path / "rows.csv"
    done = _run(str(image), "--provider", "cuda", "--output", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --provider cuda is not available here (this ONNX Runtime offers "
        f"{', '.join(providers.available())}): it needs {providers.PROVIDERS['cuda'].install}"]
    assert not out.exists()  # nothing classified on the CPU behind the user's back
    with pytest.raises(ParameterError) as caught:
        Model.load(provider="cuda")
    assert caught.value.parameter == "provider"


def test_every_run_says_which_provider_ran(image):
    done = _run(str(image))
    assert done.returncode == 0, done.stderr
    assert "provider: cpu\n" in done.stderr
    auto = _run(str(image), "--provider", "auto")
    assert auto.returncode == 0, auto.stderr
    chosen = next(name for name in providers.AUTO_ORDER if name in providers.available())
    assert f"provider: {chosen} (auto: the best available here)" in auto.stderr
    assert Model.load(provider="auto").provider.name == chosen


@pytest.mark.parametrize(("args", "flag"), [(("--provider", "gpu"), "--provider"), (("--provider-option", "device"), "--provider-option"),
                                            (("--provider-option", "foo=1"), "--provider-option")])
def test_bad_provider_arguments_name_their_flag(image, args, flag):
    done = _run(str(image), *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), done.stderr


def test_a_silent_fallback_to_the_cpu_is_an_error():
    class FellBack:  # what ONNX Runtime's session reports when CUDA failed to start
        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

        def get_provider_options(self) -> dict:
            return {"CPUExecutionProvider": {}}

    with pytest.raises(ParameterError, match="could not start provider cuda"):
        check_started(FellBack(), ResolvedProvider("cuda", {}), "model.onnx")


def test_auto_takes_the_fastest_available(monkeypatch):
    monkeypatch.setattr(providers, "available", lambda: ["cpu", "cuda", "tensorrt"])
    assert resolve("auto").name == "tensorrt"
    monkeypatch.setattr(providers, "available", lambda: ["cpu"])
    chosen = resolve("auto", {"x": "1"})
    assert (chosen.name, chosen.automatic, chosen.options) == ("cpu", True, {"x": "1"})
    assert chosen.session_providers() == [("CPUExecutionProvider", {"x": "1"})]
    assert ResolvedProvider("cuda", {"device_id": "0"}).session_providers() == [("CUDAExecutionProvider", {"device_id": "0"}),
                                                                              "CPUExecutionProvider"]


def _rows(model: Model, source: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batches = list(model.predict_files(source, data_dir=data_dir, workers=0))
    return tuple(np.concatenate([getattr(b, f) for b in batches]) for f in ("known", "class_index", "score"))  # type: ignore[return-value]


def test_openvino_gives_the_cpu_providers_decisions_on_real_data(shared_data):
    """10,000 MNIST test digits and 10,000 CIFAR-10 JPEGs, the shipped model, f32 (the default):
    no decision flips, no top-class disagreement, scores within 1e-4."""
    if "openvino" not in providers.available():
        from conftest import missing

        missing("the openvino runtime is not installed (the [openvino] extra)")
    reference, openvino = Model.load(provider="cpu"), Model.load(provider="openvino")
    assert openvino.provider.options["INFERENCE_PRECISION_HINT"] == "f32" and not openvino.notes
    for source in ("mnist:test", "cifar10:test"):
        known, top, score = _rows(reference, source, shared_data)
        known_ov, top_ov, score_ov = _rows(openvino, source, shared_data)
        assert len(known) == 10_000
        assert int((known != known_ov).sum()) == 0, source
        assert int((top != top_ov).sum()) == 0, source
        assert float(np.abs(score - score_ov).max()) <= 1e-4, source


def test_tensorrt_caches_engines_per_model_versions_and_gpu_and_keeps_fp16_off(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(providers, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(providers, "gpu_identity", lambda device: f"NVIDIA-H100-80GB-HBM3-GPU-{device}")
    one, two = tmp_path / "one.onnx", tmp_path / "two.onnx"
    one.write_bytes(b"model one")
    two.write_bytes(b"model two")
    import onnxruntime

    trt = ResolvedProvider("tensorrt", dict(providers.PROVIDERS["tensorrt"].defaults))
    options = trt.for_model(one).options
    folder = Path(options["trt_engine_cache_path"])
    assert options["trt_engine_cache_enable"] == "True" and options["trt_timing_cache_path"] == str(folder)
    assert folder.parent == tmp_path / "cache" / "osr-toolkit" / "tensorrt"
    import hashlib

    assert folder.name == (f"{hashlib.sha256(b'model one').hexdigest()[:16]}-ort{onnxruntime.__version__}-trt10.3.0-NVIDIA-H100-80GB-HBM3-GPU-0")
    assert Path(trt.for_model(two).options["trt_engine_cache_path"]) != folder  # another model: another engine
    on_gpu_1 = ResolvedProvider("tensorrt", {"device_id": "1"}).for_model(one).options["trt_engine_cache_path"]
    assert on_gpu_1.endswith("GPU-1")  # another device: another engine
    assert options["trt_fp16_enable"] == "False" and trt.reduced_precision() is None  # FP16 only when asked
    asked = ResolvedProvider("tensorrt", {"trt_fp16_enable": "True", "trt_engine_cache_path": "/mine"}).for_model(one)
    assert asked.options["trt_engine_cache_path"] == "/mine" and asked.reduced_precision() == "trt_fp16_enable"
    assert ResolvedProvider("cpu", {}).for_model(one).options == {}


def test_verify_provider_reports_flips_and_gates_the_export(trained_digits, tmp_path, monkeypatch):
    """``osr-export --verify-provider openvino``: the probe on OpenVINO against the CPU provider,
    in the report; more flips than ``--max-flips`` fail the export (nothing written)."""
    from export_testing import run_export

    if "openvino" not in providers.available():
        from conftest import missing

        missing("the openvino runtime is not installed (the [openvino] extra)")
    out, report = tmp_path / "ok", tmp_path / "ok.json"
    result = run_export(trained_digits / "model.pt", "--format", "onnx", "--out", out, "--verify-provider", "openvino", "--report", report)
    assert result.exit_code == 0, result.output
    assert "PASS provider openvino with INFERENCE_PRECISION_HINT=f32: 0 decision flips" in result.output
    record = json.loads(report.read_text())
    (parity,) = record["providers"]
    assert parity["decision_flips"] == 0 and parity["max_abs_score_difference"] <= 1e-4
    assert [(g["name"], g["images"]) for g in parity["groups"]] == [(s["name"], s["n"]) for s in record["probe"]["sources"]]
    assert (out / "model.onnx").is_file()

    from osr_infer import provider_parity

    real = provider_parity.compare_provider

    def two_flips(*args, **kwargs):  # a provider that decides two probe images otherwise
        parity = real(*args, **kwargs)
        parity.groups[0] = provider_parity.GroupParity(parity.groups[0].name, parity.groups[0].images, 2, 3, 0.25)
        return parity

    monkeypatch.setattr(provider_parity, "compare_provider", two_flips)
    failed = run_export(trained_digits / "model.pt", "--format", "onnx", "--out", tmp_path / "no", "--verify-provider", "openvino")
    assert failed.exit_code == 1, failed.output
    assert "FAIL provider openvino" in failed.output and "2 decision flips" in failed.output
    assert not (tmp_path / "no").exists()  # nothing written
    allowed = run_export(trained_digits / "model.pt", "--format", "onnx", "--out", tmp_path / "yes", "--verify-provider", "openvino",
                         "--max-flips", "2")
    assert allowed.exit_code == 0 and (tmp_path / "yes" / "model.onnx").is_file(), allowed.output


def test_verify_provider_that_is_not_here_is_one_line_before_any_export(trained_digits, tmp_path):
    from export_testing import run_export

    if "cuda" in providers.available():
        pytest.skip("this machine has CUDA")
    result = run_export(trained_digits / "model.pt", "--format", "onnx", "--out", tmp_path / "x", "--verify-provider", "cuda")
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --verify-provider cuda is not available here")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_gpu_provider_parity_on_real_data(name, shared_data):
    """On a GPU (skipped elsewhere): the shipped model on CUDA or TensorRT (FP32) against the CPU
    provider, 10,000 MNIST test digits and 10,000 CIFAR-10 JPEGs: no decision flips."""
    if name not in providers.available():
        pytest.skip(f"no {name} provider here (a GPU machine runs it)")
    from osr_infer.provider_parity import compare_provider, source_inputs

    model = Model.load()
    x, groups = source_inputs(model, ["mnist:test", "cifar10:test"], shared_data)
    parity = compare_provider(model.path, x, name, groups=groups)
    print(parity.summary())
    assert parity.flips == 0, parity.summary()
