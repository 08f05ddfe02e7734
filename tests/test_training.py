"""A tiny end-to-end run that learns, its artefacts, Ctrl-C, and the CLI's errors."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from osr_infer.spec import UNKNOWN, ModelSpec
from osr_train.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint
from osr_train.cli import app
from osr_train.models import SiameseNet
from conftest import train_model
from osr_infer.errors import TrainingInterrupted
from osr_train.config import TrainConfig
from osr_train.training import Trainer

runner = CliRunner()
DIGITS = [str(d) for d in range(10)]


def test_training_learns_and_writes_artefacts(trained_digits):
    out = trained_digits
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["closed_set_accuracy"] > 0.8  # chance is 0.1
    assert metrics["n_known"] == 360 and metrics["n_unknown"] == 500
    for key in ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    # 10 classes; the open-set matrix adds the unknown row and column.
    assert len(metrics["confusion_matrix"]) == 10 and all(len(row) == 10 for row in metrics["confusion_matrix"])
    assert len(metrics["confusion_matrix_open_set"]) == 11 and all(len(row) == 11 for row in metrics["confusion_matrix_open_set"])
    assert sum(map(sum, metrics["confusion_matrix"])) == 360
    assert sum(map(sum, metrics["confusion_matrix_open_set"])) == 360 + 500
    history = json.loads((out / "history.json").read_text())
    assert [h["stage"] for h in history] == ["pretrain"] * 3 + ["finetune"] * 12
    assert history[-1]["val_accuracy"] > history[3]["val_accuracy"]
    for png in ("curves.png", "confusion.png", "confusion_open_set.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "checkpoint.pt").exists()  # superseded by model.pt


def test_checkpoint_loads_with_weights_only(trained_digits):
    payload = torch.load(trained_digits / "model.pt", weights_only=True)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION == 2
    spec, record = payload["spec"], payload["config"]
    json.dumps(spec, allow_nan=False)  # JSON-serialisable
    json.dumps(record, allow_nan=False)
    assert spec["architecture"] == "SiameseNet" and spec["threshold"] == 0.999
    assert spec["preprocessing"]["mean"] == [0.5] and spec["class_names"] == DIGITS
    assert spec["unknown_label"] == UNKNOWN == -1 and spec["schema_version"] == 3
    assert spec["temperature"] == 1.0  # the seed recipe keeps the plain softmax
    assert spec["dataset"]["reference"] == "digits" and spec["score"] == "msp"
    assert {"torch", "osr_toolkit"} <= set(record["versions"])
    model, loaded, loaded_record = load_checkpoint(trained_digits / "model.pt")
    assert not model.training and isinstance(model, SiameseNet)
    assert loaded == ModelSpec.from_dict(spec) and loaded.class_names == tuple(DIGITS)
    assert loaded_record == record
    assert (record["stage"], record["complete"], record["epochs_trained"]) == ("final", True, 15)
    assert (record["model"], record["recipe"]) == ("siamese", "seed")
    assert record["hyperparameters"]["epochs"] == 12 and record["hyperparameters"]["pretrain_epochs"] == 3
    fitted = record["fitted_scores"]["mahalanobis"]  # fitted on the training knowns for evaluation
    assert len(fitted["means"]) == 10 and len(fitted["precision"]) == len(fitted["precision"][0]) == 32


def test_ctrl_c_keeps_last_complete_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Trainer._validate_ce

    def interrupt_on_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_validate_ce", interrupt_on_second_epoch)
    with pytest.raises(TrainingInterrupted, match=r"train epoch 1\) is .*checkpoint\.pt"):
        train_model(tmp_path, model="baseline", recipe="seed", dataset="digits", epochs=5)
    _, spec, record = load_checkpoint(tmp_path / "checkpoint.pt")
    assert (record["stage"], record["epoch"], record["complete"]) == ("train", 1, False)
    assert spec.architecture == "ConvNet" and spec.dataset.reference == "digits"
    assert not (tmp_path / "model.pt").exists()


def test_missing_data_dir_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["baseline", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "MNIST not found" in result.output and "--dataset digits" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--score-threshold", "1.5"], "outside (0, 1)"),
    (["--device", "cuda"], "CUDA"),
    (["--lr", "nan"], "--lr must be a number in (0, 10], got nan"),
    (["--batch-size", "0"], "--batch-size must be an integer in [2, "),
    (["--rotation-weight", "-1"], "--rotation-weight must be a number in [0, 100], got -1"),
])
def test_bad_options_fail_clearly(tmp_path, args, message):
    if message == "CUDA" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = runner.invoke(app, ["baseline", "--recipe", "seed", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path), *args])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("make", [TrainConfig, TrainConfig.from_recipe], ids=["TrainConfig", "from_recipe"])
@pytest.mark.parametrize("field, value", [("lr", math.nan), ("margin", math.nan), ("batch_size", 0), ("rotation_weight", -0.5)])
def test_bad_hyperparameters_are_refused_with_one_line_naming_the_parameter(make, field, value):
    """Built in Python, a configuration names the parameter, never a command-line flag."""
    from osr_infer.errors import ParameterError

    with pytest.raises(ParameterError) as info:
        make(**{field: value})
    message = str(info.value)
    assert isinstance(info.value, ValueError) and info.value.parameter == field
    assert message.startswith(f"{field} must be ") and message.endswith(f"got {value!r}")
    assert "--" not in message and "\n" not in message


def test_trains_on_mnist_format_files(fake_mnist, tmp_path):
    metrics = train_model(tmp_path, model="baseline", recipe="seed", dataset="mnist", data_dir=fake_mnist, epochs=3, batch_size=16)
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


def test_threads_option_sets_torchs_threads_for_the_run_only(tmp_path):
    """--threads N trains on N threads (and says so); in-process, torch's count is put back after."""
    import torch
    from typer.testing import CliRunner

    from osr_train.cli import app

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    args = ["siamese", "--recipe", "seed", "--dataset", "digits", "--epochs", "1", "--pretrain-epochs", "0"]
    result = CliRunner().invoke(app, [*args, "--threads", str(want), "--out", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    assert f"{want} thread(s)" in result.output
    assert torch.get_num_threads() == before  # the library leaves the process's setting as it found it


@pytest.mark.slow
def test_contention_on_the_cores_is_pointed_out(tmp_path):
    """With the default thread count, osr-train points out when other processes keep the cores
    busy, since one thread per core then waits on them."""
    import multiprocessing
    import os
    import time

    import torch
    from typer.testing import CliRunner

    from conftest import missing
    from osr_train.cli import app

    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        missing(f"contention needs two cores or more; this process may run on {cores}")
    before = torch.get_num_threads()
    args = ["siamese", "--recipe", "seed", "--dataset", "digits", "--epochs", "1", "--pretrain-epochs", "0"]
    try:
        torch.set_num_threads(cores)
        hogs = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(cores - 1)]
        for hog in hogs:
            hog.start()
        time.sleep(1.0)  # spawned interpreters start spinning
        try:
            result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "busy")])
        finally:
            for hog in hogs:
                hog.terminate()
        assert result.exit_code == 0, result.output
        assert "note: other processes keep" in result.output and "--threads" in result.output
    finally:
        torch.set_num_threads(before)


