"""osr-infer: sources, decoding, batching, results, reports, bad input, and staying torch-free."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infer_testing import (
    cached_digits_onnx,
    crashing_decode,
    dies_once_decode,
    digit_images,
    edit_onnx,
    invoke,
    write_bad_and_odd_files,
    write_pngs,
)
from osr_infer.decode import DecodePool, Piece
from osr_infer.errors import EXIT_ERROR, EXIT_OK, EXIT_SOME_INPUTS_FAILED, InferenceError, InputError
from osr_infer.pipeline import Batcher, run_inference
from osr_infer.results import ResultsWriter, read_results
from osr_infer.session import InferenceModel
from osr_infer.sources import Source, resolve_sources
from osr_infer.preprocess import PREPROCESSING, load_image
from osr_infer.spec import UNKNOWN, UNLABELLED

DIGITS = tuple(str(d) for d in range(10))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, trained_digits) -> Path:
    return cached_digits_onnx(tmp_path_factory, trained_digits)


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """150 bundled test digits as PNGs (more than two decoding chunks), and their labels."""
    images, labels = digit_images(150)
    folder = tmp_path_factory.mktemp("digit-pngs")
    write_pngs(folder, images)
    return folder, labels


# --- staying torch-free ---------------------------------------------------------------------


def _python(code: str, cwd: Path = REPO) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_bottom_layer_imports_nothing_from_above_nor_torch():
    """osr_infer is the bottom layer: none of its modules loads torch, osr_train, osr_export,
    onnx, matplotlib or scikit-learn (the edge install has none of them)."""
    import pkgutil

    import osr_infer

    modules = sorted(m.name for m in pkgutil.walk_packages(osr_infer.__path__, "osr_infer."))
    assert {"osr_infer.cli", "osr_infer.spec", "osr_infer.data.registry"} <= set(modules)
    heavy = ("torch", "osr_train", "osr_export", "onnx", "matplotlib", "sklearn")
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted({{k.split('.')[0] for k in sys.modules}} & set({heavy!r}))))"
    )
    assert _python(code) == []


def test_a_full_run_without_parity_stays_torch_free(onnx_model, digit_folder, tmp_path):
    """The CLI's main path (decode pool, ORT, metrics, results file) never imports torch."""
    folder, _ = digit_folder
    out = tmp_path / "r.csv"
    argv = ["osr-infer", str(folder), "digits", "--model", str(onnx_model), "-o", str(out), "--workers", "2"]
    code = (
        "import json, sys\n"
        f"sys.argv = {argv!r}\n"
        "from osr_infer.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    status = exc.code\n"
        "print(json.dumps({'status': status, 'torch': 'torch' in sys.modules}))"
    )
    assert _python(code) == {"status": 0, "torch": False}
    assert len(read_results(out)) == 150 + 360 + 500


# --- classifying folders and writing results -------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_folder_rows_match_the_model_run_image_by_image(onnx_model, digit_folder, tmp_path, suffix):
    """Every file gets the row of its own image: parallel decoding and batching keep the order."""
    folder, labels = digit_folder
    out = tmp_path / f"results{suffix}"
    result = invoke([folder, "--model", onnx_model, "--batch-size", 7, "--workers", 2, "-o", out])
    assert result.exit_code == EXIT_OK, result.output
    rows = read_results(out)
    files = sorted(folder.glob("*.png"))
    assert [r["path"] for r in rows] == [str(p) for p in files]
    assert set(rows[0]) == {"path", "label", "probability", "score"}

    model = InferenceModel(onnx_model)
    single = [model.run(PREPROCESSING.normalize(load_image(p))) for p in files]
    for row, o in zip(rows, single, strict=True):
        assert row["probability"] == pytest.approx(float(o.probs.max()), abs=1e-6)
        assert row["score"] == pytest.approx(float(o.score[0]), abs=1e-6)
        expected = str(int(o.logits.argmax())) if o.score[0] >= model.threshold else "unknown"
        assert row["label"] == expected
    accepted = [(r["label"], y) for r, y in zip(rows, labels, strict=True) if r["label"] != "unknown"]
    assert accepted and np.mean([lab == str(y) for lab, y in accepted]) > 0.8  # a trained model, not noise
    assert "150 images classified" in result.stdout and f"results: {out}" in result.stdout


