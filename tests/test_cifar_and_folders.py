import logging
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from osr_infer.data import DataError, load_cifar10, load_image_folder
from osr_infer.data.cifar import CIFAR10_CLASSES, load_cifar10_test, read_cifar_batch
from osr_infer.preprocess import PREPROCESSING


def write_batch(path, n=6, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(i % 10) for i in range(n)]
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"test", b"labels": labels, b"data": data, b"filenames": [b"x"] * n}, fh, protocol=2)
    return data, labels


def test_cifar_pickle_reader_grayscale_28(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    data, labels = write_batch(root / "test_batch")
    images = load_cifar10(root, "test")
    assert images.images.shape == (6, 28, 28) and images.images.dtype == np.uint8
    assert images.labels.tolist() == labels
    # Same treatment as any image file: PIL grayscale then the contract's resize.
    rgb = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    expected = PREPROCESSING.to_uint8(Image.fromarray(rgb))
    assert np.array_equal(images.images[0], expected)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="forbidden global"):
        read_cifar_batch(path)


def test_malformed_batch(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"shape \(N, 3072\)"):
        read_cifar_batch(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="not a valid CIFAR-10 batch"):
        read_cifar_batch(path)


def test_jpeg_class_folder_layout(tmp_path):
    root = tmp_path / "cifar10-test-jpeg"
    for k, cls in enumerate(CIFAR10_CLASSES[:3]):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 50, 10, 200)).save(root / cls / "0000.jpg")
    images = load_cifar10_test(root)
    assert images.labels.tolist() == [0, 1, 2]
    assert images.images.shape == (3, 28, 28)


def test_folder_skips_bad_files_and_keeps_the_rest(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (50, 40), "red").save(tmp_path / "a.png")
    Image.new("L", (28, 28), 7).save(tmp_path / "sub" / "b.bmp")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING):
        images = load_image_folder(tmp_path)
    assert len(images) == 2 and [os.path.basename(p) for p in images.paths] == ["a.png", "b.bmp"]
    assert "broken.jpg" in caplog.text and "empty.png" in caplog.text


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        load_image_folder(tmp_path)
