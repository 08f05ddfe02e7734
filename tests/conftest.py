"""Shared fixtures: small files written by the tests, and the real data when it is present."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs two workers on two cores), torch and OpenMP get one
    thread per worker: their default of one per core would have the two workers' trainings
    wait on each other at every operation, many times slower. Set before torch is imported."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def shared_data_dir() -> Path:
    return Path(os.environ.get("OSR_SHARED_DATA", REPO.parent / "shared" / "datasets"))


def missing(what: str) -> NoReturn:
    """A test's real data, fonts or tools are absent: skip on a developer's machine, fail under
    ``CI=true`` (where .ci/run provides them all), naming what is missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: this test must run here, not skip)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/datasets``; tests that use it skip when it is absent (fail under CI=true)."""
    root = shared_data_dir()
    if not (root / "MNIST" / "raw").is_dir():
        missing(f"real data sets not found at {root}")
    return root


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``array`` (uint8) in the IDX format."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def write_fake_mnist(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0, compress: bool = True) -> Path:
    """A tiny MNIST in torchvision's layout: each class is a bright square at its own place."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 5)
            images[i, 4 + 10 * r : 12 + 10 * r, 2 + 5 * c : 6 + 5 * c] = 255
        suffix = ".gz" if compress else ""
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress=compress)
    return root


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    return write_fake_mnist(tmp_path / "data")


#: Parameters of :func:`osr_train.train` that are not training hyper-parameters.
RUN_PARAMETERS = ("dataset", "data_dir", "ood_dirs", "known_classes", "input_size", "channels", "download", "resume", "threads")


def train_model(out: Path, *, recipe: str = "best", **parameters) -> dict:
    """Train through the Python API (:func:`osr_train.train`) as ``osr-train`` does: the
    configuration from ``recipe`` and the hyper-parameters among ``parameters``, the checkpoint
    kept in ``out`` for resuming, then ``model.pt``, metrics, history and plots written there.
    Returns the metrics."""
    from osr_train import TrainConfig, train

    run = {k: parameters.pop(k) for k in RUN_PARAMETERS if k in parameters}
    trained = train(TrainConfig.from_recipe(recipe, **parameters), work_dir=out, **run)
    trained.save(Path(out) / "model.pt")
    trained.save_report(out)
    return trained.metrics


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory) -> Path:
    """A Siamese model trained briefly on the bundled digits with the seed recipe (MSP at 0.999,
    plain resize; a few seconds); its folder.

    Holds ``model.pt``, ``metrics.json``, ``history.json`` and the plots. Treat as read-only.
    """
    out = tmp_path_factory.mktemp("trained-digits")
    train_model(out, recipe="seed", model="siamese", dataset="digits", epochs=12, pretrain_epochs=3)
    return out


@pytest.fixture(scope="session")
def trained_rgb(tmp_path_factory) -> tuple[Path, Path]:
    """(an RGB 32x32 image folder with 12 classes, the folder of a baseline trained on it briefly).

    The folder has ``train/`` and ``test/`` in the ImageFolder layout; the model folder holds
    ``model.pt`` and ``metrics.json``. Treat both as read-only.
    """
    from dataset_testing import write_rgb_class_folder

    root = write_rgb_class_folder(tmp_path_factory.mktemp("rgb") / "shapes")
    out = tmp_path_factory.mktemp("trained-rgb")
    train_model(out, recipe="seed", model="baseline", dataset=f"folder:{root}", epochs=25, batch_size=32, lr=3e-3)
    return root, out
