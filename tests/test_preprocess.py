import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osr_infer.preprocess import PREPROCESSING, ImageDecodeError, PreprocessContract, load_image


def test_normalisation_maps_0_255_to_minus1_plus1():
    pixels = np.tile(np.array([[0, 255], [51, 102]], np.uint8), (14, 14))[None]  # one 28x28 image
    x = PREPROCESSING.normalize(pixels)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, :2, :2], [[-1, 1], [-0.6, -0.2]], atol=1e-6)
    np.testing.assert_allclose(x[0, 0], np.tile([[-1, 1], [-0.6, -0.2]], (14, 14)), atol=1e-6)
    np.testing.assert_array_equal(PREPROCESSING.normalize(pixels[0]), x)  # one image gets the batch axis
    assert PREPROCESSING.background == (-1.0,)


def test_normalisation_checks_dtype_and_shape():
    with pytest.raises(TypeError, match="expected uint8 pixels, got float32"):
        PREPROCESSING.normalize(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"expected images of shape \(28, 28\), got \(2, 2\)"):
        PREPROCESSING.normalize(np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"expected images of shape \(28, 28\), got \(28, 28, 3\)"):
        PREPROCESSING.normalize(np.zeros((1, 28, 28, 3), np.uint8))


def test_rgb_contract_normalises_each_channel_with_its_own_mean_and_std():
    contract = PreprocessContract(size=8, channels=3, color="RGB", mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 0.2))
    assert contract.input_shape == (3, 8, 8) and contract.pixel_shape == (8, 8, 3)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    pixels[0, 0, 0] = (0, 102, 255)
    x = contract.normalize(pixels)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    for c, (m, s) in enumerate(zip(contract.mean, contract.std, strict=True)):  # channel c of the output is channel c of the pixels
        np.testing.assert_allclose(x[:, c], (pixels[..., c] / 255.0 - m) / s, atol=1e-5)
    np.testing.assert_allclose(x[0, :, 0, 0], [-1.0, 0.0, (1.0 - 0.3) / 0.2], atol=1e-5)
    np.testing.assert_array_equal(contract.normalize(pixels[1]), x[1:])  # one image gets the batch axis
    np.testing.assert_allclose(contract.background, (-1.0, -1.6, -1.5))
    with pytest.raises(ValueError, match=r"expected images of shape \(8, 8, 3\)"):
        contract.normalize(np.zeros((1, 8, 8), np.uint8))


def test_for_shape_gives_the_default_contract_of_each_channel_count():
    assert PreprocessContract.for_shape(28, 1) == PREPROCESSING
    rgb = PreprocessContract.for_shape(32, 3)
    assert (rgb.color, rgb.input_shape, rgb.mean, rgb.std) == ("RGB", (3, 32, 32), (0.5,) * 3, (0.5,) * 3)
    assert PreprocessContract.for_shape(32, 3, resize="bicubic").resize == "bicubic"
    with pytest.raises(ValueError, match="channels must be 1 or 3, not 2"):
        PreprocessContract.for_shape(32, 2)


def test_rgb_contract_decodes_and_conforms_in_colour(tmp_path):
    contract = PreprocessContract.for_shape(16, 3)
    Image.new("RGB", (40, 30), (200, 100, 50)).save(tmp_path / "c.png")
    Image.new("L", (16, 16), 90).save(tmp_path / "g.png")
    colour = load_image(tmp_path / "c.png", contract)
    assert colour.shape == (16, 16, 3) and colour.dtype == np.uint8 and colour[8, 8].tolist() == [200, 100, 50]
    assert load_image(tmp_path / "g.png", contract)[3, 3].tolist() == [90, 90, 90]  # grey becomes three equal channels
    rgb = np.zeros((2, 32, 32, 3), np.uint8)
    rgb[..., 0] = 255
    conformed = contract.conform(rgb)
    assert conformed.shape == (2, 16, 16, 3) and conformed[0, 5, 5].tolist() == [255, 0, 0]
    assert contract.conform(conformed) is conformed  # already in shape: passed through
    grey = PREPROCESSING.conform(rgb)  # the luma contract converts colour to grey (ITU-R 601-2) and resizes
    assert grey.shape == (2, 28, 28) and grey[0, 5, 5] == round(255 * 299 / 1000)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "CMYK", "LA", "1", "I;16", "I", "F"])
