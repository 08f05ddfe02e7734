"""The layout step: lay a written or printed character out as MNIST's digits were made.

MNIST's digits are white ink on black, cropped to the ink, fitted into a 20x20 box keeping
their aspect ratio, and centred by their centre of mass in a 28x28 frame. A phone photo of a
digit on paper is none of these: dark ink on light paper, a lighting gradient, paper texture
or ruled lines, the digit small and off-centre. This step brings any greyscale image to that
layout (at any input size: the box is 20/28 of the frame), so that a model trained on MNIST
laid out the same way sees the same kind of input. numpy and Pillow only: it runs at the edge.

1. work on a copy whose longer side is at most `WORK_SIDE` pixels (box-filtered);
2. polarity: subtract a local paper level (the median of coarse cell means around each place,
   so lighting gradients go first); of what is left, the tail beyond a few robust noise levels
   that carries more mass is the ink's. Dark ink is inverted, so the ink is bright;
3. paper level: the image's cell means over a coarse grid, each the minimum over its
   neighbours (ink rarely covers a whole neighbourhood), smoothly upsampled (one median level
   for images under `SMALL_SIDE` pixels); it is subtracted, which removes lighting
   gradients and paper tone;
4. ink: brighter than Otsu's threshold of what is left, and than a fraction of the
   strongest ink (faint ruled or squared lines and paper texture stay below it); only ink
   that is dense around it counts for the crop (strokes are, thin lines and specks are not);
   straight lines that run across most of the image within a few degrees of square (ruled and
   squared paper, margins) are traced down to fainter ink and removed; of what is left, the
   heaviest cluster (on a coarse grid) and the pieces near it are the character;
5. crop to the ink (and one working pixel around it), trimming the faintest ``TRIM`` of its mass at each side (specks), and
   scale the ink so that it spans 0-255 on a black background;
6. fit into the box (longest side = box), keeping the aspect ratio, stretch it so that its
   brightest pixel is 255 again (thin strokes fade when shrunk), and translate so that the
   centre of mass is the frame's centre.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from osr_infer.pillow_numpy import box_blur, resize_crops

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
#: The median of the 3x3 cell means (what polarity is judged against: neither ink nor paper side).
MEDIAN_RANK = 4
#: The ink's density is measured in a box of this share of the longer side (at least 3 pixels).
DENSITY_SHARE = 1 / 24
#: Ink counts for the crop where its density is at least this share of the densest place:
#: strokes are dense, ruled and squared lines and specks are sparse.
DENSITY_FLOOR = 0.3
#: Rows (columns) whose strokes run across this share of the width (height), within a band of
#: ``LINE_BAND`` rows, are lines of the paper: a character spans at most about 60 %.
LINE_SPAN = 0.75
LINE_BAND = 3
#: Lines are looked for on a grid of at most this many cells a side, and are at most this
#: many cells thick (thicker runs across a line are strokes of the character crossing it).
LINE_GRID = 128
LINE_THICKNESS = 2
#: Lines are looked for at tilts up to this (degrees): a sheet photographed roughly square.
LINE_TILT_DEG = 6.0
#: Line pixels are traced down to this share of the ink threshold (faint rulings break up).
LINE_INK = 0.5
#: The character is found on a grid of this many cells along the longer side, and keeps the
#: pieces that lie within this share of its size around it.
COMPONENT_GRID = 64
COMPONENT_REACH = 0.5
#: Images smaller than this (longer side) get one paper level: MNIST, CIFAR-10, thumbnails.
SMALL_SIDE = 64
#: The ink's tail starts this many noise levels (robust sigmas) away from the paper.
TAIL_NOISE = 3.0
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


def _local_level(work: Image.Image, pixels: np.ndarray, rank: int, narrow_to_min: bool) -> np.ndarray | float:
    """A smooth level of the paper everywhere: the ``rank``-th (0 = darkest) of the 3x3 coarse
    cell means around each place, upsampled; one median level for small images (a grid of cells
    there would be finer than a thick stroke). A grid narrower than 3 cells is not filtered, or,
    with ``narrow_to_min``, is its darkest cell everywhere."""
    w, h = work.size
    if max(w, h) < SMALL_SIDE:
        flat = pixels.ravel()
        return float(_order_statistics(flat, flat.size // 2)[0])
    cell = max(w, h) / GRID_CELLS
    gw, gh = max(1, round(w / cell)), max(1, round(h / cell))
    coarse = work.resize((gw, gh), Image.Resampling.BOX)
    if min(gw, gh) >= 3:
        coarse = coarse.filter(ImageFilter.RankFilter(3, rank))
    elif narrow_to_min:
        coarse = Image.new("L", (gw, gh), int(np.asarray(coarse).min()))
    return np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _paper_level(work: Image.Image, pixels: np.ndarray) -> np.ndarray | float:
    """The paper's level everywhere (after inversion: the dark background): a low rank of the
    cells around each place, so that cells the ink brightens are skipped."""
    return _local_level(work, pixels, PAPER_RANK, narrow_to_min=True)


#: Up to this many values, order statistics come from a sort: numpy's introselect (np.partition)
#: degenerates on the many equal values of small character images (46 us against 3 us for a sort
#: of MNIST's 784 pixels); above it, the partition is faster.
SORT_UP_TO = 4096


def _order_statistics(flat: np.ndarray, *ks: int, as_float: bool = True) -> list[Any]:
    """The ``k``-th smallest values of a 1-D array (the same values np.partition puts there)."""
    ordered = np.sort(flat) if flat.size <= SORT_UP_TO else np.partition(flat, ks)
    return [float(ordered[k]) if as_float else ordered[k] for k in ks]


def _median(values: np.ndarray) -> float:
    """``np.median`` of a float32 array, bit for bit (the mean of the two middle values in float32
    for an even count), without its first-call import of numpy.ma (about 40 ms of start-up)."""
    flat = values.ravel()
    k = flat.size // 2
    if flat.size % 2:
        return float(_order_statistics(flat, k)[0])
    low, high = _order_statistics(flat, k - 1, k, as_float=False)
    return float((low + high) / 2)


def _ink_is_dark(work: Image.Image, pixels: np.ndarray) -> bool:
    """Whether the ink is darker than the paper: the heavier tail of what differs from the
    local paper level (lighting gradients and paper tone removed first) is the ink's."""
    background = _local_level(work, pixels, MEDIAN_RANK, narrow_to_min=False)
    residual = pixels - background
    centre = _median(residual)
    noise = 1.4826 * _median(np.abs(residual - centre)) + 0.5
    bright = np.maximum(residual - centre - TAIL_NOISE * noise, 0).sum()
    dark = np.maximum(centre - residual - TAIL_NOISE * noise, 0).sum()
    return bool(dark > bright)


