"""Glyph outliers: letters and symbols drawn with pen strokes, the near unknowns of a character
recogniser (a digit reader on a form must say "unknown" to a letter).

They are drawn from the Hershey vector fonts (the ``Hershey-Fonts`` package: centre-line
strokes from the 1960s, no TrueType outline), stroke by stroke with a random pen width, a
wobble on every vertex, a random slant, rotation and aspect, white on black like MNIST.
Characters that are written like a digit (O o I l i j Z z S s B b g q G, and $) are never drawn,
nor any character that is one of the model's class names: calling those unknown would be a
convention, not open-set skill. The evaluation sets of ``benchmarks/`` render TrueType fonts
(matplotlib's and Pillow's) instead, so they do not measure this generator against itself.

Two more kinds widen the near unknowns beyond Latin: `render_symbols` draws Hershey's
Japanese kana and kanji and its symbol fonts (astrology, meteorology, music, maths, markers),
and `render_pieces` makes up characters from the strokes of two glyphs. Hershey's Greek
and Cyrillic are never drawn: the near-OOD sets of ``tools/make_near_ood.py`` measure
scripts that training never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
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


Stroke = Sequence[tuple[float, float]]


def _points(strokes: Sequence[Stroke]) -> np.ndarray:
    """All the vertices of a glyph's strokes, ``(n, 2)``."""
    return np.concatenate([np.asarray(s) for s in strokes])


def _extent(points: np.ndarray) -> float:
    """The longer side of the points' bounding box."""
    return float(np.ptp(points, axis=0).max())


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
    """The characters to draw: `CHARACTERS` less any that is a class name."""
    known = {name for name in class_names if len(name) == 1}
    return "".join(c for c in CHARACTERS if c not in known and c not in LOOKALIKES)


def _pen(strokes: Sequence[Stroke], side: int, rng: np.random.Generator) -> np.ndarray:
    """Strokes drawn as by a hand: a random pen width, a wobble on every vertex, a random slant,
    rotation and aspect, white on black at 2x, box-filtered down to ``side``, the shape filling
    most of the frame (the layout step re-fits it)."""
    big = 2 * side
    points = _points(strokes)
    centre = (points.max(0) + points.min(0)) / 2
    extent = max(_extent(points), 1.0)
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
    return np.asarray(image.resize((side, side), Image.Resampling.BOX), dtype=np.uint8)


def render_glyphs(n: int, side: int, rng: np.random.Generator, characters: str) -> np.ndarray:
    """``n`` random Latin glyphs of ``characters`` as uint8 ``(n, side, side)`` (see `_pen`)."""
    if not characters:
        return np.zeros((0, side, side), dtype=np.uint8)
    out = np.empty((n, side, side), dtype=np.uint8)
    for i in range(n):
        font = FONTS[int(rng.integers(len(FONTS)))]
        char = characters[int(rng.integers(len(characters)))]
        while char in FONT_LOOKALIKES.get(font, ""):
            char = characters[int(rng.integers(len(characters)))]
        out[i] = _pen(_strokes(font, char), side, rng)
    return out


# -- symbols and other scripts ------------------------------------------------------------------
#: Hershey's sets that are neither Latin nor Greek nor Cyrillic: Japanese kana and kanji, and the
#: astrological, meteorological, musical, mathematical and marker symbols. Greek and Cyrillic stay
#: out on purpose: the near-OOD evaluation sets (tools/make_near_ood.py) then measure scripts
#: that training never saw.
SYMBOL_FONTS = ("japanese", "astrology", "meteorology", "symbolic", "mathlow", "mathupp", "music", "markers")
#: Every font with Latin letters, digits or punctuation: a symbol-font glyph drawn exactly like the
#: same key in one of these is no symbol (the symbol fonts carry plain ASCII too).
_PLAIN_FONTS = FONTS + ("futuram", "rowmans", "timesg", "greek", "greekc", "greeks", "cyrillic", "cyrilc_1", "gothgbt", "gothgrt", "gothitt")
#: Symbols written like a digit, found by an audit: every symbol glyph was drawn four times and
#: scored by the previous default model, and those it took for digits were looked at. Rejecting
#: these would be convention: S-like (5), Z-like (2), reversed E (3), ellipses and note heads (0),
#: flats and the partial sign (6), a lone arc (1 or 7), an up tack (1), the natural sign (4),
#: and the kana ro and ru (3).
SYMBOL_LOOKALIKES = frozenset({
    ("meteorology", "^"), ("meteorology", "~"), ("symbolic", "v"), ("symbolic", "}"), ("symbolic", "2"),
    ("symbolic", "7"), ("symbolic", "B"), ("mathlow", "m"), ("mathupp", "m"), ("mathlow", "v"), ("mathupp", "v"),
    ("mathlow", "z"), ("mathupp", "z"), ("music", ")"), ("music", "$"), ("music", "%"), ("music", '"'),
    ("music", "("), ("music", "-"), ("japanese", "m"), ("japanese", "k"),
})
#: Keys of the maths fonts that are Latin letters or digits in another style.
_MATH_FONTS_LATIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _shape_lookalike(strokes: Sequence[Stroke], typical_extent: float) -> bool:
    """A dot (far smaller than the font's glyphs), a straight line (a 1, a dash) or one closed loop (a 0, an 8)."""
    points = _points(strokes)
    extent = _extent(points)
    if extent < 0.35 * typical_extent:
        return True
    minor, major = np.linalg.eigvalsh(np.cov(points.T))
    if np.sqrt(max(minor, 0.0) / major) < 0.2:
        return True
    return len(strokes) == 1 and float(np.linalg.norm(np.subtract(strokes[0][0], strokes[0][-1]))) < 0.1 * extent


