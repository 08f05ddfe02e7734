"""CIFAR-10 as an unknown (out-of-distribution) source, through the model's preprocessing contract.

Two layouts are read: the official python pickle batches (``cifar-10-batches-py/``, with a
restricted unpickler) and a folder of images per class (``cifar10-test-jpeg/<class>/``).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from osr_infer.errors import DataError
from osr_infer.data.datasets import ImageSet
from osr_infer.preprocess import PREPROCESSING, PreprocessContract

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
PICKLE_DIR = "cifar-10-batches-py"
JPEG_DIR = "cifar10-test-jpeg"
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

# The only globals a CIFAR-10 batch needs: numpy array reconstruction (numpy 1 and 2 names).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store raw bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global except numpy array reconstruction: a pickle can't run code, and
    can't make an array larger than the file itself (whose bytes must hold the array's data):
    a 153-byte pickle asking for ``ndarray((200000, 3072))`` is refused, not allocated."""

    def __init__(self, fh: BinaryIO, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(fh, **kwargs)
        self.max_bytes = max_bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        found = super().find_class(module, name)
        if name == "ndarray":
            return _BoundedArrayType(self.max_bytes)
        if name == "_reconstruct":
            return lambda subtype, shape, dtype: _bounded_array(shape, dtype, self.max_bytes, found)
        return found


def _bounded_array(shape: Any, dtype: Any, max_bytes: int, make: Callable[..., np.ndarray] | None = None) -> np.ndarray:
    """``shape`` and ``dtype`` are whatever the pickle holds."""
    """An empty array of ``shape`` if its bytes fit in ``max_bytes``, else an UnpicklingError."""
    try:
        dims = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        size = math.prod(dims) * np.dtype(dtype if not isinstance(dtype, bytes) else dtype.decode("latin-1")).itemsize
    except (TypeError, ValueError, OverflowError) as exc:
        raise pickle.UnpicklingError(f"bad array shape or type ({exc})") from None
    if any(d < 0 for d in dims) or size > max_bytes:
        raise pickle.UnpicklingError(f"an array of shape {dims} would need {size:,} bytes; the file has {max_bytes:,}")
    return make(np.ndarray, dims, dtype) if make is not None else np.ndarray(dims, dtype)


class _BoundedArrayType:
    """``numpy.ndarray`` as the pickle sees it: a bounded constructor, and the type that
    ``_reconstruct`` is asked to make."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def __call__(self, shape: Any, dtype: Any = float, *args: Any) -> np.ndarray:
        if args:
            raise pickle.UnpicklingError("ndarray with a buffer is not allowed")
        return _bounded_array(shape, dtype, self.max_bytes)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch -> (N, 32, 32, 3) uint8 RGB images, (N,) int64 labels."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _RestrictedUnpickler(fh, max_bytes=path.stat().st_size, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - whatever a malformed pickle makes the allowed calls raise
        # (UnpicklingError, EOFError, ValueError, TypeError, LookupError from _codecs, MemoryError...)
        raise DataError(f"{path}: not a valid CIFAR-10 batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a valid CIFAR-10 batch (top level is {type(batch).__name__})")
    batch = {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64) if labels is not None else None
    except (TypeError, ValueError, OverflowError):
        labels = None  # strings, None, 2**100...
    if labels is None or labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers in 0-9")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(root: str | Path, split: str = "test", contract: PreprocessContract = PREPROCESSING) -> ImageSet:
    """Read ``cifar-10-batches-py`` through ``contract`` (the seed's: grayscale, 28x28)."""
    root = Path(root)
    if split not in _BATCHES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    images, labels = [], []
    for name in _BATCHES[split]:
        path = root / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 batch not found: {path}")
        rgb, lab = read_cifar_batch(path)
        images.append(contract.conform(rgb))
        labels.append(lab)
    return ImageSet(np.concatenate(images), np.concatenate(labels), f"cifar10-{split}", class_names=CIFAR10_CLASSES)


def find_cifar10(data_dir: str | Path) -> Path | None:
    """The CIFAR-10 test set under ``data_dir`` (pickle layout first, then the JPEG folder)."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / PICKLE_DIR, data_dir / JPEG_DIR):
        if candidate.is_dir():
            return candidate
    return None


def load_cifar10_test(path: str | Path, *, contract: PreprocessContract = PREPROCESSING, progress: bool = False) -> ImageSet:
    """CIFAR-10 test images from either layout, labelled by CIFAR class (0-9)."""
    from osr_infer.data.folders import load_image_folder

    path = Path(path)
    if (path / "test_batch").is_file():
        return load_cifar10(path, "test", contract)
    images = load_image_folder(path, name="cifar10-test", contract=contract, progress=progress)
    assert images.paths is not None  # read from files
    labels = np.array(
        [CIFAR10_CLASSES.index(Path(p).parent.name) if Path(p).parent.name in CIFAR10_CLASSES else -1 for p in images.paths],
        dtype=np.int64,
    )
    return ImageSet(images.images, labels, "cifar10-test", images.paths, CIFAR10_CLASSES)
