"""The Python API: ``osr_infer.Model`` gives the rows ``osr-infer`` writes, for every kind of
input; errors name the input or the parameter; importing the package changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infer_testing import cached_digits_onnx, digit_images, invoke, write_pngs
from osr_infer.decode import decode_files
from osr_infer.results import read_results


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, trained_digits) -> Path:
    return cached_digits_onnx(tmp_path_factory, trained_digits)


def _exif_rotated_jpeg(path: Path, pixels: np.ndarray) -> Path:
    """A JPEG stored sideways with EXIF orientation 6 (turn 90 degrees to show it upright),
    on a large canvas so that the contract's JPEG draft step matters too."""
    big = Image.fromarray(pixels).resize((224, 224), Image.Resampling.NEAREST).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    big.convert("RGB").save(path, format="JPEG", quality=92, exif=exif.tobytes())
    return path


def test_predict_gives_osr_infers_rows_for_paths_pil_images_arrays_and_bytes(onnx_model, tmp_path):
    from osr_infer import Model

    images, _ = digit_images(6, seed=5)
    folder = tmp_path / "files"
    pngs = write_pngs(folder, images[:4])
    jpeg = _exif_rotated_jpeg(folder / "sideways.jpg", images[4])
    rgba = folder / "ink.png"
    Image.fromarray(np.dstack([images[5]] * 3 + [np.full_like(images[5], 200)]), "RGBA").save(rgba)
    out = tmp_path / "r.jsonl"
    result = invoke([folder, "--model", onnx_model, "--output", out, "--workers", "0"])
    assert result.exit_code == 0, result.stderr
    expected = {Path(row["path"]).name: row for row in read_results(out)}

    model = Model.load(onnx_model)
    inputs = [
        str(pngs[0]), pngs[1], jpeg, rgba,  # paths (str and Path)
        Image.open(pngs[2]), Image.open(jpeg),  # PIL images, the JPEG still sideways with its EXIF tag
        np.asarray(Image.open(pngs[3])),  # uint8 pixels
        np.asarray(Image.open(rgba)),  # RGBA pixels
        jpeg.read_bytes(), pngs[0].read_bytes(),  # the bytes of files
    ]
    names = [pngs[0].name, pngs[1].name, jpeg.name, rgba.name, pngs[2].name, jpeg.name, pngs[3].name, rgba.name, jpeg.name,
             pngs[0].name]
    p = model.predict(inputs)
    assert len(p) == len(inputs) == len(p.labels) == len(p.score)
    # The contract is applied exactly as osr-infer's decoder applies it: the same pixels, bit for bit.
    ok, decoded, failed = decode_files([str(folder / name) for name in names], model.contract)
    assert not failed and np.array_equal(model.preprocess(inputs), decoded)
    for k, name in enumerate(names):
        row = expected[name]
        assert p.labels[k] == row["label"], (k, name)
        # ONNX Runtime's score of a row depends in its last bit on the row's place in the batch.
        assert p.score[k] == pytest.approx(row["score"], rel=1e-6, abs=1e-9), (k, name)
        assert p.probability[k] == pytest.approx(row["probability"], rel=1e-6, abs=1e-9), (k, name)
    # At the same place in a batch of the same inputs, the very same bits.
    same = model.predict([folder / name for name in sorted(expected)])
    assert [float(np.float32(s)) for s in same.score] == [float(np.float32(expected[n]["score"])) for n in sorted(expected)]
    assert p.known.dtype == bool and np.array_equal(p.label_index >= 0, p.known)
    assert model.classes == tuple(str(d) for d in range(10)) and model.decision_rule.startswith(f"{model.spec.score} >= ")
    # One input alone, and a batch of arrays as one 3-D array.
    assert model.predict(pngs[0]).labels.tolist() == [expected[pngs[0].name]["label"]]
    assert len(model.predict(np.stack([images[0], images[1]]))) == 2


def test_predict_files_streams_the_rows_osr_infer_writes_and_reports_bad_files(onnx_model, tmp_path):
    from osr_infer import Model

    images, _ = digit_images(30, seed=6)
    folder = tmp_path / "files"
    write_pngs(folder, images)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "r.csv"
    result = invoke([folder, "--model", onnx_model, "--output", out, "--workers", "2", "--batch-size", "8"])
    assert result.exit_code == 3, result.stderr
    expected = read_results(out)

    model = Model.load(onnx_model)
    run = model.predict_files(folder, workers=2, batch_size=8)
    batches = list(run)
    rows = [row for batch in batches for row in batch.to_rows()]
    assert [r["path"] for r in rows] == [r["path"] for r in expected]
    assert [r["label"] for r in rows] == [r["label"] for r in expected]
    assert [np.float32(r["score"]) for r in rows] == [np.float32(r["score"]) for r in expected]
    failures = [f for batch in batches for f in batch.failures]
    assert [Path(path).name for path, _ in failures] == ["broken.png"] and all(len(b) <= 8 for b in batches)