def _spin() -> None:
    while True:
        pass


@pytest.mark.slow
def test_the_wide_network_trains_exports_with_batch_norm_folded_and_agrees_on_the_edge(tmp_path):
    """``--network wide`` end to end: the spec names the architecture, the checkpoint reloads it,
    and osr-export's own verification (ONNX Runtime against PyTorch) passes with batch norm."""
    from export_testing import run_export
    from osr_train.models import WideLeakySiameseNet

    out = tmp_path / "wide"
    result = runner.invoke(app, ["siamese", "--recipe", "seed", "--network", "wide", "--dataset", "digits",
                                 "--epochs", "2", "--pretrain-epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, spec, record = load_checkpoint(out / "model.pt")
    assert isinstance(model, WideLeakySiameseNet) and spec.architecture == "WideLeakySiameseNet"
    assert record["hyperparameters"]["network"] == "wide"
    running_means = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(running_means) == 3 and all(bool(m.abs().sum() > 0) for m in running_means)  # trained statistics
    exported = run_export(out / "model.pt", "--format", "onnx")
    assert exported.exit_code == 0, exported.output
    assert "PASS onnx" in exported.output and (out / "model.onnx").exists()


def test_an_unknown_network_is_refused_in_one_line(tmp_path):
    result = runner.invoke(app, ["siamese", "--network", "resnet", "--dataset", "digits", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "resnet" in result.output and "Traceback" not in result.output
