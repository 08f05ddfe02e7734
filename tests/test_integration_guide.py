"""The integration guide (docs/integration.md): its onnxruntime + numpy + Pillow snippet, executed as written,
gives osr-infer's labels and scores on a mixed folder (PNGs, JPEGs up to 12 megapixels, EXIF
orientation, transparency), for a model with the plain resize and one with the layout step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from docs_testing import snippet
from export_testing import cifar_like_rgb
from infer_testing import digit_images, export_onnx
from osr_infer.results import read_results
from osr_train.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow


def guide_snippet() -> str:
    """The integration guide's code (docs/integration.md, the block marked ``snippet: integration``)."""
    return snippet("integration").code


def mixed_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    images, _ = digit_images(6, seed=5)
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / f"digit{i}.png")
    for i, rgb in enumerate(cifar_like_rgb(4, seed=3)):
        Image.fromarray(rgb).save(root / f"photo{i}.jpg", quality=90)
    page = Image.new("RGB", (4032, 3024), (236, 232, 220))
    ImageDraw.Draw(page).line([(1900, 900), (2100, 900), (1950, 2000)], fill=(20, 30, 90), width=60)
    page.save(root / "seven-12mp.jpg", quality=85)
    sideways = page.resize((1600, 1200)).rotate(90, expand=True)
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(root / "seven-exif.jpg", exif=exif, quality=85)
    ink = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(ink).ellipse([80, 60, 220, 240], outline=(10, 10, 10, 255), width=22)
    ink.save(root / "zero-transparent.png")
    return root


@pytest.mark.parametrize("layout", [False, True], ids=["plain-resize", "layout-step"])
def test_the_guide_snippet_matches_osr_infer(trained_digits, tmp_path, layout, monkeypatch):
    model, spec, record = load_checkpoint(trained_digits / "model.pt")
    if layout:
        spec = spec.replace(preprocessing=dataclasses.replace(spec.preprocessing, steps=("layout",)))
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, spec, record)
    onnx_path = export_onnx(checkpoint, tmp_path / "model.onnx")
    folder = mixed_folder(tmp_path / "mixed")
    paths = sorted(str(p) for p in folder.iterdir())

    monkeypatch.chdir(tmp_path)  # the snippet opens "model.onnx"
    namespace: dict = {}
    exec(compile(guide_snippet(), "docs/integration.md", "exec"), namespace)  # noqa: S102 - the guide's own code
    labels, scores = namespace["classify"](paths)

    from osr_infer.cli import app

    out = tmp_path / "r.csv"
    result = CliRunner().invoke(app, [str(folder), "--model", str(onnx_path), "--output", str(out), "--workers", "0"])
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in read_results(out)}
    assert [rows[p]["label"] for p in paths] == labels
    np.testing.assert_allclose([rows[p]["score"] for p in paths], scores, rtol=0, atol=1e-5)
