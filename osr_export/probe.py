"""The images an export is checked on: drawn from the checkpoint's own data set when it is there.

Parity on the inputs the model will really see (digits and the unknowns it must reject) says
more than parity on noise: near-threshold decisions only occur on realistic inputs. When the
data set is absent the probe falls back to fixed random images, and says so. Calibration
images for INT8 quantisation come from the validation knowns, never from the probe's test
images, so the reported INT8 accuracy is measured on data the calibration did not see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osr_train.data.datasets import DataError, ImageSet, default_data_dir, split_train_val
from osr_train.preprocess import PREPROCESSING, ImageDecodeError, PreprocessContract, find_images, load_image

log = logging.getLogger(__name__)

PROBE_SEED = 0
RANDOM_PROBE_SIZE = 1024  # random fallback when every probe image was asked for but no data exists


class ProbeError(DataError):
    """The probe asked for cannot be built (e.g. the full real-data probe without the data)."""


@dataclass
class ProbeSource:
    """One group of probe images: ``role`` is 'known' (labelled digits), 'unknown' or 'random'."""

    name: str
    images: np.ndarray  # uint8 (N, size, size)
    labels: np.ndarray  # int64, -1 where unlabelled
    role: str

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Probe:
    sources: list[ProbeSource]
    origin: str  # one line: where the images come from
    real_data: bool
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def describe(self) -> str:
        parts = ", ".join(f"{s.name} ({len(s):,})" for s in self.sources)
        return f"{len(self):,} images: {parts} [{self.origin}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "real_data": self.real_data,
            "notes": self.notes,
            "sources": [{"name": s.name, "role": s.role, "n": len(s)} for s in self.sources],
        }


def parse_probe_size(text: str) -> int | None:
    """'all' -> None (every image), else a positive integer."""
    if text.strip().lower() in ("all", "full"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"--probe-size must be a positive integer or 'all', not {text!r}") from None
    if value < 1:
        raise ValueError(f"--probe-size must be at least 1, not {value}")
    return value


def allocate(sizes: list[int], total: int | None) -> list[int]:
    """Split ``total`` images as evenly as possible over sources of the given ``sizes``."""
    if total is None or total >= sum(sizes):
        return list(sizes)
    take = [0] * len(sizes)
    left = total
    open_ = [i for i, s in enumerate(sizes) if s > 0]
    while left > 0 and open_:
        share = max(left // len(open_), 1)
        for i in list(open_):
            extra = min(share, sizes[i] - take[i], left)
            take[i] += extra
            left -= extra
            if take[i] == sizes[i]:
                open_.remove(i)
            if left == 0:
                break
    return take


def _sample(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def random_probe(n: int, contract: PreprocessContract = PREPROCESSING, seed: int = PROBE_SEED, reason: str = "") -> Probe:
    """Fixed (seeded) random uint8 images: uniform noise and sparse bright strokes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, contract.size, contract.size), dtype=np.uint8)
    sparse = rng.random((n, contract.size, contract.size)) < 0.85
    images[1::2][sparse[1::2]] = 0  # every other image mostly black, like a digit's background
    origin = "fixed random inputs (seed 0)" + (f": {reason}" if reason else "")
    return Probe([ProbeSource("random", images, np.full(n, -1, dtype=np.int64), "random")], origin, real_data=False)


def _image_set_source(images: ImageSet, role: str, n: int, seed: int, name: str | None = None) -> ProbeSource:
    index = _sample(len(images), n, seed)
    labels = images.labels[index] if role == "known" else np.full(len(index), -1, dtype=np.int64)
    return ProbeSource(name or images.name, images.images[index], labels, role)


def _cifar_source(path: Path, n: int | None, seed: int, contract: PreprocessContract) -> ProbeSource:
    """CIFAR-10 test images; for a partial probe of the JPEG layout only the sampled files are decoded."""
    from osr_train.data.cifar import load_cifar10_test

    if (path / "test_batch").is_file() or n is None:
        images = load_cifar10_test(path, progress=n is None)
        return _image_set_source(images, "unknown", len(images) if n is None else n, seed, "cifar10-test")
    paths = find_images(path)
    chosen = [paths[i] for i in _sample(len(paths), n, seed)]
    decoded = []
    for p in chosen:
        try:
            decoded.append(load_image(p, contract))
        except ImageDecodeError as exc:
            log.warning("probe: skipped %s: %s", p, exc)
    if not decoded:
        raise DataError(f"no readable CIFAR-10 image under {path}")
    return ProbeSource("cifar10-test", np.stack(decoded), np.full(len(decoded), -1, dtype=np.int64), "unknown")


