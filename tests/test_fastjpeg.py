"""The fast JPEG path (libjpeg-turbo through simplejpeg) gives PIL's pixels, bit for bit, and
hands everything it does not handle to PIL unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from conftest import missing, shared_data_dir
from infer_testing import assert_fast_path_is_the_reference
from osr_infer import fastjpeg
from osr_infer.preprocess import ImageDecodeError, PreprocessContract, _fast_pixels, image_of, load_image

PLAIN = PreprocessContract()
LAYOUT = PreprocessContract(steps=("layout",))


def pil_decoded(path: Path, contract: PreprocessContract) -> Image.Image:
    """What load_image's PIL path decodes before the contract's conversion (steps 1-2)."""
    with Image.open(path) as img:
        if contract.draft:
            img.draft(None, (contract.draft_size, contract.draft_size))
        img.load()
        return ImageOps.exif_transpose(img) if contract.exif else img.copy()


def assert_same_decode(path: Path, contract: PreprocessContract) -> bool:
    """True if the fast path took the file (and then its pixels are PIL's)."""
    pixels = _fast_pixels(str(path), contract)
    if pixels is None:
        return False
    fast = image_of(pixels)
    reference = pil_decoded(path, contract)
    assert fast.mode == reference.mode and fast.size == reference.size, (path.name, fast.mode, fast.size, reference.size)
    assert fast.tobytes() == reference.tobytes(), path.name
    return True


def _page(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    noise = rng.integers(200, 245, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    page = Image.fromarray(noise).resize(size, Image.Resampling.BILINEAR)
    ImageDraw.Draw(page).line([(size[0] * 0.4, size[1] * 0.3), (size[0] * 0.6, size[1] * 0.3), (size[0] * 0.45, size[1] * 0.75)],
                              fill=(30, 30, 110), width=max(2, size[0] // 25))
    return page


def _jpegs(folder: Path) -> dict[str, Path]:
    """JPEGs of every kind the fast path meets: grey, chroma subsamplings, progressive, each
    draft scale, every EXIF orientation, and the ones it must leave to PIL."""
    folder.mkdir()
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options) -> None:
        files[name] = folder / f"{name}.jpg"
        image.save(files[name], "JPEG", **options)

    page = _page((640, 480), 1)
    save("grey", page.convert("L"), quality=90)
    for subsampling in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
        save(f"subsampling{subsampling}", page, quality=85, subsampling=subsampling)
    save("progressive", page, quality=80, progressive=True)
    save("tiny", Image.new("RGB", (1, 1), (200, 10, 10)))
    save("odd-size", _page((33, 17), 2), quality=95)
    for width, height in ((520, 515), (1100, 1030), (2100, 2050), (4032, 3024)):  # draft scales 2, 4, 8, 8
        save(f"draft-{width}x{height}", _page((width, height), width), quality=85)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"exif{orientation}", _page((600, 520), orientation), quality=88, exif=exif.tobytes())
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' \
          b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    save("xmp-orientation", page, quality=85, xmp=xmp)
    save("cmyk", page.convert("CMYK"), quality=90)
    # Two EXIF blocks (PIL appends the second to the first): orientation 1, then a block saying 6.
    data = files["exif1"].read_bytes()
    first = data.index(b"\xff\xe1")
    end = first + 2 + int.from_bytes(data[first + 2 : first + 4], "big")
    turned = Image.Exif()
    turned[0x0112] = 6
    block = turned.tobytes()  # "Exif\0\0" and the TIFF block
    files["two-exif"] = folder / "two-exif.jpg"
    files["two-exif"].write_bytes(data[:end] + b"\xff\xe1" + (len(block) + 2).to_bytes(2, "big") + block + data[end:])
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(files["progressive"].read_bytes()[:4000])
    files["png-named-jpg"] = folder / "png-named-jpg.jpg"
    page.save(files["png-named-jpg"], "PNG")
    return files


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> dict[str, Path]:
    return _jpegs(tmp_path_factory.mktemp("jpegs") / "files")


def test_fast_path_gives_pils_pixels_on_every_kind_of_jpeg(jpegs):
    taken = {name for name, path in jpegs.items() for contract in (PLAIN, LAYOUT) if assert_same_decode(path, contract)}
    # What it must take, and what it must leave to PIL.
    assert {"grey", "subsampling0", "subsampling1", "subsampling2", "progressive", "tiny", "odd-size",
            "draft-4032x3024", *(f"exif{o}" for o in range(1, 9))} <= taken
    assert not taken & {"xmp-orientation", "cmyk", "truncated", "png-named-jpg", "two-exif"}


@pytest.mark.parametrize("contract", [PLAIN, LAYOUT], ids=["plain", "layout"])
def test_load_image_is_the_same_with_and_without_the_fast_path(jpegs, contract):
    assert_fast_path_is_the_reference(jpegs, contract)


def test_draft_scale_is_pils(jpegs):
    """JpegImageFile.draft's choice of scale, including images smaller than the draft size."""
    for name in ("tiny", "draft-520x515", "draft-1100x1030", "draft-2100x2050", "draft-4032x3024"):
        data = jpegs[name].read_bytes()
        pixels, _, _ = fastjpeg.decode(data, LAYOUT.draft_size, 64_000_000, ValueError)
        assert pixels.shape[:2][::-1] == pil_decoded(jpegs[name], LAYOUT).size, name


def test_exif_reader_agrees_with_pil(jpegs):
    for name, path in jpegs.items():
        found = fastjpeg.exif_orientation(path.read_bytes())
        if found is not None:
            with Image.open(path) as img:
                assert found == img.getexif().get(0x0112, 1), name
    assert fastjpeg.exif_orientation(jpegs["xmp-orientation"].read_bytes()) is None  # PIL reads XMP too: its call


def test_too_large_is_refused_before_decoding(tmp_path):
    """The pixel limit holds on the fast path too: one line, from the header alone."""
    path = tmp_path / "big.jpg"
    buffer = io.BytesIO()
    Image.new("L", (64, 48), 128).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (40000).to_bytes(2, "big") + (40000).to_bytes(2, "big")  # 40000 x 40000
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="too large"):
        load_image(path, PLAIN, fast=True)


@pytest.mark.slow
def test_all_cifar10_jpegs_decode_bit_identically():
    root = shared_data_dir() / "cifar10-test-jpeg"
    files = sorted(root.rglob("*.jpg"))
    if len(files) < 10_000:
        missing(f"the 10,000 CIFAR-10 test JPEGs are not at {root}")
    for path in files:
        assert assert_same_decode(path, PLAIN), path
