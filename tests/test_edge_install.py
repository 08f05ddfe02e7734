"""The edge install: ``pip install .`` without extras classifies with no torch, onnx or scikit-learn.

A fresh virtual environment gets the base install only (from PyPI through pip's cache, with the
tested pins); torch must not be importable there, and ``osr-infer`` run there on a folder and on
a model exported by the full install must write exactly the results the full install writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, missing
from infer_testing import cached_digits_onnx, digit_images, write_pngs

pytestmark = pytest.mark.slow


def _run(*args: str | Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env)


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("edge") / "venv"
    done = _run(sys.executable, "-m", "venv", venv)
    assert done.returncode == 0, done.stderr
    install = _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "-c", REPO / "constraints.txt", REPO)
    if install.returncode != 0 and "Could not find a version" in install.stderr + install.stdout:
        missing(f"no package index reachable for the edge install: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_the_base_install_has_no_torch_and_classifies_like_the_full_one(edge_venv, tmp_path_factory, trained_digits, tmp_path):
    python = edge_venv / "bin" / "python"
    probe = _run(python, "-c", "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
                 "('torch', 'onnx', 'onnxscript', 'matplotlib', 'sklearn', 'onnxruntime', 'PIL', 'numpy')}))")
    assert probe.returncode == 0, probe.stderr
    import json

    found = json.loads(probe.stdout)
    assert found == {"torch": False, "onnx": False, "onnxscript": False, "matplotlib": False, "sklearn": False,
                     "onnxruntime": True, "PIL": True, "numpy": True}
    site = next((edge_venv / "lib").glob("python3*/site-packages"))
    size_mb = _tree_size(site) / 2**20
    print(f"\nedge install: {size_mb:.0f} MiB of site-packages")  # quoted in the README
    assert size_mb < 400

    model = cached_digits_onnx(tmp_path_factory, trained_digits)
    images, _ = digit_images(40, seed=3)
    folder = tmp_path / "images"
    write_pngs(folder, images)
    edge_csv, full_csv = tmp_path / "edge.csv", tmp_path / "full.csv"
    edge = _run(edge_venv / "bin" / "osr-infer", folder, "--model", model, "--output", edge_csv, "--workers", "2")
    full = _run(sys.executable, "-m", "osr_infer.cli", folder, "--model", model, "--output", full_csv, "--workers", "2")
    assert edge.returncode == 0, edge.stderr
    assert full.returncode == 0, full.stderr
    assert edge_csv.read_text() == full_csv.read_text()
    assert len(edge_csv.read_text().splitlines()) == 41

    # The commands that need torch say so in one line instead of a traceback.
    train = _run(edge_venv / "bin" / "osr-train", "--help")
    assert train.returncode == 2 and "pip install 'osr-toolkit[train]'" in train.stderr and "Traceback" not in train.stderr
    parity = _run(edge_venv / "bin" / "osr-infer", folder, "--model", model, "--parity", trained_digits / "model.pt")
    assert parity.returncode == 2 and "training install" in parity.stderr and "Traceback" not in parity.stderr
    serve = _run(edge_venv / "bin" / "osr-serve", "--help")  # the service is an extra too
    assert serve.returncode == 2 and "pip install 'osr-toolkit[serve]'" in serve.stderr and "Traceback" not in serve.stderr


def test_labelled_metrics_at_the_edge_need_no_scikit_learn(edge_venv, tmp_path_factory, trained_digits, tmp_path):
    """A class-per-subfolder folder is scored with metrics (numpy AUROC) in the base install."""
    model = cached_digits_onnx(tmp_path_factory, trained_digits)
    images, labels = digit_images(30, seed=4)
    for label in np.unique(labels):
        write_pngs(tmp_path / "set" / str(label), images[labels == label], prefix=f"d{label}-")
    write_pngs(tmp_path / "set" / "unknown-noise", np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8))
    done = _run(edge_venv / "bin" / "osr-infer", f"folder:{tmp_path / 'set'}", "--model", model, "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert "closed-set accuracy" in done.stdout and "AUROC" in done.stdout


def readme_quickstart() -> str:
    """The README's Python quick start: the block marked ``snippet: quickstart``."""
    from docs_testing import snippet

    block = snippet("quickstart")
    assert block.file.name == "README.md" and block.language == "python"
    return block.code