def _digits_sets(seed: int) -> tuple[ImageSet, ImageSet]:
    from osr_train.data.digits import load_digits_open_set

    data = load_digits_open_set(seed=seed)
    known = ImageSet(
        np.concatenate([data.val.images, data.test.images]),
        np.concatenate([data.val.labels, data.test.labels]),
        "digits-val+test",
    )
    return known, data.unknown_test[0]


def build_probe(
    config: dict[str, Any],
    data_dir: Path | None = None,
    size: int | None = 1024,
    contract: PreprocessContract = PREPROCESSING,
) -> Probe:
    """The probe for a checkpoint: ``size`` images (None: all of them) from its data set.

    - ``digits``: the bundled digits (validation + test knowns) and sample-photo crops (unknowns);
    - ``mnist``: the MNIST test set from ``data_dir``, plus CIFAR-10 test images if found there;
    - otherwise, or if MNIST is missing, fixed random inputs (an error when ``size`` is None,
      since "every image of the data set" cannot then be honoured).
    """
    dataset = config.get("dataset", "unknown")
    seed = int(config.get("seed", 0))
    if dataset == "digits":
        known, unknown = _digits_sets(seed)
        n_known, n_unknown = allocate([len(known), len(unknown)], size)
        sources = [
            _image_set_source(known, "known", n_known, PROBE_SEED),
            _image_set_source(unknown, "unknown", n_unknown, PROBE_SEED),
        ]
        return Probe([s for s in sources if len(s)], "bundled scikit-learn digits (offline)", real_data=True)
    if dataset == "mnist":
        from osr_train.data.cifar import find_cifar10
        from osr_train.data.idx import IdxFormatError
        from osr_train.data.mnist import MnistMissingError, load_mnist

        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        try:
            mnist = load_mnist(data_dir, "test")
        except IdxFormatError as exc:
            raise ProbeError(f"MNIST under {data_dir} is unreadable: {exc}") from None
        except MnistMissingError:
            reason = f"MNIST not found under {data_dir} (expected {data_dir / 'MNIST' / 'raw'})"
            if size is None:
                raise ProbeError(f"--probe-size all needs the real data: {reason}") from None
            return random_probe(size, contract, reason=reason)
        cifar_path = find_cifar10(data_dir)
        notes = [] if cifar_path is not None else [f"no CIFAR-10 under {data_dir}: knowns only"]
        if cifar_path is None:
            n_mnist, n_cifar = allocate([len(mnist)], size)[0], 0
        else:
            n_cifar_total = 10_000  # both CIFAR-10 layouts hold the 10,000 test images
            n_mnist, n_cifar = allocate([len(mnist), n_cifar_total], size)
        sources = [_image_set_source(mnist, "known", n_mnist, PROBE_SEED, "mnist-test")]
        if n_cifar:
            sources.append(_cifar_source(cifar_path, None if size is None else n_cifar, PROBE_SEED, contract))
        return Probe(sources, f"real data under {data_dir}", real_data=True, notes=notes)
    reason = f"the checkpoint's data set {dataset!r} has no reader"
    if size is None:
        raise ProbeError(f"--probe-size all needs a known data set: {reason}")
    return random_probe(size, contract, reason=reason)


def calibration_images(config: dict[str, Any], data_dir: Path | None = None, n: int = 512) -> tuple[np.ndarray, str]:
    """Validation knowns of the checkpoint's data set (uint8), for INT8 calibration, and their name.

    Raises DataError when the data set is not available: calibrating on noise would silently
    produce a poor model.
    """
    dataset = config.get("dataset", "unknown")
    seed = int(config.get("seed", 0))
    if dataset == "digits":
        from osr_train.data.digits import load_digits_open_set

        val = load_digits_open_set(seed=seed).val
    elif dataset == "mnist":
        from osr_train.data.idx import IdxFormatError
        from osr_train.data.mnist import MnistMissingError, load_mnist

        data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        try:
            train = load_mnist(data_dir, "train")
        except MnistMissingError:
            raise DataError(
                f"INT8 calibration needs the MNIST validation images (from the train split), not found under "
                f"{data_dir / 'MNIST' / 'raw'}; set --data-dir or $OSR_DATA_DIR"
            ) from None
        except (DataError, IdxFormatError) as exc:
            raise DataError(f"INT8 calibration needs the MNIST validation images: {exc}") from None
        _, val = split_train_val(train, 10_000, seed)  # the same validation split training used
    else:
        raise DataError(f"INT8 calibration needs validation knowns, but data set {dataset!r} has no reader")
    index = _sample(len(val), n, PROBE_SEED)
    return val.images[index], f"{val.name} ({len(index):,} of {len(val):,})"
