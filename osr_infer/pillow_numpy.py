"""Pillow's operations on stacks of same-size images, in numpy, bit for bit.

The layout step and the resize of small images run on whole stacks (osr_infer/layout.py:
layout_small; `resize_stack`) instead of one PIL call per image, where Python's overhead
per call costs more than the pixels. Each function here computes what Pillow computes, in its
fixed-point arithmetic and order of operations (Pillow's ``libImaging/BoxBlur.c`` and
``Resample.c``), and tests/test_layout_stack.py compares them with Pillow itself.
"""

from __future__ import annotations

import functools

from typing import Any

import numpy as np
from PIL import Image


def box_blur(stack: np.ndarray, radius: int) -> np.ndarray:
    """Pillow's ``ImageFilter.BoxBlur(radius)`` (an integer radius) on a ``(n, h, w)`` uint8
    stack, bit for bit: a horizontal then a vertical pass, each a clamped-edge window sum in
    Pillow's 8.24 fixed point and unsigned 32-bit arithmetic (``ImagingLineBoxBlur8``),
    rounded back to uint8."""
    width = 2 * radius + 1
    ww = int((1 << 24) / float(width))
    fw = ((1 << 24) - width * ww) // 2
    # Without the fractional edge weight (every radius up to 4), a pass is a table of the window sum.
    table = ((np.arange(255 * width + 1, dtype=np.uint64) * ww + (1 << 23)) >> 24).astype(np.uint8) if fw == 0 else None
    out = stack
    for transposed in (False, True):
        lines = out.transpose(0, 2, 1) if transposed else out
        length = lines.shape[2]
        padded = np.concatenate(
            [np.repeat(lines[:, :, :1], radius + 1, axis=2), lines, np.repeat(lines[:, :, -1:], radius + 1, axis=2)],
            axis=2).astype(np.uint32)
        window = padded[:, :, 1 : 1 + length].copy()
        for k in range(2, width + 1):
            window += padded[:, :, k : k + length]
        if table is not None:
            blurred = table[window]
        else:
            far = padded[:, :, :length] + padded[:, :, width + 1 : width + 1 + length]
            blurred = ((window * np.uint32(ww) + far * np.uint32(fw) + np.uint32(1 << 23)) >> np.uint32(24)).astype(np.uint8)
        out = blurred.transpose(0, 2, 1) if transposed else blurred
    return np.ascontiguousarray(out)


#: Crops (and their images) are at most this many pixels a side (the layout step's small images).
MAX_CROP_SIDE = 64
#: Pillow's fixed-point precision for 8-bit resampling (Resample.c: PRECISION_BITS).
_PRECISION_BITS = 32 - 8 - 2


@functools.lru_cache(maxsize=4096)
def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's bilinear resampling of one axis from ``in_size`` to ``out_size`` pixels as an
    ``(out_size, in_size)`` matrix of its fixed-point weights (``precompute_coeffs`` and
    ``normalize_coeffs_8bpc``, the same double arithmetic in the same order)."""
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ss = 1.0 / filterscale
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = []
        for x in range(xmax):
            distance = abs((x + xmin - center + 0.5) * ss)
            weights.append(1.0 - distance if distance < 1.0 else 0.0)
        total = 0.0
        for weight in weights:
            total += weight
        for x, weight in enumerate(weights):
            if total != 0.0:
                weight /= total
            matrix[xx, xmin + x] = int(0.5 + weight * (1 << _PRECISION_BITS))
    return matrix


class _WeightTable:
    """Every bilinear weight matrix from up to ``inputs`` pixels to up to ``box`` pixels, zero-padded
    to ``(box, inputs)`` and indexed ``[in_size, out_size]``: a stack of resizes gathers its
    matrices in one indexing step. Filled as sizes are met."""

    def __init__(self, inputs: int, box: int) -> None:
        self.weights = np.zeros((inputs + 1, box + 1, box, inputs))
        self.filled = np.zeros((inputs + 1, box + 1), dtype=bool)

    def __getitem__(self, key: tuple[Any, ...]) -> np.ndarray:
        in_sizes, out_sizes = key[0], key[1]
        missing = ~self.filled[in_sizes, out_sizes]
        if missing.any():
            for in_size, out_size in set(zip(in_sizes[missing].tolist(), out_sizes[missing].tolist(), strict=True)):
                self.weights[in_size, out_size, :out_size, :in_size] = bilinear_weights(in_size, out_size)
                self.filled[in_size, out_size] = True
        weights: np.ndarray = self.weights[key]
        return weights


@functools.lru_cache(maxsize=8)
def _weight_table(inputs: int, box: int) -> _WeightTable:
    return _WeightTable(inputs, box)


def vertical_first(h: np.ndarray, w: np.ndarray, new_h: np.ndarray, new_w: np.ndarray) -> np.ndarray:
    """Which resizes Pillow runs vertical pass first (its passes round to 8 bits in between, so
    the order shows in the pixels). Pillow 13 does so where the height shrinks by more than
    twice the width's change; earlier versions always go horizontal first."""
    if pass_order() == "horizontal":
        return np.zeros(len(h), dtype=bool)
    tall: np.ndarray = ((h - new_h) > 0) & ((h - new_h) > (w - new_w) * 2)
    return tall


@functools.lru_cache(maxsize=1)
def pass_order() -> str:
    """The installed Pillow's order of resampling passes, found on a fixed probe whose two
    orders differ (`probe_orders`): "pillow13" or "horizontal"; "pil" where neither
    matches, and then every resize goes through Pillow itself."""
    expected, candidates = probe_orders()
    return next((order for order, got in candidates.items() if np.array_equal(got, expected)), "pil")