def _quickstart_files(folder: Path) -> None:
    """What the quick start names: a digit PNG, a sideways JPEG with its EXIF orientation, and a
    folder of photos (PNGs, a JPEG, and a file that is no image)."""
    from PIL import Image

    images, _ = digit_images(8, seed=9)
    Image.fromarray(images[0]).save(folder / "digit.png")
    big = Image.fromarray(images[1]).resize((300, 300), Image.Resampling.BILINEAR).rotate(90, expand=True).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees to show it upright
    big.save(folder / "photo.jpg", format="JPEG", quality=90, exif=exif.tobytes())
    write_pngs(folder / "photos", images[2:7])
    Image.fromarray(images[7]).convert("RGB").save(folder / "photos" / "z-colour.jpg", quality=95)
    (folder / "photos" / "notes.png").write_bytes(b"not an image")


def test_the_readme_quick_start_runs_on_the_base_install_with_the_shipped_model(edge_venv, tmp_path):
    """Run from the README's own text, in a fresh base install (no torch), the quick start gives
    the rows osr-infer writes for the same files: paths, a sideways JPEG, a PIL image, a uint8
    array and raw bytes; osr-infer there, with no --model and no artifacts/, uses the shipped
    model and says so; --threshold 0.999 keeps its meaning."""
    import json

    _quickstart_files(tmp_path)
    dump = (
        "\nimport json\n"
        "json.dump({'predict': p.to_rows(), 'model': str(model.path),\n"
        "           'files': [r for b in model.predict_files('photos/', workers=2) for r in b.to_rows()]},\n"
        "          open('api.json', 'w'))\n"
    )
    (tmp_path / "quickstart.py").write_text(readme_quickstart() + dump)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OSR_DATA_DIR")}

    def run(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)

    done = run(edge_venv / "bin" / "python", "quickstart.py")
    assert done.returncode == 0, done.stderr
    assert "skipped photos/notes.png" in done.stdout and "[the model shipped with osr-toolkit]" in done.stdout
    api = json.loads((tmp_path / "api.json").read_text())
    assert "site-packages/osr_infer/models/" in api["model"]

    infer = edge_venv / "bin" / "osr-infer"
    single = run(infer, "digit.png", "photo.jpg", "--output", "single.jsonl", "--no-progress")
    assert single.returncode == 0, single.stderr
    assert "[the model shipped with osr-toolkit]" in single.stderr and "classifying with the model shipped" in single.stderr
    assert not (tmp_path / "artifacts").exists()
    by_name = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "single.jsonl").read_text().splitlines())}
    order = ["digit.png", "photo.jpg", "digit.png", "digit.png", "photo.jpg"]  # path, path, PIL image, array, bytes
    for name, row in zip(order, api["predict"], strict=True):
        assert row["label"] == by_name[name]["label"], name
        # The same pixels (tests/test_api.py checks them bit for bit); ONNX Runtime's score of a row
        # depends in its last bit on the row's place in the batch, and these batches differ.
        assert row["score"] == pytest.approx(by_name[name]["score"], rel=1e-6, abs=1e-9), name
        assert row["probability"] == pytest.approx(by_name[name]["probability"], rel=1e-6, abs=1e-9), name

    folder = run(infer, "photos/", "--output", "folder.jsonl", "--workers", "2", "--no-progress")
    assert folder.returncode == 3 and "notes.png" in folder.stderr  # an unreadable file: reported, the rest classified
    cli_rows = [json.loads(line) for line in (tmp_path / "folder.jsonl").read_text().splitlines()]
    assert [(r["path"], r["label"], np.float32(r["score"])) for r in api["files"]] == \
        [(r["path"], r["label"], np.float32(r["score"])) for r in cli_rows]
    assert len(cli_rows) == 6

    card = run(infer, "photos/", "--threshold", "0.999", "--output", "card.jsonl", "--no-progress")
    assert card.returncode == 3
    assert "decides on msp >= 0.999 (--threshold)" in card.stderr
    for row in map(json.loads, (tmp_path / "card.jsonl").read_text().splitlines()):
        assert (row["label"] != "unknown") == (np.float32(row["probability"]) >= np.float32(0.999))
