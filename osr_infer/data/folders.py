"""Folders of image files: unlabelled (a source of unknowns), or one subfolder per class
(torchvision's ImageFolder layout) as a labelled data set."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from osr_infer.errors import DataError
from osr_infer.data.datasets import ImageSet
from osr_infer.spec import UNKNOWN
from osr_infer.preprocess import PREPROCESSING, PreprocessContract, find_images

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
    return decode_paths(paths, name or folder.name, contract, progress=progress, workers=workers)


def decode_paths(
    paths: list[str], name: str, contract: PreprocessContract = PREPROCESSING, *, progress: bool = False, workers: int | None = None
) -> ImageSet:
    """Decode ``paths`` with the contract, in threads, in chunks (small images are laid out as
    stacks: `osr_infer.decode.decode_files`); unreadable files are logged and skipped."""
    from osr_infer.decode import CHUNK_FILES, Decoded, decode_files

    chunks = [paths[start : start + CHUNK_FILES] for start in range(0, len(paths), CHUNK_FILES)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        iterator: Iterable[Decoded] = pool.map(lambda chunk: decode_files(chunk, contract), chunks)
        if progress:
            from rich.progress import track

            iterator = track(iterator, total=len(chunks), description=f"decoding {name} ({len(paths):,} files)", transient=True)
        results = list(iterator)
    kept: list[int] = []
    images = []
    for start, (positions, pixels, failed) in zip(range(0, len(paths), CHUNK_FILES), results, strict=True):
        kept.extend((positions + start).tolist())
        images.append(pixels)
        for i, reason in failed:
            log.warning("skipped %s: %s", paths[start + i], reason)
    if not kept:
        raise DataError(f"no readable image in {name} ({len(paths)} files failed to decode)")
    return ImageSet(np.concatenate(images), np.full(len(kept), UNKNOWN), name, [str(paths[i]) for i in kept])


def subfolder_of(folder: Path, path: str) -> str:
    """The first folder of ``path`` below ``folder`` (its class in an ImageFolder layout), or ""
    for a file directly in ``folder``."""
    parts = Path(path).relative_to(folder).parts
    return parts[0] if len(parts) > 1 else ""


def class_folders(folder: str | Path) -> list[str]:
    """The class subfolders of an ImageFolder layout, sorted (hidden folders are not classes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_class_folder(
    folder: str | Path,
    *,
    name: str | None = None,
    contract: PreprocessContract = PREPROCESSING,
    class_names: tuple[str, ...] | None = None,
    progress: bool = False,
) -> ImageSet:
    """Every image under ``folder/<class>/`` labelled by its class (``class_names`` order, or the
    sorted subfolders). A subfolder that is not one of ``class_names`` is an error."""
    folder = Path(folder)
    found = class_folders(folder)
    names = tuple(class_names) if class_names is not None else tuple(found)
    stray = [c for c in found if c not in names]
    if stray:
        raise DataError(f"{folder}: subfolders {stray} are not among the classes {list(names)}")
    if len(names) < 2:
        raise DataError(f"{folder}: a labelled image folder needs at least two class subfolders, found {found}")
    images = load_image_folder(folder, name=name or folder.name, contract=contract, progress=progress)
    tops = [subfolder_of(folder, p) for p in images.paths or []]
    loose = [p for p, top in zip(images.paths or [], tops, strict=True) if top not in names]
    if loose:
        raise DataError(f"{folder}: {len(loose)} image(s) outside the class subfolders, e.g. {loose[0]}")
    labels = np.array([names.index(top) for top in tops], dtype=np.int64)
    return ImageSet(images.images, labels, images.name, images.paths, names)
