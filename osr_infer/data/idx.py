"""Reader for the IDX format of the MNIST files, validated so a bad file gets a clear error."""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from osr_infer.errors import DataError

# Third byte of the magic number -> dtype (the IDX spec; MNIST only uses 0x08).
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(DataError, ValueError):
    """A file is not a valid IDX file (wrong magic number, truncated, wrong shape...)."""


#: The most an IDX payload may hold (EMNIST's largest split is 0.55 GB).
MAX_IDX_BYTES = 2 << 30
#: A gzip file may inflate to at most this many times its size (IDX digits compress 4-8x):
#: a few MB of zeros must not become gigabytes before the header is checked.
MAX_GZIP_RATIO = 64
#: ... except that any gzip file may inflate to this much (tiny files of zeros compress 400x).
SMALL_GZIP_BYTES = 64 << 20


def _read_up_to(stream: gzip.GzipFile | io.BufferedReader, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(
    path: str | Path,
    *,
    expected_ndim: int | None = None,
    expected_shape: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array.

    Checks the magic number, the element type, the number of dimensions, and that the file
    length matches the header exactly. ``expected_shape`` entries of ``None`` match any size.
    The header is read first and the payload streamed into an array of the size it announces,
    which is bounded (`MAX_IDX_BYTES`, and `MAX_GZIP_RATIO` times a gzip file's
    size): a small file never costs gigabytes of memory.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if compressed else raw
            return _parse(path, stream, path.stat().st_size, compressed, expected_ndim, expected_shape)
    except IdxFormatError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # gzip raises these for corrupt/truncated archives
        raise IdxFormatError(f"{path}: cannot read ({exc})") from None


def _parse(path: Path, stream: gzip.GzipFile | io.BufferedReader, file_size: int, compressed: bool,
           expected_ndim: int | None, expected_shape: tuple[int | None, ...] | None) -> np.ndarray:
    head = _read_up_to(stream, 4)
    if len(head) < 4:
        raise IdxFormatError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
    zero0, zero1, type_code, ndim = head[0], head[1], head[2], head[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise IdxFormatError(f"{path}: not an IDX file (bad magic number 0x{int.from_bytes(head, 'big'):08x})")
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(f"{path}: expected {expected_ndim} dimensions, header says {ndim}")
    dims = _read_up_to(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise IdxFormatError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if expected_shape is not None:
        if len(expected_shape) != ndim or any(e is not None and e != s for e, s in zip(expected_shape, shape, strict=True)):
            raise IdxFormatError(f"{path}: unexpected shape {shape}, expected {expected_shape}")
    dtype = _IDX_DTYPES[type_code]
    header_len = 4 + 4 * ndim
    payload = math.prod(shape) * dtype.itemsize
    limit = min(MAX_IDX_BYTES, max(MAX_GZIP_RATIO * file_size, SMALL_GZIP_BYTES)) if compressed else file_size - header_len
    if payload > limit:
        if not compressed:
            raise IdxFormatError(f"{path}: file truncated: {file_size:,} bytes, header {shape} implies {header_len + payload:,}")
        raise IdxFormatError(
            f"{path}: header {shape} announces {payload:,} bytes, more than this {file_size:,}-byte gzip file may inflate to "
            f"({limit:,}: a decompression bomb or a corrupt header)"
        )
    array = np.empty(payload, dtype=np.uint8)
    view, filled = memoryview(array.data), 0
    while filled < payload:
        n = stream.readinto(view[filled : filled + (1 << 22)])
        if not n:
            break
        filled += n
    if filled < payload:
        raise IdxFormatError(f"{path}: file truncated: {header_len + filled:,} bytes, header {shape} implies {header_len + payload:,}")
    if stream.read(1):
        raise IdxFormatError(f"{path}: file has trailing bytes after the {header_len + payload:,} its header {shape} implies")
    native: np.ndarray = array.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=dtype.byteorder not in ("=", "|"))
    return native


#: File name stems of each split in MNIST's layout, shared by Fashion-MNIST, KMNIST and EMNIST
#: (EMNIST prefixes them, e.g. ``emnist-letters-train-images-idx3-ubyte``).
SPLIT_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def find_idx_split(folder: Path, split: str) -> tuple[Path | None, Path | None]:
    """The (images, labels) files of ``split`` in ``folder``, with or without ``.gz`` or a prefix."""
    found = []
    for stem in SPLIT_STEMS[split]:
        exact = [folder / stem, folder / f"{stem}.gz"]
        hit = next((p for p in exact if p.is_file()), None)
        if hit is None and folder.is_dir():
            prefixed = sorted(p for p in folder.iterdir() if p.is_file() and (p.name.endswith(f"-{stem}") or p.name.endswith(f"-{stem}.gz")))
            hit = prefixed[0] if prefixed else None
        found.append(hit)
    return found[0], found[1]


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, H, W)`` (or ``(N, H, W, 3)``) and int64 labels, checked against each other."""
    images = read_idx(images_path)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
        raise IdxFormatError(f"{images_path}: expected uint8 images of shape (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.dtype.kind not in "iu":
        raise IdxFormatError(f"{labels_path}: labels must be integers, not {labels.dtype}")
    if len(images) != len(labels):
        raise IdxFormatError(f"{images_path} has {len(images):,} images but {labels_path} has {len(labels):,} labels")
    return images, labels.astype(np.int64)
