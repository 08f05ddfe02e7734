"""The preprocessing contract: the single definition of how an image becomes model input.

Training, export (which stores it as metadata) and inference (which replays it from that
metadata) all go through this module, so they cannot disagree. It depends on numpy and
Pillow only, never on torch.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageOps

from osr_infer.errors import InputError
from osr_infer.layout import SMALL_SIDE, WORK_SIDE, layout, layout_small
from osr_infer.pillow_numpy import resize_stack

# Decompression-bomb guard: a small-input model never needs more than this many pixels.
MAX_IMAGE_PIXELS = 64_000_000
#: Files named so are tried on the fast JPEG path first (what is no JPEG inside goes to PIL).
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm")

_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageDecodeError(InputError):
    """An input file is not a usable image (corrupt, truncated, empty, too large...)."""


#: Colour conversions the contract knows, by the number of channels they make.
COLOR_MODES = {"L": 1, "RGB": 3}
#: Version of the preprocessing contract (1: grayscale only, scalar mean/std; 2: colour,
#: per-channel normalisation, steps; 3: EXIF orientation and alpha flattening, the layout step).
CONTRACT_VERSION = 3
#: Further preprocessing steps, by name: "layout" lays a character out MNIST-style (osr_infer/layout.py).
KNOWN_STEPS: tuple[str, ...] = ("layout",)
#: How transparency is treated: "flatten" composites the image onto white or black, whichever
#: its opaque content stands out from (ink on a transparent background survives); "drop" is
#: PIL's conversion, which ignores alpha (contracts before version 3).
ALPHA_MODES = ("flatten", "drop")


@dataclass(frozen=True)
class PreprocessContract:
    """How an image file becomes the ``N x channels x size x size`` float32 tensor the network sees.

    1. ``draft``: a JPEG is decoded at the smallest DCT scale that still gives at least twice
       ``size`` on each side (PIL ``Image.draft``; with the layout step, at least
       ``layout.WORK_SIDE``): big photos decode fast and the resize still averages enough pixels;
    2. ``exif``: the EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a phone
       photo stored sideways is upright;
    3. ``alpha``: ``flatten`` composites a transparent image onto white or black, whichever its
       opaque content stands out from; ``drop`` ignores alpha;
    4. ``color``: ``L`` is PIL's ``convert('L')`` (ITU-R 601-2 luma; 16-bit and float images
       are rescaled to 8 bits first), ``RGB`` is ``convert('RGB')``;
    5. ``resize`` to ``size x size`` with PIL's filter of that name (skipped when already that
       size), or, with the ``layout`` step, the layout of ``osr_infer/layout.py`` (polarity, ink,
       crop, fit into a 20/28 box, centre of mass), which uses that filter for its fit;
    6. per channel: ``x = (pixel / 255 - mean[c]) / std[c]``.
    """

    size: int = 28
    channels: int = 1
    color: str = "L"
    resize: str = "bilinear"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    draft: bool = True
    exif: bool = True
    alpha: str = "flatten"
    steps: tuple[str, ...] = ()
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in np.atleast_1d(self.mean)))
        object.__setattr__(self, "std", tuple(float(s) for s in np.atleast_1d(self.std)))
        object.__setattr__(self, "steps", tuple(self.steps))
        problems = []
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 4 <= self.size <= 1024:
            problems.append(f"size must be an integer in [4, 1024], not {self.size!r}")
        if self.color not in COLOR_MODES:
            problems.append(f"unsupported colour conversion {self.color!r}; known: {', '.join(COLOR_MODES)}")
        elif self.channels != COLOR_MODES[self.color]:
            problems.append(f"colour {self.color} makes {COLOR_MODES[self.color]} channel(s), not {self.channels!r}")
        if self.resize not in _RESAMPLING:
            problems.append(f"unsupported resize method {self.resize!r}; known: {', '.join(sorted(_RESAMPLING))}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            problems.append(f"mean and std need one value per channel ({self.channels}), got {len(self.mean)} and {len(self.std)}")
        if not all(math.isfinite(v) for v in self.mean) or not all(math.isfinite(v) and v > 0 for v in self.std):
            problems.append(f"mean must be finite and std finite and positive, got mean {self.mean}, std {self.std}")
        if self.alpha not in ALPHA_MODES:
            problems.append(f"unsupported alpha treatment {self.alpha!r}; known: {', '.join(ALPHA_MODES)}")
        if "layout" in self.steps and self.color != "L":
            problems.append("the layout step lays out greyscale characters: it needs color 'L'")
        unknown_steps = [step for step in self.steps if step not in KNOWN_STEPS]
        if unknown_steps:
            problems.append(f"unknown preprocessing step(s) {unknown_steps}: written by a newer osr-toolkit?")
        if self.version > CONTRACT_VERSION:
            problems.append(f"preprocessing contract version {self.version} is newer than this osr-toolkit's ({CONTRACT_VERSION}): upgrade")
        if problems:
            raise ValueError("invalid preprocessing contract: " + "; ".join(problems))

    @classmethod
    def for_shape(cls, size: int, channels: int, **changes: Any) -> "PreprocessContract":
        """The default contract for ``channels`` (1: luma, 3: RGB) at ``size``: pixels to [-1, 1]."""
        color = {1: "L", 3: "RGB"}.get(channels)
        if color is None:
            raise ValueError(f"channels must be 1 or 3, not {channels!r}")
        return cls(size=size, channels=channels, color=color, mean=(0.5,) * channels, std=(0.5,) * channels, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"], data["steps"] = list(self.mean), list(self.std), list(self.steps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessContract":
        if not isinstance(data, dict):
            raise ValueError(f"preprocessing must be a mapping, not {type(data).__name__}")
        data = dict(data)
        if data.get("version", 1) == 1 and "grayscale" in data:  # version 1: grayscale only, scalar mean/std
            data.pop("grayscale")
            data.update(color="L", version=2)
        if data.get("version", 1) == 2:  # version 2 applied no EXIF orientation and ignored alpha
            data.setdefault("exif", False)
            data.setdefault("alpha", "drop")
            data["version"] = CONTRACT_VERSION
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing fields: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"invalid preprocessing contract: {exc}") from None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network input without the batch axis: ``(channels, size, size)``."""
        return (self.channels, self.size, self.size)

    @property
    def pixel_shape(self) -> tuple[int, ...]:
        """One decoded image as uint8: ``(size, size)``, or ``(size, size, channels)`` in colour."""
        return (self.size, self.size) if self.channels == 1 else (self.size, self.size, self.channels)

    @property
    def background(self) -> tuple[float, ...]:
        """The normalised value of a black pixel, per channel (what padding should be)."""
        return tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))

    @property
    def layout(self) -> bool:
        return "layout" in self.steps

    @property
    def draft_size(self) -> int:
        """The smallest side a JPEG may be DCT-scaled down to (step 1)."""
        return max(2 * self.size, WORK_SIDE) if self.layout else 2 * self.size

    def describe(self) -> str:
        how = "layout" if self.layout else f"{self.resize} resize"
        return f"{self.channels}x{self.size}x{self.size} ({self.color}, {how})"

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """Steps 3-5 on a decoded PIL image: a uint8 array of `pixel_shape`."""
        return self.finish(self.convert(image))

    def convert(self, image: Image.Image) -> Image.Image:
        """Step 3 on a decoded PIL image: alpha and colour conversion to the contract's mode."""
        if self.alpha == "flatten":
            image = flatten_alpha(image)
        return to_grayscale(image) if self.color == "L" else to_rgb(image)

    def finish(self, converted: Image.Image) -> np.ndarray:
        """Steps 4-5 on a converted image (`convert`): the resize or the layout step."""
        if self.layout:
            return layout(converted, self.size, _RESAMPLING[self.resize])
        if converted.size != (self.size, self.size):
            converted = converted.resize((self.size, self.size), _RESAMPLING[self.resize])
        return np.asarray(converted, dtype=np.uint8)

    def stacks(self, height: int, width: int) -> bool:
        """Whether converted images of this size take steps 4-5 as a stack (`finish_stack`):
        small images (under ``layout.SMALL_SIDE`` pixels a side), with the layout step or a
        bilinear resize, where a stack is many times faster than one PIL call per image."""
        return self.can_stack and max(height, width) < SMALL_SIDE

    @property
    def can_stack(self) -> bool:
        """Whether steps 4-5 have a stacked form: the layout step, or a bilinear resize."""
        return self.layout or self.resize == "bilinear"

    def finish_stack(self, stack: np.ndarray) -> np.ndarray:
        """`finish` of each image of a ``(n, h, w)`` (or, for RGB, ``(n, h, w, 3)``) uint8
        stack of converted images (`stacks`), in whole-stack numpy calls: the same pixels,
        bit for bit."""
        if self.layout:
            return layout_small(stack, self.size, _RESAMPLING[self.resize])
        return resize_stack(stack, self.size)

    def in_color(self, stack: np.ndarray) -> np.ndarray:
        """A stack of uint8 grey ``(n, h, w)`` or RGB ``(n, h, w, 3)`` images in the contract's
        colour, as PIL's ``convert`` would make it (for `finish_stack`)."""
        if self.color == "L":
            return luma(stack) if stack.ndim == 4 else stack
        return np.repeat(stack[..., None], 3, axis=-1) if stack.ndim == 3 else stack

    def conform(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 images (``(N, H, W)`` or ``(N, H, W, 3)``) through the contract's colour
        conversion and resize or layout; without steps, images already in shape pass unchanged."""
        if pixels.shape[1:] == self.pixel_shape and not self.steps:
            return pixels
        out = np.empty((len(pixels), *self.pixel_shape), dtype=np.uint8)

        def run(start: int) -> None:
            stop = min(start + CONFORM_CHUNK, len(pixels))
            if self.stacks(*pixels.shape[1:3]):
                for first in range(start, stop, STACK_CHUNK):  # stacks of a few hundred stay in cache
                    out[first : min(first + STACK_CHUNK, stop)] = self.finish_stack(
                        self.in_color(pixels[first : min(first + STACK_CHUNK, stop)]))
                return
            for i in range(start, stop):
                image = pixels[i]
                out[i] = self.to_uint8(image_of(image))

        starts = range(0, len(pixels), CONFORM_CHUNK)
        if len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                list(pool.map(run, starts))
        else:
            run(0)
        return out

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 `pixel_shape` images (or one image) -> float32 ``(N, channels, size, size)``."""
        if pixels.dtype != np.uint8:
            raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
        if pixels.ndim == len(self.pixel_shape):
            pixels = pixels[None]
        if pixels.shape[1:] != self.pixel_shape:
            raise ValueError(f"expected images of shape {self.pixel_shape}, got {pixels.shape[1:]}")
        if self.channels == 1:
            grey_scale = np.float32(1.0 / (255.0 * self.std[0]))
            grey_shift = np.float32(self.mean[0] / self.std[0])
            return (pixels.astype(np.float32) * grey_scale - grey_shift)[:, None, :, :]
        scale = np.array([1.0 / (255.0 * s) for s in self.std], dtype=np.float32)
        shift = np.array([m / s for m, s in zip(self.mean, self.std, strict=True)], dtype=np.float32)
        out = pixels.astype(np.float32) * scale - shift
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


#: The toolkit's default contract (MNIST's: 28x28 luma, pixels to [-1, 1]).
PREPROCESSING = PreprocessContract()
#: Images per thread when a whole array is conformed.
CONFORM_CHUNK = 2048
#: Images per stack for the layout step of small images (`PreprocessContract.finish_stack`).
STACK_CHUNK = 256


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit 'L'. High-bit-depth images are rescaled, not clipped."""
    mode = image.mode
    if mode == "L":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Rescaled in bands of rows: a float64 copy of a whole 8000x8000 image would cost 0.5 GB.
        # 16-bit: the full range; 32-bit and float: the image's maximum (1 for floats in [0, 1]).
        extrema = image.getextrema()
        assert isinstance(extrema[1], (int, float)), "a single-band image has one (min, max)"
        top = 65535.0 if mode.startswith("I;16") else max(float(extrema[1]), 1.0)
        width, height = image.size
        out = np.empty((height, width), dtype=np.uint8)
        band = max(1, (1 << 22) // max(width, 1))
        for y in range(0, height, band):
            rows = np.asarray(image.crop((0, y, width, min(height, y + band))), dtype=np.float64)
            out[y : y + len(rows)] = np.round(np.clip(rows / top * 255.0, 0, 255)).astype(np.uint8)
        return Image.fromarray(out, mode="L")
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    return image.convert("L")


def flatten_alpha(image: Image.Image) -> Image.Image:
    """A transparent image composited onto white or black, whichever its opaque content
    stands out from: dark ink on a transparent background lands on white paper, light ink on
    black. Opaque images are returned as they are."""
    if image.mode == "P" and "transparency" in image.info or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA"):
        return image
    alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255
    if alpha.min() >= 1:
        return image.convert("RGB" if image.mode == "RGBA" else "L")
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    level = float((luma * alpha).sum() / max(float(alpha.sum()), 1e-6))
    paper = 255 if level < 128 else 0
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (paper, paper, paper, 255)), rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit 'RGB' (high-bit-depth grey through `to_grayscale`)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = to_grayscale(image)
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def _too_large(width: int, height: int) -> ImageDecodeError:
    return ImageDecodeError(f"image too large ({width}x{height} pixels, limit {MAX_IMAGE_PIXELS:,})")


def image_of(pixels: np.ndarray) -> Image.Image:
    """A uint8 ``(h, w)`` grey or ``(h, w, 3)`` RGB array as a PIL image."""
    return Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB")


def _fast_pixels(path: str, contract: PreprocessContract, data: bytes | None = None) -> np.ndarray | None:
    """Steps 1-2 on the fast path, as an array: ``(h, w)`` grey or ``(h, w, 3)`` RGB, upright,
    PIL's pixels bit for bit: JPEGs through libjpeg-turbo (osr_infer/fastjpeg.py), PNGs through
    Pillow's own decoder without its chunk reader (osr_infer/fastpng.py); None where PIL should
    decode the file. The file is read with one open, fstat and read (a CIFAR-10 JPEG costs
    about as much to open as to decode). Raises OSError as reading it does."""
    suffix = os.path.splitext(path)[1].lower()
    is_jpeg = suffix in JPEG_SUFFIXES
    if not is_jpeg and suffix != ".png":
        return None
    from osr_infer import fastjpeg

    if is_jpeg and not fastjpeg.available():
        return None
    if data is not None:  # read already (an object in a store)
        return _fast_pixels_of(data, is_jpeg, contract) if 0 < len(data) <= fastjpeg.MAX_FAST_BYTES else None
    # Non-blocking: a named pipe (or a device) called x.jpg must not hang the open; only regular
    # files are read here, the rest goes the usual way (which reports it as empty).
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        status = os.fstat(descriptor)
        size = status.st_size
        readable = stat.S_ISREG(status.st_mode) and 0 < size <= fastjpeg.MAX_FAST_BYTES  # larger: PIL streams them
        data = os.read(descriptor, size) if readable else b""
    finally:
        os.close(descriptor)
    if not data or len(data) != size:
        return None
    return _fast_pixels_of(data, is_jpeg, contract)


def _fast_pixels_of(data: bytes, is_jpeg: bool, contract: PreprocessContract) -> np.ndarray | None:
    from osr_infer import fastjpeg, fastpng

    if not is_jpeg:
        return fastpng.decode(data, MAX_IMAGE_PIXELS)  # no orientation: PNGs with EXIF go to PIL
    decoded = fastjpeg.decode(data, contract.draft_size if contract.draft else None, MAX_IMAGE_PIXELS, _too_large)
    if decoded is None:
        return None
    pixels, _, orientation = decoded
    if contract.exif and orientation in _EXIF_TRANSPOSE:
        pixels = _EXIF_TRANSPOSE[orientation](pixels)
    return pixels


#: ImageOps.exif_transpose's transposes by EXIF orientation, on arrays (rows, columns[, channels]):
#: the same pixels (for the fast JPEG path).
_EXIF_TRANSPOSE = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1], 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: a.swapaxes(0, 1)[::-1],
}


def luma(rgb: np.ndarray) -> np.ndarray:
    """PIL's ``convert("L")`` of uint8 RGB pixels (``(..., 3)``), bit for bit: ITU-R 601-2 luma
    in Pillow's 16-bit fixed point (``L24``: ``(19595 R + 38470 G + 7471 B + 32768) >> 16``).
    Every product and partial sum is an integer below 2**24, so float32 holds them exactly, in
    any order, and one matrix-vector product computes them."""
    weighted = rgb.astype(np.float32) @ _LUMA_WEIGHTS + np.float32(0x8000)
    grey: np.ndarray = np.floor(weighted * np.float32(1 / 65536)).astype(np.uint8)
    return grey


_LUMA_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.float32)


def load_stackable(path: str, contract: PreprocessContract, data: bytes | None = None) -> np.ndarray | Image.Image:
    """For decoding many files at once (`osr_infer.decode.decode_files`): an image that
    takes steps 4-5 in a stack (`PreprocessContract.stacks`) as its upright uint8 array,
    for `PreprocessContract.in_color` and `PreprocessContract.finish_stack` (a JPEG
    or PNG on the fast path before colour conversion, any other file after it); every other
    image converted, as `load_converted` returns it, for `finish_converted`. The
    same pixels as `load_image`; ImageDecodeError where the file is unusable. ``data``: the
    file's bytes, read already (``path`` then only names it, for its suffix)."""
    with _decode_errors():
        pixels = _fast_pixels(path, contract, data)
        if pixels is not None:
            return pixels if contract.stacks(*pixels.shape[:2]) else contract.convert(image_of(pixels))
    # the fast path declined it: PIL, without a second try
    converted = load_converted(path, contract, fast=False) if data is None else load_converted_bytes(data, contract)
    return np.asarray(converted) if contract.stacks(converted.height, converted.width) else converted


def load_image(path: str | Path, contract: PreprocessContract = PREPROCESSING, fast: bool = True) -> np.ndarray:
    """Decode one image file to a uint8 array of ``contract.pixel_shape``, or raise ImageDecodeError.

    ``fast`` takes JPEGs through libjpeg-turbo directly (the same pixels as PIL's, bit for bit);
    False decodes everything with PIL (the reference path, kept for comparison)."""
    return finish_converted(load_converted(path, contract, fast), contract)


def finish_converted(converted: Image.Image, contract: PreprocessContract) -> np.ndarray:
    """Steps 4-5 of `load_image` on what `load_converted` returned."""
    with _decode_errors():
        return contract.finish(converted)


def load_converted(path: str | Path, contract: PreprocessContract = PREPROCESSING, fast: bool = True) -> Image.Image:
    """Steps 1-3 of `load_image`: the decoded image, upright and in the contract's colour
    mode, for `PreprocessContract.finish` (or, for many small images at once,
    `PreprocessContract.finish_stack`); ImageDecodeError where the file is unusable."""
    path = Path(path)
    with _decode_errors():
        file_size = path.stat().st_size
        if file_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        if fast and (pixels := _fast_pixels(str(path), contract)) is not None:
            return contract.convert(image_of(pixels))
        return _open_converted(path, contract)
    raise AssertionError("unreachable")  # _decode_errors re-raises every exception it catches


def load_converted_bytes(data: bytes, contract: PreprocessContract = PREPROCESSING) -> Image.Image:
    """`load_converted` of an encoded image held in memory (the bytes of a file): the
    same steps, through PIL (whose pixels the fast decoders reproduce bit for bit)."""
    import io

    with _decode_errors():
        if not data:
            raise ImageDecodeError("empty (0 bytes)")
        return _open_converted(io.BytesIO(data), contract)
    raise AssertionError("unreachable")


def convert_decoded(image: Image.Image, contract: PreprocessContract = PREPROCESSING) -> Image.Image:
    """Steps 2-3 on an image decoded elsewhere (a PIL image a program holds): upright by its
    EXIF orientation, then alpha and colour as the contract says; the caller's image is not
    changed. The pixel limit applies as to files."""
    with _decode_errors():
        width, height = image.size
        _check_size(width, height)
        image.load()
        if contract.exif:
            image = ImageOps.exif_transpose(image)  # a copy where it turns, the image itself otherwise
        return contract.convert(image)
    raise AssertionError("unreachable")


def _check_size(width: int, height: int) -> None:
    """The toolkit's own pixel limit, per image (Pillow's global limit is the host program's)."""
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(width, height)
    if width < 1 or height < 1:
        raise ImageDecodeError(f"degenerate image size {width}x{height}")


def _open_converted(file: Path | Any, contract: PreprocessContract) -> Image.Image:
    """Steps 1-3 through PIL, on a path or a binary file object."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(file) as img:
            _check_size(*img.size)
            if contract.draft:  # JPEG: DCT downscale of big photos (contract step 1)
                img.draft(None, (contract.draft_size, contract.draft_size))
            img.load()
            if contract.exif:  # step 2: a photo stored sideways is upright (in place: no copy when upright)
                ImageOps.exif_transpose(img, in_place=True)
            return contract.convert(img)


@contextmanager
def _decode_errors() -> Iterator[None]:
    """What PIL and the file system raise about a bad file, as one ImageDecodeError with a
    reason a user can act on."""
    try:
        yield
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
        elif "truncated" in reason.lower():
            reason = f"truncated file (the decoder: {reason})"
        elif "decoder" in reason.lower() or "broken data stream" in reason.lower():
            reason = f"corrupt or unsupported image data (the decoder: {reason})"
        raise ImageDecodeError(reason) from None


@dataclass
class LeftOut:
    """What a folder listing left out, so that it can be said: files whose name is not an
    image's, links to folders (not followed), and entries that are no regular file (FIFOs,
    sockets, devices, broken links)."""

    other_files: dict[str, int] = field(default_factory=dict)  # suffix -> count
    folder_links: int = 0
    special: int = 0

    def describe(self) -> str | None:
        parts = []
        if self.other_files:
            n = sum(self.other_files.values())
            kinds = ", ".join(f"{suffix} {count:,}" for suffix, count in sorted(self.other_files.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
            parts.append(f"{n:,} file(s) not named as an image ({kinds})")
        if self.folder_links:
            parts.append(f"{self.folder_links:,} link(s) to folders (not followed)")
        if self.special:
            parts.append(f"{self.special:,} entr(y/ies) that are no regular file (FIFO, socket, device or broken link)")
        return "; ".join(parts) or None


def find_images(root: str | Path, left_out: LeftOut | None = None) -> list[str]:
    """All image files under ``root`` (recursive, sorted); a single file is returned as is.

    The order is that of sorting the paths component by component (``a/b.png`` before
    ``a-c.png``), walked with ``os.scandir``: about 9x faster than ``sorted(Path.rglob())``
    on 10,000 files, which matters when decoding itself takes only ~100 us per image.
    Symbolic links to folders are not followed (as ``rglob``); links to files are. What is
    left out is counted in ``left_out`` when given.
    """
    root = os.fspath(root)
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such file or folder: {root}")
    found: list[str] = []
    _collect_images(root, found, left_out if left_out is not None else LeftOut())
    return found


def _collect_images(folder: str, found: list[str], left_out: LeftOut) -> None:
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda entry: entry.name)
    for entry in ordered:
        if entry.is_dir(follow_symlinks=False):
            _collect_images(entry.path, found, left_out)
        elif entry.is_file():
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix in IMAGE_SUFFIXES:
                found.append(entry.path)
            else:
                key = suffix or "(no suffix)"
                left_out.other_files[key] = left_out.other_files.get(key, 0) + 1
        elif entry.is_symlink() and entry.is_dir():
            left_out.folder_links += 1
        else:
            left_out.special += 1

