"""The layout step: lay a written or printed character out as MNIST's digits were made.

MNIST's digits are white ink on black, cropped to the ink, fitted into a 20x20 box keeping
their aspect ratio, and centred by their centre of mass in a 28x28 frame. A phone photo of a
digit on paper is none of these: dark ink on light paper, a lighting gradient, paper texture
or ruled lines, the digit small and off-centre. This step brings any greyscale image to that
layout (at any input size: the box is 20/28 of the frame), so that a model trained on MNIST
laid out the same way sees the same kind of input. numpy and Pillow only: it runs at the edge.

1. work on a copy whose longer side is at most :data:`WORK_SIDE` pixels (box-filtered);
2. polarity: the paper is the typical level; if the levels far from it are darker, the ink is
   dark: invert, so the ink is bright;
3. paper level: the image's cell means over a coarse grid, each the minimum over its
   neighbours (ink rarely covers a whole neighbourhood), smoothly upsampled (one median level
   for images under :data:`SMALL_SIDE` pixels); it is subtracted, which removes lighting
   gradients and paper tone;
4. ink: brighter than Otsu's threshold of what is left, and than a fraction of the
   strongest ink (faint ruled or squared lines and paper texture stay below it); only ink
   that is dense around it counts for the crop (strokes are, thin lines and specks are not),
   and not the rows and columns crossed by lines that run across most of the image (ruled
   paper, margins);
5. crop to the ink (and one working pixel around it), trimming the faintest ``TRIM`` of its mass at each side (specks), and
   scale the ink so that it spans 0-255 on a black background;
6. fit into the box (longest side = box), keeping the aspect ratio, and translate so that the
   centre of mass is the frame's centre.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

#: Longest side of the working copy: enough for a character of a sixth of a photo's side.
WORK_SIDE = 256
#: The character's box, as a share of the frame (MNIST: 20 of 28 pixels).
BOX_SHARE = 20 / 28
#: Cells along the longer side for the paper-level estimate.
GRID_CELLS = 12
#: Ink is at least this share of the strongest ink, whatever Otsu says.
INK_FLOOR = 0.3
#: Share of the ink's mass trimmed at each side of the crop.
TRIM = 0.002
#: The paper level of a cell is this rank (0 = darkest) of the 3x3 cell means around it, after
#: inversion: low enough to skip cells the ink brightens, high enough to follow steep vignetting.
PAPER_RANK = 2
#: The ink's density is measured in a box of this share of the longer side (at least 3 pixels).
DENSITY_SHARE = 1 / 24
#: Ink counts for the crop where its density is at least this share of the densest place:
#: strokes are dense, ruled and squared lines and specks are sparse.
DENSITY_FLOOR = 0.3
#: Rows (columns) whose strokes run across this share of the width (height), within a band of
#: ``LINE_BAND`` rows, are lines of the paper: a character spans at most about 60 %.
LINE_SPAN = 0.75
LINE_BAND = 5
#: Images smaller than this (longer side) get one paper level: MNIST, CIFAR-10, thumbnails.
SMALL_SIDE = 64
#: Below this contrast (0-255) an image has no ink to lay out: it is only resized.
MIN_CONTRAST = 12.0


def _otsu(values: np.ndarray, top: float) -> float:
    """Otsu's threshold of values in [0, top], on a 256-bin histogram."""
    bins = np.minimum((values.ravel() * (256 / max(top, 1e-6))).astype(np.intp), 255)
    weights = np.bincount(bins, minlength=256).astype(np.float64)
    total = weights.sum()
    centres = (np.arange(256) + 0.5) * (max(top, 1e-6) / 256)
    w0 = np.cumsum(weights)
    w1 = total - w0
    m0 = np.cumsum(weights * centres)
    mean0 = m0 / np.maximum(w0, 1e-12)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between))])


