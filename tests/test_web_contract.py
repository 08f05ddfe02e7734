"""The web page's preprocessing against Python's, byte for byte, in Node.

``osr_export/web/static/contract.js`` ports the contract (flatten_alpha, the colour conversion,
PIL's resize filters and the layout step) and ``png.js`` decodes PNG files as PIL does. Here both
run in Node (tests/web_contract_check.mjs) on inputs written to tmp_path (raw RGBA + a JSON
manifest) and must give exactly Python's bytes: ``PreprocessContract.to_uint8`` and ``normalize``
for every image and contract, PIL's pixels, mode and EXIF orientation for every PNG, and
``PreprocessContract.from_dict``'s verdict for every preprocessing dict.

Images: drawn ones (dark ink on paper under uneven light, ruled and squared paper, gradients,
light ink on dark, transparent PNGs with antialiased edges, palettes with transparency, 16-bit
grey, interlaced files with every filter and bit depth, tiny, blank, 1x1 and very wide ones), and,
when the real data is present ($OSR_DATA_DIR or ../shared/datasets), MNIST test digits and CIFAR-10
JPEGs (decoded by PIL: JPEG decoding is the browser's business, not the port's).

Skips when ``node`` is not on PATH, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

from conftest import REPO, shared_data_dir
from osr_infer.preprocess import PreprocessContract, to_grayscale

CHECK = REPO / "tests" / "web_contract_check.mjs"
NODE_TIMEOUT_S = 240
#: Real images per data set (MNIST digits, CIFAR-10 JPEGs) when the data is present.
REAL_SAMPLE = 150

#: Contracts checked, as model metadata stores them (PreprocessContract.to_dict).
CONTRACTS = {
    "layout": PreprocessContract(steps=("layout",)),  # the default recipe's (osr_train/pipeline.py)
    "layout-bicubic-32": PreprocessContract(size=32, resize="bicubic", mean=(0.1307,), std=(0.3081,), steps=("layout",)),
    "L-bilinear-28": PreprocessContract(),
    "RGB-bilinear-32": PreprocessContract.for_shape(32, 3),
    "L-bicubic-20": PreprocessContract(size=20, resize="bicubic"),
    "L-lanczos-37": PreprocessContract(size=37, resize="lanczos"),
    "L-nearest-24": PreprocessContract(size=24, resize="nearest"),
    "RGB-nearest-30": PreprocessContract(size=30, channels=3, color="RGB", resize="nearest", mean=(0.485, 0.456, 0.406),
                                         std=(0.229, 0.224, 0.225)),
    "L-drop-v2": PreprocessContract.from_dict({"version": 2, "size": 28, "channels": 1, "color": "L", "resize": "bilinear",
                                              "mean": [0.5], "std": [0.5]}),
    "RGB-drop-lanczos-16": PreprocessContract.for_shape(16, 3, resize="lanczos", alpha="drop"),
}
#: Contracts for the real images (fewer: there are many of those).
REAL_CONTRACTS = ("layout", "L-bilinear-28", "RGB-bilinear-32", "L-bicubic-20")

#: Preprocessing dicts for parseContract against PreprocessContract.from_dict.
PARSE_CASES = [
    {},
    PreprocessContract(steps=("layout",)).to_dict(),
    {"size": 32, "channels": 3, "color": "RGB", "mean": 0.5, "std": [0.5, 0.5, 0.5]},
    {"version": 1, "grayscale": True, "size": 28, "mean": 0.1307, "std": 0.3081},
    {"version": 2, "size": 28, "channels": 1, "color": "L", "resize": "bicubic", "mean": [0.5], "std": [0.5]},
    {"version": 2, "alpha": "flatten", "exif": True},
    {"size": 28, "resize": "box"},
    {"size": 28, "resize": "hamming"},
    {"size": 3},
    {"size": True},
    {"size": 2000},
    {"color": "RGB"},
    {"color": "CMYK", "channels": 4},
    {"mean": [0.5, 0.5]},
    {"std": [0.0]},
    {"alpha": "premultiply"},
    {"steps": ["layout", "sharpen"]},
    {"steps": ["layout"], "color": "RGB", "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3},
    {"version": 4},
    {"version": 3, "grayscale": True},
    {"colour": "L"},
]


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not on PATH: the web contract check needs Node.js (CI=true, so this is no skip)")
        pytest.skip("node is not on PATH")
    return node


def real_data_dir() -> Path | None:
    """$OSR_DATA_DIR, else the shared data sets (conftest), when they hold MNIST and CIFAR-10 JPEGs."""
    for root in (os.environ.get("OSR_DATA_DIR"), shared_data_dir()):
        if root and (Path(root) / "MNIST" / "raw").is_dir() and (Path(root) / "cifar10-test-jpeg").is_dir():
            return Path(root)
    return None


# --------------------------------------------------------------------------------------------
# What the decoder hands toUint8 for a PIL image: 8-bit RGBA and PIL's mode


def decoded_rgba(image: Image.Image) -> tuple[np.ndarray, str]:
    """The RGBA pixels and mode hint the page's decoder gives for a decoded PIL image: grey
    levels as R = G = B (16-bit grey rescaled as to_grayscale does), palettes through their
    colours and transparency, no alpha band as 255."""
    mode = image.mode
    if mode in ("1", "L", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = np.asarray(to_grayscale(image))
        rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
        return rgba, ("I;16" if mode.startswith("I;16") else mode)
    if mode == "LA":
        la = np.asarray(image)
        return np.dstack([la[..., 0], la[..., 0], la[..., 0], la[..., 1]]), "LA"
    if mode in ("P", "PA"):
        return np.asarray(image.convert("RGBA")), mode
    if mode == "RGBA":
        return np.asarray(image), "RGBA"
    return np.asarray(image.convert("RGBA") if mode == "RGB" else image.convert("RGB").convert("RGBA")), "RGB"


def decode_like_load_image(path: Path, contract: PreprocessContract) -> Image.Image:
    """osr_infer.preprocess.load_image up to the decoded PIL image: draft, load, EXIF transpose."""
    with Image.open(path) as img:
        if contract.draft:
            img.draft(None, (contract.draft_size, contract.draft_size))
        img.load()
        if contract.exif:
            ImageOps.exif_transpose(img, in_place=True)
        return img


# --------------------------------------------------------------------------------------------
# A PNG writer for what PIL cannot write: interlacing, every filter, 2/4/16-bit samples, tRNS


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _scanlines(samples: np.ndarray, bit_depth: int, first_filter: int) -> bytes:
    """Rows of samples (h x w x channels) packed and filtered, cycling through the five filters."""
    channels = samples.shape[2]
    bpp = max(1, channels * bit_depth // 8)
    out, prior = [], None
    for y, row in enumerate(samples):
        flat = row.reshape(-1)
        if bit_depth == 16:
            raw = flat.astype(">u2").tobytes()
        elif bit_depth == 8:
            raw = flat.astype(np.uint8).tobytes()
        else:
            per = 8 // bit_depth
            padded = np.zeros(-(-len(flat) // per) * per, dtype=np.uint8)
            padded[: len(flat)] = flat
            shifts = np.arange(per - 1, -1, -1) * bit_depth
            raw = (padded.reshape(-1, per) << shifts).sum(axis=1).astype(np.uint8).tobytes()
        prior = prior if prior is not None else bytes(len(raw))
        kind = (first_filter + y) % 5
        line = bytearray(len(raw))
        for i, value in enumerate(raw):
            left = raw[i - bpp] if i >= bpp else 0
            up = prior[i]
            up_left = prior[i - bpp] if i >= bpp else 0
            predictor = (0, left, up, (left + up) // 2, _paeth(left, up, up_left))[kind]
            line[i] = (value - predictor) & 0xFF
        out.append(bytes([kind]) + bytes(line))
        prior = raw
    return b"".join(out)


def write_png(path: Path, samples: np.ndarray, color_type: int, bit_depth: int, *, interlace: bool = False,
              palette: bytes | None = None, trns: bytes | None = None, extra: bytes = b"", idat_tail: bytes = b"") -> Path:
    """A PNG of ``samples`` (h x w x channels sample values), its IDAT split in several chunks."""
    samples = samples.reshape(samples.shape[0], samples.shape[1], -1)
    h, w = samples.shape[:2]
    if interlace:
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
        raw = b"".join(_scanlines(samples[y0::dy, x0::dx], bit_depth, k) for k, (x0, y0, dx, dy) in enumerate(passes)
                       if samples[y0::dy, x0::dx].size)
    else:
        raw = _scanlines(samples, bit_depth, 0)
    data = zlib.compress(raw, 6) + idat_tail
    thirds = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    png += (_chunk(b"PLTE", palette) if palette is not None else b"") + (_chunk(b"tRNS", trns) if trns is not None else b"")
    png += b"".join(_chunk(b"IDAT", part) for part in thirds) + extra + _chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


# --------------------------------------------------------------------------------------------
# Drawn test images


def _lighting(rng: np.random.Generator, w: int, h: int, paper: tuple[int, int, int], grain: float) -> np.ndarray:
    """Paper under uneven light: a gradient, a vignette and grain (float RGB)."""
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    light = 0.8 + 0.25 * x - 0.15 * y - 0.3 * ((x - 0.5) ** 2 + (y - 0.4) ** 2)
    rgb = np.asarray(paper, dtype=np.float64) * light[..., None]
    return rgb + rng.normal(0, grain, (h, w, 1))


def _glyph(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], digit: int, fill, width: int) -> None:
    """A digit-like figure of thick strokes in ``box``."""
    x0, y0, x1, y1 = box
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    if digit == 0:
        draw.ellipse(box, outline=fill, width=width)
    elif digit == 1:
        draw.line([(xm - (x1 - x0) / 5, y0 + (y1 - y0) / 5), (xm, y0), (xm, y1)], fill=fill, width=width, joint="curve")
    elif digit == 4:
        draw.line([(x1 - (x1 - x0) / 4, y1), (x1 - (x1 - x0) / 4, y0), (x0, ym + (y1 - y0) / 6), (x1, ym + (y1 - y0) / 6)],
                  fill=fill, width=width)
    else:  # a seven
        draw.line([(x0, y0), (x1, y0), (xm - (x1 - x0) / 6, y1)], fill=fill, width=width, joint="curve")


def _paper_digit(rng, w, h, digit, *, ink=(25, 25, 40), paper=(235, 230, 215), rules=0, grid=False, tilt=0.0, grain=3.0):
    page = Image.fromarray(np.clip(_lighting(rng, w, h, paper, grain), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(page)
    if rules:
        for y in range(rules, h, rules):  # ruled lines, slightly tilted
            draw.line([(0, y), (w, y + tilt * w)], fill=(120, 150, 210), width=2)
        draw.line([(w // 8, 0), (w // 8 + 3, h)], fill=(220, 110, 110), width=2)  # a margin
    if grid:
        for x in range(0, w, 18):
            draw.line([(x, 0), (x, h)], fill=(170, 190, 220), width=1)
        for y in range(0, h, 18):
            draw.line([(0, y), (w, y)], fill=(170, 190, 220), width=1)
    cx, cy, s = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), min(w, h) * rng.uniform(0.25, 0.45)
    _glyph(draw, (cx - s / 2, cy - s * 0.7, cx + s / 2, cy + s * 0.7), digit, ink, max(2, int(s / 9)))
    return page


def drawn_images(folder: Path) -> list[Path]:
    """Test images as files: PNGs (PIL's writer and write_png) and JPEGs."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def save(image: Image.Image, name: str, **options) -> None:
        image.save(folder / name, **options)
        files.append(folder / name)

    save(_paper_digit(rng, 300, 220, 7), "ink-on-paper.png")
    save(_paper_digit(rng, 640, 480, 4, grain=5.0), "ink-on-paper-big.png")
    save(_paper_digit(rng, 900, 700, 0, ink=(30, 40, 120)), "ink-on-paper-huge.jpg", quality=92)
    save(_paper_digit(rng, 500, 400, 1, rules=26, tilt=0.02), "ruled.png")
    save(_paper_digit(rng, 420, 560, 7, rules=30, tilt=-0.04), "ruled-tall.png")
    save(_paper_digit(rng, 360, 300, 4, grid=True), "squared.png")
    save(_paper_digit(rng, 260, 260, 0, ink=(235, 235, 225), paper=(40, 60, 45), grain=4.0), "chalk-on-board.png")
    save(_paper_digit(rng, 48, 40, 7, grain=2.0), "small.png")
    save(_paper_digit(rng, 24, 30, 1, grain=1.0).convert("L"), "tiny-grey.png")
    gradient = np.linspace(60, 230, 240)[None, :].repeat(180, axis=0)
    save(Image.fromarray(gradient.astype(np.uint8)), "gradient.png")
    faint = gradient.copy()
    faint[70:110, 100:112] -= 40  # faint ink on a gradient
    save(Image.fromarray(faint.astype(np.uint8)), "gradient-faint-ink.png")
    save(Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)), "noise.png")
    save(Image.new("L", (64, 48), 200), "blank.png")
    save(Image.new("RGB", (1, 1), (255, 255, 255)), "one-white.png")
    save(Image.new("L", (1, 1), 0), "one-black.png")
    save(Image.fromarray(rng.integers(0, 256, (3, 2), dtype=np.uint8)), "two-by-three.png")
    save(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)), "four-by-four.png")
    strip = Image.new("L", (2000, 12), 230)
    ImageDraw.Draw(strip).line([(900, 1), (960, 10)], fill=20, width=3)
    save(strip, "wide-strip.png")
    save(Image.new("L", (10, 900), 220).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "tall-strip.png")
    mnist_like = Image.new("L", (28, 28), 0)
    _glyph(ImageDraw.Draw(mnist_like), (8, 5, 20, 23), 7, 255, 3)
    save(mnist_like, "mnist-like.png")

    # Transparency: dark ink on nothing (to white paper), light ink on nothing (to black), LA, palettes.
    ink = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    _glyph(ImageDraw.Draw(ink), (30, 10, 90, 80), 0, (15, 15, 90, 255), 9)
    save(ink.resize((300, 225), Image.Resampling.BICUBIC), "transparent-soft.png")  # antialiased, half-transparent edges
    save(ink, "transparent-hard.png")
    light = Image.new("RGBA", (150, 150), (255, 255, 255, 0))
    _glyph(ImageDraw.Draw(light), (30, 20, 120, 130), 4, (250, 240, 200, 255), 12)
    save(light.resize((97, 103), Image.Resampling.LANCZOS), "transparent-light-ink.png")
    half = np.dstack([rng.integers(0, 256, (60, 80, 3)), rng.integers(0, 256, (60, 80))]).astype(np.uint8)
    save(Image.fromarray(half, "RGBA"), "transparent-noise.png")
    la = Image.new("LA", (140, 100), (255, 0))
    _glyph(ImageDraw.Draw(la), (40, 10, 100, 90), 7, (30, 255), 10)
    save(la.resize((180, 128), Image.Resampling.BILINEAR), "grey-alpha.png")
    opaque_rgba = _paper_digit(rng, 200, 150, 1).convert("RGBA")
    save(opaque_rgba, "opaque-rgba.png")
    palette = _paper_digit(rng, 200, 150, 7).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save(palette, "palette.png")
    save(palette, "palette-transparent-index.png", transparency=int(np.asarray(palette)[0, 0]))
    save(palette, "palette-transparent-alphas.png", transparency=bytes(rng.integers(0, 256, 16, dtype=np.uint8)))
    grey16 = (np.asarray(_paper_digit(rng, 200, 150, 4).convert("L"), dtype=np.uint32) * 257
              + rng.integers(-128, 128, (150, 200))).clip(0, 65535).astype(np.uint16)
    save(Image.fromarray(grey16), "grey-16bit.png")  # levels between multiples of 257: the rounding shows

    # Files PIL cannot write: interlacing, every filter, 1/2/4/16-bit samples, tRNS of every kind.
    page = np.asarray(_paper_digit(rng, 61, 47, 7, grain=8.0))
    grey = np.asarray(Image.fromarray(page).convert("L"))
    wide_page, wide_grey = page.astype(np.int64), grey.astype(np.int64)  # room for 16-bit samples
    pal = rng.integers(0, 256, 3 * 13, dtype=np.uint8).tobytes()  # 13 colours: indices past the end are black
    for interlace in (False, True):
        tag = "-interlaced" if interlace else ""
        files.append(write_png(folder / f"rgb8{tag}.png", page, 2, 8, interlace=interlace))
        files.append(write_png(folder / f"rgb16{tag}.png", wide_page * 257 + 91, 2, 16, interlace=interlace,
                               trns=struct.pack(">HHH", 1, 2, 3)))
        files.append(write_png(folder / f"grey1{tag}.png", grey > 128, 0, 1, interlace=interlace))
        files.append(write_png(folder / f"grey2{tag}.png", grey >> 6, 0, 2, interlace=interlace, trns=struct.pack(">H", 1)))
        files.append(write_png(folder / f"grey4{tag}.png", grey >> 4, 0, 4, interlace=interlace))
        files.append(write_png(folder / f"grey16{tag}.png", wide_grey * 256 + 200, 0, 16, interlace=interlace))
        files.append(write_png(folder / f"grey-alpha16{tag}.png", np.dstack([wide_grey * 257, 65535 - wide_grey * 200]), 4, 16,
                               interlace=interlace))
        files.append(write_png(folder / f"rgba16{tag}.png", np.dstack([wide_page * 257, wide_grey * 250]), 6, 16,
                               interlace=interlace))
        files.append(write_png(folder / f"rgba8{tag}.png", np.dstack([page, 255 - grey]), 6, 8, interlace=interlace))
        for bits in (1, 2, 4, 8):
            files.append(write_png(folder / f"palette{bits}{tag}.png", grey >> (8 - bits), 3, bits, interlace=interlace,
                                   palette=pal, trns=bytes([255, 0, 128, 7])))
    files.append(write_png(folder / "idat-tail-junk.png", page, 2, 8, idat_tail=b"junk after the zlib stream"))
    files.append(write_png(folder / "one-by-one-interlaced.png", page[:1, :1], 2, 8, interlace=True))
    files.append(write_png(folder / "three-by-two-interlaced.png", grey[:2, :3], 0, 8, interlace=True))

    # EXIF orientation, three ways PIL reads it: an eXIf chunk, ImageMagick's raw profile, XMP.
    stored = _paper_digit(rng, 180, 120, 7)
    exif = stored.getexif()
    exif[0x0112] = 6
    save(stored, "exif6.png", exif=exif)
    exif[0x0112] = 3
    info = PngImagePlugin.PngInfo()
    raw = exif.tobytes()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw):8}\n{raw.hex()}\n")
    save(stored, "exif3-raw-profile.png", pnginfo=info)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="8"/></x:xmpmeta>', zip=True)
    save(stored, "exif8-xmp.png", pnginfo=info)
    return files


