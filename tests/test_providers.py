"""Execution providers (#34, item 1): one registry, strict. A provider that is not here, or that
ONNX Runtime could not start, is one error line and exit 2; every run says where it ran."""

from __future__ import annotations

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
