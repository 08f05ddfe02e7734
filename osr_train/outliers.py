"""Synthetic outliers for outlier exposure: never CIFAR-10, never an evaluation set.

The model is judged on unknowns nobody has seen, so the outliers are generic rather than
tuned to one data set: smooth random fields and textures (natural-image statistics),
gratings and shapes, noise, inverted and pixel-shuffled digits, the near unknowns drawn with pen
strokes from the Hershey vector fonts (glyphs.py: Latin letters, 4.5 times as often as each
texture kind; kana, kanji and symbols, and made-up characters joined from pieces of two glyphs,
twice as often), letters of 48 other scripts from outline fonts when asked (script_glyphs.py), and (optionally) crops of scikit-learn's two bundled sample
photographs. The generator works in its own pixel scale, -1 black to +1 white, and hands out uint8 images of the model's pixel shape, which then go
through the preprocessing contract's normalisation like any digit. For colour inputs the
grey patterns are tinted or stacked per channel; digits and photos keep their own colours.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from osr_infer.preprocess import PREPROCESSING, PreprocessContract

KINDS = ("smooth", "texture", "grating", "shapes", "silhouette", "strokes", "glyphs", "symbols", "pieces", "scripts", "noise",
         "inverted", "shuffled", "photo")
#: How often each kind is drawn, relative to the others (1): the near unknowns more often. Symbols
#: and made-up characters at 2 raised the AUROC of all nine near-OOD sets of tools/make_near_ood.py
#: by 0.1-0.7 points, but took the Latin letters' share of the mix from 25 % to 19 %, and fewer
#: rendered letters were rejected at the threshold (88.8 % against 93.1 %); Latin glyphs at 4.5 keep
#: their share (26 %): 91.4 and 93.0 % on two seeds (docs/research/2026-11-27-near-ood-scripts.md).
KIND_WEIGHTS = {"glyphs": 4.5, "symbols": 2.0, "pieces": 2.0}
#: Glyphs are drawn once into a pool of this many, then picked at random.
GLYPH_POOL = 12_000


def photo_crop_pool(contract: PreprocessContract, n: int = 20_000, seed: int = 1234) -> np.ndarray:
    """Random crops of the bundled sample photos through ``contract`` (uint8), with flips and rotations."""
    from osr_infer.data.digits import sample_photo_crops

    crops = sample_photo_crops(n, seed, contract).images
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 4, n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(crops)
    for i in range(n):
        c = np.rot90(crops[i], int(k[i]))
        out[i] = c[:, ::-1] if flip[i] else c
    return out


def to_channels_first(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float ``(N, C, H, W)`` in the generator's [-1, 1]."""
    x = pixels.float().cpu() / 127.5 - 1
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


