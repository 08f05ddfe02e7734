"""Write an unknown set the training never saw: MNIST-style renderings of letters.

White-on-black letters in Pillow's bundled font, jittered in size, stroke, rotation and
position, saved as PNG files. Letters that are drawn like digits (O o I l i j Z z S s B b g q
D) are left out: rejecting those would be a matter of convention, not of open-set skill.

    python tools/make_letters.py /tmp/letters --n 5000
    osr-train evaluate artifacts/siamese-best/model.pt --ood-dir /tmp/letters --ood-dir ../shared/datasets/cifar10-test-jpeg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LETTERS = [c for c in "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"]


def render(letter: str, rng: np.random.Generator) -> Image.Image:
    font = ImageFont.load_default(size=int(rng.integers(18, 26)))
    img = Image.new("L", (56, 56), 0)
    ImageDraw.Draw(img).text((28, 28), letter, fill=255, font=font, anchor="mm", stroke_width=int(rng.integers(1, 3)), stroke_fill=255)
    img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    box = img.getbbox() or (0, 0, 56, 56)
    glyph = img.crop(box)
    scale = 20 / max(glyph.size)  # MNIST: the glyph fits a 20x20 box in a 28x28 frame
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.Resampling.LANCZOS)
    out = Image.new("L", (28, 28), 0)
    dx, dy = rng.integers(-2, 3, 2)
    out.paste(glyph, ((28 - glyph.width) // 2 + int(dx), (28 - glyph.height) // 2 + int(dy)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.folder.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        letter = LETTERS[i % len(LETTERS)]
        render(letter, rng).save(args.folder / f"{i:05d}_{letter}.png")
    print(f"wrote {args.n} letters to {args.folder}")


if __name__ == "__main__":
    main()
