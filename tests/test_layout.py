"""The contract's real-world steps: EXIF orientation, alpha flattening and the layout step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from osr_infer.layout import BOX_SHARE, layout
from osr_infer.preprocess import PREPROCESSING, PreprocessContract, load_image

LAYOUT = dataclasses.replace(PREPROCESSING, steps=("layout",))
V2 = dataclasses.replace(PREPROCESSING, exif=False, alpha="drop")  # what a version-2 contract is read as


def seven(size: int, ink: int, paper: int, offset=(0, 0), width: int = 6) -> Image.Image:
    img = Image.new("L", (size, size), paper)
    s, (dx, dy) = size / 100, offset
    ImageDraw.Draw(img).line([(30 * s + dx, 25 * s + dy), (70 * s + dx, 25 * s + dy), (45 * s + dx, 80 * s + dy)],
                             fill=ink, width=max(1, round(width * s)))
    return img


def photo_of_a_seven() -> Image.Image:
    """Dark blue ink on cream ruled paper, a lighting gradient, small and off-centre, 1600x1200."""
    page = Image.new("RGB", (1600, 1200), (238, 232, 214))
    draw = ImageDraw.Draw(page)
    for y in range(40, 1200, 64):
        draw.line([(0, y), (1600, y)], fill=(180, 195, 228), width=3)
    draw.line([(1000, 300), (1240, 300), (1090, 640)], fill=(25, 35, 110), width=34)
    pixels = np.asarray(page, dtype=np.float32) * np.linspace(0.65, 1.05, 1600)[None, :, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def com(frame: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(frame.shape)
    total = frame.sum()
    return float((rows * frame).sum() / total), float((cols * frame).sum() / total)


def test_a_photo_of_a_digit_is_laid_out_like_mnist(tmp_path):
    photo_of_a_seven().save(tmp_path / "seven.jpg", quality=88)
    frame = load_image(tmp_path / "seven.jpg", LAYOUT).astype(np.float32)
    ys, xs = np.nonzero(frame > 40)
    box = round(28 * BOX_SHARE)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (box - 1, box, box + 1)  # fitted into the 20x20 box
    assert np.allclose(com(frame), (13.5, 13.5), atol=1.0)  # centred by its centre of mass
    assert frame.max() >= 250 and np.median(frame) == 0  # white ink on black
    clean = layout(seven(400, 255, 0, width=8), 28).astype(np.float32)
    overlap = (frame > 60) & (clean > 60)
    assert overlap.sum() >= 0.6 * min((frame > 60).sum(), (clean > 60).sum())  # the same seven, lines and light gone


def test_polarity_position_and_size_do_not_matter():
    reference = layout(seven(200, 255, 0), 28).astype(np.int16)
    for variant in (seven(200, 0, 255), seven(200, 20, 230, offset=(30, -15)), seven(900, 10, 245, offset=(-200, 150))):
        assert np.abs(layout(variant, 28).astype(np.int16) - reference).mean() < 16


def test_layout_generalises_to_the_input_size_and_keeps_mnist_digits():
    frame = layout(seven(300, 0, 255), 56)
    ys, xs = np.nonzero(frame > 40)
    assert max(np.ptp(ys), np.ptp(xs)) + 1 in (39, 40, 41)  # 20/28 of 56

    digit = np.asarray(seven(28, 255, 0).resize((28, 28)))
    again = layout(Image.fromarray(layout(Image.fromarray(digit), 28)), 28)
    assert np.abs(again.astype(np.int16) - layout(Image.fromarray(digit), 28)).mean() < 6  # a fixed point, nearly


def test_blank_images_are_not_blown_up():
    assert layout(Image.new("L", (64, 64), 200), 28).max() == 0
    noise = np.random.default_rng(0).integers(118, 138, (300, 300)).astype(np.uint8)
    assert layout(Image.fromarray(noise), 28).shape == (28, 28)


def test_exif_orientation_is_applied_from_contract_version_3(tmp_path):
    upright = photo_of_a_seven().resize((400, 300))
    upright.save(tmp_path / "upright.jpg", quality=95)
    sideways = upright.rotate(90, expand=True)  # stored turned left; tag 6 turns it back
    exif = sideways.getexif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    a, b = load_image(tmp_path / "upright.jpg", LAYOUT), load_image(tmp_path / "sideways.jpg", LAYOUT)
    assert np.abs(a.astype(np.int16) - b).mean() < 4
    old = dataclasses.replace(LAYOUT, exif=False)
    assert np.abs(load_image(tmp_path / "sideways.jpg", old).astype(np.int16) - a).mean() > 10


@pytest.mark.parametrize("ink", [(10, 10, 10), (30, 40, 140)])
def test_ink_on_a_transparent_background_survives(tmp_path, ink):
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent black: the ink's own colour underneath
    ImageDraw.Draw(rgba).line([(60, 50), (140, 50), (90, 160)], fill=(*ink, 255), width=14)
    rgba.save(tmp_path / "ink.png")
    on_paper = Image.new("RGB", (200, 200), (255, 255, 255))
    on_paper.paste(rgba, mask=rgba.getchannel("A"))
    on_paper.save(tmp_path / "paper.png")
    for contract in (PREPROCESSING, LAYOUT):
        np.testing.assert_array_equal(load_image(tmp_path / "ink.png", contract), load_image(tmp_path / "paper.png", contract))
    # Version 2 ignored alpha: ink on the transparent black underneath, not on paper.
    dropped, paper = load_image(tmp_path / "ink.png", V2).astype(np.int16), load_image(tmp_path / "paper.png", V2)
    assert np.abs(dropped - paper).mean() > 100


def test_the_layout_step_needs_greyscale_and_is_named_in_the_contract():
    with pytest.raises(ValueError, match="needs color 'L'"):
        dataclasses.replace(PreprocessContract.for_shape(32, 3), steps=("layout",))
    assert LAYOUT.describe() == "1x28x28 (L, layout)"
    assert PreprocessContract.from_dict(LAYOUT.to_dict()) == LAYOUT


def test_thin_dark_ink_that_covers_under_one_percent_of_a_big_page_is_found():
    """A pen stroke in a 1400x2500 export covers far under 1 % of the pixels: the polarity comes
    from the heavier tail around the paper level, not from fixed percentiles (which see only paper)."""
    page = Image.new("L", (1400, 2500), 255)
    ImageDraw.Draw(page).ellipse([700, 1100, 900, 1400], outline=40, width=9)  # a thin "0"
    assert (np.asarray(page) < 128).mean() < 0.01
    frame = layout(page, 28)
    ys, xs = np.nonzero(frame > 60)
    assert frame.max() >= 250 and ys.max() - ys.min() >= 17  # the ring, bright and fitted to the box
    assert frame[13:15, 13:15].max() < 60  # its hollow centre stays dark


@pytest.mark.parametrize("tilt", [-4.0, 0.0, 2.5])
def test_tilted_ruled_lines_are_not_part_of_the_character(tilt):
    """Ruled lines a few degrees off square to the camera, crossing the whole sheet, are paper:
    the crop is the digit's, so the digit fills the box."""
    w, h = 1200, 900
    page = Image.new("L", (w, h), 235)
    draw = ImageDraw.Draw(page)
    slope = np.tan(np.radians(tilt))
    for y in range(30, h + 200, 55):
        draw.line([(0, y), (w, y + w * slope)], fill=150, width=3)
    draw.line([(560, 380), (680, 380), (600, 560)], fill=20, width=14)  # a "7", about 180 px tall
    frame = layout(page, 28)
    ys, xs = np.nonzero(frame > 60)
    box = round(28 * BOX_SHARE)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 >= box - 1
    clean = layout(seven(400, 255, 0, width=8), 28)
    assert np.abs(frame.astype(np.int16) - clean.astype(np.int16)).mean() < 25


def test_a_stray_mark_far_from_the_character_does_not_shrink_it():
    page = seven(1000, 20, 240)
    ImageDraw.Draw(page).ellipse([930, 940, 950, 960], fill=30)  # a speck in the far corner
    frame = layout(page, 28).astype(np.int16)
    reference = layout(seven(1000, 20, 240), 28).astype(np.int16)
    assert np.abs(frame - reference).mean() < 4
