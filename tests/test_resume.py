"""osr-train --resume (issue #12): an interrupted run continues from its last complete epoch and
ends with the model an uninterrupted run makes, bit for bit on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from osr_train.checkpoint import load_checkpoint
from conftest import train_model
from osr_infer.errors import ModelError, ParameterError, TrainingInterrupted
from osr_train.training import Trainer

pytestmark = pytest.mark.slow

ARGS = dict(model="siamese", dataset="digits", layout=False, pretrain_epochs=2, epochs=3, device="cpu", seed=3)


def _interrupt_after(monkeypatch, stage: str, epoch: int) -> None:
    original = Trainer._save_epoch

    def save_then_stop(self, s, e, *args, **kwargs):
        original(self, s, e, *args, **kwargs)
        if (s, e) == (stage, epoch):
            raise KeyboardInterrupt  # as Ctrl-C or a kill right after this epoch's checkpoint

    monkeypatch.setattr(Trainer, "_save_epoch", save_then_stop)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    train_model(out, **ARGS)
    return load_checkpoint(out / "model.pt")


@pytest.mark.parametrize("stage, epoch", [("pretrain", 1), ("finetune", 2)])
def test_a_resumed_run_ends_with_the_uninterrupted_model_bit_for_bit(uninterrupted, tmp_path, monkeypatch, stage, epoch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, stage, epoch)
        with pytest.raises(TrainingInterrupted, match="run the same command with `resume`"):
            train_model(out, **ARGS)
    assert (out / "checkpoint.pt").is_file() and not (out / "model.pt").exists()
    train_model(out, **ARGS, resume=True)
    model, spec, record = load_checkpoint(out / "model.pt")
    whole_model, whole_spec, whole_record = uninterrupted
    for (name, a), (_, b) in zip(model.state_dict().items(), whole_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert spec.threshold == whole_spec.threshold and spec.temperature == whole_spec.temperature
    assert record["epochs_trained"] == whole_record["epochs_trained"] == 5
    assert not (out / "checkpoint.pt").exists()


def test_a_resumed_run_with_the_rotation_task_ends_bit_for_bit(tmp_path, monkeypatch):
    """The rotation head is training-only (not in the model's weights) but shapes every step:
    its weights and its optimiser state travel in the resume state."""
    args = dict(ARGS, pretrain_epochs=1, epochs=3, rotation_weight=0.5)
    train_model(tmp_path / "whole", **args)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, "finetune", 2)
        with pytest.raises(TrainingInterrupted, match="`resume`"):
            train_model(out, **args)
    resume = torch.load(out / "checkpoint.pt", weights_only=True)["resume"]
    assert set(resume["rotation_head"]) == {"weight", "bias"}
    with pytest.raises(ParameterError, match="rotation_weight differ"):
        train_model(out, **ARGS, resume=True)
    train_model(out, **args, resume=True)
    whole, _, _ = load_checkpoint(tmp_path / "whole" / "model.pt")
    model, _, _ = load_checkpoint(out / "model.pt")
    for (name, a), (_, b) in zip(model.state_dict().items(), whole.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_other_options_and_a_missing_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(ModelError, match="nothing to resume"):
        train_model(out, **ARGS, resume=True)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, "pretrain", 1)
        with pytest.raises(TrainingInterrupted):
            train_model(out, **ARGS)
    with pytest.raises(ParameterError, match="other options \\(lr differ\\)"):
        train_model(out, **{**ARGS, "lr": 0.01}, resume=True)


def test_sigkill_mid_training_then_resume(uninterrupted, tmp_path):
    """kill -9 of osr-train: nothing of its process group survives, the earlier artefacts are
    intact, and --resume finishes with the uninterrupted model and no temp file left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("from an earlier run\n")
    exe = str(Path(sys.executable).with_name("osr-train"))
    args = [exe, "siamese", "--dataset", "digits", "--no-layout", "--pretrain-epochs", "2", "--epochs", "3",
            "--device", "cpu", "--seed", "3", "--out", str(out)]
    process = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(2)
    alive = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout.split("\n")
    assert not [line for line in alive if line.split() and line.split()[0] == str(process.pid) and "Z" not in line.split()[1]]
    assert (out / "metrics.json").read_text() == "from an earlier run\n"
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after" in done.stderr + done.stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file of the killed run
    model, _, _ = load_checkpoint(out / "model.pt")
    for (name, a), (_, b) in zip(model.state_dict().items(), uninterrupted[0].state_dict().items(), strict=True):
        assert torch.equal(a, b), name
