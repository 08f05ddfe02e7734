"""What ``SOURCE`` arguments mean: image files, folders, or labelled data set references.

* a file or a folder (searched recursively, sorted, common image suffixes): unlabelled,
  or every image counted as *unknown* when passed with ``--unknown``;
* ``mnist:test`` / ``mnist:train``: the MNIST IDX files under ``--data-dir``, labelled 0-9;
* ``cifar10:test``: the CIFAR-10 test set under ``--data-dir`` (``cifar-10-batches-py`` or
  ``cifar10-test-jpeg/<class>/``), every image an *unknown*;
* ``digits``: the bundled offline set, i.e. the test split (seed 0) of the scikit-learn
  digits, labelled 0-9, plus the 500 sample-photo crops as unknowns: exactly the test
  sets ``osr-train --dataset digits`` reports its metrics on, so the numbers compare.

Data set references read through ``osr_train.data``; images from files are decoded later,
in parallel, by :mod:`osr_infer.decode`. A reference shadows a folder of the same name
(write ``./digits`` for the folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osr_infer.errors import InferError
from osr_train.data.datasets import UNKNOWN_LABEL as UNKNOWN  # 10, the 11th class of the metrics
from osr_train.preprocess import IMAGE_SUFFIXES, PREPROCESSING, PreprocessContract, find_images

UNLABELLED = -1
DATASET_REFERENCES = ("mnist:test", "mnist:train", "cifar10:test", "digits")
DIGITS_SEED = 0  # osr-train's default --seed, which fixes the digits split


@dataclass
class Source:
    """One SOURCE: either file paths (decoded later) or in-memory uint8 images, with labels.

    Labels: 0-9 a known digit, 10 (``UNKNOWN``) an unknown, -1 unlabelled.
    """

    name: str
    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.paths is None) == (self.images is None):
            raise ValueError("a source holds either paths or images")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self):
            raise ValueError(f"{self.name}: {len(self)} items but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self.images)

    @property
    def from_files(self) -> bool:
        return self.paths is not None

    @property
    def labelled(self) -> bool:
        return bool(np.any(self.labels != UNLABELLED))

    def item_id(self, index: int) -> str:
        """The ``path`` column: the file path, or ``<source>:<index>`` for in-memory data sets."""
        return self.paths[index] if self.paths is not None else f"{self.name}:{index}"


def resolve_sources(
    specs: list[str], unknown_specs: list[str], data_dir: Path, contract: PreprocessContract = PREPROCESSING
) -> list[Source]:
    """Resolve every SOURCE (and ``--unknown`` SOURCE) up front, so a typo fails before any work."""
    if not specs and not unknown_specs:
        raise InferError("nothing to classify: give at least one SOURCE (files, folders, mnist:test, cifar10:test, digits)")
    sources = [resolve_source(s, data_dir, contract) for s in specs]
    sources += [resolve_source(s, data_dir, contract, unknown=True) for s in unknown_specs]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InferError(f"source given more than once: {', '.join(duplicates)}")
    return sources


def resolve_source(spec: str, data_dir: Path, contract: PreprocessContract = PREPROCESSING, *, unknown: bool = False) -> Source:
    if spec in DATASET_REFERENCES:
        source = _dataset(spec, Path(data_dir), contract)
        if unknown:
            source.labels = np.full(len(source), UNKNOWN, dtype=np.int64)
        return source
    path = Path(spec)
    if not path.exists():
        prefix = spec.split(":", 1)[0]
        if ":" in spec or spec in ("mnist", "cifar10"):
            known = ", ".join(DATASET_REFERENCES)
            if prefix in ("mnist", "cifar10", "digits"):
                raise InferError(f"unknown data set reference {spec!r}; known: {known}")
            raise InferError(f"no such file or folder: {spec} (data set references: {known})")
        raise InferError(f"no such file or folder: {spec}")
    try:
        files = find_images(path)
    except OSError as exc:
        raise InferError(f"cannot list {spec}: {exc.strerror or exc}") from None
    if not files:
        raise InferError(f"no image files under {spec} (looked recursively for {', '.join(IMAGE_SUFFIXES)})")
    return Source(spec, np.full(len(files), UNKNOWN if unknown else UNLABELLED, dtype=np.int64), paths=files)


def _dataset(spec: str, data_dir: Path, contract: PreprocessContract) -> Source:
    """A labelled data set reference, read with osr_train's readers."""
    from osr_train.data import DataError, IdxFormatError

    if contract != PREPROCESSING:
        raise InferError(
            f"{spec}: the model's preprocessing differs from the toolkit's standard one that the data set readers "
            "apply; classify image folders instead"
        )
    try:
        if spec.startswith("mnist:"):
            return _mnist(spec, data_dir)
        if spec == "cifar10:test":
            return _cifar10(spec, data_dir)
        return _digits(spec)
    except (DataError, IdxFormatError) as exc:
        raise InferError(f"{spec}: {exc}") from None


def _mnist(spec: str, data_dir: Path) -> Source:
    from osr_train.data.mnist import MnistMissingError, load_mnist, mnist_raw_dir

    try:
        images = load_mnist(data_dir, spec.split(":")[1])
    except MnistMissingError:
        raise InferError(
            f"{spec}: MNIST not found in {mnist_raw_dir(data_dir)} (set --data-dir or $OSR_DATA_DIR; "
            "`osr-train --download` fetches it)"
        ) from None
    return Source(spec, images.labels, images=images.images)


def _cifar10(spec: str, data_dir: Path) -> Source:
    from osr_train.data.cifar import JPEG_DIR, PICKLE_DIR, find_cifar10, load_cifar10

    found = find_cifar10(data_dir)
    if found is None:
        raise InferError(
            f"{spec}: no CIFAR-10 test set in {data_dir} (expected {PICKLE_DIR}/test_batch or {JPEG_DIR}/<class>/*.jpg; "
            "set --data-dir or $OSR_DATA_DIR)"
        )
    if (found / "test_batch").is_file():
        images = load_cifar10(found, "test")
        return Source(spec, np.full(len(images), UNKNOWN), images=images.images)
    files = find_images(found)
    if not files:
        raise InferError(f"{spec}: no image files under {found}")
    return Source(spec, np.full(len(files), UNKNOWN), paths=files)


def _digits(spec: str) -> Source:
    from osr_train.data.digits import load_digits_open_set

    data = load_digits_open_set(seed=DIGITS_SEED)
    photos = data.unknown_test[0]
    images = np.concatenate([data.test.images, photos.images])
    labels = np.concatenate([data.test.labels, np.full(len(photos), UNKNOWN)])
    return Source(spec, labels, images=images)
