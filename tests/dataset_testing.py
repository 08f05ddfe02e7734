"""Small data sets written by the tests: an RGB image folder with 12 classes, IDX files under another name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from conftest import write_idx

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230), "yellow": (230, 210, 40)}
#: 12 classes: every shape in every colour; neither shape nor colour alone tells the class.
RGB_CLASSES = tuple(f"{colour}-{shape}" for shape in SHAPES for colour in COLOURS)


def rgb_class_image(name: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One image of class ``name`` (e.g. "red-circle"): a jittered shape on a noisy dark background."""
    colour, shape = name.split("-")
    background = rng.integers(0, 60, size=3)
    pixels = np.clip(background + rng.normal(0, 12, size=(size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, mode="RGB")
    draw = ImageDraw.Draw(img)
    c = size / 2 + rng.uniform(-3, 3, 2)
    r = size * rng.uniform(0.25, 0.38)
    fill = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + rng.integers(-25, 26, 3), 0, 255))
    if shape == "circle":
        draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)
    elif shape == "square":
        draw.rectangle([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=fill)
    else:
        draw.polygon([(c[0], c[1] - r), (c[0] - r, c[1] + r), (c[0] + r, c[1] + r)], fill=fill)
    return img


def write_rgb_class_folder(root: Path, per_class_train: int = 30, per_class_test: int = 8, seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png`` for the 12 RGB classes (32x32)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for name in RGB_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rgb_class_image(name, rng).save(folder / f"{i:03d}.png")
    return root


IDX_CLASSES = ("tee", "trouser", "pullover", "dress", "sneaker")


def write_idx_folder(root: Path, n_train: int = 150, n_test: int = 50, seed: int = 0) -> Path:
    """A Fashion-MNIST-like set in IDX files with an EMNIST-style prefix (``fashion-train-images-idx3-ubyte.gz``)
    and ``classes.txt``: 5 classes, each a bar at its own height and angle, 28x28."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % len(IDX_CLASSES)
        images = rng.integers(0, 25, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            img = Image.fromarray(images[i])
            draw = ImageDraw.Draw(img)
            y = 4 + 5 * int(label) + int(rng.integers(-1, 2))
            draw.rectangle([3 + int(rng.integers(0, 3)), y, 24 - int(rng.integers(0, 3)), y + 3], fill=int(rng.integers(200, 256)))
            images[i] = np.asarray(img)
        write_idx(root / f"fashion-{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(root / f"fashion-{split}-labels-idx1-ubyte.gz", labels, compress=True)
    (root / "classes.txt").write_text("\n".join(IDX_CLASSES) + "\n", encoding="utf-8")
    return root