def _run_lengths(marks: np.ndarray) -> np.ndarray:
    """For each True pixel of a 2-D boolean array, the length of the run of True along its row."""
    h, w = marks.shape
    index = np.broadcast_to(np.arange(w), (h, w))
    last_gap = np.maximum.accumulate(np.where(marks, -1, index), axis=1)
    next_gap = np.minimum.accumulate(np.where(marks, w, index)[:, ::-1], axis=1)[:, ::-1]
    return np.where(marks, next_gap - last_gap - 1, 0)


def _horizontal_lines(strokes: np.ndarray) -> np.ndarray:
    """Where straight lines run across at least ``LINE_SPAN`` of the width, square to the image
    within ``LINE_TILT_DEG`` degrees: ruled and squared paper, margins, table edges. Each tilt
    shears the image so that a line at that tilt is a row, and a band of ``LINE_BAND`` rows
    around each row is searched for a long run."""
    h, w = strokes.shape
    found = np.zeros_like(strokes)
    if strokes.sum() < LINE_SPAN * w:
        return found
    rows, cols = np.indices((h, w))
    half = LINE_BAND // 2
    steps = max(1, math.ceil(LINE_TILT_DEG / math.degrees(math.atan((half + 0.5) / (LINE_SPAN * w)))))
    for tilt in np.linspace(-LINE_TILT_DEG, LINE_TILT_DEG, 2 * steps + 1):
        shift = np.round((cols[0] - w // 2) * math.tan(math.radians(tilt))).astype(np.intp)
        source = rows + shift[None, :]  # the sheared image: a line at this tilt is a row
        inside = (source >= 0) & (source < h)
        sheared = np.where(inside, strokes[np.clip(source, 0, h - 1), cols], False)
        padded = np.pad(sheared, ((half, half), (0, 0)))
        band = np.logical_or.reduce([padded[k : k + h] for k in range(LINE_BAND)])
        candidates = band.sum(axis=1) >= LINE_SPAN * w
        if not candidates.any():
            continue
        on_line = np.zeros_like(sheared)
        on_line[candidates] = sheared[candidates] & (_run_lengths(band[candidates]) >= LINE_SPAN * w)
        if on_line.any():
            found[source[on_line], cols[on_line]] = True
    return found


def _blocks(array: np.ndarray, grid: int) -> tuple[np.ndarray, int]:
    """``array`` cut into square blocks, at most ``grid`` along its longer side, as a
    ``(rows, cell, columns, cell)`` view (zero-padded at the bottom and right), and the block side."""
    h, w = array.shape
    cell = max(1, math.ceil(max(h, w) / grid))
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.zeros((gh * cell, gw * cell), dtype=array.dtype)
    padded[:h, :w] = array
    return padded.reshape(gh, cell, gw, cell), cell


def _expand(grid: np.ndarray, cell: int, shape: tuple[int, ...]) -> np.ndarray:
    """A grid of blocks back at pixel resolution, cropped to ``shape``."""
    return np.kron(grid, np.ones((cell, cell), dtype=grid.dtype))[: shape[0], : shape[1]]


def _straight_lines(marks: np.ndarray) -> np.ndarray:
    """The marks on straight lines across the image (`_horizontal_lines`, both ways).

    Lines are looked for on a coarse grid (at most ``LINE_GRID`` cells a side; a cell holds a
    mark if any of its pixels does): lines are long, so the grid finds them as well, many times
    faster. Of the marks in a line's cells, only those in thin runs across the line are removed:
    a stroke of the character that crosses a ruled line keeps its pixels there."""
    blocks, cell = _blocks(marks, LINE_GRID)
    coarse = np.asarray(blocks.any(axis=(1, 3)))
    thin = LINE_THICKNESS * cell
    lines = np.zeros_like(marks)
    # Horizontal lines keep what runs far vertically (a crossing stroke), vertical ones what runs far horizontally.
    for found, across_rows in ((_horizontal_lines(coarse), False), (_horizontal_lines(coarse.T).T, True)):
        if found.any():
            zone = _expand(found, cell, marks.shape)
            runs_across = _run_lengths(marks) if across_rows else _run_lengths(marks.T).T  # only where a line was found
            lines |= zone & marks & (runs_across <= thin)
    return lines


def _components(occupied: np.ndarray) -> np.ndarray:
    """Labels of the 8-connected components of a small boolean grid (0 where unoccupied): each
    cell takes the largest label around it, then the label of the cell its label names (pointer
    jumping), until nothing changes."""
    h, w = occupied.shape
    flat = occupied.ravel()
    labels = np.where(flat, np.arange(1, h * w + 1), 0)
    while True:
        padded = np.pad(labels.reshape(h, w), 1)
        rows = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
        spread = np.where(flat, np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:]).ravel(), 0)
        for _ in range(4):
            spread = np.maximum(spread, np.concatenate(([0], spread))[spread])
        if np.array_equal(spread, labels):
            return labels.reshape(h, w)
        labels = spread


