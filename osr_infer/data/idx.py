"""Reader for the IDX format of the MNIST files, validated so a bad file gets a clear error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# Third byte of the magic number -> dtype (the IDX spec; MNIST only uses 0x08).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """A file is not a valid IDX file (wrong magic number, truncated, wrong shape...)."""


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip data (whatever its name says)."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, gzip.BadGzipFile) as exc:  # gzip raises these for corrupt/truncated archives
        raise IdxFormatError(f"{path}: cannot read ({exc})") from None


def read_idx(
    path: str | Path,
    *,
    expected_ndim: int | None = None,
    expected_shape: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array.

    Checks the magic number, the element type, the number of dimensions, and that the file
    length matches the header exactly. ``expected_shape`` entries of ``None`` match any size.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise IdxFormatError(
            f"{path}: not an IDX file (bad magic number 0x{int.from_bytes(data[:4], 'big'):08x})"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(f"{path}: expected {expected_ndim} dimensions, header says {ndim}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if expected_shape is not None:
        if len(expected_shape) != ndim or any(e is not None and e != s for e, s in zip(expected_shape, shape)):
            raise IdxFormatError(f"{path}: unexpected shape {shape}, expected {expected_shape}")
    dtype = _IDX_DTYPES[type_code]
    expected_len = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_len:
        what = "truncated" if len(data) < expected_len else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: file {what}: {len(data):,} bytes, header {shape} implies {expected_len:,}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


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
