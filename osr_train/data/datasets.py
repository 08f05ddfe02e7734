"""Common containers for the data sets and the entry point that assembles an open-set split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "digits")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
UNKNOWN_LABEL = 10  # the 11th class of open-set confusion matrices


class DataError(RuntimeError):
    """A data set is missing or unusable; the message says what to do."""


def default_data_dir() -> Path:
    """``$OSR_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get("OSR_DATA_DIR", "data"))


@dataclass
class ImageSet:
    """Images as a ``(N, 28, 28)`` uint8 array with integer labels (-1 for unlabelled)."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    paths: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise ValueError(f"{self.name}: images must be uint8 (N, H, W), got {self.images.dtype} {self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray, name: str | None = None) -> "ImageSet":
        paths = [self.paths[i] for i in index] if self.paths is not None else None
        return ImageSet(self.images[index], self.labels[index], name or self.name, paths)


@dataclass
class OpenSetData:
    """Everything a training run needs: known train/val/test splits and unknown sets.

    ``unknown_val`` may be empty; it is only used for reporting, never for calibration.
    """

    dataset: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    unknown_test: list[ImageSet] = field(default_factory=list)
    class_names: tuple[str, ...] = DIGIT_CLASSES

    def describe(self) -> str:
        unknown = ", ".join(f"{u.name} ({len(u):,})" for u in self.unknown_test) or "none"
        return (
            f"{self.dataset}: train {len(self.train):,}, val {len(self.val):,}, test {len(self.test):,}; "
            f"unknowns: {unknown}"
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


def load_open_set_data(
    dataset: str,
    data_dir: Path | None = None,
    *,
    ood_dirs: list[Path] | None = None,
    download: bool = False,
    seed: int = 0,
    n_val: int = 10_000,
    progress: bool = True,
) -> OpenSetData:
    """Load knowns and unknowns for ``dataset`` ('mnist' or 'digits').

    For MNIST the unknowns are the folders in ``ood_dirs``, else ``<data-dir>/cifar10-test-jpeg``
    or ``<data-dir>/cifar-10-batches-py`` when present.
    """
    from osr_train.data.cifar import find_cifar10, load_cifar10_test
    from osr_train.data.digits import load_digits_open_set
    from osr_train.data.folders import load_image_folder
    from osr_train.data.mnist import load_mnist

    if dataset == "digits":
        data = load_digits_open_set(seed=seed)
    elif dataset == "mnist":
        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        train_full = load_mnist(data_dir, "train", download=download)
        test = load_mnist(data_dir, "test", download=False)
        train, val = split_train_val(train_full, n_val, seed)
        data = OpenSetData("mnist", train, val, test)
        if not ood_dirs:
            found = find_cifar10(data_dir)
            if found is not None:
                data.unknown_test.append(load_cifar10_test(found, progress=progress))
    else:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    for folder in ood_dirs or []:
        data.unknown_test.append(load_image_folder(folder, progress=progress))
    return data
