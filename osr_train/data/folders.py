"""Any folder of image files as a source of unknowns (or of images to classify)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from osr_train.data.datasets import DataError, ImageSet
from osr_train.preprocess import PREPROCESSING, ImageDecodeError, PreprocessContract, find_images, load_image

log = logging.getLogger(__name__)


def load_image_folder(
    folder: str | Path,
    *,
    name: str | None = None,
    contract: PreprocessContract = PREPROCESSING,
    progress: bool = False,
    workers: int | None = None,
) -> ImageSet:
    """Decode every image under ``folder`` (recursive) with the preprocessing contract.

    Unreadable files are logged with their reason and skipped; a folder with no readable
    image is an error.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder not found: {folder}")
    paths = find_images(folder)
    if not paths:
        raise DataError(f"no image files under {folder}")

    def decode(path: str) -> np.ndarray | str:
        try:
            return load_image(path, contract)
        except ImageDecodeError as exc:
            return str(exc)

    results: list[np.ndarray | str] = []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        iterator = pool.map(decode, paths, chunksize=64)
        if progress:
            from rich.progress import track

            iterator = track(iterator, total=len(paths), description=f"decoding {folder.name}", transient=True)
        results = list(iterator)
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    for i, r in enumerate(results):
        if isinstance(r, str):
            log.warning("skipped %s: %s", paths[i], r)
    if not kept:
        raise DataError(f"no readable image under {folder} ({len(paths)} files failed to decode)")
    images = np.stack([results[i] for i in kept])
    return ImageSet(images, np.full(len(kept), -1), name or folder.name, [str(paths[i]) for i in kept])