def _character_mask(mass: np.ndarray) -> np.ndarray:
    """Where the character is: the heaviest cluster of ink on a coarse grid, with the pieces
    near it (a broken stroke, a detached bar); specks and marks elsewhere on the sheet are left out."""
    blocks, cell = _blocks(mass.astype(np.float64), COMPONENT_GRID)
    cells = blocks.sum(axis=(1, 3))
    gh, gw = cells.shape
    occupied = cells > 0
    padded_cells = np.pad(occupied, 1)  # dilated by one cell: pieces one cell apart are one piece
    near = np.logical_or.reduce([padded_cells[dy : dy + gh, dx : dx + gw] for dy in range(3) for dx in range(3)])
    labels = _components(near)
    weights = np.bincount(labels.ravel(), weights=cells.ravel())
    weights[0] = 0
    main = int(np.argmax(weights))
    # Every component's bounding box (in cells); those inside the main one's, grown by the reach, are kept.
    ys, xs = np.nonzero(near)
    owner = labels[ys, xs]
    top, left = np.full(len(weights), gh), np.full(len(weights), gw)
    bottom, right = np.full(len(weights), -1), np.full(len(weights), -1)
    np.minimum.at(top, owner, ys)
    np.minimum.at(left, owner, xs)
    np.maximum.at(bottom, owner, ys)
    np.maximum.at(right, owner, xs)
    reach = COMPONENT_REACH * max(bottom[main] - top[main] + 1, right[main] - left[main] + 1)
    keep = ((top >= top[main] - reach) & (bottom <= bottom[main] + reach) & (left >= left[main] - reach)
            & (right <= right[main] + reach) & (weights > 0))
    return _expand(keep[labels] & occupied, cell, mass.shape)


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
    n = pixels.size
    if _ink_is_dark(work, pixels):
        pixels = 255.0 - pixels
        work = Image.fromarray(pixels.astype(np.uint8), mode="L")
    ink = np.maximum(pixels - _paper_level(work, pixels), 0)
    peak = _order_statistics(ink.ravel(), n - 1 - n // 1000)[0]
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
        lines = _straight_lines(ink > LINE_INK * threshold)
        if (mass * ~lines).sum() > 0:
            mass = np.where(lines, 0.0, mass)
            ink = np.where(lines, 0.0, ink)
        if mass.any():
            mass = np.where(_character_mask(mass), mass, 0.0)
    y0, y1 = _mass_range(mass.sum(axis=1))
    x0, x1 = _mass_range(mass.sum(axis=0))
    y0, x0 = max(0, y0 - 1), max(0, x0 - 1)  # one pixel of margin keeps the strokes' soft edges
    y1, x1 = min(ink.shape[0] - 1, y1 + 1), min(ink.shape[1] - 1, x1 + 1)
    background = threshold / 2
    crop = np.clip((ink[y0 : y1 + 1, x0 : x1 + 1] - background) / max(peak - background, 1e-6), 0, 1) * 255
    return _place(crop.astype(np.uint8), size, resize)


def _place(crop: np.ndarray, size: int, resize: Image.Resampling) -> np.ndarray:
    """Step 6: the cropped ink (uint8) fitted into the box, its core at full ink, and centred
    by its centre of mass in a ``size x size`` uint8 frame."""
    crop_h, crop_w = crop.shape
    box = max(1, round(size * BOX_SHARE))
    fit = box / max(crop_h, crop_w)
    new_w, new_h = max(1, round(crop_w * fit)), max(1, round(crop_h * fit))
    glyph = np.asarray(Image.fromarray(crop, mode="L").resize((new_w, new_h), resize), dtype=np.float32)
    if 0 < glyph.max() < 255:  # a thin stroke shrunk into the box fades: its core is full ink again, as in MNIST
        glyph *= 255 / glyph.max()
    frame = np.zeros((size, size), dtype=np.float32)
    total = glyph.sum()
    if total > 0:
        rows, cols = np.indices(glyph.shape)
        com_y, com_x = (rows * glyph).sum() / total, (cols * glyph).sum() / total
    else:
        com_y, com_x = (new_h - 1) / 2, (new_w - 1) / 2
    top = min(max(round((size - 1) / 2 - com_y), 0), size - new_h)  # plain min/max: np.clip on scalars costs microseconds
    left = min(max(round((size - 1) / 2 - com_x), 0), size - new_w)
    frame[top : top + new_h, left : left + new_w] = glyph
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


# --- The same layout for many small images at once -------------------------------------------
#
# Images under SMALL_SIDE pixels (MNIST, CIFAR-10, thumbnails) take none of the steps for photos
# (no working copy, one paper level, no lines, no clusters), and what they do take is a few
# dozen numpy calls on a thousand pixels: per image, Python's overhead dominates. The functions
# below take a stack of same-size images through the same arithmetic in whole-stack calls, in
# the same float32 and float64 operations as `layout` (Pillow's blur and resize as
# osr_infer/pillow_numpy.py computes them), so the pixels are the same bit for bit
# (tests/test_layout_stack.py compares them on synthetic images of every kind, and on every
# MNIST test digit and CIFAR-10 test image).


def _float32(values: np.ndarray) -> np.ndarray:
    """Per-image Python-float scalars as `layout` meets them: cast to float32 where they
    meet a float32 array (numpy's rule for a Python float next to an array), shaped to broadcast."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)[:, None]


def _kth(values: np.ndarray, counts: np.ndarray, *ks: int, ascending: bool = False) -> list[np.ndarray]:
    """The ``k``-th smallest (0 = smallest) of each row's multiset, for each ``k``: ``values[i, j]``
    taken ``counts[i, j]`` times (what a sort of the pixels would put at ``k``); ``ascending``:
    the rows of ``values`` are already in order."""
    rows = np.arange(len(values))
    if ascending:
        cumulative = np.cumsum(counts, axis=1)
        return [values[rows, (cumulative <= k).sum(axis=1)] for k in ks]
    order = np.argsort(values, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(counts, order, axis=1), axis=1)
    return [values[rows, order[rows, (cumulative <= k).sum(axis=1)]] for k in ks]


def _middle(values: np.ndarray, counts: np.ndarray, n: int, ascending: bool = False) -> np.ndarray:
    """`_median` of each row's multiset of ``n`` float32 values (the float32 mean of the
    two middle values for an even count)."""
    if n % 2:
        odd: np.ndarray = _kth(values, counts, n // 2, ascending=ascending)[0]
        return odd
    low, high = _kth(values, counts, n // 2 - 1, n // 2, ascending=ascending)
    even: np.ndarray = (low + high) / np.float32(2)
    return even


def _otsu_many(ink_levels: np.ndarray, counts: np.ndarray, tops: np.ndarray) -> np.ndarray:
    """`_otsu` of each image's ink, each with its own top, from its histogram: the ink of
    pixels of level ``j`` is ``ink_levels[i, j]`` (float32), and there are ``counts[i, j]`` of them.
    Each level falls into the bin its pixels would, so the bins' weights are `_otsu`'s."""
    count = len(ink_levels)
    tops = np.maximum(tops, 1e-6)
    bins = np.minimum((ink_levels * _float32(256 / tops)).astype(np.intp), 255)
    weights = np.bincount((bins + 256 * np.arange(count)[:, None]).ravel(), weights=counts.ravel(), minlength=256 * count)
    weights = weights.reshape(count, 256)
    total = weights.sum(axis=1, keepdims=True)
    centres = (np.arange(256) + 0.5) * (tops / 256)[:, None]
    w0 = np.cumsum(weights, axis=1)
    w1 = total - w0
    m0 = np.cumsum(weights * centres, axis=1)
    mean0 = m0 / np.maximum(w0, 1e-12)
    mean1 = (m0[:, -1:] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mean0 - mean1) ** 2
    levels: np.ndarray = centres[np.arange(count), np.argmax(between, axis=1)]
    return levels


def _mass_ranges(profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_mass_range` of each row of ``profiles`` (cumulative mass is non-decreasing, so a
    search is a count)."""
    cumulative = np.cumsum(profiles, axis=1)
    total = cumulative[:, -1:]
    start = (cumulative <= total * TRIM).sum(axis=1)
    stop = (cumulative < total * (1 - TRIM)).sum(axis=1)
    return start, np.maximum(start, np.minimum(stop, profiles.shape[1] - 1))