class OutlierGenerator:
    """Makes batches of outliers as uint8 images of the contract's pixel shape."""

    def __init__(self, known_images: torch.Tensor, contract: PreprocessContract, *, use_photos: bool = True, seed: int = 0,
                 class_names: tuple[str, ...] = (), script_weight: float = 0.0) -> None:
        self.known = known_images  # uint8 (N, *pixel_shape) on the device, for inverted/shuffled digits
        self.contract = contract
        self.size = contract.size
        self.channels = contract.channels
        self.scale = contract.size / PREPROCESSING.size  # the shapes were designed on the default 28x28 frame
        self.gen = torch.Generator().manual_seed(seed)
        # The layout step's polarity decision turns an inverted digit back into a digit: with it,
        # inverted digits are no outliers.
        self.kinds = [k for k in KINDS if (use_photos or k != "photo") and not (contract.layout and k == "inverted")]
        # Laying out a photo crop costs milliseconds (it is searched for ink, lines and pieces): fewer
        # crops then, each seen in 8 orientations.
        n_photos = 6_000 if contract.layout else 20_000
        self.photos = torch.from_numpy(photo_crop_pool(contract, n_photos, seed=seed + 1)) if use_photos else None
        from osr_train.glyphs import glyph_characters, render_glyphs, render_pieces, render_symbols

        characters = glyph_characters(class_names)
        self.kinds = [k for k in self.kinds if characters or k not in ("glyphs", "symbols", "pieces")]
        # Classes that are characters of another script (a kana reader): its own letters could be among
        # the symbol fonts' glyphs, which name no Unicode character to compare with, so none is drawn.
        if any(len(name) == 1 and not name.isascii() for name in class_names):
            self.kinds = [k for k in self.kinds if k not in ("symbols", "pieces", "scripts")]
        if script_weight <= 0:  # letters of other scripts: only when the recipe or --script-outliers asks
            self.kinds = [k for k in self.kinds if k != "scripts"]
        n = GLYPH_POOL if characters else 0
        self.glyph_pool = torch.from_numpy(render_glyphs(n, self.size, np.random.default_rng(seed + 2), characters))
        n_symbols = n if "symbols" in self.kinds else 0  # the pieces are made of symbols too: both or neither
        self.symbol_pool = torch.from_numpy(render_symbols(n_symbols, self.size, np.random.default_rng(seed + 3)))
        self.piece_pool = torch.from_numpy(render_pieces(n_symbols, self.size, np.random.default_rng(seed + 4), characters))
        from osr_train.script_glyphs import render_scripts

        n_scripts = GLYPH_POOL if "scripts" in self.kinds else 0
        self.script_pool = torch.from_numpy(render_scripts(n_scripts, self.size, np.random.default_rng(seed + 5)))
        weights = {**KIND_WEIGHTS, "scripts": script_weight}
        self.weights = torch.tensor([weights.get(k, 1.0) for k in self.kinds])

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
        octaves = sorted({max(2, round(self.size * f)) for f in (1 / 14, 1 / 7, 1 / 4, 1 / 2, 1)})  # 2..28 at 28
        for octave, cells in enumerate(octaves):
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
            radii = rng.uniform(7, 13, k) * self.scale
            cx, cy = rng.uniform(11, 17, 2) * self.scale
            points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)]
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
            img = Image.new("L", (2 * self.size, 2 * self.size), 0)  # drawn at 2x, then downsampled: smooth edges
            draw = ImageDraw.Draw(img)
            for _ in range(int(rng.integers(2, 5))):
                p0, p1, p2, p3 = rng.uniform(8, 48, (4, 2)) * self.scale
                curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
                width = max(1, round(int(rng.integers(3, 8)) * self.scale))
                draw.line([tuple(p) for p in curve], fill=255, width=width, joint="curve")
            out[i] = np.asarray(img.resize((self.size, self.size), Image.Resampling.BILINEAR), dtype=np.float32)
        return torch.from_numpy(out).unsqueeze(1) / 127.5 - 1

    def _from_pool(self, pool: torch.Tensor, n: int) -> torch.Tensor:
        idx = torch.randint(0, len(pool), (n,), generator=self.gen)
        return pool[idx].float().unsqueeze(1) / 127.5 - 1

    def glyphs(self, n: int) -> torch.Tensor:
        """Latin letters and symbols drawn with pen strokes (see glyphs.py): the near unknowns."""
        return self._from_pool(self.glyph_pool, n)

    def symbols(self, n: int) -> torch.Tensor:
        """Kana, kanji and Hershey's symbols drawn with pen strokes: scripts that are not Latin."""
        return self._from_pool(self.symbol_pool, n)

    def pieces(self, n: int) -> torch.Tensor:
        """Made-up characters, pieces of two glyphs joined: handwriting of no script."""
        return self._from_pool(self.piece_pool, n)

    def scripts(self, n: int) -> torch.Tensor:
        """Letters of other scripts from outline fonts (see script_glyphs.py): scripts no evaluation set uses."""
        return self._from_pool(self.script_pool, n)

    def noise(self, n: int) -> torch.Tensor:
        """Uniform or Gaussian pixel noise, sometimes lightly blurred."""
        x = torch.where(self._rand(n, 1, 1, 1) < 0.5, self._rand(n, 1, self.size, self.size), torch.randn(n, 1, self.size, self.size, generator=self.gen))
        blurred = F.avg_pool2d(x, 3, stride=1, padding=1)
        return self._contrast(torch.where(self._rand(n, 1, 1, 1) < 0.5, blurred, x))

    def _digits(self, n: int) -> torch.Tensor:
        idx = torch.randint(0, len(self.known), (n,), generator=self.gen).to(self.known.device)
        return to_channels_first(self.known[idx])

    def inverted(self, n: int) -> torch.Tensor:
        """Digits with light background and dark ink."""
        return -self._digits(n)

    def shuffled(self, n: int) -> torch.Tensor:
        """Digits whose 4x4 blocks are shuffled: digit ink statistics, no digit shape."""
        x = self._digits(n)
        side = self.size - self.size % 4
        blocks = F.unfold(x[..., :side, :side], kernel_size=4, stride=4)  # (n, C*16, blocks)
        perm = torch.argsort(self._rand(n, blocks.shape[2]), dim=1)
        blocks = torch.gather(blocks, 2, perm.unsqueeze(1).expand_as(blocks))
        out = x.clone()
        out[..., :side, :side] = F.fold(blocks, output_size=side, kernel_size=4, stride=4)
        return out

    def photo(self, n: int) -> torch.Tensor:
        assert self.photos is not None
        idx = torch.randint(0, len(self.photos), (n,), generator=self.gen)
        return self._contrast(to_channels_first(self.photos[idx]))

    def _colour(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """Grey patterns to the model's channels: tinted (random gain per channel), or for half
        of them one independent pattern of the same kind per channel."""
        if x.shape[1] == self.channels:
            return x
        n = len(x)
        gain = 0.4 + 0.6 * self._rand(n, self.channels, 1, 1)
        tinted = (x + 1) * gain - 1
        stacked = torch.cat([x] + [getattr(self, kind)(n)[:, :1] for _ in range(self.channels - 1)], 1)
        return torch.where(self._rand(n, 1, 1, 1) < 0.5, tinted, stacked)

    def __call__(self, n: int) -> torch.Tensor:
        """``n`` outliers, a random mix of the kinds, shuffled: uint8 ``(n, *pixel_shape)`` on the device."""
        which = torch.multinomial(self.weights, n, replacement=True, generator=self.gen)
        out = torch.empty(n, self.channels, self.size, self.size)
        for k, kind in enumerate(self.kinds):
            idx = (which == k).nonzero().flatten()
            if len(idx):
                out[idx] = self._colour(getattr(self, kind)(len(idx)), kind)
        pixels = ((out + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        pixels = pixels.squeeze(1) if self.channels == 1 else pixels.permute(0, 2, 3, 1).contiguous()
        return pixels.to(self.known.device)
