"""Common containers for the data sets and the entry point that assembles an open-set split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osr_infer.errors import DataError
from osr_infer.preprocess import PreprocessContract



def default_data_dir() -> Path:
    """``$OSR_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get("OSR_DATA_DIR", "data"))


@dataclass
class ImageSet:
    """Images as a uint8 array, ``(N, H, W)`` or ``(N, H, W, 3)``, with integer labels.

    Labels index ``class_names`` when the set is labelled; unknown sets use ``UNKNOWN`` (-1).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    paths: list[str] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or not (self.images.ndim == 3 or (self.images.ndim == 4 and self.images.shape[3] == 3)):
            raise ValueError(f"{self.name}: images must be uint8 (N, H, W) or (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def conformed(self, contract: PreprocessContract) -> "ImageSet":
        """The same images through the contract's colour conversion and resize (a no-op when they fit)."""
        images = contract.conform(self.images)
        return self if images is self.images else ImageSet(images, self.labels, self.name, self.paths, self.class_names)

    def subset(self, index: np.ndarray, name: str | None = None) -> "ImageSet":
        paths = [self.paths[i] for i in index] if self.paths is not None else None
        return ImageSet(self.images[index], self.labels[index], name or self.name, paths, self.class_names)


@dataclass
class OpenSetData:
    """Everything a training run needs: known train/val/test splits and the unknown test sets.

    Labels of the splits index ``class_names``. ``unknown_test`` are only used for
    reporting, never for calibration.
    """

    dataset: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: tuple[str, ...]
    unknown_test: list[ImageSet] = field(default_factory=list)

    def describe(self) -> str:
        unknown = ", ".join(f"{u.name} ({len(u):,})" for u in self.unknown_test) or "none"
        shape = "x".join(str(d) for d in self.train.images.shape[1:])
        return (
            f"{self.dataset}: {len(self.class_names)} classes, images {shape}; train {len(self.train):,}, "
            f"val {len(self.val):,}, test {len(self.test):,}; unknowns: {unknown}"
        )


def split_train_val(images: ImageSet, n_val: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Seeded random split (the seed notebook's 50,000/10,000 of MNIST's training set).

    Smaller files (tests, subsets) keep the same 5:1 ratio.
    """
    n_val = min(n_val, len(images) // 6)
    if n_val < 1 or len(images) - n_val < 2:
        raise DataError(f"{images.name}: {len(images)} images are too few for a train/validation split")
    order = np.random.default_rng(seed).permutation(len(images))
    return images.subset(order[n_val:], f"{images.name}-train"), images.subset(order[:n_val], f"{images.name}-val")
