"""Helpers for the osr-infer tests: ONNX models made from the shared trained-digits checkpoint,
image files of every awkward kind, and a CLI runner that keeps stdout and stderr apart."""

from __future__ import annotations

import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from osr_infer.decode import decode_files


def export_onnx(checkpoint: Path, target: Path) -> Path:
    """Export with the toolkit's own ONNX export core (what osr-export does)."""
    from osr_export.onnx_export import save_onnx, to_onnx_model
    from osr_export.source import metadata_from_checkpoint, scored_from_checkpoint

    scored, spec, config = scored_from_checkpoint(checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(to_onnx_model(scored, metadata_from_checkpoint(checkpoint, spec, config)), target)
    return target


def cached_digits_onnx(tmp_path_factory, trained_digits: Path) -> Path:
    """The trained-digits model as ONNX, exported once per session (shared by the test modules)."""
    target = tmp_path_factory.getbasetemp() / "infer-digits-onnx" / "model.onnx"
    if not target.is_file():
        export_onnx(trained_digits / "model.pt", target)
    return target


def edit_onnx(source: Path, target: Path, *, drop_metadata: bool = False, drop_output: str | None = None, props: dict | None = None) -> Path:
    """A modified copy of a model: without osr.* metadata, without an output, or with other props."""
    import onnx

    model = onnx.load(str(source))
    if drop_metadata:
        keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("osr.")]
        del model.metadata_props[:]
        for key, value in keep:
            model.metadata_props.add(key=key, value=value)
    for key, value in (props or {}).items():
        entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add(key=key)
        entry.value = value
    if drop_output is not None:
        outputs = [o for o in model.graph.output if o.name != drop_output]
        del model.graph.output[:]
        model.graph.output.extend(outputs)
    target.write_bytes(model.SerializeToString())
    return target


def digit_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` test digits of the bundled set (28x28 uint8) with their labels."""
    from osr_infer.data.digits import load_digits_open_set

    test = load_digits_open_set(seed=0).test
    pick = np.random.default_rng(seed).choice(len(test), size=n, replace=False)
    return test.images[pick], test.labels[pick]


def write_pngs(folder: Path, images: np.ndarray, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}{i:05d}.png"
        Image.fromarray(image, mode="L").save(path)
        paths.append(path)
    return paths


def png_bomb(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def write_bad_and_odd_files(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Files that must be skipped ({name: expected reason}) and odd-but-valid images (names)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image\n")
    (folder / "garbage.jpg").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    Image.fromarray(rgb).save(folder / "whole.png")
    data = (folder / "whole.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "whole.png").unlink()
    png_bomb(folder / "bomb.png")
    bad = {
        "zero.png": "empty file (0 bytes)",
        "text.png": "not an image file",
        "garbage.jpg": "not an image file",
        "truncated.png": "truncated",
        "bomb.png": "too large",
    }
    odd = {
        "rgba.png": Image.fromarray(rgb).convert("RGBA"),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "gray16.png": Image.fromarray((rng.integers(0, 65536, (30, 40))).astype(np.uint16)),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "tiny.png": Image.new("L", (1, 1), 200),
    }
    for name, image in odd.items():
        image.save(folder / name)
    assert Image.open(folder / "gray16.png").mode.startswith("I;16")
    return bad, sorted(odd)


def invoke(args: list[str]):
    """Run the osr-infer CLI in-process; the result has exit_code, stdout and stderr."""
    from typer.testing import CliRunner

    from osr_infer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def crashing_decode(paths, contract):
    """decode_files, except that a worker given a file named crash-* dies on the spot (a decoder segfault)."""
    if any(Path(p).name.startswith("crash-") for p in paths):
        os._exit(70)
    return decode_files(paths, contract)


def dies_once_decode(paths, contract):
    """decode_files, except that the first worker to see ``die-once.flag`` beside its files is
    SIGKILLed (as by the out-of-memory killer) and removes the flag, so that it happens once."""
    flag = Path(paths[0]).parent / "die-once.flag"
    try:
        flag.unlink()
    except FileNotFoundError:
        return decode_files(paths, contract)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def assert_fast_path_is_the_reference(files: dict[str, Path], contract) -> None:
    """Every file decodes on the fast path (load_image, and decode_files' stacks) to the
    reference path's pixels, or fails with the reference path's message (PIL decoded it both times)."""
    import pytest

    from osr_infer.preprocess import ImageDecodeError, load_image

    for name, path in files.items():
        try:
            reference = load_image(path, contract, fast=False)
        except ImageDecodeError as exc:
            with pytest.raises(ImageDecodeError) as fast_error:
                load_image(path, contract, fast=True)
            assert str(fast_error.value) == str(exc), name
            continue
        assert np.array_equal(load_image(path, contract, fast=True), reference), name
    paths = [str(p) for p in files.values()]
    fast, slow = decode_files(paths, contract, fast=True), decode_files(paths, contract, fast=False)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1]) and fast[2] == slow[2]