@pytest.mark.parametrize("option", ["--threshold", "--score-threshold"])
def test_threshold_override_changes_decisions_only(onnx_model, digit_folder, tmp_path, option):
    """On an msp model --threshold (on max(probs)) and --score-threshold (on its msp score) are the same rule."""
    folder, _ = digit_folder
    runs = {}
    for thr in ("0.5", "0.999999"):
        out = tmp_path / f"{thr}.csv"
        assert invoke([folder, "--model", onnx_model, option, thr, "-o", out]).exit_code == EXIT_OK
        runs[thr] = read_results(out)
    low, high = runs["0.5"], runs["0.999999"]
    assert [r["score"] for r in low] == [r["score"] for r in high]
    assert sum(r["label"] == "unknown" for r in low) < sum(r["label"] == "unknown" for r in high)
    assert all((r["label"] == "unknown") == (r["score"] < 0.5) == (r["probability"] < 0.5) for r in low)


def test_small_runs_print_a_row_per_image_large_ones_a_summary_and_where_the_rows_are(onnx_model, digit_folder, tmp_path, monkeypatch):
    """Five files: each one's label, score and decision, as a person reads them. Many files: the
    counts per label, and the rows written to a results file that the report names."""
    import re

    folder, _ = digit_folder
    monkeypatch.chdir(tmp_path)  # a short relative path: the table folds long cells
    odd_name = "[bold]x.png"  # printed as it is, not as rich markup
    shutil.copy(sorted(folder.glob("*.png"))[0], odd_name)
    few_files = [odd_name]
    for k, source in enumerate(sorted(folder.glob("*.png"))[1:4]):
        few_files.append(shutil.copy(source, f"d{k}.png"))
    Image.new("RGB", (40, 30), (20, 200, 90)).save("flat.png")  # a flat green image: no digit
    few_files.append("flat.png")
    few = invoke([*few_files, "--model", onnx_model, "-o", "few.csv"])
    assert few.exit_code == EXIT_OK, few.output
    rows = {Path(r["path"]).name: r for r in read_results(tmp_path / "few.csv")}
    assert "[bold]x.png" in few.stdout and "decision" in few.stdout and "5 images classified" in few.stdout
    for name, row in rows.items():
        line = next(line for line in few.stdout.splitlines() if name in line)
        cells = [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]
        assert cells[1] == row["label"], (line, row)
        assert float(cells[2]) == pytest.approx(row["score"], rel=1e-3), (line, row)  # the decision's quantity
        nearest = f"unknown (nearest: {cells[1]})"
        assert cells[3] == "known" if row["label"] != "unknown" else cells[3].startswith("unknown (nearest: ") and cells[3] != nearest
    assert rows["flat.png"]["label"] == "unknown"
    many = invoke([folder, "--model", onnx_model])
    assert many.exit_code == EXIT_OK, many.output
    assert "img00000.png" not in many.stdout and "predicted labels" in many.stdout and "images/s" in many.stdout
    written = re.search(r"results: (\S+) \(([\d,]+) rows\)", many.stdout)
    assert written, many.stdout
    path = tmp_path / written[1]
    assert path.parent == tmp_path / "artifacts" / "osr-infer" and path.suffix == ".csv"
    assert len(read_results(path)) == int(written[2].replace(",", "")) == len(list(folder.glob("*.png")))


def test_digits_source_reproduces_the_training_metrics(onnx_model, trained_digits):
    """`digits` = the test split and photo crops osr-train evaluated on: the same numbers."""
    from osr_infer.report import run_metrics

    model = InferenceModel(onnx_model)
    assert model.spec is not None and model.spec.dataset.name == "digits" and model.class_names == DIGITS
    sources = resolve_sources(["digits"], [], Path("unused"), model.contract, model.spec, model.class_names)
    with DecodePool(model.contract, 0) as pool:
        run = run_inference(sources, model, pool)
    got = run_metrics(run)["digits"]
    want = json.loads((trained_digits / "metrics.json").read_text())
    assert (got["n_known"], got["n_unknown"]) == (want["n_known"], want["n_unknown"]) == (360, 500)
    for key in ("closed_set_accuracy", "known_acceptance", "unknown_rejection", "open_set_accuracy"):
        assert got[key] == pytest.approx(want[key], abs=1.5 / 860), key  # at most one borderline flip


