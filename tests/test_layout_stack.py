"""The layout step on stacks of small images (osr_infer/layout.py: layout_small) and the fast
decoding path that feeds it give the reference path's pixels, bit for bit: the per-image
layout step, Pillow's box blur and bilinear resize, PIL's luma and EXIF transposes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from conftest import missing, shared_data_dir
from osr_infer import pillow_numpy
from osr_infer.decode import decode_files
from osr_infer.layout import SMALL_SIDE, layout, layout_small
from osr_infer.preprocess import _EXIF_TRANSPOSE, PreprocessContract, luma

LAYOUT = PreprocessContract(steps=("layout",))


def small_images(height: int, width: int, n: int, seed: int) -> np.ndarray:
    """Small greyscale images of every kind the layout step meets: characters in dark and light
    ink, noise, blank and flat images, gradients, single pixels, thin lines."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        kind = i % 8
        if kind == 0:
            images.append(rng.integers(0, 256, (height, width), dtype=np.uint8))
            continue
        paper, ink = (int(rng.integers(150, 256)), int(rng.integers(0, 90)))
        if kind == 1:
            paper, ink = ink, paper
        image = Image.new("L", (width, height), paper if kind != 2 else int(rng.integers(0, 256)))
        draw = ImageDraw.Draw(image)
        if kind in (0, 1, 3):
            points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(int(rng.integers(2, 5)))]
            draw.line(points, fill=ink, width=int(rng.integers(1, max(2, min(width, height) // 4))))
        elif kind == 4:
            image.putpixel((int(rng.integers(0, width)), int(rng.integers(0, height))), ink)
        elif kind == 5:
            ramp = np.linspace(0, 255, width)[None, :] * np.ones((height, 1))
            image = Image.fromarray((ramp * rng.uniform(0.1, 1)).astype(np.uint8), mode="L")
        elif kind == 6:
            y = int(rng.integers(0, height))
            draw.line([(0, y), (width - 1, y)], fill=ink, width=1)
        array = np.asarray(image).astype(np.int16) + rng.integers(-8, 9, (height, width)) * (kind != 7)
        images.append(np.clip(array, 0, 255).astype(np.uint8))
    return np.stack(images)


@pytest.mark.parametrize("height,width", [(28, 28), (32, 32), (8, 8), (1, 1), (5, 60), (63, 40), (17, 3)])
@pytest.mark.parametrize("resample", [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC], ids=["bilinear", "bicubic"])
def test_a_stack_is_laid_out_as_each_image_would_be(height, width, resample):
    stack = small_images(height, width, 48, seed=height * 100 + width)
    for size in (28, 16):
        expected = np.stack([layout(Image.fromarray(image, mode="L"), size, resample) for image in stack])
        got = layout_small(stack, size, resample)
        different = np.flatnonzero((got != expected).any(axis=(1, 2)))
        assert len(different) == 0, f"{len(different)} of {len(stack)} images differ, first {different[:5]}"


def test_only_small_images_are_stacked():
    assert LAYOUT.stacks(SMALL_SIDE - 1, 10) and not LAYOUT.stacks(SMALL_SIDE, 10)
    assert PreprocessContract().stacks(32, 32)  # a bilinear resize
    assert not PreprocessContract(resize="bicubic").stacks(32, 32)  # other filters: PIL, image by image
    with pytest.raises(ValueError, match="under"):
        layout_small(np.zeros((2, SMALL_SIDE, 8), dtype=np.uint8), 28)
    assert layout_small(np.zeros((0, 28, 28), dtype=np.uint8), 28).shape == (0, 28, 28)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_box_blur_is_pillows(radius):
    rng = np.random.default_rng(radius)
    for height, width in ((28, 28), (3, 9), (1, 5), (40, 2)):
        stack = rng.integers(0, 256, (6, height, width), dtype=np.uint8)
        stack[:3] = (stack[:3] > 128) * 255  # the layout step blurs black-and-white strokes
        expected = np.stack([np.asarray(Image.fromarray(a, mode="L").filter(ImageFilter.BoxBlur(radius))) for a in stack])
        assert np.array_equal(pillow_numpy.box_blur(stack, radius), expected), (height, width)


def test_bilinear_resize_is_pillows_in_both_pass_orders():
    """Pillow 13 runs the vertical pass first where the height shrinks most; earlier versions
    never do. Each pass rounds to 8 bits, so the order shows in the pixels: both are checked."""
    assert pillow_numpy.pass_order() in ("pillow13", "horizontal")  # the fast resize is in use, not Pillow per image
    _, candidates = pillow_numpy.probe_orders()
    assert not np.array_equal(candidates["pillow13"], candidates["horizontal"])  # the probe tells the orders apart
    rng = np.random.default_rng(0)
    heights, widths = rng.integers(1, 64, 300), rng.integers(1, 64, 300)
    fit = 20 / np.maximum(heights, widths)
    new_h = np.maximum(1, np.round(heights * fit)).astype(np.intp)
    new_w = np.maximum(1, np.round(widths * fit)).astype(np.intp)
    new_h[:40], new_w[:40] = rng.integers(1, 21, 40), rng.integers(1, 21, 40)  # any shape, up and down
    images = rng.integers(0, 256, (300, 63, 63), dtype=np.uint8)  # each crop somewhere inside its image
    top, left = rng.integers(0, 64 - heights), rng.integers(0, 64 - widths)
    got = pillow_numpy.resize_crops(images, top, left, heights, widths, new_h, new_w, 20)
    orders = pillow_numpy.vertical_first(heights, widths, new_h, new_w)
    assert orders.any() == (pillow_numpy.pass_order() == "pillow13")
    for i in range(300):
        crop = np.ascontiguousarray(images[i, top[i] : top[i] + heights[i], left[i] : left[i] + widths[i]])
        expected = Image.fromarray(crop, mode="L").resize((int(new_w[i]), int(new_h[i])), Image.Resampling.BILINEAR)
        assert np.array_equal(got[i, : new_h[i], : new_w[i]], np.asarray(expected)), (heights[i], widths[i], new_h[i], new_w[i])
        assert not got[i, new_h[i]:].any() and not got[i, :, new_w[i]:].any()


@pytest.mark.parametrize("shape", [(32, 32), (8, 8), (28, 28), (40, 13), (3, 63)])
def test_resize_stack_is_pillows_bilinear_resize(shape):
    rng = np.random.default_rng(shape[0] * 64 + shape[1])
    for channels in (1, 3):
        stack = rng.integers(0, 256, (5, *shape, 3) if channels == 3 else (5, *shape), dtype=np.uint8)
        for size in (28, 16):
            expected = np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
                                 for image in stack])
            assert np.array_equal(pillow_numpy.resize_stack(stack, size), expected), (channels, size)


@pytest.mark.parametrize("color", ["L", "RGB"])
def test_conform_stacks_small_images_of_either_colour(color):
    contract = PreprocessContract.for_shape(28, len(color))
    rng = np.random.default_rng(3)
    for stack in (rng.integers(0, 256, (40, 32, 32), dtype=np.uint8), rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)):
        mode = "L" if stack.ndim == 3 else "RGB"
        expected = np.stack([contract.to_uint8(Image.fromarray(image, mode=mode)) for image in stack])
        assert np.array_equal(contract.conform(stack), expected), mode


def test_luma_and_exif_transposes_are_pils():
    rng = np.random.default_rng(1)
    red, green, blue = np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 3, indexing="ij")
    colours = np.stack([red, green, blue], axis=-1).reshape(4096, 4096, 3)  # every RGB colour
    assert np.array_equal(luma(colours), np.asarray(Image.fromarray(colours).convert("L")))
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert sorted(_EXIF_TRANSPOSE) == list(range(2, 9))  # 1 is upright
    for orientation, transpose in _EXIF_TRANSPOSE.items():
        tagged = Image.fromarray(image)
        tagged.getexif()[0x0112] = orientation
        assert np.array_equal(transpose(image), np.asarray(ImageOps.exif_transpose(tagged))), orientation


