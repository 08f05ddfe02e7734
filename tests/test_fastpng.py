"""The fast PNG path gives PIL's pixels, bit for bit, and leaves every PNG it cannot read with
certainty (and every broken one) to PIL, whose pixels, orientation and messages stay the same."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from conftest import missing, shared_data_dir
from infer_testing import assert_fast_path_is_the_reference
from osr_infer import fastpng
from osr_infer.decode import decode_files
from osr_infer.preprocess import ImageDecodeError, PreprocessContract, _fast_pixels, load_image

LAYOUT = PreprocessContract(steps=("layout",))
PLAIN = PreprocessContract()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """``data`` with a chunk inserted right after IHDR."""
    return data[:33] + _chunk(kind, body) + data[33:]


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> dict[str, Path]:
    """PNGs of every kind: what the fast path takes and what it must leave to PIL."""
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 22), dtype=np.uint8)
    rgb = rng.integers(0, 256, (21, 40, 3), dtype=np.uint8)
    files: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, **options) -> None:
        buffer = io.BytesIO()
        image.save(buffer, "PNG", **options)
        files[name] = buffer.getvalue()

    save("grey", Image.fromarray(grey))
    save("grey-best-compression", Image.fromarray(grey), compress_level=9)
    save("grey-no-compression", Image.fromarray(grey), compress_level=0)
    save("rgb", Image.fromarray(rgb))
    save("big-rgb", Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)))
    save("grey-dpi", Image.fromarray(grey), dpi=(300, 300))
    save("one-pixel", Image.fromarray(grey[:1, :1]))
    # What it leaves to PIL.
    save("rgba", Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)))
    save("grey-alpha", Image.fromarray(rng.integers(0, 256, (20, 20, 2), dtype=np.uint8)))
    save("palette", Image.fromarray(rgb).convert("P"))
    save("sixteen-bit", Image.fromarray(grey.astype(np.uint16) * 257))
    save("bilevel", Image.fromarray(grey > 128))
    save("grey-transparent", Image.fromarray(grey), transparency=0)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a text chunk")
    save("text", Image.fromarray(grey), pnginfo=info)
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif-orientation", Image.fromarray(grey), exif=exif)
    grey_png = files["grey"]
    # Adam7: the same header with the interlace flag; PIL decodes (or refuses) it its own way.
    header = bytearray(grey_png[8:33])
    header[-5] = 1
    header[-4:] = struct.pack(">I", zlib.crc32(bytes(header[4:-4])))
    files["interlaced"] = grey_png[:8] + bytes(header) + grey_png[33:]
    files["bad-crc"] = grey_png[:29] + bytes([grey_png[29] ^ 1]) + grey_png[30:]
    files["truncated"] = grey_png[: len(grey_png) // 2]
    files["no-iend"] = grey_png[:-12]
    files["unknown-chunk"] = _with_chunk(grey_png, b"zzZz", b"private")
    files["not-a-png"] = b"\x89PNG\r\n\x1a\nnot really"
    files["empty-idat"] = grey_png[:33] + _chunk(b"IDAT", b"") + grey_png[-12:]
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.png"
        paths[name].write_bytes(data)
    return paths


TAKEN = {"grey", "grey-best-compression", "grey-no-compression", "rgb", "big-rgb", "grey-dpi", "one-pixel"}


def test_the_fast_path_takes_plain_pngs_with_pils_pixels_and_leaves_the_rest(pngs):
    taken = set()
    for name, path in pngs.items():
        pixels = _fast_pixels(str(path), PLAIN)
        if pixels is None:
            continue
        taken.add(name)
        with Image.open(path) as reference:
            assert np.array_equal(pixels, np.asarray(reference)), name
    assert taken == TAKEN


@pytest.mark.parametrize("contract", [PLAIN, LAYOUT, PreprocessContract.for_shape(28, 3)], ids=["plain", "layout", "rgb"])
def test_load_image_and_decode_files_are_the_same_with_and_without_the_fast_path(pngs, contract):
    assert_fast_path_is_the_reference(pngs, contract)


def test_too_large_is_left_to_pils_path_which_refuses_it_from_the_header(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 40000, 40000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    assert fastpng.decode(bytes(data), 64_000_000) is None
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="too large"):
        load_image(path, PLAIN, fast=True)


@pytest.mark.slow
def test_every_mnist_test_digit_as_a_png_decodes_identically(tmp_path):
    """The 10,000 MNIST test digits written as PNGs (what a folder of digit images holds)."""
    root = shared_data_dir()
    if not (root / "MNIST" / "raw").is_dir():
        missing(f"MNIST is not under {root}")
    from osr_infer.data.mnist import load_mnist

    digits = load_mnist(root, "test").images
    paths = []
    for i, digit in enumerate(digits):
        paths.append(str(tmp_path / f"{i:05d}.png"))
        Image.fromarray(digit, mode="L").save(paths[-1])
    for i in range(0, len(paths), 500):
        assert np.array_equal(_fast_pixels(paths[i], LAYOUT), digits[i])
    for start in range(0, len(paths), 1000):
        chunk = paths[start : start + 1000]
        fast, reference = decode_files(chunk, LAYOUT, fast=True), decode_files(chunk, LAYOUT, fast=False)
        assert np.array_equal(fast[0], reference[0]) and np.array_equal(fast[1], reference[1]), start


def test_a_named_pipe_called_an_image_does_not_hang_the_fast_path(tmp_path):
    """The fast path opens files itself: a FIFO named x.png or x.jpg must be reported as the
    reference path reports it, not block the worker forever on open."""
    import os
    import threading

    pipes = [tmp_path / "pipe.png", tmp_path / "pipe.jpg"]
    for pipe in pipes:
        os.mkfifo(pipe)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(decode_files([str(p) for p in pipes], LAYOUT, fast=True)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert result, "decoding a named pipe hung"
    assert result[0][2] == decode_files([str(p) for p in pipes], LAYOUT, fast=False)[2] and len(result[0][2]) == 2