def test_unknown_option_labels_a_folder_as_unknowns(onnx_model, digit_folder, tmp_path):
    from osr_infer.report import run_metrics

    folder, _ = digit_folder
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(photos / f"p{i}.jpg")
    result = invoke([folder, "--unknown", photos, "--model", onnx_model])
    assert result.exit_code == EXIT_OK, result.output
    assert "unknown rejection" in result.stdout
    model = InferenceModel(onnx_model)
    sources = resolve_sources([str(folder)], [str(photos)], Path("unused"), model.contract, model.spec, model.class_names)
    assert sources[0].labels.tolist() == [UNLABELLED] * 150 and sources[1].labels.tolist() == [UNKNOWN] * 20
    assert not sources[0].labelled and sources[1].labelled
    with DecodePool(model.contract, 0) as pool:
        run = run_inference(sources, model, pool)
    metrics = run_metrics(run)
    assert list(metrics) == [str(photos)]  # the unlabelled folder has no metrics
    assert metrics[str(photos)]["unknown_rejection"] == pytest.approx(np.mean(run.predictions.score[run.predictions.source == 1] < model.threshold))


# --- data set references -----------------------------------------------------------------------


def _first_column(stdout: str) -> list[str]:
    """The first cell of every row of the rich tables in ``stdout``, with cells wrapped over lines joined."""
    cells: list[str] = []
    for line in stdout.splitlines():
        if not line.startswith("│"):
            continue
        row = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and not any(row[1:]):  # the continuation of a wrapped first cell
            cells[-1] = f"{cells[-1]} {row[0]}"
        else:
            cells.append(row[0])
    return cells


def _write_cifar_pickle(root: Path, n: int = 30) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return root


def test_mnist_and_cifar_references_are_labelled(onnx_model, fake_mnist, tmp_path):
    _write_cifar_pickle(fake_mnist)
    out = tmp_path / "r.csv"
    result = invoke(["mnist:test", "cifar10:test", "--data-dir", fake_mnist, "--model", onnx_model, "-o", out])
    assert result.exit_code == EXIT_OK, result.output
    rows = read_results(out)
    assert [r["path"] for r in rows] == [f"mnist:test:{i}" for i in range(40)] + [f"cifar10:test:{i}" for i in range(30)]
    metrics = _first_column(result.stdout)
    for metric in ("closed-set accuracy", "known acceptance", "unknown rejection", "open-set accuracy (classes + unknown)"):
        assert metric in metrics, metrics
    model = InferenceModel(onnx_model)
    mnist, cifar, train = resolve_sources(
        ["mnist:test", "cifar10:test", "mnist:train"], [], fake_mnist, model.contract, model.spec, model.class_names
    )
    assert mnist.labels.tolist() == [i % 10 for i in range(40)] and set(cifar.labels.tolist()) == {UNKNOWN}
    assert len(train) == 120 and not train.from_files


def test_data_dir_defaults_to_osr_data_dir(onnx_model, fake_mnist, monkeypatch):
    monkeypatch.setenv("OSR_DATA_DIR", str(fake_mnist))
    result = invoke(["mnist:train", "--model", onnx_model])
    assert result.exit_code == EXIT_OK, result.output
    assert "120 images classified" in result.stdout and "closed-set accuracy" in result.stdout


def test_folder_reference_maps_subfolders_onto_the_model_classes_by_name(onnx_model, tmp_path):
    """folder:PATH: a subfolder named like a model class gets its label; any other is an unknown."""
    from osr_infer.report import run_metrics

    images, labels = digit_images(30, seed=1)
    root = tmp_path / "labelled"
    for digit in (3, 7):
        write_pngs(root / str(digit), images[labels == digit], prefix=f"d{digit}-")
    write_pngs(root / "cat", images[:4], prefix="c")
    n3, n7 = int(np.sum(labels == 3)), int(np.sum(labels == 7))
    model = InferenceModel(onnx_model)
    (source,) = resolve_sources([f"folder:{root}"], [], tmp_path, model.contract, model.spec, model.class_names)
    assert source.name == f"folder:{root}" and source.from_files and len(source) == n3 + n7 + 4
    assert source.labels.tolist() == [3] * n3 + [7] * n7 + [UNKNOWN] * 4  # sorted: 3/, 7/, cat/
    assert source.note == f"folder:{root}: classes the model does not know count as unknowns: cat"
    with DecodePool(model.contract, 0) as pool:
        run = run_inference([source], model, pool)
    metrics = run_metrics(run)[source.name]
    assert (metrics["n_known"], metrics["n_unknown"]) == (n3 + n7, 4)
    result = invoke([f"folder:{root}", "--model", onnx_model])
    assert result.exit_code == EXIT_OK, result.output
    assert "note: " + source.note in result.stderr and "closed-set accuracy" in result.stdout


