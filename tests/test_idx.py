import gzip

import numpy as np
import pytest

from conftest import write_idx
from osr_infer.data import DataError, IdxFormatError, load_mnist, read_idx


def test_round_trip_plain_and_gzip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    for compress in (False, True):
        path = write_idx(tmp_path / f"x{compress}.idx", images, compress=compress)
        out = read_idx(path, expected_ndim=3, expected_shape=(None, 28, 28))
        assert out.dtype == np.uint8 and np.array_equal(out, images)


def test_truncated_file_names_file_and_sizes(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IdxFormatError, match=r"t\.idx: file truncated.*7,756 bytes"):
        read_idx(path)


def test_trailing_bytes_are_refused(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros((2, 3), np.uint8))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IdxFormatError, match="trailing bytes"):
        read_idx(path)


def test_wrong_magic_number(tmp_path):
    path = tmp_path / "foreign.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(IdxFormatError, match=r"foreign\.bin: not an IDX file \(bad magic number 0x89504e47\)"):
        read_idx(path)


def test_wrong_shape_and_dimensions(tmp_path):
    path = write_idx(tmp_path / "s.idx", np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(IdxFormatError, match="unexpected shape"):
        read_idx(path, expected_shape=(None, 28, 28))
    with pytest.raises(IdxFormatError, match="expected 1 dimensions"):
        read_idx(path, expected_ndim=1)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    idx = bytes([0, 0, 8, 1]) + (5000).to_bytes(4, "big") + np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(idx)[:200])  # cut inside the deflate stream
    with pytest.raises(IdxFormatError, match=r"bad\.gz: cannot read"):
        read_idx(path)
    flipped = bytearray(gzip.compress(idx))
    flipped[40] ^= 0xFF  # a corrupt deflate block (zlib.error) or a bad CRC (BadGzipFile)
    path.write_bytes(bytes(flipped))
    with pytest.raises(IdxFormatError, match=r"bad\.gz: "):
        read_idx(path)


def test_a_small_gzip_that_announces_gigabytes_is_refused_before_inflating(tmp_path):
    """3 GiB of zeros compress to 3 MB; the header is checked first and the payload is bounded."""
    from process_testing import extra_peak_mb

    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (4_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        f.write(bytes(8 << 20))  # only 8 MB follow: the header lies about 3.1 GB
    with pytest.raises(IdxFormatError, match="announces 3,136,000,000 bytes, more than this"):
        read_idx(path)
    # the peak of a fresh process: nothing inflated (inflating the payload alone would add 8 MB, the claim 3 GB)
    extra, output = extra_peak_mb("from osr_infer.data.idx import read_idx", "read_idx(sys.argv[1])", str(path))
    assert "IdxFormatError" in output and extra < 6, output


def test_load_mnist_checks_labels_and_counts(fake_mnist):
    train = load_mnist(fake_mnist, "train")
    assert train.images.shape == (120, 28, 28) and train.labels.max() == 9
    raw = fake_mnist / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.full(40, 12, np.uint8), compress=True)
    with pytest.raises(DataError, match="label 12 out of range"):
        load_mnist(fake_mnist, "test")
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.zeros(39, np.uint8), compress=True)
    with pytest.raises(IdxFormatError, match=r"t10k-images-idx3-ubyte\.gz has 40 images but .*t10k-labels-idx1-ubyte\.gz has 39 labels"):
        load_mnist(fake_mnist, "test")


def test_load_mnist_refuses_images_of_another_shape(fake_mnist):
    """MNIST is 28x28 grey: other IDX images (32x32, or colour) are a format error, not silently resized."""
    raw = fake_mnist / "MNIST" / "raw"
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((40, 32, 32), np.uint8), compress=True)
    with pytest.raises(IdxFormatError, match=r"t10k-images-idx3-ubyte\.gz: unexpected shape \(40, 32, 32\), expected \(N, 28, 28\)"):
        load_mnist(fake_mnist, "test")
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((40, 28, 28, 3), np.uint8), compress=True)
    with pytest.raises(IdxFormatError, match="unexpected shape"):
        load_mnist(fake_mnist, "test")
    write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((40, 28), np.uint8), compress=True)
    with pytest.raises(IdxFormatError, match=r"expected uint8 images of shape \(N, H, W\) or \(N, H, W, 3\)"):
        load_mnist(fake_mnist, "test")
    assert load_mnist(fake_mnist, "train").images.shape == (120, 28, 28)  # the other split is untouched


def test_missing_mnist_message_says_where_and_suggests_digits(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path / "nowhere", "train")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "`dataset` digits" in message and "`download`" in message  # parameters: the commands say their flags
