"""Synthetic outliers for outlier exposure: never CIFAR-10, never an evaluation set.

The model is judged on unknowns nobody has seen, so the outliers are generic rather than
tuned to one data set: smooth random fields and textures (natural-image statistics),
gratings and shapes, noise, inverted and pixel-shuffled digits, and (optionally) crops of
scikit-learn's two bundled sample photographs. All of it is generated per batch, in
normalised units, on the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("smooth", "texture", "grating", "shapes", "silhouette", "strokes", "noise", "inverted", "shuffled", "photo")


def photo_crop_pool(n: int = 20_000, seed: int = 1234) -> np.ndarray:
    """Random 28x28 grayscale crops of the bundled sample photos (uint8), with flips and rotations."""
    from osr_train.data.digits import sample_photo_crops

    crops = sample_photo_crops(n, seed).images
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 4, n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(crops)
    for i in range(n):
        c = np.rot90(crops[i], int(k[i]))
        out[i] = c[:, ::-1] if flip[i] else c
    return out


class OutlierGenerator:
    """Makes batches of outliers ``(B, 1, 28, 28)`` in the normalised [-1, 1] range."""

    def __init__(self, known_images: torch.Tensor, *, use_photos: bool = True, seed: int = 0, size: int = 28) -> None:
        self.known = known_images  # uint8 (N, 28, 28) on the device, for inverted/shuffled digits
        self.size = size
        self.gen = torch.Generator().manual_seed(seed)
        self.kinds = [k for k in KINDS if use_photos or k != "photo"]
        self.photos = torch.from_numpy(photo_crop_pool(seed=seed + 1)).to(known_images.device) if use_photos else None

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen)

    def _contrast(self, x: torch.Tensor) -> torch.Tensor:
        """Stretch each image to a random intensity window inside [-1, 1]."""
        n = len(x)
        flat = x.flatten(1)
        lo, hi = flat.min(1).values.view(n, 1, 1, 1), flat.max(1).values.view(n, 1, 1, 1)
        x = (x - lo) / (hi - lo + 1e-6)
        a = self._rand(n, 1, 1, 1) * 1.2 - 1.0  # low end in [-1, 0.2]
        b = a + (1 - a) * (0.3 + 0.7 * self._rand(n, 1, 1, 1))
        return a + x * (b - a)

    def smooth(self, n: int) -> torch.Tensor:
        """Low-frequency random fields: upsampled coarse noise at a random scale."""
        out = torch.empty(n, 1, self.size, self.size)
        cells = torch.randint(2, 15, (n,), generator=self.gen)
        for c in cells.unique():
            idx = (cells == c).nonzero().flatten()
            coarse = torch.randn(len(idx), 1, int(c), int(c), generator=self.gen)
            out[idx] = F.interpolate(coarse, size=self.size, mode="bicubic", align_corners=False)
        return self._contrast(out)

    def texture(self, n: int) -> torch.Tensor:
        """1/f-like noise: a sum of octaves, like the clutter of natural images."""
        out = torch.zeros(n, 1, self.size, self.size)
        slope = 0.5 + self._rand(n, 1, 1, 1) * 1.5
        for octave, cells in enumerate((2, 4, 7, 14, 28)):
            layer = torch.randn(n, 1, cells, cells, generator=self.gen)
            out += F.interpolate(layer, size=self.size, mode="bilinear", align_corners=False) * (0.5 ** (octave * slope))
        return self._contrast(out)

    def grating(self, n: int) -> torch.Tensor:
        """Sinusoidal or square-wave stripes at a random angle and frequency."""
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, self.size), torch.linspace(-1, 1, self.size), indexing="ij")
        angle = self._rand(n, 1, 1) * math.pi
        freq = 1 + self._rand(n, 1, 1) * 8
        phase = self._rand(n, 1, 1) * 2 * math.pi
        wave = torch.sin((xs * torch.cos(angle) + ys * torch.sin(angle)) * freq * math.pi + phase)
        square = self._rand(n, 1, 1) < 0.5
        wave = torch.where(square, torch.sign(wave), wave)
        return self._contrast(wave.unsqueeze(1))

    def shapes(self, n: int) -> torch.Tensor:
        """Filled rectangles and ellipses on a gradient background."""
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, self.size), torch.linspace(-1, 1, self.size), indexing="ij")
        g = self._rand(n, 2, 1, 1) * 2 - 1
        img = g[:, 0] * xs + g[:, 1] * ys
        for _ in range(3):
            cx, cy, rx, ry, v = (self._rand(n, 1, 1) for _ in range(5))
            cx, cy = cx * 2 - 1, cy * 2 - 1
            rx, ry = 0.2 + rx * 0.8, 0.2 + ry * 0.8
            ellipse = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
            rect = ((xs - cx).abs() <= rx) & ((ys - cy).abs() <= ry)
            mask = torch.where(self._rand(n, 1, 1) < 0.5, ellipse, rect)
            img = torch.where(mask, v * 4 - 2, img)
        return self._contrast(img.unsqueeze(1))

    def silhouette(self, n: int) -> torch.Tensor:
        """A filled random polygon on black, like a centred object photographed on a plain background."""
        from PIL import Image, ImageDraw

        out = np.zeros((n, self.size, self.size), dtype=np.float32)
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=self.gen)))
        for i in range(n):
            img = Image.new("L", (self.size, self.size), 0)
            k = int(rng.integers(4, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, k))
            radii = rng.uniform(7, 13, k)
            cx, cy = rng.uniform(11, 17, 2)
            points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii)]
            ImageDraw.Draw(img).polygon(points, fill=int(rng.integers(90, 256)))
            out[i] = np.asarray(img, dtype=np.float32)
        x = torch.from_numpy(out).unsqueeze(1) / 127.5 - 1
        texture = self.texture(n) * 0.25 * (x > -1)
        return (x + texture).clamp(-1, 1)

    def strokes(self, n: int) -> torch.Tensor:
        """Random pen strokes (2-4 curves, MNIST-like width): handwriting that is no digit."""
        from PIL import Image, ImageDraw

        out = np.zeros((n, self.size, self.size), dtype=np.float32)
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=self.gen)))
        t = np.linspace(0, 1, 12)[:, None]
        for i in range(n):
            img = Image.new("L", (56, 56), 0)  # drawn at 2x, then downsampled: smooth edges
            draw = ImageDraw.Draw(img)
            for _ in range(int(rng.integers(2, 5))):
                p0, p1, p2, p3 = rng.uniform(8, 48, (4, 2))
                curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
                draw.line([tuple(p) for p in curve], fill=255, width=int(rng.integers(3, 8)), joint="curve")
            out[i] = np.asarray(img.resize((self.size, self.size), Image.Resampling.BILINEAR), dtype=np.float32)
        return torch.from_numpy(out).unsqueeze(1) / 127.5 - 1

    def noise(self, n: int) -> torch.Tensor:
        """Uniform or Gaussian pixel noise, sometimes lightly blurred."""
        x = torch.where(self._rand(n, 1, 1, 1) < 0.5, self._rand(n, 1, self.size, self.size), torch.randn(n, 1, self.size, self.size, generator=self.gen))
        blurred = F.avg_pool2d(x, 3, stride=1, padding=1)
        return self._contrast(torch.where(self._rand(n, 1, 1, 1) < 0.5, blurred, x))

    def _digits(self, n: int) -> torch.Tensor:
        idx = torch.randint(0, len(self.known), (n,), generator=self.gen).to(self.known.device)
        return self.known[idx].float().cpu().unsqueeze(1) / 127.5 - 1

    def inverted(self, n: int) -> torch.Tensor:
        """Digits with light background and dark ink."""
        return -self._digits(n)

    def shuffled(self, n: int) -> torch.Tensor:
        """Digits whose 4x4 blocks are shuffled: digit ink statistics, no digit shape."""
        x = self._digits(n)
        blocks = F.unfold(x, kernel_size=4, stride=4)  # (n, 16, 49)
        perm = torch.argsort(self._rand(n, blocks.shape[2]), dim=1)
        blocks = torch.gather(blocks, 2, perm.unsqueeze(1).expand_as(blocks))
        return F.fold(blocks, output_size=self.size, kernel_size=4, stride=4)

    def photo(self, n: int) -> torch.Tensor:
        assert self.photos is not None
        idx = torch.randint(0, len(self.photos), (n,), generator=self.gen).to(self.photos.device)
        return self._contrast(self.photos[idx].float().cpu().unsqueeze(1) / 127.5 - 1)

    def __call__(self, n: int) -> torch.Tensor:
        """``n`` outliers, a random mix of the kinds, shuffled."""
        which = torch.randint(0, len(self.kinds), (n,), generator=self.gen)
        out = torch.empty(n, 1, self.size, self.size)
        for k, kind in enumerate(self.kinds):
            idx = (which == k).nonzero().flatten()
            if len(idx):
                out[idx] = getattr(self, kind)(len(idx))
        return out.to(self.known.device)