def test_idx_reference_reads_the_test_split_with_its_class_names(onnx_model, fake_mnist, tmp_path):
    """idx:PATH on MNIST's own files is mnist:test; a set whose classes the model lacks is all unknowns."""
    from dataset_testing import write_idx_folder

    model = InferenceModel(onnx_model)
    raw = fake_mnist / "MNIST" / "raw"
    idx, mnist = resolve_sources([f"idx:{raw}", "mnist:test"], [], fake_mnist, model.contract, model.spec, model.class_names)
    assert idx.name == f"idx:{raw}" and idx.note is None
    np.testing.assert_array_equal(idx.images, mnist.images)
    np.testing.assert_array_equal(idx.labels, mnist.labels)
    fashion = write_idx_folder(tmp_path / "fashion")
    (other,) = resolve_sources([f"idx:{fashion}"], [], tmp_path, model.contract, model.spec, model.class_names)
    assert len(other) == 50 and set(other.labels.tolist()) == {UNKNOWN}
    assert other.note == f"idx:{fashion}: none of its classes is one of the model's; every image counts as an unknown"


def test_digits_reference_uses_the_model_split_seed(onnx_model):
    """`digits` scores the test split of the seed the model was trained with, never its training digits."""
    from osr_infer.data.digits import load_digits_open_set
    from osr_infer.spec import DatasetSpec

    model = InferenceModel(onnx_model)
    assert model.spec.dataset.split_seed == 0
    reseeded = model.spec.replace(dataset=DatasetSpec("digits", split_seed=3, all_classes=DIGITS))
    (seed0,) = resolve_sources(["digits"], [], None, model.contract, model.spec, model.class_names)
    (seed3,) = resolve_sources(["digits"], [], None, model.contract, reseeded, model.class_names)
    for source, seed in ((seed0, 0), (seed3, 3)):
        data = load_digits_open_set(seed=seed, contract=model.contract)
        np.testing.assert_array_equal(source.images[: len(data.test)], data.test.images)
        assert source.labels.tolist() == data.test.labels.tolist() + [UNKNOWN] * len(data.unknown_test[0])
    assert not np.array_equal(seed0.images[:360], seed3.images[:360])
    # A model trained on another data set reads `digits` with the default seed.
    other = model.spec.replace(dataset=DatasetSpec("mnist", split_seed=3, all_classes=DIGITS))
    np.testing.assert_array_equal(resolve_sources(["digits"], [], None, model.contract, other, model.class_names)[0].images, seed0.images)


def test_infer_command_is_the_cli_as_a_function(onnx_model, digit_folder, tmp_path):
    from osr_infer.cli import InferOptions, infer_command

    out = tmp_path / "r.jsonl"
    options = InferOptions([str(digit_folder[0])], model=onnx_model, workers=2, output=out)
    assert infer_command(options) == EXIT_OK
    assert len(read_results(out)) == 150
    bad_options = (
        dict(batch_size=0), dict(batch_size=True), dict(workers=257), dict(atol=2.0), dict(threshold=float("nan")),
        dict(threshold=1.0), dict(threshold=4.4), dict(score_threshold=float("inf")),
    )
    for bad in bad_options:
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must be "):  # the parameter, not the flag
            InferOptions([str(digit_folder[0])], model=onnx_model, **bad)
    with pytest.raises(ValueError, match="^give `threshold` .* or `score_threshold` .*, not both$"):
        InferOptions([str(digit_folder[0])], model=onnx_model, threshold=0.5, score_threshold=0.5)
    with pytest.raises(ValueError, match="nothing to classify"):
        InferOptions([], model=onnx_model)


def test_cifar_jpeg_layout_is_decoded_from_files(onnx_model, tmp_path):
    root = tmp_path / "data" / "cifar10-test-jpeg"
    rng = np.random.default_rng(0)
    for cls in ("cat", "ship"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / cls / f"{i:04d}.jpg")
    model = InferenceModel(onnx_model)
    (source,) = resolve_sources(["cifar10:test"], [], tmp_path / "data", model.contract, model.spec, model.class_names)
    assert source.from_files and len(source) == 6 and set(source.labels.tolist()) == {UNKNOWN}
    result = invoke(["cifar10:test", "--data-dir", tmp_path / "data", "--model", onnx_model])
    assert result.exit_code == EXIT_OK and "6 images classified" in result.stdout


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mnist:val", "mnist:val: the MNIST splits are mnist:train and mnist:test"),
        ("mnist:test", "mnist:test: MNIST not found in {data} (set --data-dir or $OSR_DATA_DIR; osr-train's --download fetches it)"),
        ("cifar10:test", "cifar10:test: no CIFAR-10 test set in {data}"),
        ("cifar10:what", "cifar10:what: only cifar10:test is read (as unknowns)"),
        ("folder:no/such/folder", "folder:no/such/folder: image folder not found: no/such/folder"),
        ("idx:no/such/folder", "idx:no/such/folder: no such folder"),
        ("imagenet:val", "no such file, folder or data set reference: imagenet:val (references: mnist:test, mnist:train, cifar10:test"),
        ("no/such/folder", "no such file or folder: no/such/folder"),
    ],
)
def test_bad_source_references_fail_with_one_line(onnx_model, tmp_path, spec, message):
    result = invoke([spec, "--data-dir", tmp_path, "--model", onnx_model])
    assert result.exit_code == EXIT_ERROR
    assert message.format(data=tmp_path / "MNIST" / "raw" if spec == "mnist:test" else tmp_path) in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("spec", ["mnist:val", "idx:no/such/folder", "cifar10:what"])
