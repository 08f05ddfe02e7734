"""The preprocessing contract: the single definition of how an image becomes model input.

Training, export (which stores it as metadata) and inference (which replays it from that
metadata) all go through this module, so they cannot disagree. It depends on numpy and
Pillow only, never on torch.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile

# Decompression-bomb guard: a 28x28 model never needs more than this many pixels.
MAX_IMAGE_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageDecodeError(ValueError):
    """An input file is not a usable image (corrupt, truncated, empty, too large...)."""


@dataclass(frozen=True)
class PreprocessContract:
    """How raw pixels become the ``N x 1 x size x size`` float32 tensor the network sees.

    ``mean``/``std`` apply to pixels scaled to [0, 1]: ``x = (pixel / 255 - mean) / std``.
    """

    size: int = 28
    channels: int = 1
    grayscale: str = "ITU-R 601-2 luma (PIL convert('L'))"
    resize: str = "bilinear"
    mean: float = 0.5
    std: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessContract":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing fields: {sorted(unknown)}")
        contract = cls(**data)
        if contract.resize not in _RESAMPLING:
            raise ValueError(f"unsupported resize method {contract.resize!r}; known: {sorted(_RESAMPLING)}")
        if contract.channels != 1 or contract.std <= 0:
            raise ValueError(f"unsupported preprocessing contract: {contract}")
        return contract

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """Grayscale + resize a PIL image to a ``size x size`` uint8 array (the seed's treatment)."""
        gray = to_grayscale(image)
        if gray.size != (self.size, self.size):
            gray = gray.resize((self.size, self.size), _RESAMPLING[self.resize])
        return np.asarray(gray, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``(N, size, size)`` -> float32 ``(N, 1, size, size)``, normalised."""
        if pixels.dtype != np.uint8:
            raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
        if pixels.ndim == 2:
            pixels = pixels[None]
        scale = np.float32(1.0 / (255.0 * self.std))
        shift = np.float32(self.mean / self.std)
        out = pixels.astype(np.float32) * scale - shift
        return out[:, None, :, :]


#: The contract every part of the toolkit uses.
PREPROCESSING = PreprocessContract()


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit 'L'. High-bit-depth images are rescaled, not clipped."""
    mode = image.mode
    if mode == "L":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode == "F" and arr.max() <= 1.0:
            top = 1.0
        arr = np.clip(arr / top * 255.0, 0, 255)
        return Image.fromarray(np.round(arr).astype(np.uint8), mode="L")
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    return image.convert("L")


def load_image(path: str | Path, contract: PreprocessContract = PREPROCESSING) -> np.ndarray:
    """Decode one image file to a ``size x size`` uint8 array, or raise ImageDecodeError."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(
                        f"image too large ({width}x{height} pixels, limit {MAX_IMAGE_PIXELS:,})"
                    )
                if width < 1 or height < 1:
                    raise ImageDecodeError(f"degenerate image size {width}x{height}")
                img.draft(None, (contract.size * 2, contract.size * 2))  # JPEG: DCT downscale of big photos
                img.load()
                return contract.to_uint8(img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own guard
        raise ImageDecodeError(f"image too large (decompression bomb guard): {exc}") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageDecodeError(f"image too large (decompression bomb guard): {exc}") from None
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError("is a directory") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports bad data with these
        reason = str(exc) or type(exc).__name__
        if "cannot identify image file" in reason:
            reason = "not an image file (format not recognised)"
        raise ImageDecodeError(reason) from None


def find_images(root: str | Path) -> list[str]:
    """All image files under ``root`` (recursive, sorted); a single file is returned as is.

    The order is that of sorting the paths component by component (``a/b.png`` before
    ``a-c.png``), walked with ``os.scandir``: about 9x faster than ``sorted(Path.rglob())``
    on 10,000 files, which matters when decoding itself takes only ~100 us per image.
    Symbolic links to folders are not followed (as ``rglob``); links to files are.
    """
    root = os.fspath(root)
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such file or folder: {root}")
    found: list[str] = []
    _collect_images(root, found)
    return found


def _collect_images(folder: str, found: list[str]) -> None:
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda entry: entry.name)
    for entry in ordered:
        if entry.is_dir(follow_symlinks=False):
            _collect_images(entry.path, found)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
            found.append(entry.path)


Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False