def test_odd_modes_become_28x28_uint8(tmp_path, mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode) if mode not in ("I;16", "I", "F") else None
    if img is None:
        arr = np.full((30, 40), 40000 if mode != "F" else 0.5, dtype={"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
        img = Image.fromarray(arr, mode=mode) if mode != "I;16" else Image.fromarray(arr)
    path = tmp_path / f"x.{'tiff' if mode in ('I;16', 'I', 'F', 'CMYK') else 'png'}"
    img.save(path)
    out = load_image(path)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert np.array_equal(out, load_image(path, fast=False))  # the fast path and Pillow's agree
    luma = (200 * 299 + 100 * 587 + 50 * 114) / 1000  # ITU-R 601-2 of the colour drawn: 124.2
    if mode in ("P", "1"):  # dithered to a palette or to black and white: the mean keeps the grey
        assert out.min() < out.max() and abs(out.mean() - luma) < 2
    else:  # a uniform image stays uniform, at its own grey
        expected = {"I;16": 40000 / 65535 * 255,  # 16-bit values are rescaled, not clipped to white
                    "I": 255,  # 32-bit integers are clipped, as Pillow's convert('L') does
                    "F": 0.5 * 255}.get(mode, luma)  # floats in [0, 1] are scaled
        assert out.min() == out.max() == round(expected + 1e-9), (out.min(), out.max(), expected)


def test_bad_files_raise_clear_errors(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    good = tmp_path / "trunc.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match="empty file"):
        load_image(tmp_path / "zero.png")
    with pytest.raises(ImageDecodeError, match="not an image file"):
        load_image(tmp_path / "text.png")
    with pytest.raises(ImageDecodeError):
        load_image(good)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    import osr_infer.preprocess as pp

    monkeypatch.setattr(pp, "MAX_IMAGE_PIXELS", 100 * 100)
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match="too large"):
        load_image(tmp_path / "big.png")


def test_contract_round_trips_and_validates():
    assert PreprocessContract.from_dict(PREPROCESSING.to_dict()) == PREPROCESSING
    rgb = PreprocessContract(size=32, channels=3, color="RGB", resize="bicubic", mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert PreprocessContract.from_dict(rgb.to_dict()) == rgb
    with pytest.raises(ValueError, match="resize"):
        PreprocessContract.from_dict(dict(PREPROCESSING.to_dict(), resize="magic"))


def test_version_1_contract_is_read_as_the_luma_contract():
    """Models exported before colour support stored grayscale-only contracts with scalar mean and std."""
    v1 = {"size": 28, "channels": 1, "grayscale": "ITU-R 601-2 luma (PIL convert('L'))", "resize": "bilinear", "mean": 0.5, "std": 0.5}
    contract = PreprocessContract.from_dict(v1)
    # Read as it behaved then: no EXIF orientation, alpha ignored (both came with version 3).
    assert contract == dataclasses.replace(PREPROCESSING, exif=False, alpha="drop")
    assert (contract.color, contract.mean, contract.std, contract.version) == ("L", (0.5,), (0.5,), 3)
    assert PreprocessContract.from_dict(dict(v1, size=32, mean=0.1307, std=0.3081)) == PreprocessContract(
        size=32, mean=(0.1307,), std=(0.3081,), exif=False, alpha="drop"
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"std": [float("nan")]}, "std finite and positive"),
        ({"std": [0.0]}, "std finite and positive"),
        ({"mean": [float("inf")]}, "mean must be finite"),
        ({"mean": [0.5, 0.5, 0.5]}, "one value per channel"),
        ({"steps": ["letterbox"]}, r"unknown preprocessing step\(s\) \['letterbox'\]: written by a newer osr-toolkit"),
        ({"version": 4}, r"preprocessing contract version 4 is newer than this osr-toolkit's \(3\): upgrade"),
        ({"color": "CMYK"}, "unsupported colour conversion 'CMYK'"),
        ({"channels": 3}, "colour L makes 1 channel"),
        ({"size": 2}, r"size must be an integer in \[4, 1024\]"),
        ({"size": 28.0}, r"size must be an integer in \[4, 1024\]"),
        ({"gamma": 2.2}, r"unknown preprocessing fields: \['gamma'\]"),
    ],
)
def test_contract_refuses_what_it_cannot_replay(changes, message):
    with pytest.raises(ValueError, match=message):
        PreprocessContract.from_dict(dict(PREPROCESSING.to_dict(), **changes))


def test_contract_from_dict_refuses_a_non_mapping():
    with pytest.raises(ValueError, match="preprocessing must be a mapping, not list"):
        PreprocessContract.from_dict([28, 1])


def test_find_images_walks_recursively_in_component_order(tmp_path):
    from osr_infer.preprocess import find_images

    for rel in ["a/b.png", "a/sub/z.JPG", "a-c.png", "A.png", "b.txt", "c/notes.md", "c/d.webp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "linked").symlink_to(tmp_path / "a", target_is_directory=True)  # not followed, as rglob
    (tmp_path / "e.png").symlink_to(tmp_path / "A.png")  # a link to a file is a file
    found = find_images(tmp_path)
    expected = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".webp") and p.is_file())
    assert found == [str(p) for p in expected]
    assert [str(Path(p).relative_to(tmp_path)) for p in found] == ["A.png", "a/b.png", "a/sub/z.JPG", "a-c.png", "c/d.webp", "e.png"]
    assert find_images(tmp_path / "a-c.png") == [str(tmp_path / "a-c.png")]
    with pytest.raises(FileNotFoundError):
        find_images(tmp_path / "missing")