def probe_orders() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pillow's bilinear resize of a fixed 32x10 probe to 6x20, and what each pass order
    computes for it (the two differ in 27 pixels)."""
    probe = np.random.default_rng(947).integers(0, 256, (32, 10), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(probe, mode="L").resize((6, 20), Image.Resampling.BILINEAR))
    zero, candidates = np.array([0]), {}
    for order in ("pillow13", "horizontal"):
        candidates[order] = _resample(probe[None], zero, zero, np.array([32]), np.array([10]), np.array([20]), np.array([6]), 20,
                                      np.array([order == "pillow13"]))[0, :20, :6]
    return expected, candidates


def _resample(images: np.ndarray, top: np.ndarray, left: np.ndarray, heights: np.ndarray, widths: np.ndarray,
              new_h: np.ndarray, new_w: np.ndarray, box: int, vertical_pass_first: np.ndarray) -> np.ndarray:
    """The two bilinear passes over each crop (``images[i, top:top+heights, left:left+widths]``),
    each rounded to 8 bits, in the given order per image. The crop is never cut out: each
    image's weight matrices are zero outside it, which adds exact zeros."""
    count, height, width = images.shape
    table = _weight_table(MAX_CROP_SIDE, box)
    columns = np.arange(width)[None, :] - left[:, None]  # (count, width): the crop's column of each image column
    rows = np.arange(height)[None, :] - top[:, None]
    horizontal = table[widths[:, None], new_w[:, None], :, np.clip(columns, 0, MAX_CROP_SIDE - 1)]  # (count, width, box)
    horizontal *= ((columns >= 0) & (columns < widths[:, None]))[:, :, None]
    vertical = table[heights[:, None], new_h[:, None], :, np.clip(rows, 0, MAX_CROP_SIDE - 1)].transpose(0, 2, 1)
    vertical *= ((rows >= 0) & (rows < heights[:, None]))[:, None, :]
    pixels = images.astype(np.float64)
    out = np.zeros((count, box, box), dtype=np.uint8)
    first = np.flatnonzero(~vertical_pass_first)
    if len(first):
        out[first] = _rounded(np.matmul(vertical[first], _rounded(np.matmul(pixels[first], horizontal[first]))))
    second = np.flatnonzero(vertical_pass_first)
    if len(second):
        out[second] = _rounded(np.matmul(_rounded(np.matmul(vertical[second], pixels[second])), horizontal[second]))
    return out


def resize_crops(images: np.ndarray, top: np.ndarray, left: np.ndarray, heights: np.ndarray, widths: np.ndarray,
                 new_h: np.ndarray, new_w: np.ndarray, box: int,
                 resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Pillow's ``resize`` of each crop (``images[i, top:top+heights, left:left+widths]``) to
    ``new_h[i] x new_w[i]``, bit for bit, in a ``(n, box, box)`` uint8 stack (zero beyond each
    result). Bilinear: two passes over the stack, each rounded to 8 bits, in Pillow's order; the
    products of 8-bit pixels and 22-bit weights and their sums are integers below 2**53, so
    float64 matrix products compute them exactly. Other filters (or a Pillow whose pass order is
    unknown): Pillow itself, crop by crop."""
    if resample == Image.Resampling.BILINEAR and pass_order() != "pil":
        return _resample(images, top, left, heights, widths, new_h, new_w, box, vertical_first(heights, widths, new_h, new_w))
    out = np.zeros((len(images), box, box), dtype=np.uint8)
    for i in range(len(images)):
        crop = np.ascontiguousarray(images[i, top[i] : top[i] + heights[i], left[i] : left[i] + widths[i]])
        out[i, : new_h[i], : new_w[i]] = np.asarray(Image.fromarray(crop, mode="L").resize((int(new_w[i]), int(new_h[i])), resample))
    return out


def resize_stack(stack: np.ndarray, size: int) -> np.ndarray:
    """Pillow's bilinear ``resize`` to ``size x size`` of every image of a ``(n, h, w)`` or
    ``(n, h, w, 3)`` uint8 stack, bit for bit: every image has the same two weight matrices."""
    count, height, width = stack.shape[:3]
    if (height, width) == (size, size):
        return stack.copy()
    if pass_order() == "pil":
        mode = "L" if stack.ndim == 3 else "RGB"
        return np.stack([np.asarray(Image.fromarray(image, mode=mode).resize((size, size), Image.Resampling.BILINEAR))
                         for image in stack])
    planes = stack if stack.ndim == 3 else stack.transpose(0, 3, 1, 2).reshape(count * 3, height, width)
    horizontal, vertical = bilinear_weights(width, size).T, bilinear_weights(height, size)
    pixels = planes.astype(np.float64)
    if vertical_first(np.array([height]), np.array([width]), np.array([size]), np.array([size]))[0]:
        out = _rounded(_rounded(vertical @ pixels) @ horizontal)
    else:
        out = _rounded(vertical @ _rounded(pixels @ horizontal))
    out = out.astype(np.uint8)
    return out if stack.ndim == 3 else out.reshape(count, 3, size, size).transpose(0, 2, 3, 1).copy()


def _rounded(values: np.ndarray) -> np.ndarray:
    """A pass's sums back to 8 bits as Pillow rounds them (``clip8``), as float64 for the next pass."""
    rounded: np.ndarray = np.clip((values + float(1 << (_PRECISION_BITS - 1))).astype(np.int64) >> _PRECISION_BITS, 0, 255).astype(np.float64)
    return rounded