def test_decoding_many_files_gives_the_reference_pixels_and_failures(tmp_path):
    """decode_files' fast path (JPEGs as arrays, small images as stacks) against the reference
    path (PIL, one image at a time) on a mix of sizes, formats, modes, orientations and bad files."""
    rng = np.random.default_rng(2)
    stack = small_images(32, 32, 24, seed=5)
    paths = []
    for i, image in enumerate(stack):
        rgb = np.stack([image, np.roll(image, i, axis=0), 255 - image], axis=-1) if i % 3 else None
        picture = Image.fromarray(rgb) if rgb is not None else Image.fromarray(image, mode="L")
        path = tmp_path / (f"{i:02d}.jpg" if i % 4 else f"{i:02d}.png")
        if i % 5 == 2:  # stored sideways: the EXIF orientation turns it upright
            exif = Image.Exif()
            exif[0x0112] = int(rng.integers(2, 9))
            picture.save(path.with_suffix(".jpg"), "JPEG", exif=exif)
            path = path.with_suffix(".jpg")
        else:
            picture.save(path)
        paths.append(str(path))
    big = Image.fromarray(rng.integers(150, 256, (300, 200), dtype=np.uint8), mode="L")
    ImageDraw.Draw(big).line([(50, 50), (150, 250)], fill=10, width=12)
    big.save(tmp_path / "big.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), mode="RGBA").save(tmp_path / "alpha.png")
    paths[5:5] = [str(tmp_path / name) for name in ("big.jpg", "broken.jpg", "empty.png", "alpha.png")]
    for contract in (LAYOUT, PreprocessContract(), PreprocessContract.for_shape(28, 3)):
        fast, reference = decode_files(paths, contract, fast=True), decode_files(paths, contract, fast=False)
        assert np.array_equal(fast[0], reference[0]) and len(fast[0]) == len(paths) - 2
        assert np.array_equal(fast[1], reference[1]), contract.describe()
        assert fast[2] == reference[2] and [i for i, _ in fast[2]] == [6, 7]


@pytest.mark.slow
def test_every_mnist_test_digit_and_cifar10_jpeg_is_laid_out_identically():
    """Real data: the 10,000 MNIST test digits as one array (how data sets are conformed) and the
    10,000 CIFAR-10 test JPEGs as files (how osr-infer decodes them)."""
    root = shared_data_dir()
    jpegs = sorted(str(p) for p in (root / "cifar10-test-jpeg").rglob("*.jpg"))
    if len(jpegs) < 10_000 or not (root / "MNIST" / "raw").is_dir():
        missing(f"MNIST and the CIFAR-10 test JPEGs are not under {root}")
    from osr_infer.data.mnist import load_mnist

    contract = LAYOUT  # the default model's contract
    digits = load_mnist(root, "test").images
    expected = np.stack([layout(Image.fromarray(d, mode="L"), contract.size) for d in digits])
    assert np.array_equal(contract.conform(digits), expected)
    for start in range(0, len(jpegs), 500):
        chunk = jpegs[start : start + 500]
        fast, reference = decode_files(chunk, contract, fast=True), decode_files(chunk, contract, fast=False)
        assert np.array_equal(fast[0], reference[0]) and np.array_equal(fast[1], reference[1]), start


def test_a_failing_stacked_step_falls_back_to_one_image_at_a_time(tmp_path, monkeypatch):
    """A bug in the stacked code must cost speed, not results: each image is finished the
    reference way instead."""
    paths = []
    for i, image in enumerate(small_images(32, 32, 6, seed=9)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image, mode="L").save(paths[-1])
    reference = decode_files(paths, LAYOUT, fast=False)

    def broken(self, stack):
        raise MemoryError("a stacked step that fails")

    monkeypatch.setattr(PreprocessContract, "finish_stack", broken)
    fast = decode_files(paths, LAYOUT, fast=True)
    assert np.array_equal(fast[0], reference[0]) and np.array_equal(fast[1], reference[1]) and fast[2] == []