def layout_small(stack: np.ndarray, size: int, resize: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """`layout` of each image of a ``(n, h, w)`` uint8 stack of greyscale images under
    `SMALL_SIDE` pixels: the same ``(n, size, size)`` uint8 frames, bit for bit, in
    whole-stack numpy calls (images with nothing to lay out are resized one by one, as
    `layout` does, and so are the crops for resampling filters other than bilinear:
    `osr_infer.pillow_numpy.resize_crops`)."""
    count, h, w = stack.shape
    if max(h, w) >= SMALL_SIDE:
        raise ValueError(f"layout_small takes images under {SMALL_SIDE} pixels a side, not {w}x{h}")
    out = np.empty((count, size, size), dtype=np.uint8)
    if count == 0:
        return out
    n = h * w
    flat_pixels = stack.reshape(count, n)
    pixels = flat_pixels.astype(np.float32)
    counts = np.bincount((flat_pixels + 256 * np.arange(count)[:, None]).ravel(), minlength=256 * count).reshape(count, 256)
    levels = np.broadcast_to(np.arange(256, dtype=np.float32), (count, 256))
    # Polarity (_ink_is_dark): one median level for small images, then the robust noise around it.
    # Order statistics come from each image's histogram: what a sort of its pixels puts there.
    background = _kth(levels, counts, n // 2, ascending=True)[0][:, None]
    residual = pixels - background
    centre = _middle(levels - background, counts, n, ascending=True)[:, None]
    noise = 1.4826 * _middle(np.abs(levels - background - centre), counts, n).astype(np.float64) + 0.5
    tail = _float32(TAIL_NOISE * noise)
    bright = np.maximum(residual - centre - tail, 0).sum(axis=1)
    dark = np.maximum(centre - residual - tail, 0).sum(axis=1)
    is_dark = dark > bright
    pixels[is_dark] = 255.0 - pixels[is_dark]
    counts[is_dark] = counts[is_dark, ::-1]
    # Ink above the paper level; its order statistics follow the pixels' (a monotone map).
    paper = _kth(levels, counts, n // 2, ascending=True)[0][:, None]
    ink = np.maximum(pixels - paper, 0)
    peak = np.maximum(_kth(levels, counts, n - 1 - n // 1000, ascending=True)[0] - paper[:, 0], 0).astype(np.float64)
    ink_levels = np.maximum(levels - paper, 0)  # the ink of a pixel of each level
    brightest = 255 - np.argmax(counts[:, ::-1] > 0, axis=1)
    tops = ink_levels[np.arange(count), brightest].astype(np.float64)  # ink.max()
    threshold = np.maximum(_otsu_many(ink_levels, counts, tops), INK_FLOOR * peak)
    strokes = ink > _float32(threshold)
    radius = max(1, round(max(h, w) * DENSITY_SHARE / 2))
    density = box_blur(strokes.reshape(count, h, w).astype(np.uint8) * 255, radius).reshape(count, n).astype(np.float32)
    dense = density >= _float32(DENSITY_FLOOR * density.max(axis=1).astype(np.float64))
    mass = np.where(strokes & dense, ink, 0.0).reshape(count, h, w)
    y0, y1 = _mass_ranges(mass.sum(axis=2))
    x0, x1 = _mass_ranges(mass.sum(axis=1))
    y0, x0 = np.maximum(0, y0 - 1), np.maximum(0, x0 - 1)
    y1, x1 = np.minimum(h - 1, y1 + 1), np.minimum(w - 1, x1 + 1)
    background = threshold / 2
    scaled = np.clip((ink - _float32(background)) / _float32(np.maximum(peak - background, 1e-6)), 0, 1) * 255
    full = scaled.astype(np.uint8).reshape(count, h, w)
    # Step 6 (_place) for the whole stack: each crop resized into the box.
    crop_h, crop_w = y1 - y0 + 1, x1 - x0 + 1
    box = max(1, round(size * BOX_SHARE))
    fit = box / np.maximum(crop_h, crop_w)
    new_w = np.maximum(1, np.round(crop_w * fit)).astype(np.intp)
    new_h = np.maximum(1, np.round(crop_h * fit)).astype(np.intp)
    glyphs = resize_crops(full, y0, x0, crop_h, crop_w, new_h, new_w, box, resize).astype(np.float32)
    top_ink = glyphs.max(axis=(1, 2))
    faded = (top_ink > 0) & (top_ink < 255)
    glyphs[faded] *= (np.float32(255) / top_ink[faded])[:, None, None]
    # Centre of mass: the sums weighted by row and column are exact in float64 (pixels are 0 or at
    # least 1, float32, times indices under 64), so any order gives layout's values; the plain
    # total is a float32 sum, the same as layout's where the pixels are whole numbers (below 2**24),
    # and summed image by image in layout's shape where they were stretched.
    totals = glyphs.sum(axis=(1, 2), dtype=np.float64).astype(np.float32)
    for i in np.flatnonzero(faded):
        totals[i] = glyphs[i, : new_h[i], : new_w[i]].copy().sum()
    weighted_y = glyphs.sum(axis=2, dtype=np.float64) @ np.arange(box, dtype=np.float64)
    weighted_x = glyphs.sum(axis=1, dtype=np.float64) @ np.arange(box, dtype=np.float64)
    has_ink = totals > 0
    safe = np.where(has_ink, totals, 1).astype(np.float64)
    com_y = np.where(has_ink, weighted_y / safe, (new_h - 1) / 2)
    com_x = np.where(has_ink, weighted_x / safe, (new_w - 1) / 2)
    top = np.minimum(np.maximum(np.round((size - 1) / 2 - com_y), 0), size - new_h).astype(np.intp)
    left = np.minimum(np.maximum(np.round((size - 1) / 2 - com_x), 0), size - new_w).astype(np.intp)
    # Each glyph moved to its place as a product with 0/1 shift matrices (exact: one term per pixel).
    frame_rows, box_rows = np.arange(size)[None, :, None], np.arange(box)[None, None, :]
    shift_y = ((frame_rows - top[:, None, None] == box_rows) & (box_rows < new_h[:, None, None])).astype(np.float32)
    shift_x = ((frame_rows - left[:, None, None] == box_rows) & (box_rows < new_w[:, None, None])).astype(np.float32)
    placed = np.matmul(np.matmul(shift_y, glyphs), shift_x.transpose(0, 2, 1))
    out[:] = np.clip(np.round(placed), 0, 255).astype(np.uint8)
    inks = ink.reshape(count, h, w)
    for i in np.flatnonzero(peak < MIN_CONTRAST):  # a blank or flat image: nothing to lay out
        out[i] = np.asarray(Image.fromarray(inks[i].astype(np.uint8), mode="L").resize((size, size), resize), dtype=np.uint8)
    return out
