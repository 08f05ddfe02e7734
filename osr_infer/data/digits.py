"""The bundled offline data set: scikit-learn's digits as knowns, sample-photo crops as unknowns.

It needs no network, so ``make demo`` and the unit tests run anywhere.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from osr_infer.errors import DataError
from osr_infer.data.datasets import ImageSet, OpenSetData
from osr_infer.spec import UNKNOWN
from osr_infer.preprocess import PREPROCESSING, PreprocessContract


from types import ModuleType

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def _sklearn() -> ModuleType:
    """The sklearn.datasets module, or a DataError saying how to install it."""
    try:
        import sklearn.datasets

        datasets: ModuleType = sklearn.datasets
        return datasets
    except ImportError:
        raise DataError(
            "the bundled digits data set comes with scikit-learn, which this install lacks: pip install scikit-learn"
        ) from None


#: The bundled digits' own form: 8x8 upsampled (bilinear) to MNIST's 28x28. The contract then
#: applies its steps to that, exactly as to these images written as PNG files (``sample-images``).
RAW_SIDE = 28


def load_digits_images(contract: PreprocessContract = PREPROCESSING) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (0-16 ink), 28x28, through the contract."""
    load_digits = _sklearn().load_digits

    bunch = load_digits()
    small = np.clip(bunch.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    raw = np.stack([np.asarray(Image.fromarray(img, mode="L").resize((RAW_SIDE, RAW_SIDE), Image.Resampling.BILINEAR)) for img in small])
    images = contract.conform(raw)
    return ImageSet(images, bunch.target.astype(np.int64), "digits", class_names=DIGIT_CLASSES)


def sample_photo_crops(
    n: int, seed: int, contract: PreprocessContract = PREPROCESSING, photos: tuple[int, ...] = (0, 1)
) -> ImageSet:
    """``n`` random square crops (32-256 px) of scikit-learn's sample photos, through the contract."""
    load_sample_images = _sklearn().load_sample_images

    sources = [load_sample_images().images[i] for i in photos]
    rng = np.random.default_rng(seed)
    out = np.empty((n, *contract.pixel_shape), dtype=np.uint8)
    boxes = []
    for i in range(n):  # drawn in order, so the crops do not depend on the threads below
        h, w = sources[i % len(sources)].shape[:2]
        side = int(rng.integers(32, min(256, h, w) + 1))
        boxes.append((int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side))

    def crop(i: int) -> None:
        top, left, side = boxes[i]
        out[i] = contract.to_uint8(Image.fromarray(sources[i % len(sources)][top : top + side, left : left + side]))

    if n > 256 and (os.cpu_count() or 1) > 1:  # the layout step costs milliseconds a crop: use every core
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
            list(pool.map(crop, range(n)))
    else:
        for i in range(n):
            crop(i)
    return ImageSet(out, np.full(n, UNKNOWN), "sample-photos")


def load_digits_open_set(seed: int = 0, n_unknown: int = 500, contract: PreprocessContract = PREPROCESSING) -> OpenSetData:
    """Stratified 60/20/20 split of the digits, and ``n_unknown`` photo crops as test unknowns."""
    _sklearn()
    from sklearn.model_selection import train_test_split

    digits = load_digits_images(contract)
    index = np.arange(len(digits))
    rest, test = train_test_split(index, test_size=0.2, stratify=digits.labels, random_state=seed)
    train, val = train_test_split(rest, test_size=0.25, stratify=digits.labels[rest], random_state=seed)
    return OpenSetData(
        "digits",
        digits.subset(np.sort(train), "digits-train"),
        digits.subset(np.sort(val), "digits-val"),
        digits.subset(np.sort(test), "digits-test"),
        DIGIT_CLASSES,
        [sample_photo_crops(n_unknown, seed, contract)],
    )
