"""The images an export is checked on: drawn from the checkpoint's own data set when it is there.

Parity on the inputs the model will really see (digits and the unknowns it must reject) says
more than parity on noise: near-threshold decisions only occur on realistic inputs. When the
data set is absent the probe falls back to fixed random images, and says so. Calibration
images for INT8 quantisation come from the validation knowns, never from the probe's test
images, so the reported INT8 accuracy is measured on data the calibration did not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osr_infer.errors import ParameterError
from osr_infer.errors import DataError
from osr_infer.data.datasets import ImageSet
from osr_infer.data.idx import IdxFormatError
from osr_infer.data.registry import UnknownSet, open_set_source
from osr_infer.preprocess import PreprocessContract
from osr_infer.spec import ModelSpec

PROBE_SEED = 0


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
        raise ParameterError("probe_size", f"probe_size must be a positive integer or 'all', not {text!r}") from None
    if value < 1:
        raise ParameterError("probe_size", f"probe_size must be at least 1, not {value}")
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


def random_probe(n: int, contract: PreprocessContract, seed: int = PROBE_SEED, reason: str = "") -> Probe:
    """Fixed (seeded) random uint8 images: uniform noise and sparse bright strokes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *contract.pixel_shape), dtype=np.uint8)
    sparse = rng.random((n, *contract.pixel_shape)) < 0.85
    images[1::2][sparse[1::2]] = 0  # every other image mostly black, like a digit's background
    origin = "fixed random inputs (seed 0)" + (f": {reason}" if reason else "")
    return Probe([ProbeSource("random", images, np.full(n, -1, dtype=np.int64), "random")], origin, real_data=False)


def _image_set_source(images: ImageSet, role: str, n: int, seed: int, name: str | None = None) -> ProbeSource:
    index = _sample(len(images), n, seed)
    labels = images.labels[index] if role == "known" else np.full(len(index), -1, dtype=np.int64)
    return ProbeSource(name or images.name, images.images[index], labels, role)


def build_probe(spec: ModelSpec, data_dir: Path | None = None, size: int | None = 1024) -> Probe:
    """The probe for a model: ``size`` images (None: all of them) from its own data set, through
    its preprocessing: the test knowns, the test images of held-out classes, and the data set's
    unknowns (CIFAR-10 for MNIST, photo crops for the digits), spread evenly. Without the data,
    fixed random inputs (an error when ``size`` is None, since "every image of the data set"
    cannot then be honoured)."""
    contract = spec.preprocessing
    source = open_set_source(spec.dataset, data_dir)
    try:
        _, _, test, held_out = source.known_splits(contract, progress=False)
        unknown_sets = source.unknown_sets()
    except IdxFormatError as exc:
        raise ProbeError(f"the data set {spec.dataset.reference} is unreadable: {exc}") from None
    except DataError as exc:
        reason = f"the data set {spec.dataset.reference} is not available ({exc})"
        if size is None:
            raise ProbeError(f"`probe_size` all needs the real data: {reason}") from None
        return random_probe(size, contract, reason=reason)
    groups: list[tuple[ImageSet | UnknownSet, str]] = [(test, "known")]
    if held_out is not None and len(held_out):
        groups.append((held_out, "unknown"))
    groups += [(u, "unknown") for u in unknown_sets]
    sizes = [len(g) if isinstance(g, ImageSet) else (g.size or 0) for g, _ in groups]
    sources = []
    for (group, role), n in zip(groups, allocate(sizes, size), strict=True):
        if not n:
            continue
        if isinstance(group, UnknownSet):
            group = group.load(contract, None if size is None else n, PROBE_SEED)
        sources.append(_image_set_source(group, role, n, PROBE_SEED))
    notes = [] if len(groups) > 1 else [
        f"no unknowns for {spec.dataset.reference} under {source.data_dir} (for mnist: CIFAR-10 test in cifar-10-batches-py/ "
        "or cifar10-test-jpeg/): knowns only"
    ]
    return Probe(sources, f"{spec.dataset.reference} (data folder {source.data_dir})", real_data=True, notes=notes)


def calibration_images(spec: ModelSpec, data_dir: Path | None = None, n: int = 512) -> tuple[np.ndarray, str]:
    """Validation knowns of the model's data set (the split training used), for INT8 calibration.

    Raises DataError when the data set is not available: calibrating on noise would silently
    produce a poor model.
    """
    try:
        _, val, _, _ = open_set_source(spec.dataset, data_dir).known_splits(spec.preprocessing, progress=False)
    except DataError as exc:
        raise DataError(f"INT8 calibration needs the validation images of {spec.dataset.reference}: {exc}") from None
    index = _sample(len(val), n, PROBE_SEED)
    return val.images[index], f"{val.name} ({len(index):,} of {len(val):,})"
