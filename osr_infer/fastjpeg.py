"""The fast JPEG path: libjpeg-turbo through simplejpeg, with exactly PIL's pixels.

PIL decodes a JPEG with libjpeg(-turbo) too, but spends most of its ~110 us per CIFAR-10 image
outside the decoder (opening, parsing, plugin machinery); simplejpeg calls libjpeg-turbo's
TurboJPEG API directly (~18 us). Both use the accurate integer IDCT and fancy upsampling, and
DCT scaling for draft mode, so the pixels are bit-identical: tests/test_fastjpeg.py checks all
10,000 CIFAR-10 JPEGs and photos at every draft scale. What this path does not take (CMYK and
YCCK, XMP orientation, unreadable EXIF, files over `MAX_FAST_BYTES`, anything
simplejpeg refuses) goes to PIL unchanged, so errors and unusual files read as before.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np

try:  # a base dependency; without it (an unusual platform), every JPEG goes through PIL
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg ships wheels for the platforms we support
    simplejpeg = None

#: Larger files go through PIL, which streams instead of reading the whole file.
MAX_FAST_BYTES = 64 << 20
#: JPEG colour spaces this path decodes (simplejpeg's names); PIL's mode for each.
_MODES = {"Gray": "L", "YCbCr": "RGB"}
_XMP = b"http://ns.adobe.com/xap/1.0/"


def available() -> bool:
    return simplejpeg is not None


def exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a JPEG as PIL's ``getexif()`` reads it (1 when there is none), or
    None when this reader cannot be sure (XMP, which PIL also consults; malformed EXIF)."""
    pos, orientation, seen_exif = 2, 1, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: the headers are over
            return orientation
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1:
            if segment.startswith(_XMP):
                return None
            if segment.startswith(b"Exif\0\0"):
                # PIL appends a second EXIF block to the first; that, or a block this reader cannot parse: PIL decides.
                if seen_exif or (found := _tiff_orientation(segment[6:])) is None:
                    return None
                orientation, seen_exif = found, True
        pos += 2 + length
    return None


def _tiff_orientation(tiff: bytes) -> int | None:
    """Tag 0x0112 of IFD0 of a TIFF block (1 when absent), or None when it is malformed."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for i in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            if int.from_bytes(tiff[entry + 2 : entry + 4], order) != 3:  # not a SHORT: let PIL read it
                return None
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def decode(data: bytes, draft_size: int | None, max_pixels: int, too_large: Callable[[int, int], Exception]
           ) -> tuple[np.ndarray, str, int] | None:
    """``(pixels, PIL mode, EXIF orientation)`` of a JPEG file's bytes, DCT-scaled as PIL's
    ``draft(None, (draft_size, draft_size))`` would, or None where PIL should decode it."""
    if simplejpeg is None or len(data) > MAX_FAST_BYTES or not data.startswith(b"\xff\xd8\xff"):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    mode = _MODES.get(colorspace)
    orientation = exif_orientation(data)
    if mode is None or orientation is None or width < 1 or height < 1:
        return None
    if width * height > max_pixels:
        raise too_large(width, height)
    scale = 1
    if draft_size:  # JpegImageFile.draft: the largest of 8, 4, 2, 1 that keeps draft_size a side
        scale = next((s for s in (8, 4, 2) if min(width // draft_size, height // draft_size) >= s), 1)
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if mode == "L" else "RGB", fastdct=False, fastupsample=False,
            min_height=-(-height // scale), min_width=-(-width // scale), min_factor=scale,
        )
    except ValueError:  # corrupt or truncated: PIL reads it and says why
        return None
    if pixels.shape[:2] != (-(-height // scale), -(-width // scale)):
        return None  # libjpeg-turbo chose another scale than PIL would: let PIL decode it
    return (pixels[..., 0] if mode == "L" else pixels), mode, orientation
