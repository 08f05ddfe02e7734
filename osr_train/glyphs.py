"""Glyph outliers: letters and symbols drawn with pen strokes, the near unknowns of a character
recogniser (a digit reader on a form must say "unknown" to a letter).

They are drawn from the Hershey vector fonts (the ``Hershey-Fonts`` package: centre-line
strokes from the 1960s, no TrueType outline), stroke by stroke with a random pen width, a
wobble on every vertex, a random slant, rotation and aspect, white on black like MNIST.
Characters that are written like a digit (O o I l i j Z z S s B b g q G, and $) are never drawn,
nor any character that is one of the model's class names: calling those unknown would be a
convention, not open-set skill. The evaluation sets of ``benchmarks/`` render TrueType fonts
(matplotlib's and Pillow's) instead, so they do not measure this generator against itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

#: Hershey fonts with Latin letters: sans, roman, times (upright, italic, bold), script, cursive, gothic.
FONTS = (
    "futural", "futuram", "rowmans", "rowmand", "rowmant", "timesr", "timesi", "timesrb", "timesib",
    "scripts", "scriptc", "cursive", "gothiceng", "gothicger", "gothicita",
)
#: Characters drawn: Latin letters that are not written like a digit, and a few symbols.
CHARACTERS = "ACDEFHJKLMNPQRTUVWXYacdefhkmnprtuvwxy#%&@+*<>="
#: Characters a font draws like a digit: the script and cursive Q is a 2.
FONT_LOOKALIKES = {"scripts": "Q", "scriptc": "Q", "cursive": "Q"}
#: Written like a digit (or too small to be anything once laid out): never an outlier.
LOOKALIKES = frozenset("OoIlijZzSsBbgqG$0123456789.,:;'`\"|/\\-_()")


@lru_cache(maxsize=None)
def _hershey(font: str):  # noqa: ANN202 - HersheyFonts, imported lazily
    from HersheyFonts import HersheyFonts

    fonts = HersheyFonts()
    fonts.load_default_font(font)
    return fonts


@lru_cache(maxsize=None)
def _strokes(font: str, char: str) -> tuple[tuple[tuple[float, float], ...], ...]:
    """``char`` in ``font`` as strokes (polylines of 2+ points); empty if the font lacks it."""
    return tuple(tuple((float(x), float(y)) for x, y in stroke) for stroke in _hershey(font).strokes_for_text(char) if len(stroke) >= 2)


def drawable(char: str) -> bool:
    """Whether every font draws ``char`` (a single character with strokes)."""
    return len(char) == 1 and all(_strokes(font, char) for font in FONTS)


def glyph_characters(class_names: tuple[str, ...] | list[str] = ()) -> str:
    """The characters to draw: :data:`CHARACTERS` less any that is a class name."""
    known = {name for name in class_names if len(name) == 1}
    return "".join(c for c in CHARACTERS if c not in known and c not in LOOKALIKES)


def render_glyphs(n: int, side: int, rng: np.random.Generator, characters: str) -> np.ndarray:
    """``n`` random glyphs as uint8 ``(n, side, side)``: white strokes on black, drawn at 2x and
    box-filtered down, the glyph filling most of the frame (the layout step re-fits it)."""
    if not characters:
        return np.zeros((0, side, side), dtype=np.uint8)
    big = 2 * side
    out = np.empty((n, side, side), dtype=np.uint8)
    for i in range(n):
        font = FONTS[int(rng.integers(len(FONTS)))]
        char = characters[int(rng.integers(len(characters)))]
        while char in FONT_LOOKALIKES.get(font, ""):
            char = characters[int(rng.integers(len(characters)))]
        strokes = _strokes(font, char)
        points = np.concatenate([np.asarray(s) for s in strokes])
        centre = (points.max(0) + points.min(0)) / 2
        extent = max(float((points.max(0) - points.min(0)).max()), 1.0)
        angle = np.radians(rng.uniform(-12, 12))
        shear, aspect = rng.uniform(-0.3, 0.3), rng.uniform(0.8, 1.25)
        rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        warp = rotate @ np.array([[aspect, shear], [0.0, 1.0]])
        scale = big * rng.uniform(0.55, 0.8) / extent
        width = max(1, round(big * rng.uniform(0.05, 0.13)))
        image = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(image)
        for stroke in strokes:
            xy = (np.asarray(stroke) - centre) @ warp.T * scale + big / 2
            xy += rng.normal(0, big * 0.008, xy.shape)  # the wobble of a hand
            draw.line([tuple(p) for p in xy], fill=int(rng.integers(180, 256)), width=width, joint="curve")
        out[i] = np.asarray(image.resize((side, side), Image.Resampling.BOX), dtype=np.uint8)
    return out