@lru_cache(maxsize=None)
def _shape(font: str, key: str) -> tuple:
    """``key`` in ``font`` moved to the origin and rounded, to compare glyphs across fonts; empty if the font lacks it."""
    strokes = _strokes(font, key)
    if not strokes:
        return ()
    lo = _points(strokes).min(0)
    return tuple(tuple(map(tuple, np.round(np.asarray(s) - lo, 3))) for s in strokes)


@lru_cache(maxsize=1)
def symbol_glyphs() -> tuple[tuple[str, str], ...]:
    """The ``(font, key)`` pairs of `SYMBOL_FONTS` drawn as outliers: no plain ASCII glyph,
    no Latin letter or digit, no duplicate, no dot, line or loop, none of `SYMBOL_LOOKALIKES`."""
    keys = [chr(c) for c in range(33, 127)]
    chosen, seen = [], set()
    for font in SYMBOL_FONTS:
        glyphs = {k: _strokes(font, k) for k in keys if _strokes(font, k)}
        typical = float(np.median([_extent(_points(g)) for g in glyphs.values()]))
        for key, strokes in glyphs.items():
            shape = _shape(font, key)
            if (font, key) in SYMBOL_LOOKALIKES or shape in seen or (font.startswith("math") and key in _MATH_FONTS_LATIN):
                continue
            if any(_shape(plain, key) == shape for plain in _PLAIN_FONTS):
                continue
            if _shape_lookalike(strokes, typical):
                continue
            seen.add(shape)
            chosen.append((font, key))
    return tuple(chosen)


def render_symbols(n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random glyphs of `symbol_glyphs` (kana, kanji and symbols), drawn like `render_glyphs`."""
    items = symbol_glyphs()
    out = np.empty((n, side, side), dtype=np.uint8)
    for i in range(n):
        font, key = items[int(rng.integers(len(items)))]
        out[i] = _pen(_strokes(font, key), side, rng)
    return out


def render_pieces(n: int, side: int, rng: np.random.Generator, characters: str) -> np.ndarray:
    """``n`` made-up characters: some strokes of one glyph (Latin or symbol) joined to some strokes of
    another, each piece at its own place and size, then drawn like `render_glyphs`. Shapes of
    handwriting that belong to no script; a result that is one straight line or one loop is drawn again."""
    sources = [(font, c) for font in FONTS for c in characters if c not in FONT_LOOKALIKES.get(font, "")] + list(symbol_glyphs())
    out = np.empty((n, side, side), dtype=np.uint8)
    for i in range(n):
        while True:
            strokes: list[Stroke] = []
            for _ in range(2):
                glyph = _strokes(*sources[int(rng.integers(len(sources)))])
                keep = rng.random(len(glyph)) < 0.6
                keep[int(rng.integers(len(glyph)))] = True
                piece = [s for s, k in zip(glyph, keep, strict=True) if k]
                points = _points(piece)
                lo, extent = points.min(0), max(_extent(points), 1.0)
                size, offset = rng.uniform(0.5, 1.0), rng.uniform(-0.35, 0.35, 2)
                strokes += [tuple(map(tuple, ((s - lo) / extent - 0.5) * size + offset)) for s in piece]
            if not _shape_lookalike(strokes, 1.0):
                break
        out[i] = _pen(strokes, side, rng)
    return out
