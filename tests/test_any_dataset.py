"""Any data set as the knowns, end to end: train, verified export, osr-infer with metrics.

(a) an RGB 32x32 image folder with 12 classes, (b) IDX files under another name with class
names from classes.txt, (c) MNIST-format files with --known-classes (the others are unknowns).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from conftest import write_fake_mnist
from dataset_testing import IDX_CLASSES, RGB_CLASSES, write_idx_folder
from osr_infer.metadata import ModelMetadata
from osr_infer.results import read_results

pytestmark = pytest.mark.slow


def train(*args: str) -> None:
    from osr_train.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def export(checkpoint: Path, *args: str) -> str:
    from osr_export.cli import app

    result = CliRunner().invoke(app, [str(checkpoint), *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def infer(*args: str) -> tuple[int, str]:
    from osr_infer.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def metadata(model: Path) -> ModelMetadata:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)


@pytest.fixture
def rgb_model(trained_rgb) -> tuple[Path, Path]:
    return trained_rgb


def test_rgb_folder_of_12_classes_end_to_end(rgb_model, tmp_path):
    root, out = rgb_model
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_known"] == 12 * 8 and len(metrics["confusion_matrix"]) == 12
    assert len(metrics["confusion_matrix_open_set"]) == 13  # 12 classes + unknown
    assert metrics["closed_set_accuracy"] >= 0.8, metrics["closed_set_accuracy"]

    exported = tmp_path / "exported"
    report = export(out / "model.pt", "--format", "all", "--out", exported)
    assert "PASS onnx" in report and "PASS torchscript" in report
    meta = metadata(exported / "model.onnx")
    assert tuple(meta.class_names) == tuple(sorted(RGB_CLASSES))  # ImageFolder order: sorted subfolders
    assert meta.contract.channels == 3 and meta.contract.size == 32 and meta.contract.color == "RGB"
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert isinstance(shape[0], str) and shape[1:] == [3, 32, 32]
    assert session.get_outputs()[0].shape[1] == 12

    results = tmp_path / "r.csv"
    code, output = infer(f"folder:{root / 'test'}", "--model", exported / "model.onnx", "--output", results, "--workers", "0")
    assert code == 0, output
    rows = read_results(results)
    assert len(rows) == 12 * 8
    truth = [Path(r["path"]).parent.name for r in rows]
    predicted = [r["label"] for r in rows]
    accepted = [t == p for t, p in zip(truth, predicted, strict=True) if p != "unknown"]
    assert accepted and np.mean(accepted) >= 0.8
    assert "closed-set accuracy" in output  # labelled by subfolder: metrics printed


def test_rgb_model_decodes_grey_and_transparent_inputs_through_its_contract(rgb_model, tmp_path):
    """An RGB model takes any file: greyscale and RGBA images are converted by the contract, not refused."""
    from PIL import Image

    _, out = rgb_model
    export(out / "model.pt", "--format", "onnx", "--out", tmp_path / "m")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (50, 40), 128).save(images / "grey.png")
    Image.new("RGBA", (32, 32), (200, 30, 30, 128)).save(images / "rgba.png")
    code, output = infer(images, "--model", tmp_path / "m" / "model.onnx", "--workers", "0", "--output", tmp_path / "r.csv")
    assert code == 0, output
    rows = read_results(tmp_path / "r.csv")
    assert [Path(r["path"]).name for r in rows] == ["grey.png", "rgba.png"]
    assert all(np.isfinite(r["score"]) for r in rows)


def test_idx_files_under_another_name_end_to_end(tmp_path):
    folder = write_idx_folder(tmp_path / "fashion")
    out = tmp_path / "model"
    train("baseline", "--recipe", "seed", "--dataset", f"idx:{folder}", "--epochs", "8", "--batch-size", "32", "--out", out)
    report = export(out / "model.pt", "--format", "onnx", "--quantize", "int8")
    assert "PASS onnx" in report and "PASS int8" in report
    meta = metadata(out / "model.onnx")
    assert tuple(meta.class_names) == IDX_CLASSES
    assert meta.spec.dataset.reference == f"idx:{folder.resolve()}"
    results = tmp_path / "r.jsonl"
    code, output = infer(f"idx:{folder}", "--model", out / "model.onnx", "--output", results, "--workers", "0")
    assert code == 0, output
    rows = read_results(results)
    assert len(rows) == 50
    assert {r["label"] for r in rows} <= {*IDX_CLASSES, "unknown"}
    assert "closed-set accuracy" in output


def test_known_classes_train_on_six_digits_and_score_the_others_as_unknowns(tmp_path):
    data = write_fake_mnist(tmp_path / "data", n_train=600, n_test=200)
    out = tmp_path / "model"
    train("siamese", "--recipe", "seed", "--dataset", "mnist", "--data-dir", data, "--known-classes", "2,4,5,9,8,3", "--epochs", "6",
          "--pretrain-epochs", "1", "--batch-size", "32", "--out", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_known"] == 120 and len(metrics["confusion_matrix"]) == 6
    assert metrics["unknown_sets"] == {"mnist-test-unknown-classes": 80}

    export(out / "model.pt", "--format", "onnx", "--data-dir", data)
    meta = metadata(out / "model.onnx")
    assert tuple(meta.class_names) == ("2", "4", "5", "9", "8", "3")
    assert meta.spec.dataset.known_classes == (2, 4, 5, 9, 8, 3)

    results = tmp_path / "r.csv"
    code, output = infer("mnist:test", "--model", out / "model.onnx", "--data-dir", data, "--output", results, "--workers", "0")
    assert code == 0, output
    assert "classes the model does not know count as unknowns: 0, 1, 6, 7" in output
    rows = read_results(results)
    assert len(rows) == 200
    labels = {r["label"] for r in rows}
    assert labels <= {"2", "4", "5", "9", "8", "3", "unknown"}
    assert "unknown rejection" in output


def test_training_on_a_data_set_that_is_not_there_is_one_error_line(tmp_path):
    from osr_train.cli import app

    for args, message in (
        (["--dataset", f"folder:{tmp_path / 'nope'}"], "no such folder"),
        (["--dataset", "cifar100"], "unknown data set 'cifar100'"),
        (["--dataset", "mnist", "--data-dir", str(tmp_path)], "MNIST not found"),
        (["--dataset", "mnist", "--data-dir", str(tmp_path), "--known-classes", "2,x"], "neither a class name nor an index"),
        (["--dataset", "digits", "--known-classes", "2,x"], "neither a class name nor an index"),
        (["--dataset", "digits", "--channels", "2"], "--channels must be one of 1, 3"),
        (["--dataset", "digits", "--input-size", "3"], "--input-size must be an integer in [8, 256]"),
    ):
        result = CliRunner().invoke(app, ["baseline", *args, "--epochs", "1", "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert message in result.output, result.output
        assert "Traceback" not in result.output


def test_a_new_data_set_is_one_registry_entry(tmp_path, monkeypatch):
    """The docs' example (docs/datasets.md, ``snippet: npz-entry``), run as written: an .npz data
    set registered in one place trains, exports and is an osr-infer reference."""
    from docs_testing import snippet
    from osr_infer.data import registry

    monkeypatch.setitem(registry.DATASETS, "npz", None)  # the snippet registers it; put back as it was after
    exec(compile(snippet("npz-entry").code, "docs/datasets.md", "exec"), {})  # noqa: S102 - the docs' own code
    assert type(registry.DATASETS["npz"]).__name__ == "NpzEntry"
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        x = rng.integers(0, 30, (n, 20, 20)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 6 * label : 6 + 6 * label, 3:17] = 255
        return x, y

    (x_train, y_train), (x_test, y_test) = make(120), make(30)
    np.savez(tmp_path / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    out = tmp_path / "model"
    train("baseline", "--recipe", "seed", "--dataset", f"npz:{tmp_path / 'data.npz'}", "--epochs", "6", "--batch-size", "16", "--out", out)
    assert "PASS onnx" in export(out / "model.pt", "--format", "onnx")
    meta = metadata(out / "model.onnx")
    assert meta.contract.size == 28 and tuple(meta.class_names) == ("0", "1", "2")  # 20x20 resized to the default 28
    code, output = infer(f"npz:{tmp_path / 'data.npz'}", "--model", out / "model.onnx", "--workers", "0")
    assert code == 0, output
    assert "closed-set accuracy" in output
