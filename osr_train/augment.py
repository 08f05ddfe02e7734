"""Batch augmentation on the device: small random affine warps of normalised digits.

Done with one ``affine_grid``/``grid_sample`` per batch, so it costs a fraction of the
forward pass and never touches PIL in the training loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class RandomAffine:
    """Rotation (degrees), translation (pixels), isotropic scale, applied per sample.

    Inputs are normalised images ``(N, C, H, W)`` whose background is ``fill`` per channel (the
    contract's normalised black: -1 for MNIST). ``translate_px`` is in 28-pixel units, scaled by
    ``scale_px`` for other input sizes.
    """

    def __init__(self, degrees: float = 10.0, translate_px: float = 2.0, scale: tuple[float, float] = (0.9, 1.1),
                 fill: tuple[float, ...] = (-1.0,), scale_px: float = 1.0) -> None:
        self.degrees, self.translate_px, self.scale = degrees, translate_px * scale_px, scale
        self.fill = torch.tensor(fill, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        u = torch.rand(n, 4, generator=generator).to(x.device)
        angle = (u[:, 0] * 2 - 1) * math.radians(self.degrees)
        scale = self.scale[0] + u[:, 1] * (self.scale[1] - self.scale[0])
        tx = (u[:, 2] * 2 - 1) * self.translate_px * 2 / w
        ty = (u[:, 3] * 2 - 1) * self.translate_px * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # grid_sample pads with zeros; shift so the padding equals the background value.
        fill = self.fill.to(x.device)
        return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill

