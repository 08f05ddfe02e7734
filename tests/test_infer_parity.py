"""osr-infer --parity (ONNX Runtime vs PyTorch on the same batches), and runs over the real data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from infer_testing import cached_digits_onnx, invoke, write_pngs
from osr_infer.errors import EXIT_OK, EXIT_PARITY_FAILED
from osr_infer.results import read_results
from osr_infer.preprocess import find_images


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, trained_digits) -> Path:
    return cached_digits_onnx(tmp_path_factory, trained_digits)


def _cifar_pickle(root: Path, n: int = 64) -> None:
    """A CIFAR-10 ``test_batch`` in the official pickle layout (random RGB images)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}, fh, protocol=2)


def _parity_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("[I]", "[E]", "[W]"))]


def test_parity_passes_on_mnist_and_cifar10_format_inputs(onnx_model, trained_digits, fake_mnist, tmp_path):
    _cifar_pickle(fake_mnist)
    out = tmp_path / "r.csv"
    args = ["mnist:test", "cifar10:test", "--data-dir", fake_mnist, "--model", onnx_model, "--parity", trained_digits / "model.pt", "-o", out]
    result = invoke([*args, "--batch-size", 16])
    assert result.exit_code == EXIT_OK, result.output
    lines = _parity_lines(result.stdout)
    assert "[I]     PASSED | mnist:test | all outputs matched" in lines
    assert "[I]     PASSED | cifar10:test | all outputs matched" in lines
    assert lines[-1].startswith("[I] PASSED | parity ONNX Runtime vs PyTorch | 2 source(s), 104 images")
    assert any("logits   : max |Δ|" in line and "mean |Δ|" in line for line in lines)
    assert any("argmax   : 40/40 agree" in line for line in lines) and any("decision : 64/64 agree" in line for line in lines)
    assert len(read_results(out)) == 104


def test_parity_compares_the_same_batches_the_model_saw(onnx_model, trained_digits, fake_mnist):
    """The differences measured are the runtime's: PyTorch on the same arrays reproduces them."""
    from osr_infer.decode import DecodePool
    from osr_export.infer_parity import ParityCheck
    from osr_infer.pipeline import run_inference
    from osr_infer.session import InferenceModel
    from osr_infer.sources import resolve_sources

    model = InferenceModel(onnx_model)
    sources = resolve_sources(["mnist:test"], [], fake_mnist, model.contract, model.spec, model.class_names)
    check = ParityCheck(trained_digits / "model.pt", model, [s.name for s in sources])
    seen = []

    class Spy:
        def observe(self, x, outputs, source):
            seen.append((x.copy(), outputs.logits.copy()))

    with DecodePool(model.contract, 0) as pool:
        run_inference(sources, model, pool, batch_size=16, observers=[check, Spy()])
    assert [len(x) for x, _ in seen] == [16, 16, 8] and check.passed
    with torch.inference_mode():
        worst = max(float(np.abs(check.scored(torch.from_numpy(x))[0].numpy() - logits).max()) for x, logits in seen)
    assert check.sources[0].stats["max_abs_logits"] == pytest.approx(worst, rel=1e-6) and check.sources[0].n == 40


def test_parity_fails_against_a_different_checkpoint(onnx_model, trained_digits, digit_folder_small, tmp_path):
    """A model with other weights must be caught: exit 1, FAILED lines, and a warning why."""
    from osr_train.checkpoint import load_checkpoint, save_checkpoint

    model, spec, record = load_checkpoint(trained_digits / "model.pt")
    with torch.no_grad():
        model.fc3.bias += 0.01
    other = save_checkpoint(tmp_path / "other.pt", model, spec, record)
    assert load_checkpoint(other)[1] == spec  # the same model spec, other weights
    result = invoke([digit_folder_small, "--model", onnx_model, "--parity", other])
    assert result.exit_code == EXIT_PARITY_FAILED, result.output
    assert "is not the checkpoint model.onnx was exported from (sha256 differs)" in result.stderr
    lines = _parity_lines(result.stdout)
    assert any(line.startswith("[E]         logits") and line.endswith("FAILED") for line in lines)
    assert lines[-1].startswith("[E] FAILED | parity ONNX Runtime vs PyTorch | out of tolerance:")


def test_parity_tolerance_is_an_option(onnx_model, trained_digits, digit_folder_small):
    result = invoke([digit_folder_small, "--model", onnx_model, "--parity", trained_digits / "model.pt", "--atol", "1e-12"])
    assert result.exit_code == EXIT_PARITY_FAILED and "atol 1e-12" in result.stdout
    result = invoke([digit_folder_small, "--model", onnx_model, "--parity", trained_digits / "no.pt"])
    assert result.exit_code == 2 and "--parity: checkpoint not found" in result.stderr


@pytest.fixture(scope="module")
def digit_folder_small(tmp_path_factory) -> Path:
    from infer_testing import digit_images

    folder = tmp_path_factory.mktemp("few-digits")
    write_pngs(folder, digit_images(20)[0])
    return folder


# --- the real data sets ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_parity_on_real_mnist_and_cifar10(onnx_model, trained_digits, shared_data):
    """The check the issue asks for: mnist:test + cifar10:test (10,000 JPEGs) against PyTorch."""
    result = invoke(["mnist:test", "cifar10:test", "--data-dir", shared_data, "--model", onnx_model, "--parity", trained_digits / "model.pt"])
    assert result.exit_code == EXIT_OK, result.output
    lines = _parity_lines(result.stdout)
    assert "[I]     mnist:test (10,000 images)" in lines and "[I]     cifar10:test (10,000 images)" in lines
    assert lines[-1].startswith("[I] PASSED | parity ONNX Runtime vs PyTorch | 2 source(s), 20,000 images")


@pytest.mark.slow
@pytest.mark.shared_data
def test_cifar10_jpeg_folder_plus_mnist_pngs_all_classified(onnx_model, shared_data, tmp_path):
    """osr-infer <cifar10-test-jpeg> <MNIST PNGs>: every readable image classified, results complete."""
    from osr_infer.data import load_mnist

    mnist = load_mnist(shared_data, "test")
    pngs = write_pngs(tmp_path / "mnist-png", mnist.images[:1000])
    cifar = shared_data / "cifar10-test-jpeg"
    out = tmp_path / "results.csv"
    result = invoke([cifar, tmp_path / "mnist-png", "--model", onnx_model, "-o", out])
    assert result.exit_code == EXIT_OK, result.output
    rows = read_results(out)
    expected = [str(p) for p in find_images(cifar)] + [str(p) for p in pngs]
    assert len(expected) == 11_000 and [r["path"] for r in rows] == expected
    assert all(r["label"] in {*map(str, range(10)), "unknown"} and 0 < r["probability"] <= 1 for r in rows)
    assert "11,000 images classified" in result.stdout and f"results: {out} (11,000 rows)" in result.stdout