def test_errors_name_the_input_or_the_parameter(onnx_model, tmp_path):
    from osr_infer import InputError, Model, ModelError, ParameterError

    model = Model.load(onnx_model)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"^input 1 \(.*empty\.png\): empty file"):
        model.predict([digit_images(1)[0][0], tmp_path / "empty.png"])
    with pytest.raises(InputError, match=r"^input 0 \(12 bytes\): "):
        model.predict(b"not an image")
    with pytest.raises(InputError, match=r"^input 0 \(array float64 \(28, 28\)\): pixels must be uint8"):
        model.predict(np.zeros((28, 28)))
    with pytest.raises(InputError, match="^input 0: int is not an image"):
        model.predict([3])
    with pytest.raises(ParameterError, match=r"^threshold must be a number in \(0, 1\), got 1.5$"):
        Model.load(onnx_model, threshold=1.5)
    with pytest.raises(ParameterError, match="^batch_size must be"):
        model.predict(digit_images(1)[0], batch_size=0)
    with pytest.raises(ModelError, match="model not found"):
        Model.load(tmp_path / "missing.onnx")


def test_the_top_probability_rule_keeps_its_meaning(onnx_model):
    from osr_infer import Model

    images, _ = digit_images(20, seed=7)
    model = Model.load(onnx_model, threshold=0.999)
    p = model.predict(images)
    assert model.decision_rule == "msp >= 0.999" and model.threshold_origin == "threshold"
    assert np.array_equal(p.known, p.probability >= np.float32(0.999))


def test_importing_the_package_leaves_every_pillow_global_as_it_was():
    """A host program's Pillow settings survive ``import osr_infer`` (and loading, and decoding)."""
    code = """
import json, sys
from PIL import Image, ImageFile
Image.MAX_IMAGE_PIXELS = 12345
ImageFile.LOAD_TRUNCATED_IMAGES = True
def snapshot():
    return {m.__name__ + "." + k: repr(v) for m in (Image, ImageFile) for k, v in vars(m).items()
            if k.isupper() and not k.startswith("_")}
before = snapshot()
import osr_infer, osr_infer.preprocess, osr_infer.decode, osr_infer.model, osr_infer.cli
from osr_infer import Model, PreprocessContract
changed = {k: (before[k], v) for k, v in snapshot().items() if before.get(k) != v}
print(json.dumps(changed))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"


def test_the_toolkits_pixel_limit_holds_whatever_the_host_allows(onnx_model, tmp_path, monkeypatch):
    """Limits are applied per image, not by changing Pillow's global: a host that lifts
    Pillow's limit still gets the toolkit's."""
    from PIL import Image as PILImage

    from osr_infer import InputError, Model
    from osr_infer import preprocess

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(preprocess, "MAX_IMAGE_PIXELS", 50 * 50)
    big = tmp_path / "big.png"
    PILImage.new("L", (60, 60)).save(big)
    model = Model.load(onnx_model)
    with pytest.raises(InputError, match="image too large"):
        model.predict(PILImage.open(big))
    with pytest.raises(InputError, match="image too large"):
        model.predict(big.read_bytes())
    assert PILImage.MAX_IMAGE_PIXELS is None


def test_train_and_export_are_functions_returning_typed_results(trained_digits, tmp_path):
    """The training fixture is made by osr_train.train; export() returns its report and writes
    a model that Model loads."""
    from osr_export import export
    from osr_infer import Model

    report = export(trained_digits / "model.pt", ("onnx",), out=tmp_path, probe_size=64)
    assert report.passed and report.written == [tmp_path / "model.onnx"]
    assert [r.format for r in report.formats] == ["onnx"] and report.formats[0].passed
    assert Model.load(tmp_path / "model.onnx").spec.dataset.name == "digits"


def test_the_library_prints_nothing(trained_digits, tmp_path, capfd):
    from osr_export import export
    from osr_infer import Model
    from osr_train import TrainConfig, train

    trained = train(TrainConfig.from_recipe("seed", model="baseline", epochs=1), "digits")
    trained.save(tmp_path / "model.pt")
    export(tmp_path / "model.pt", ("onnx",), probe_size=32)
    Model.load(tmp_path / "model.onnx").predict(digit_images(3)[0])
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert 0 <= trained.metrics["closed_set_accuracy"] <= 1 and trained.spec.architecture == "ConvNet"


def test_the_documented_examples_run():
    """The runnable examples in the API's docstrings (the rest are marked to skip: they need data)."""
    import doctest

    import osr_export.pipeline
    import osr_infer.model
    import osr_infer.serve.app
    import osr_train.config
    import osr_train.pipeline

    for module in (osr_train.config, osr_infer.model, osr_train.pipeline, osr_export.pipeline, osr_infer.serve.app):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(osr_train.config).attempted >= 2


def test_a_plain_script_decodes_files_with_workers_without_a_main_guard(onnx_model, tmp_path):
    """A script with no ``if __name__ == "__main__":`` guard can use the decoding pool: the
    workers never re-run the caller's script (they need the decoder only)."""
    images, _ = digit_images(40, seed=8)
    write_pngs(tmp_path / "files", images)
    script = tmp_path / "plain.py"
    script.write_text(
        "from osr_infer import Model\n"
        "print('top level', flush=True)\n"
        f"model = Model.load({str(onnx_model)!r})\n"
        f"print(sum(len(b) for b in model.predict_files({str(tmp_path / 'files')!r}, workers=2)))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["top", "level", "40"]
