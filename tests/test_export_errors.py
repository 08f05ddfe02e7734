"""osr-export refuses bad input with one ``error: ...`` line, a non-zero exit and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from osr_infer.data.mnist import MNIST_CLASSES
from osr_infer.spec import DatasetSpec
from export_testing import resave, run_export


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def _checkpoint_cases(tmp_path: Path, trained: Path) -> dict[str, tuple[Path, list[str], tuple[str, ...]]]:
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    intermediate = resave(trained / "model.pt", tmp_path / "run" / "checkpoint.pt", config=dict(complete=False, stage="finetune", epoch=3))
    return {
        "missing": (tmp_path / "nope" / "model.pt", [], ("checkpoint not found",)),
        "text file": (text, [], ("not a loadable PyTorch checkpoint",)),
        "foreign .pt": (foreign, [], ("not an osr-toolkit checkpoint",)),
        "intermediate": (intermediate, [], ("intermediate checkpoint", "--resume, then export its model.pt")),
        "threshold 1.5": (trained / "model.pt", ["--score-threshold", "1.5"], ("threshold 1.5 is outside (0, 1)",)),
        "threshold 0": (trained / "model.pt", ["--score-threshold", "0"], ("outside (0, 1)",)),
        "opset 17": (trained / "model.pt", ["--opset", "17"], ("--opset", "got 17", "[18, inf)")),
        "opset 99": (trained / "model.pt", ["--opset", "99"], ("opset 99 is newer",)),
        "bad probe size": (trained / "model.pt", ["--probe-size", "many"], ("--probe-size",)),
        "int8 without onnx": (trained / "model.pt", ["--format", "torchscript", "--quantize", "int8"], ("--format onnx",)),
    }


CASES = ["missing", "text file", "foreign .pt", "intermediate", "threshold 1.5", "threshold 0", "opset 17",
         "opset 99", "bad probe size", "int8 without onnx"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_and_nothing_is_written(tmp_path, trained_digits, case):
    checkpoint, extra, fragments = _checkpoint_cases(tmp_path, trained_digits)[case]
    out = tmp_path / "out"
    result = run_export(checkpoint, "--format", "all", "--out", out, *extra)
    _assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_default_checkpoint_while_training_runs_says_so(tmp_path, trained_digits, monkeypatch):
    """``osr-export`` with no argument while only artifacts/siamese/checkpoint.pt exists."""
    monkeypatch.chdir(tmp_path)
    resave(trained_digits / "model.pt", tmp_path / "artifacts" / "siamese" / "checkpoint.pt", config=dict(complete=False, stage="pretrain", epoch=1))
    result = run_export("--format", "onnx")
    _assert_one_line_error(result, "artifacts/siamese/model.pt", "training is still running, or was interrupted")
    assert sorted(p.name for p in (tmp_path / "artifacts" / "siamese").iterdir()) == ["checkpoint.pt"]


def test_unwritable_output_folder(tmp_path, trained_digits):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _assert_one_line_error(run_export(trained_digits / "model.pt", "--out", blocker / "sub"), "not writable")
    _assert_one_line_error(run_export(trained_digits / "model.pt", "--out", blocker), "is a file, not a folder")
    assert blocker.read_text() == "x"


def test_full_probe_or_int8_without_the_data_set(tmp_path, trained_digits):
    """A checkpoint trained on MNIST: '--probe-size all' and INT8 calibration need the real data."""
    checkpoint = resave(trained_digits / "model.pt", tmp_path / "ckpt" / "model.pt", dataset=DatasetSpec("mnist", all_classes=MNIST_CLASSES))
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    result = run_export(checkpoint, "--probe-size", "all", "--data-dir", empty, "--out", out)
    _assert_one_line_error(result, "--probe-size all needs the real data", "MNIST not found")
    result = run_export(checkpoint, "--quantize", "int8", "--data-dir", empty, "--out", out)
    _assert_one_line_error(result, "INT8 calibration needs the validation images of mnist", "MNIST not found")
    assert not out.exists()
