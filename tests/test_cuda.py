"""The CUDA training path (runs only where PyTorch sees a GPU; skipped elsewhere, as in CI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from osr_infer.data import load_open_set_data
from osr_train.checkpoint import load_checkpoint
from osr_train.evaluation import run_model
from osr_train.models import classifier_of
from conftest import train_model
from osr_train.training import Normalizer, full_fp32

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cuda_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda")
    # The same settings as conftest's trained_digits (seed recipe), which trains on the CPU in CI.
    train_model(out, recipe="seed", model="siamese", dataset="digits", epochs=12, pretrain_epochs=3, device="cuda")
    return out


@needs_cuda
def test_training_on_cuda_learns_and_saves_cpu_tensors(cuda_trained):
    metrics = json.loads((cuda_trained / "metrics.json").read_text())
    assert metrics["closed_set_accuracy"] > 0.8  # chance is 0.1; the CPU test asks the same
    assert metrics["training_device"] == torch.cuda.get_device_name(0)  # which card gave the figures
    payload = torch.load(cuda_trained / "model.pt", weights_only=True)  # no map_location needed
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values())
    # The statistics of the fitted scores are plain (JSON) numbers, not GPU tensors.
    json.dumps(payload["config"]["fitted_scores"], allow_nan=False)


@needs_cuda
def test_evaluation_on_cuda_reports_what_the_cpu_computes(cuda_trained):
    """Metrics and the calibrated threshold come from GPU scores; the edge computes them in fp32 on a CPU."""
    model, spec, record = load_checkpoint(cuda_trained / "model.pt")
    test = load_open_set_data(spec.dataset, spec.preprocessing, progress=False).test
    normalize, fitted = Normalizer(spec.preprocessing), record["fitted_scores"]
    cpu = run_model(classifier_of(model), test, normalize, "cpu", fitted)
    gpu = run_model(classifier_of(model.to("cuda")), test, normalize, "cuda", fitted)
    np.testing.assert_allclose(gpu.logits, cpu.logits, atol=1e-4, rtol=1e-4)
    assert np.array_equal(gpu.pred, cpu.pred)
    assert set(gpu.scores) == set(cpu.scores) == {"msp", "max_logit", "energy", "kl_uniform", "mahalanobis", "prototype", "kl_prototype", "openmax"}
    np.testing.assert_allclose(gpu.scores["msp"], cpu.scores["msp"], atol=1e-5)
    np.testing.assert_allclose(gpu.scores["energy"], cpu.scores["energy"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(gpu.scores["mahalanobis"], cpu.scores["mahalanobis"], atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(gpu.scores["prototype"], cpu.scores["prototype"], atol=1e-4)  # centres fitted on the GPU-side features
    np.testing.assert_allclose(gpu.scores["kl_prototype"], cpu.scores["kl_prototype"], atol=1e-3)
    np.testing.assert_allclose(gpu.scores["openmax"], cpu.scores["openmax"], atol=1e-3)


def test_full_fp32_turns_tf32_off_inside_and_restores_it():
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with full_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with pytest.raises(RuntimeError), full_fp32():
            raise RuntimeError("restored on error too")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's defaults
        torch.backends.cuda.matmul.allow_tf32 = False
