"""MNIST in torchvision's on-disk layout (``<data-dir>/MNIST/raw/``), with optional download."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


from osr_infer.errors import DataError
from osr_infer.data.datasets import ImageSet
from osr_infer.data.idx import SPLIT_STEMS, IdxFormatError, find_idx_split, read_idx_pair

#: torchvision's mirrors and the MD5 checksums of the official ``.gz`` files.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_RESOURCES = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}


class MnistMissingError(DataError):
    """The MNIST files are not where they are expected."""


def mnist_raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


MNIST_CLASSES = tuple(str(d) for d in range(10))


def load_mnist(data_dir: str | Path, split: str = "train", *, download: bool = False) -> ImageSet:
    """Load one MNIST split ('train' or 'test') as uint8 images and int64 labels."""
    if split not in SPLIT_STEMS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    raw = mnist_raw_dir(Path(data_dir))
    paths = find_idx_split(raw, split)
    if any(p is None for p in paths):
        if download:
            download_mnist(data_dir)
            paths = find_idx_split(raw, split)
        else:
            missing = ", ".join(s for s, p in zip(SPLIT_STEMS[split], paths, strict=True) if p is None)
            raise MnistMissingError(
                f"MNIST not found: expected {missing} (optionally .gz) in {raw}. "
                "Set `data_dir` or $OSR_DATA_DIR, pass `download` to fetch it, "
                "or use `dataset` digits to run offline on the bundled data set."
            )
    images_path, labels_path = paths
    assert images_path is not None and labels_path is not None  # found, or downloaded and found
    images, labels = read_idx_pair(images_path, labels_path)
    if images.shape[1:] != (28, 28):
        raise IdxFormatError(f"{images_path}: unexpected shape {images.shape}, expected (N, 28, 28)")
    outside = labels[(labels < 0) | (labels > 9)]
    if outside.size:
        raise DataError(f"{labels_path}: label {int(outside[0])} out of range 0-9")
    return ImageSet(images, labels, f"mnist-{split}", class_names=MNIST_CLASSES)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: The largest MNIST file is 9.9 MB: a download is cut off well before it could fill a disk.
MAX_DOWNLOAD_BYTES = 32 << 20


def download_mnist(
    data_dir: str | Path,
    *,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    resources: dict[str, str] = MNIST_RESOURCES,
    timeout: float = 30.0,
) -> Path:
    """Fetch the MNIST ``.gz`` files into ``<data-dir>/MNIST/raw``, verifying MD5 checksums.

    Each file is downloaded to a temporary name and renamed only when its checksum matches,
    so an interrupted or corrupted download never leaves a file that looks valid.
    """
    raw = mnist_raw_dir(Path(data_dir))
    raw.mkdir(parents=True, exist_ok=True)
    for stem, md5 in resources.items():
        target = raw / f"{stem}.gz"
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for mirror in mirrors:
            url = f"{mirror}{stem}.gz"
            fd, tmp_name = tempfile.mkstemp(dir=raw, prefix=f".{stem}.", suffix=".part")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    size = 0
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        size += len(chunk)
                        if size > MAX_DOWNLOAD_BYTES:  # an endless or wrong stream must not fill the disk
                            raise OSError(f"more than {MAX_DOWNLOAD_BYTES:,} bytes: not an MNIST file")
                        out.write(chunk)
                got = _md5(tmp)
                if got != md5:
                    errors.append(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
                    continue
                os.replace(tmp, target)
                break
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise MnistMissingError(
                f"could not download {stem}.gz ({'; '.join(errors)}). Place the MNIST files in {raw} "
                "by hand, or use `dataset` digits to run offline."
            )
    return raw