def malformed_pngs(folder: Path, good: Path) -> list[Path]:
    """Odd files: broken ones PIL refuses (and so must png.js), flawed ones PIL reads (and so must png.js)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    ihdr_crc = 8 + 8 + 13
    cases = {
        "bad-signature.png": b"\x89PNX" + data[4:],
        "truncated.png": data[: len(data) * 2 // 3],
        "bad-ihdr-crc.png": data[:ihdr_crc] + bytes([data[ihdr_crc] ^ 0xFF]) + data[ihdr_crc + 1 :],
        "no-image-data.png": data[:33] + _chunk(b"IEND", b""),
    }
    grey = np.arange(12 * 5, dtype=np.uint8).reshape(5, 12)
    raw = b"".join(bytes([7 if y == 2 else 0]) + row.tobytes() for y, row in enumerate(grey))  # filter type 7
    cases["bad-filter.png"] = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 5, 8, 0, 0, 0, 0))
                               + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    cases["short-data.png"] = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 9, 8, 0, 0, 0, 0))
                               + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    # Flaws PIL reads past: checksums it does not verify, a zlib stream without its own checksum.
    page = np.arange(7 * 11 * 3, dtype=np.uint8).reshape(7, 11, 3)
    fine = write_png(folder / "fine.png", page, 2, 8).read_bytes()
    idat = fine.index(b"IDAT")
    length = struct.unpack(">I", fine[idat - 4 : idat])[0]
    crc_at = idat + 4 + length
    cases["bad-idat-crc.png"] = fine[:crc_at] + bytes([fine[crc_at] ^ 0x55]) + fine[crc_at + 1 :]
    text = _chunk(b"tEXt", b"Comment\0after the image data")
    cases["bad-crc-after-image-data.png"] = fine[:-12] + text[:-1] + bytes([text[-1] ^ 1]) + fine[-12:]
    stream = zlib.compress(b"".join(b"\0" + row.tobytes() for row in page))[:-4]  # no Adler-32
    cases["no-zlib-checksum.png"] = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 11, 7, 8, 2, 0, 0, 0))
                                     + _chunk(b"IDAT", stream) + _chunk(b"IEND", b""))
    paths = []
    for name, content in cases.items():
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    return paths


# --------------------------------------------------------------------------------------------
# The comparison


class WebCheck:
    """Inputs for web_contract_check.mjs in a folder; run() runs Node and returns its results."""

    def __init__(self, folder: Path, contracts: dict[str, PreprocessContract]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.contracts = contracts
        self.manifest: dict = {"contracts": {k: c.to_dict() for k, c in contracts.items()},
                               "images": [], "pngs": [], "parse": [], "primitives": []}
        self.expected: list[dict[str, np.ndarray]] = []
        self.primitive_expected: list[tuple[str, np.ndarray]] = []
        self.names: list[str] = []

    def add_image(self, name: str, image: Image.Image, contract_names, expected: dict[str, np.ndarray] | None = None) -> None:
        """A decoded PIL image: its RGBA and mode go to JS, to_uint8 of it (or ``expected``) is the reference."""
        rgba, mode = decoded_rgba(image)
        file = f"image-{len(self.names):05d}.rgba"
        (self.folder / file).write_bytes(np.ascontiguousarray(rgba, dtype=np.uint8).tobytes())
        self.manifest["images"].append({"file": file, "width": image.width, "height": image.height, "mode": mode,
                                        "contracts": list(contract_names)})
        if expected is None:
            expected = {k: self.contracts[k].to_uint8(image) for k in contract_names}
        self.expected.append(expected)
        self.names.append(name)

    def add_primitive(self, array: np.ndarray, op: str, args: list, expected: np.ndarray) -> None:
        """One of contract.js's Pillow primitives (internals.resize, boxBlur, rankFilter3) on an L or RGB array."""
        file = f"primitive-{len(self.manifest['primitives']):05d}.raw"
        (self.folder / file).write_bytes(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
        (h, w), c = array.shape[:2], 1 if array.ndim == 2 else 3
        self.manifest["primitives"].append({"file": file, "w": w, "h": h, "c": c, "op": op, "args": args})
        self.primitive_expected.append((f"{op}{args} of {w}x{h}x{c}", expected))

    def add_png(self, path: Path) -> None:
        rel = os.path.relpath(path, self.folder)
        self.manifest["pngs"].append({"file": rel})

    def run(self) -> tuple[dict, bytes]:
        node = require_node()
        (self.folder / "manifest.json").write_text(json.dumps(self.manifest))
        command = [node, str(CHECK), str(self.folder)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
        assert done.returncode == 0, f"web_contract_check.mjs failed:\n{done.stderr[-3000:]}"
        return json.loads((self.folder / "results.json").read_text()), (self.folder / "out.bin").read_bytes()

    def compare_images(self, results: dict, blob: bytes) -> list[str]:
        """Every image's bytes and normalize() output against Python's: the list of differences."""
        problems = []
        for name, expected, outputs in zip(self.names, self.expected, results["images"], strict=True):
            for key, want in expected.items():
                got = outputs[key]
                if "error" in got:
                    problems.append(f"{name} [{key}]: JS failed: {got['error']}")
                    continue
                start, length = got["pixels"]
                pixels = np.frombuffer(blob, dtype=np.uint8, count=length, offset=start).reshape(want.shape)
                if not np.array_equal(pixels, want):
                    problems.append(f"{name} [{key}]: {int((pixels != want).sum())} of {want.size} pixels differ")
                    continue
                start, length = got["input"]
                normalized = self.contracts[key].normalize(want)[0]
                if blob[start : start + length] != normalized.tobytes():
                    problems.append(f"{name} [{key}]: normalize() differs")
        return problems


#: Resample.c's filters by the names contract.js uses.
FILTERS = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}


def add_primitives(check: WebCheck) -> None:
    """PIL's resize (every filter; down, up, each pass order), BoxBlur and RankFilter on smooth and noisy images."""
    from PIL import ImageFilter

    rng = np.random.default_rng(5)

    def picture(h: int, w: int, channels: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        smooth = 128 + 100 * np.sin(x / 5.0 + y / 9.0)[..., None] * np.ones(channels)
        noisy = smooth + rng.normal(0, 40, (h, w, channels)) * (rng.random((h, w, 1)) < 0.3)
        array = np.clip(noisy, 0, 255).astype(np.uint8)
        return array[..., 0] if channels == 1 else array

    shapes = [(23, 37, 1), (41, 50, 3), (7, 300, 1), (260, 5, 1), (1, 1, 1), (192, 256, 1), (30, 29, 3)]
    for h, w, channels in shapes:
        array = picture(h, w, channels)
        image = Image.fromarray(array)
        targets = {(max(1, w // 3), max(1, h // 2)), (2 * w + 1, h + 5), (2 * w, max(1, h // 3)), (w, max(1, h // 5)),
                   (max(1, w // 7), h), (1, 1), (28, 28), (12, 19)}
        for method, pil_filter in FILTERS.items():
            for xsize, ysize in sorted(targets):
                want = np.asarray(image.resize((xsize, ysize), pil_filter))
                check.add_primitive(array, "resize", [xsize, ysize, method], want)
    for h, w in ((256, 192), (61, 47), (5, 4), (1, 9), (12, 1)):
        image = Image.fromarray(picture(h, w, 1) > 140).convert("L")  # like the layout's strokes
        noisy = Image.fromarray(picture(h, w, 1))
        for radius in range(1, 10):
            check.add_primitive(np.asarray(image), "boxBlur", [radius], np.asarray(image.filter(ImageFilter.BoxBlur(radius))))
            check.add_primitive(np.asarray(noisy), "boxBlur", [radius], np.asarray(noisy.filter(ImageFilter.BoxBlur(radius))))
    for h, w in ((12, 9), (3, 3), (1, 5), (4, 1)):
        image = Image.fromarray(picture(h, w, 1))
        for rank in range(9):
            want = np.asarray(image.filter(ImageFilter.RankFilter(3, rank)))
            check.add_primitive(np.asarray(image), "rankFilter3", [rank], want)


def png_reference(path: Path) -> dict:
    """PIL's reading of a PNG: the decoded RGBA and mode (decoded_rgba), the EXIF orientation, the upright pixels."""
    try:
        with Image.open(path) as img:
            img.load()
            rgba, mode = decoded_rgba(img)
            orientation = img.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(img)
            return {"rgba": rgba, "mode": mode, "orientation": orientation, "upright": decoded_rgba(upright)[0]}
    except Exception as exc:  # noqa: BLE001 - whatever PIL refuses, the port must refuse
        return {"error": f"{type(exc).__name__}: {exc}"}


def test_contract_js_gives_pythons_pixels(tmp_path, capsys):
    require_node()
    check = WebCheck(tmp_path / "exchange", CONTRACTS)
    files = drawn_images(tmp_path / "drawn")
    for path in files:
        with Image.open(path) as img:
            img.load()
            check.add_image(path.name, img, CONTRACTS)
        if path.suffix == ".png":
            check.add_png(path)
        if "exif" in path.name:  # the upright image, as load_image gives it
            check.add_image(path.name + " (upright)", decode_like_load_image(path, CONTRACTS["layout"]), ["layout"])
    broken = malformed_pngs(tmp_path / "broken", tmp_path / "drawn" / "ink-on-paper.png")
    for path in broken:
        check.add_png(path)
    pngs = [p for p in files if p.suffix == ".png"] + broken

    data = real_data_dir()
    if data is None and os.environ.get("CI") == "true":
        pytest.fail(f"MNIST and the CIFAR-10 test JPEGs are not under {shared_data_dir()} (CI=true: the real images are checked here)")
    if data is not None:  # MNIST test digits (mode L) and CIFAR-10 JPEGs decoded by PIL (mode RGB)
        from osr_infer.data.mnist import load_mnist

        rng = np.random.default_rng(11)
        mnist = load_mnist(data, "test").images
        for i in rng.choice(len(mnist), REAL_SAMPLE, replace=False):
            check.add_image(f"mnist-{i}", Image.fromarray(mnist[i], mode="L"), REAL_CONTRACTS)
        jpegs = sorted((data / "cifar10-test-jpeg").rglob("*.jpg"))
        for i in rng.choice(len(jpegs), REAL_SAMPLE, replace=False):
            check.add_image(jpegs[i].name, decode_like_load_image(jpegs[i], CONTRACTS["layout"]), REAL_CONTRACTS)

    check.manifest["parse"] = PARSE_CASES
    add_primitives(check)
    results, blob = check.run()

    primitive_problems = []
    for (name, want), got in zip(check.primitive_expected, results["primitives"], strict=True):
        if isinstance(got, dict):
            primitive_problems.append(f"{name}: JS failed: {got['error']}")
        elif blob[got[0] : got[0] + got[1]] != np.ascontiguousarray(want).tobytes():
            primitive_problems.append(f"{name}: differs from PIL's")
    assert not primitive_problems, (f"{len(primitive_problems)} of {len(check.primitive_expected)} differ:\n"
                                    + "\n".join(primitive_problems[:20]))

    problems = check.compare_images(results, blob)
    compared = sum(len(e) for e in check.expected)
    assert not problems, f"{len(problems)} of {compared} outputs differ from Python's:\n" + "\n".join(problems[:20])

    png_problems = []
    for path, got in zip(pngs, results["pngs"], strict=True):
        want = png_reference(path)
        if "error" in want or "error" in got:
            if ("error" in want) != ("error" in got):
                png_problems.append(f"{path.name}: PIL {want.get('error', 'reads it')}, png.js {got.get('error', 'reads it')}")
            continue
        start, length = got["data"]
        rgba = np.frombuffer(blob, dtype=np.uint8, count=length, offset=start).reshape(got["height"], got["width"], 4)
        if rgba.shape != want["rgba"].shape or not np.array_equal(rgba, want["rgba"]):
            png_problems.append(f"{path.name}: pixels differ from PIL's")
        if got["mode"] != want["mode"] or got["orientation"] != want["orientation"]:
            png_problems.append(f"{path.name}: mode/orientation {got['mode']}/{got['orientation']}, "
                                f"PIL {want['mode']}/{want['orientation']}")
        start, length = got["upright"]
        upright = np.frombuffer(blob, dtype=np.uint8, count=length, offset=start)
        if got["upright_shape"] != list(want["upright"].shape[:2]) or upright.tobytes() != want["upright"].tobytes():
            png_problems.append(f"{path.name}: exifTranspose differs from ImageOps.exif_transpose")
    assert not png_problems, "\n".join(png_problems)
    assert sum("error" in p for p in results["pngs"]) >= 6, "the broken files were refused"

    parse_problems = []
    for case, got in zip(PARSE_CASES, results["parse"], strict=True):
        try:
            want = PreprocessContract.from_dict(case).to_dict()
        except ValueError as exc:
            if "error" not in got:
                parse_problems.append(f"{case}: Python refuses it ({exc}), parseContract accepts it")
            continue
        if "error" in got:
            parse_problems.append(f"{case}: parseContract refuses it ({got['error']}), Python accepts it")
        elif {k: got["contract"][k] for k in want} != want:
            parse_problems.append(f"{case}: parseContract {got['contract']}, Python {want}")
    assert not parse_problems, "\n".join(parse_problems)

    timing = results["timing"]["layout"]
    with capsys.disabled():
        print(f"\nweb contract: {len(check.primitive_expected)} PIL resizes and filters identical; "
              f"{compared} outputs identical to Python's on {len(check.names)} images "
              f"({'with' if data else 'without'} real data), {len(pngs)} PNGs decoded as PIL; "
              f"layout in Node {timing['ms'] / timing['images']:.1f} ms per image (max {timing['max_ms']:.0f} ms)")