def test_reference_errors_name_the_reference_once(onnx_model, tmp_path, spec):
    result = invoke([spec, "--data-dir", tmp_path, "--model", onnx_model])
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.startswith(f"error: {spec}: ") and result.stderr.count(f"{spec}:") == 1, result.stderr


def test_references_and_item_ids_are_printed_literally(onnx_model, tmp_path):
    from conftest import write_fake_mnist

    missing = invoke(["mnist:train", "--data-dir", tmp_path / "nowhere", "--model", onnx_model])
    assert missing.exit_code == EXIT_ERROR and "error: mnist:train: MNIST not found" in missing.stderr, missing.stderr
    data = write_fake_mnist(tmp_path / "data", n_train=12, n_test=12)
    few = invoke(["mnist:train", "--data-dir", data, "--model", onnx_model])  # 12 images: a row per image
    assert few.exit_code == EXIT_OK and "mnist:train:11" in few.stdout, few.stdout


# --- bad input ----------------------------------------------------------------------------------


def test_bad_files_are_reported_and_skipped_the_rest_written(onnx_model, digit_folder, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(digit_folder[0], folder / "digits")
    bad, odd = write_bad_and_odd_files(folder / "odd")
    out = tmp_path / "r.csv"
    result = invoke([folder, "--model", onnx_model, "-o", out, "--workers", 2])
    assert result.exit_code == EXIT_SOME_INPUTS_FAILED, result.output
    for name, reason in bad.items():
        line = next((x for x in result.stderr.splitlines() if x.startswith(f"skipped {folder / 'odd' / name}:")), None)
        assert line is not None, (name, result.stderr)
        assert reason in line, (name, line)
    assert f"{len(bad)} input(s) unreadable and skipped" in result.stderr
    written = {Path(r["path"]).name for r in read_results(out)}
    assert set(odd) <= written and not set(bad) & written
    assert len(written) == 150 + len(odd)


def test_every_input_unreadable_is_an_error_and_writes_nothing(onnx_model, tmp_path):
    bad, _ = write_bad_and_odd_files(tmp_path / "in")
    for name in list((tmp_path / "in").iterdir()):
        if name.name not in bad:
            name.unlink()
    out = tmp_path / "r.csv"
    result = invoke([tmp_path / "in", "--model", onnx_model, "-o", out])
    assert result.exit_code == EXIT_ERROR
    assert f"none of the {len(bad)} input file(s) could be read" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".r.csv*"))