def _paper_level(work: Image.Image, pixels: np.ndarray) -> np.ndarray | float:
    """The paper's level everywhere (after inversion: the dark background): one level for
    small images (a grid of cells there would be finer than a thick stroke), else per place."""
    w, h = work.size
    if max(w, h) < SMALL_SIDE:
        flat = pixels.ravel()
        return float(np.partition(flat, flat.size // 2)[flat.size // 2])
    cell = max(w, h) / GRID_CELLS
    gw, gh = max(1, round(w / cell)), max(1, round(h / cell))
    coarse = work.resize((gw, gh), Image.Resampling.BOX)
    if min(gw, gh) >= 3:
        coarse = coarse.filter(ImageFilter.RankFilter(3, PAPER_RANK))
    else:
        coarse = Image.new("L", (gw, gh), int(np.asarray(coarse).min()))
    return np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _longest_runs(marks: np.ndarray) -> np.ndarray:
    """The longest run of True in each row of a 2-D boolean array."""
    index = np.arange(marks.shape[1])
    last_gap = np.maximum.accumulate(np.where(marks, -1, index), axis=1)
    return np.where(marks, index - last_gap, 0).max(axis=1)


def _line_rows(strokes: np.ndarray) -> np.ndarray:
    """Rows in a band of ``LINE_BAND`` rows whose strokes, together, run across at least
    ``LINE_SPAN`` of the width: ruled lines and margins (slightly tilted ones included)."""
    h, _ = strokes.shape
    half = LINE_BAND // 2
    padded = np.pad(strokes, ((half, half), (0, 0)))
    band = np.logical_or.reduce([padded[k : k + h] for k in range(LINE_BAND)])
    centres = _longest_runs(band) >= LINE_SPAN * strokes.shape[1]
    flagged = np.zeros(h, dtype=bool)
    for k in np.flatnonzero(centres):
        flagged[max(0, k - half) : k + half + 1] = True
    return flagged


def _mass_range(profile: np.ndarray) -> tuple[int, int]:
    """First and last index inside the ``TRIM``..``1-TRIM`` quantiles of a mass profile."""
    cumulative = np.cumsum(profile)
    total = cumulative[-1]
    start = int(np.searchsorted(cumulative, TRIM * total, side="right"))
    stop = int(np.searchsorted(cumulative, (1 - TRIM) * total, side="left"))
    return start, max(start, min(stop, len(profile) - 1))


def layout(gray: Image.Image, size: int, resize: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """A greyscale ('L') image laid out MNIST-style in a ``size x size`` uint8 frame."""
    w, h = gray.size
    scale = WORK_SIDE / max(w, h)
    work = gray.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX) if scale < 1 else gray
    pixels = np.asarray(work, dtype=np.float32)
    flat = pixels.ravel()
    n = flat.size
    low, typical, high = np.partition(flat, [n // 100, n // 2, n - 1 - n // 100])[[n // 100, n // 2, n - 1 - n // 100]]
    if typical - low > high - typical:  # the outliers are darker than the paper: dark ink
        pixels = 255.0 - pixels
        work = Image.fromarray(pixels.astype(np.uint8), mode="L")
    ink = np.clip(pixels - _paper_level(work, pixels), 0, None)
    peak = float(np.partition(ink.ravel(), n - 1 - n // 1000)[n - 1 - n // 1000])
    if peak < MIN_CONTRAST:  # a blank or flat image: nothing to lay out
        return np.asarray(Image.fromarray(ink.astype(np.uint8), mode="L").resize((size, size), resize), dtype=np.uint8)
    threshold = max(_otsu(ink, float(ink.max())), INK_FLOOR * peak)
    strokes = ink > threshold
    radius = max(1, round(max(ink.shape) * DENSITY_SHARE / 2))
    density = np.asarray(
        Image.fromarray(strokes.astype(np.uint8) * 255, mode="L").filter(ImageFilter.BoxBlur(radius)), dtype=np.float32
    )
    dense = density >= DENSITY_FLOOR * float(density.max())
    mass = np.where(strokes & dense, ink, 0.0)
    if max(ink.shape) >= SMALL_SIDE:  # ruled paper: long straight lines are no part of the character
        lines = np.zeros_like(strokes)
        lines[_line_rows(strokes), :] = True
        lines[:, _line_rows(strokes.T)] = True
        if (mass * ~lines).sum() > 0:
            mass = np.where(lines, 0.0, mass)
    y0, y1 = _mass_range(mass.sum(axis=1))
    x0, x1 = _mass_range(mass.sum(axis=0))
    y0, x0 = max(0, y0 - 1), max(0, x0 - 1)  # one pixel of margin keeps the strokes' soft edges
    y1, x1 = min(ink.shape[0] - 1, y1 + 1), min(ink.shape[1] - 1, x1 + 1)
    background = threshold / 2
    crop = np.clip((ink[y0 : y1 + 1, x0 : x1 + 1] - background) / max(peak - background, 1e-6), 0, 1) * 255
    crop_h, crop_w = crop.shape
    box = max(1, round(size * BOX_SHARE))
    fit = box / max(crop_h, crop_w)
    new_w, new_h = max(1, round(crop_w * fit)), max(1, round(crop_h * fit))
    glyph = np.asarray(Image.fromarray(crop.astype(np.uint8), mode="L").resize((new_w, new_h), resize), dtype=np.float32)
    frame = np.zeros((size, size), dtype=np.float32)
    total = glyph.sum()
    if total > 0:
        rows, cols = np.indices(glyph.shape)
        com_y, com_x = (rows * glyph).sum() / total, (cols * glyph).sum() / total
    else:
        com_y, com_x = (new_h - 1) / 2, (new_w - 1) / 2
    top = int(np.clip(round((size - 1) / 2 - com_y), 0, size - new_h))
    left = int(np.clip(round((size - 1) / 2 - com_x), 0, size - new_w))
    frame[top : top + new_h, left : left + new_w] = glyph
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)
