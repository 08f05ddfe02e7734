"""Helpers shared by the osr-export tests: CLI runs, data files in the CIFAR layouts, a relabelled checkpoint."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from osr_train.checkpoint import load_checkpoint, save_checkpoint
from osr_infer.data.cifar import CIFAR10_CLASSES


def run_export(*args: str):
    from osr_export.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def cifar_like_rgb(n: int, seed: int = 1) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images with some structure (gradients, blobs, noise), not digits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    out = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i in range(n):
        base = (np.sin(xx / rng.uniform(2, 8) + rng.uniform(0, 6)) + np.cos(yy / rng.uniform(2, 8))) * 60 + 128
        img = base[..., None] + rng.normal(0, 25, size=(32, 32, 3)) + rng.uniform(-60, 60, size=3)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_cifar_pickle(data_dir: Path, n: int = 60, seed: int = 1) -> Path:
    """``<data_dir>/cifar-10-batches-py/test_batch`` in the official pickle layout."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rgb = cifar_like_rgb(n, seed)
    batch = {b"data": rgb.transpose(0, 3, 1, 2).reshape(n, -1), b"labels": [i % 10 for i in range(n)], b"batch_label": b"test"}
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return folder


def write_cifar_jpegs(data_dir: Path, n: int = 40, seed: int = 2) -> Path:
    """``<data_dir>/cifar10-test-jpeg/<class>/NNNN.jpg`` like the shared copy."""
    folder = data_dir / "cifar10-test-jpeg"
    for i, rgb in enumerate(cifar_like_rgb(n, seed)):
        path = folder / CIFAR10_CLASSES[i % 10] / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, mode="RGB").save(path, quality=90)
    return folder


def resave(source: Path, target: Path, *, config: dict | None = None, **spec_changes) -> Path:
    """A copy of checkpoint ``source`` with its spec changed (e.g. ``dataset=DatasetSpec("mnist")``)
    and its training record updated with ``config``."""
    model, spec, record = load_checkpoint(source)
    return save_checkpoint(target, model, spec.replace(**spec_changes), {**record, **(config or {})})