def test_empty_folder(onnx_model, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    result = invoke([tmp_path / "empty", "--model", onnx_model])
    assert result.exit_code == EXIT_ERROR and "no image files under" in result.stderr


def test_missing_model_and_the_default_models(onnx_model, digit_folder, tmp_path, monkeypatch):
    """--model that is missing is an error; without --model the card's chain's model is used
    where it exists, and the model shipped with the package otherwise; each run says which."""
    import shutil

    from osr_infer.model import shipped_model_path

    result = invoke([digit_folder[0], "--model", tmp_path / "nope.onnx"])
    assert result.exit_code == EXIT_ERROR and f"model not found: {tmp_path / 'nope.onnx'}" in result.stderr
    monkeypatch.chdir(tmp_path)
    result = invoke([digit_folder[0], "--no-progress"])
    assert result.exit_code == EXIT_OK, result.stderr
    assert f"model: {shipped_model_path()} (" in result.stderr and "[the model shipped with osr-toolkit]" in result.stderr
    assert "classifying with the model shipped with osr-toolkit" in result.stderr
    (tmp_path / "artifacts" / "siamese").mkdir(parents=True)
    shutil.copy(onnx_model, tmp_path / "artifacts" / "siamese" / "model.onnx")
    result = invoke([digit_folder[0], "--no-progress"])
    assert result.exit_code == EXIT_OK, result.stderr
    assert "model: artifacts/siamese/model.onnx (" in result.stderr and "shipped" not in result.stderr


def test_a_file_that_is_not_onnx(digit_folder, tmp_path):
    (tmp_path / "model.onnx").write_text("not a model")
    result = invoke([digit_folder[0], "--model", tmp_path / "model.onnx"])
    assert result.exit_code == EXIT_ERROR and "is not a loadable ONNX model" in result.stderr


def test_model_without_osr_metadata_needs_an_explicit_threshold(onnx_model, digit_folder, tmp_path):
    bare = edit_onnx(onnx_model, tmp_path / "bare.onnx", drop_metadata=True)
    result = invoke([digit_folder[0], "--model", bare])
    assert result.exit_code == EXIT_ERROR
    assert "carries no osr.* metadata" in result.stderr and "give --threshold" in result.stderr
    assert "give --threshold (on the top softmax probability) or --score-threshold" in result.stderr
    reference = tmp_path / "ref.csv"
    invoke([digit_folder[0], "--model", onnx_model, "-o", reference])
    for option, decides_on in (("--threshold", "msp"), ("--score-threshold", "score")):
        out = tmp_path / f"r{option}.csv"
        result = invoke([digit_folder[0], "--model", bare, option, "0.999", "-o", out])
        assert result.exit_code == EXIT_OK, result.output
        assert result.stderr.splitlines()[0] == (
            f"model: {bare} (no osr.* metadata, 10 classes, 1x28x28; decides on {decides_on} >= 0.999 ({option}))"
        )
        assert f"note: bare.onnx has no osr.* metadata: deciding on {decides_on} >= 0.999" in result.stderr
        assert read_results(out) == read_results(reference)  # its score output is msp: the same rule


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--threshold", "1.5", "error: --threshold must be a number in (0, 1), got 1.5 (--threshold is on the top softmax probability"),
        ("--threshold", "1", "error: --threshold must be a number in (0, 1), got 1.0"),
        ("--threshold", "0", "error: --threshold must be a number in (0, 1), got 0.0"),
        ("--score-threshold", "1.5", "error: --score-threshold: threshold 1.5 is outside (0, 1), the range of the msp score"),
        ("--score-threshold", "nan", "error: --score-threshold must be a number in (-inf, inf), got nan"),
    ],
)
def test_threshold_outside_the_score_range(onnx_model, digit_folder, option, value, message):
    result = invoke([digit_folder[0], "--model", onnx_model, option, value])
    assert result.exit_code == EXIT_ERROR and result.stderr.startswith(message), result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_score_output_falls_back_to_msp_only_for_msp(onnx_model, digit_folder, tmp_path):
    no_score = edit_onnx(onnx_model, tmp_path / "noscore.onnx", drop_output="score")
    out, reference = tmp_path / "r.csv", tmp_path / "ref.csv"
    result = invoke([digit_folder[0], "--model", no_score, "-o", out])
    assert result.exit_code == EXIT_OK and "no 'score' output: using the top softmax probability" in result.stderr
    invoke([digit_folder[0], "--model", onnx_model, "-o", reference])
    assert [r["label"] for r in read_results(out)] == [r["label"] for r in read_results(reference)]
    energy = edit_onnx(no_score, tmp_path / "energy.onnx", props={"osr.score": '"energy"', "osr.threshold": "5.0"})
    result = invoke([digit_folder[0], "--model", energy])
    assert result.exit_code == EXIT_ERROR
    assert "has no 'score' output and its metadata score is 'energy'" in result.stderr


