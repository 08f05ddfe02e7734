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

    Inputs are normalised images whose background is ``fill`` (-1 for MNIST's black).
    """

    def __init__(self, degrees: float = 10.0, translate_px: float = 2.0, scale: tuple[float, float] = (0.9, 1.1), fill: float = -1.0) -> None:
        self.degrees, self.translate_px, self.scale, self.fill = degrees, translate_px, scale, fill

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
        return F.grid_sample(x - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + self.fill
