import logging
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from osr_infer.data import DataError, ImageSet, load_cifar10, load_class_folder, load_image_folder
from osr_infer.data.cifar import CIFAR10_CLASSES, load_cifar10_test, read_cifar_batch
from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.spec import UNKNOWN


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
    assert images.labels.tolist() == labels and images.class_names == CIFAR10_CLASSES
    # Same treatment as any image file: PIL grayscale then the contract's resize.
    rgb = data[0].reshape(3, 32, 32).transpose(1, 2, 0)
    expected = PREPROCESSING.to_uint8(Image.fromarray(rgb))
    assert np.array_equal(images.images[0], expected)


def test_cifar_pickle_reader_in_colour(tmp_path):
    """Through an RGB 32x32 contract the images are CIFAR's own pixels, channels last; other sizes are resized."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    data, labels = write_batch(root / "test_batch")
    images = load_cifar10(root, "test", PreprocessContract.for_shape(32, 3))
    assert images.images.shape == (6, 32, 32, 3) and images.labels.tolist() == labels
    np.testing.assert_array_equal(images.images, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    small = load_cifar10(root, "test", PreprocessContract.for_shape(16, 3))
    assert small.images.shape == (6, 16, 16, 3)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_cifar10(root, "val")
    with pytest.raises(DataError, match="CIFAR-10 batch not found: .*data_batch_1"):
        load_cifar10(root, "train")


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
    (root / "not-a-cifar-class").mkdir()
    Image.new("RGB", (32, 32), (0, 0, 0)).save(root / "not-a-cifar-class" / "0000.jpg")
    images = load_cifar10_test(root)
    assert images.labels.tolist() == [0, 1, 2, UNKNOWN]  # sorted: airplane, automobile, bird, then the stranger
    assert images.images.shape == (4, 28, 28) and images.class_names == CIFAR10_CLASSES
    colour = load_cifar10_test(root, contract=PreprocessContract.for_shape(32, 3))
    assert colour.images.shape == (4, 32, 32, 3) and colour.labels.tolist() == images.labels.tolist()


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
    assert images.labels.tolist() == [UNKNOWN, UNKNOWN] and images.class_names is None  # an unlabelled folder: unknowns
    assert "broken.jpg" in caplog.text and "empty.png" in caplog.text


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no image files"):
        load_image_folder(tmp_path)


def _class_folder(root, classes=("cat", "dog", "eel"), per_class=2):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20, 24), (40 * k, 100, 10 * i)).save(root / name / f"{i}.png")
    return root


def test_class_folder_is_labelled_by_subfolder(tmp_path):
    root = _class_folder(tmp_path / "pets")
    (root / ".hidden").mkdir()  # not a class
    images = load_class_folder(root)
    assert images.class_names == ("cat", "dog", "eel") and images.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert images.images.shape == (6, 28, 28) and images.name == "pets"
    assert [os.path.relpath(p, root) for p in images.paths][:3] == ["cat/0.png", "cat/1.png", "dog/0.png"]
    # The model's class order, not the folders': labels index the names given.
    ordered = load_class_folder(root, class_names=("eel", "dog", "cat", "fox"), contract=PreprocessContract.for_shape(16, 3))
    assert ordered.labels.tolist() == [2, 2, 1, 1, 0, 0] and ordered.images.shape == (6, 16, 16, 3)


def test_class_folder_refuses_strays_loose_files_and_a_single_class(tmp_path):
    root = _class_folder(tmp_path / "pets")
    with pytest.raises(DataError, match=r"subfolders \['eel'\] are not among the classes \['cat', 'dog'\]"):
        load_class_folder(root, class_names=("cat", "dog"))
    Image.new("L", (8, 8)).save(root / "loose.png")
    with pytest.raises(DataError, match=r"1 image\(s\) outside the class subfolders, e\.g\. .*loose\.png"):
        load_class_folder(root)
    one = _class_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(DataError, match="needs at least two class subfolders"):
        load_class_folder(one)


def test_image_set_takes_grey_or_rgb_images_only():
    grey = ImageSet(np.zeros((2, 8, 8), np.uint8), [0, 1], "g")
    rgb = ImageSet(np.zeros((2, 8, 8, 3), np.uint8), [0, UNKNOWN], "c", class_names=("a", "b"))
    assert grey.labels.dtype == np.int64 and rgb.subset(np.array([1])).labels.tolist() == [UNKNOWN]
    assert rgb.subset(np.array([0])).class_names == ("a", "b")
    for images in (np.zeros((2, 8, 8, 4), np.uint8), np.zeros((2, 8, 8), np.float32), np.zeros((8, 8), np.uint8)):
        with pytest.raises(ValueError, match=r"images must be uint8 \(N, H, W\) or \(N, H, W, 3\)"):
            ImageSet(images, np.zeros(len(images)), "bad")
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ImageSet(np.zeros((2, 8, 8), np.uint8), [0, 1, 2], "bad")
    conformed = rgb.conformed(PREPROCESSING)
    assert conformed.images.shape == (2, 28, 28) and conformed.labels.tolist() == [0, UNKNOWN] and conformed.class_names == ("a", "b")
    assert grey.conformed(PreprocessContract(size=8)) is grey


class _ArrayCall:
    """Pickles as a direct ``numpy.ndarray(shape, dtype)`` call: uninitialised memory of any size."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return (np.ndarray, (self.shape, np.dtype("uint8")))


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": _ArrayCall((200_000, 3072)), b"labels": [0]}, "would need 614,400,000 bytes; the file has"),
        ({b"data": _ArrayCall((2 * 10**9, 3072)), b"labels": [0]}, "would need"),
        ({b"data": _ArrayCall((-1, 3072)), b"labels": [0]}, "not a valid CIFAR-10 batch"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [2**100, 1]}, "'labels' must be 2 integers in 0-9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]}, "'labels' must be 2 integers in 0-9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": None}, "'labels' must be 2 integers in 0-9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [None, 1]}, "'labels' must be 2 integers in 0-9"),
    ],
)
def test_hostile_cifar_pickles_are_refused_without_allocating(tmp_path, batch, message):
    import pickle

    from osr_infer.data.cifar import read_cifar_batch
    from process_testing import extra_peak_mb

    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_cifar_batch(path)
    # the peak of a fresh process: refusing costs no allocation (the 600 MB case would show it)
    extra, output = extra_peak_mb("from osr_infer.data.cifar import read_cifar_batch", "read_cifar_batch(sys.argv[1])", str(path))
    assert "DataError" in output and extra < 100, output