def test_bad_options_fail_before_any_work(onnx_model, digit_folder, tmp_path):
    cases = [
        (["--output", tmp_path / "r.txt"], "unsupported format '.txt'; use .csv, .jsonl or .parquet"),
        (["--batch-size", "0"], "--batch-size must be an integer in [1, 65536], got 0"),
        (["--batch-size", "65537"], "--batch-size must be an integer in [1, 65536], got 65537"),
        (["--workers", "-1"], "--workers must be an integer in [0, 256], got -1"),
        (["--atol", "0"], "--atol must be a number in (0, 1], got 0.0"),
        (["--atol", "nan"], "--atol must be a number in (0, 1], got nan"),
        (["--threshold", "inf"], "--threshold must be a number in (0, 1), got inf"),
        (["--score-threshold", "-inf"], "--score-threshold must be a number in (-inf, inf), got -inf"),
        (["--threshold", "0.9", "--score-threshold", "0.9"], "give --threshold (on the top softmax probability) or --score-threshold"),
    ]
    for extra, message in cases:
        result = invoke([digit_folder[0], "--model", onnx_model, *extra])
        assert result.exit_code == EXIT_ERROR and message in result.stderr, (extra, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output, (extra, result.output)
    result = invoke(["--model", onnx_model])
    assert result.exit_code == EXIT_ERROR and "nothing to classify" in result.stderr


# --- the parts -------------------------------------------------------------------------------------


def test_batcher_packs_pieces_into_exact_batches():
    rng = np.random.default_rng(0)
    sizes = [3, 10, 0, 1, 7, 4]
    pieces, start = [], 0
    for s, n in enumerate(sizes):
        pieces.append(Piece(s % 2, np.arange(start, start + n), rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), []))
        start += n
    batcher, got = Batcher(4, (28, 28)), []
    for piece in pieces:
        got += [(b.pixels.copy(), b.source, b.index) for b in batcher.add(piece)]
    got += [(b.pixels.copy(), b.source, b.index) for b in batcher.flush()]
    assert [len(b[2]) for b in got] == [4] * (sum(sizes) // 4) + [sum(sizes) % 4]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), np.concatenate([p.pixels for p in pieces]))
    np.testing.assert_array_equal(np.concatenate([b[2] for b in got]), np.arange(sum(sizes)))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), np.concatenate([np.full(len(p.index), p.source) for p in pieces]))


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_pool_is_ordered_and_reports_failures(tmp_path, workers):
    images, _ = digit_images(70)
    paths = write_pngs(tmp_path / "a", images)
    (tmp_path / "a" / "img00005.png").write_bytes(b"")
    (tmp_path / "a" / "img00066.png").write_text("text")
    source = Source("a", np.full(70, UNLABELLED), paths=[str(p) for p in paths])
    memory = Source("m", np.zeros(5), images=images[:5])
    with DecodePool(PREPROCESSING, workers, chunk_files=16) as pool:
        pieces = list(pool.pieces([source, memory]))
    decoded = [p for p in pieces if p.source == 0]
    index = np.concatenate([p.index for p in decoded])
    assert index.tolist() == [i for i in range(70) if i not in (5, 66)]
    np.testing.assert_array_equal(np.concatenate([p.pixels for p in decoded]), np.stack([load_image(paths[i]) for i in index]))
    failures = [f for p in decoded for f in p.failures]
    assert [(Path(f[0]).name, f[1][:10]) for f in failures] == [("img00005.png", "empty file"), ("img00066.png", "not an ima")]
    assert pieces[-1].source == 1 and pieces[-1].index.tolist() == [0, 1, 2, 3, 4]


