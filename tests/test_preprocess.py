from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osr_infer.preprocess import PREPROCESSING, ImageDecodeError, PreprocessContract, load_image


def test_normalisation_maps_0_255_to_minus1_plus1():
    x = PREPROCESSING.normalize(np.array([[[0, 255], [51, 102]]], np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [[-1, 1], [-0.6, -0.2]], atol=1e-6)


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
    if mode == "I;16":  # 16-bit values are rescaled, not clipped to white
        assert abs(int(out[0, 0]) - round(40000 / 65535 * 255)) <= 1


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
    with pytest.raises(ValueError, match="resize"):
        PreprocessContract.from_dict(dict(PREPROCESSING.to_dict(), resize="magic"))


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
