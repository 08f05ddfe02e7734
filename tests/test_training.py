"""A tiny end-to-end run that learns, its artefacts, Ctrl-C, and the CLI's errors."""

import json

import pytest
import torch
from typer.testing import CliRunner

from osr_train.checkpoint import load_checkpoint
from osr_train.cli import app
from osr_train.pipeline import TrainingFailed, train_command
from osr_train.training import Trainer

runner = CliRunner()


def test_training_learns_and_writes_artefacts(trained_digits):
    out = trained_digits
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["closed_set_accuracy"] > 0.8  # chance is 0.1
    assert metrics["n_known"] == 360 and metrics["n_unknown"] == 500
    for key in ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    history = json.loads((out / "history.json").read_text())
    assert [h["stage"] for h in history] == ["pretrain"] * 3 + ["finetune"] * 12
    assert history[-1]["val_accuracy"] > history[3]["val_accuracy"]
    for png in ("curves.png", "confusion_10.png", "confusion_11.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "checkpoint.pt").exists()  # superseded by model.pt


def test_checkpoint_loads_with_weights_only(trained_digits):
    payload = torch.load(trained_digits / "model.pt", weights_only=True)
    config = payload["config"]
    json.dumps(config)  # JSON-serialisable
    assert config["architecture"] == "SiameseNet" and config["threshold"] == 0.999
    assert config["preprocessing"]["mean"] == 0.5 and config["class_names"] == [str(d) for d in range(10)]
    assert {"torch", "osr_toolkit"} <= set(config["versions"])
    model, _ = load_checkpoint(trained_digits / "model.pt")
    assert not model.training


def test_ctrl_c_keeps_last_complete_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Trainer._validate_ce

    def interrupt_on_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_validate_ce", interrupt_on_second_epoch)
    with pytest.raises(TrainingFailed, match=r"train epoch 1\) is .*checkpoint\.pt") as info:
        train_command("baseline", dataset="digits", epochs=5, out=tmp_path)
    assert info.value.exit_code == 130
    _, config = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (config["stage"], config["epoch"], config["complete"]) == ("train", 1, False)
    assert not (tmp_path / "model.pt").exists()


def test_missing_data_dir_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["baseline", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "MNIST not found" in result.output and "--dataset digits" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "outside (0, 1)"),
    (["--device", "cuda"], "CUDA"),
])
def test_bad_options_fail_clearly(tmp_path, args, message):
    if message == "CUDA" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = runner.invoke(app, ["baseline", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path), *args])
    assert result.exit_code != 0 and message in result.output


def test_trains_on_mnist_format_files(fake_mnist, tmp_path):
    metrics = train_command("baseline", dataset="mnist", data_dir=fake_mnist, epochs=3, out=tmp_path, batch_size=16)
    assert metrics["dataset"] == "mnist" and metrics["n_known"] == 40
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 3 and history[-1]["val_accuracy"] > 0.5  # 100 train / 20 val images, 10 classes


def test_sample_images_writes_pngs_per_group(tmp_path):
    result = runner.invoke(app, ["sample-images", str(tmp_path), "--dataset", "digits", "--n", "12"])
    assert result.exit_code == 0, result.output
    knowns = [p for p in tmp_path.glob("[0-9]/*.png")]
    unknowns = list((tmp_path / "unknown-sample-photos").glob("*.png"))
    assert len(knowns) == 12 and len(unknowns) == 12
    from PIL import Image

    assert Image.open(knowns[0]).size == (28, 28)