def _decoded_in_order(pieces: list[Piece]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    return np.concatenate([p.index for p in pieces]), [f for p in pieces for f in p.failures]


def test_a_file_that_kills_its_decoding_worker_is_reported_and_the_rest_decoded(tmp_path):
    images, _ = digit_images(40)
    paths = write_pngs(tmp_path / "a", images)
    for i in (9, 30):  # valid PNGs, but the test decoder dies on them like a segfaulting codec
        paths[i] = paths[i].rename(paths[i].with_name(f"crash-{i}.png"))
    source = Source("a", np.full(40, UNLABELLED), paths=[str(p) for p in paths])
    with DecodePool(PREPROCESSING, 2, chunk_files=8, decode=crashing_decode) as pool:
        pieces = list(pool.pieces([source]))
        assert pool.crashes >= 2 and "died" in pool.notes()[0]
    index, failures = _decoded_in_order(pieces)
    assert index.tolist() == [i for i in range(40) if i not in (9, 30)]
    np.testing.assert_array_equal(np.concatenate([p.pixels for p in pieces]), np.stack([load_image(paths[i]) for i in index]))
    assert [Path(path).name for path, _ in failures] == ["crash-9.png", "crash-30.png"]
    assert all("decoder crashed on this file" in reason for _, reason in failures)


def test_a_killed_decoding_worker_is_replaced_and_nothing_is_lost(tmp_path):
    images, _ = digit_images(40)
    paths = write_pngs(tmp_path / "a", images)
    (tmp_path / "a" / "die-once.flag").touch()
    source = Source("a", np.full(40, UNLABELLED), paths=[str(p) for p in paths])
    with DecodePool(PREPROCESSING, 2, chunk_files=8, decode=dies_once_decode) as pool:
        pieces = list(pool.pieces([source]))
        assert pool.crashes == 1
    index, failures = _decoded_in_order(pieces)
    assert index.tolist() == list(range(40)) and failures == []


def test_decoding_gives_up_after_too_many_worker_deaths(tmp_path):
    images, _ = digit_images(20)
    paths = write_pngs(tmp_path / "a", images)
    for i in (3, 12):
        paths[i].rename(paths[i].with_name(f"crash-{i}.png"))
    source = Source("a", np.full(20, UNLABELLED), paths=sorted(str(p) for p in (tmp_path / "a").iterdir()))
    with DecodePool(PREPROCESSING, 2, chunk_files=4, decode=crashing_decode, max_crashes=1) as pool:
        with pytest.raises(InferenceError, match=r"died 2 times .*crash-.*`workers` 0"):
            list(pool.pieces([source]))


def test_ctrl_c_says_so_exits_130_and_leaves_no_results_file(tmp_path, onnx_model, monkeypatch):
    import osr_infer.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(osr_infer.pipeline, "iter_batches", interrupted)
    write_pngs(tmp_path / "in", digit_images(3)[0])
    result = invoke([tmp_path / "in", "--model", onnx_model, "--output", tmp_path / "r.csv", "--workers", "0"])
    assert result.exit_code == 130
    assert "interrupted: no results file was written" in result.stderr
    assert not (tmp_path / "r.csv").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_results_are_written_atomically(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("previous results\n")
    with pytest.raises(RuntimeError):
        with ResultsWriter(target) as writer:
            writer.write(["a.png"], ["3"], np.array([0.5]), np.array([0.5]))
            raise RuntimeError("interrupted")
    assert target.read_text() == "previous results\n" and len(list(tmp_path.iterdir())) == 1
    with ResultsWriter(tmp_path / "r.jsonl") as writer:
        writer.write(['odd "name",1.png'], ["unknown"], np.array([0.25], np.float32), np.array([np.nan]))
    assert read_results(tmp_path / "r.jsonl") == [{"path": 'odd "name",1.png', "label": "unknown", "probability": 0.25, "score": None}]
    with ResultsWriter(target) as writer:
        writer.write(['odd "name",1.png'], ["7"], np.array([0.1 + 0.2], np.float32), np.array([1 / 3], np.float32))
    (row,) = read_results(target)
    assert row["path"] == 'odd "name",1.png' and np.float32(row["probability"]) == np.float32(0.1 + 0.2)
    assert np.float32(row["score"]) == np.float32(1 / 3)


def test_sources_reject_duplicates_and_nothing(tmp_path):
    write_pngs(tmp_path / "f", digit_images(2)[0])
    with pytest.raises(InputError, match="given more than once"):
        resolve_sources([str(tmp_path / "f"), str(tmp_path / "f")], [], tmp_path, PREPROCESSING, None, DIGITS)
    with pytest.raises(InputError, match="nothing to classify"):
        resolve_sources([], [], tmp_path, PREPROCESSING, None, DIGITS)


# --- the card commands ----------------------------------------------------------------------------


@pytest.mark.slow
def test_card_commands_in_a_clean_folder(trained_digits, digit_folder, tmp_path, monkeypatch):
    """osr-train siamese --dataset digits -> osr-export --format onnx -> osr-infer <pngs> --threshold 0.999.

    Training is the shared fixture's (the same command with fewer epochs), copied where
    ``osr-train`` puts it; export and inference then run with their defaults, as written.
    """
    monkeypatch.chdir(tmp_path)
    Path("artifacts/siamese").mkdir(parents=True)
    shutil.copy(trained_digits / "model.pt", "artifacts/siamese/model.pt")
    exported = subprocess.run([str(Path(sys.executable).parent / "osr-export"), "--format", "onnx"], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    assert Path("artifacts/siamese/model.onnx").is_file()
    shutil.copytree(digit_folder[0], "images")
    result = invoke(["images/", "--threshold", "0.999", "--output", "predictions.csv"])
    assert result.exit_code == EXIT_OK, result.output
    assert [r["path"] for r in read_results("predictions.csv")] == [f"images/img{i:05d}.png" for i in range(150)]


@pytest.mark.parametrize(
    "cores, workers, batch, expected",
    [(2, 2, 256, (1, False)), (16, 16, 256, (4, False)), (16, 8, 256, (8, False)), (16, 0, 256, (16, True)), (16, 0, 1, (1, False))],
)
def test_onnx_runtime_threads_leave_the_cores_to_decoding_but_never_starve(monkeypatch, cores, workers, batch, expected):
    import osr_infer.model
    from osr_infer.model import ort_threading

    monkeypatch.setattr(osr_infer.model, "default_cores", lambda: cores)
    assert ort_threading(workers, batch) == expected
