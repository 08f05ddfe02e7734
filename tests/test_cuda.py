"""The CUDA training path (runs only where PyTorch sees a GPU; skipped elsewhere, as in CI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from osr_train.checkpoint import load_checkpoint
from osr_train.data import load_open_set_data
from osr_train.pipeline import train_command
from osr_train.training import Normalizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cuda_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda")
    train_command("siamese", dataset="digits", epochs=8, pretrain_epochs=2, device="cuda", out=out)
    return out


def test_training_on_cuda_learns_and_records_it(cuda_trained):
    metrics = json.loads((cuda_trained / "metrics.json").read_text())
    assert metrics["closed_set_accuracy"] > 0.9
    payload = torch.load(cuda_trained / "model.pt", weights_only=True)  # no map_location: CPU tensors
    assert all(t.device.type == "cpu" for t in payload["state_dict"].values())


def test_a_cuda_trained_checkpoint_gives_the_same_logits_on_cpu_and_gpu(cuda_trained):
    model, config = load_checkpoint(cuda_trained / "model.pt")
    test = load_open_set_data("digits", seed=config.get("seed", 0), progress=False).test
    x = Normalizer()(torch.from_numpy(test.images))
    with torch.inference_mode():
        cpu = model(x)
        gpu = model.to("cuda")(x.to("cuda")).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4, rtol=1e-4), (cpu - gpu).abs().max()
    assert np.mean(cpu.argmax(1).numpy() == gpu.argmax(1).numpy()) == 1.0
