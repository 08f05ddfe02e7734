"""Letters of other scripts as outliers: a bank of glyph masks rendered once from outline fonts,
drawn at training time with a random affine warp and a dilated stroke weight.

The Hershey fonts of `osr_train.glyphs` carry Latin, kana, kanji and symbols only; a digit
reader also meets letters of every other script. The bank (``script_glyphs.npz``, shipped with the
package, so training needs no font installed) holds the letters of `TRAINING_SCRIPTS`,
rendered from Debian's ``fonts-noto-core``. It is rebuilt with

    python -m osr_train.script_glyphs build      # needs fonts-noto-core and fonts-dejavu

Kept apart from the near-OOD evaluation sets (``tools/make_near_ood.py``): none of their
scripts (Greek, Cyrillic, Hebrew, Arabic, Devanagari, Bengali, Thai, Georgian, Armenian, Ethiopic)
is in the bank, nor any script that descends from one of them or shares its look (Coptic, Gothic,
Old Italic, Glagolitic, Old Permic and the Anatolian alphabets; the Aramaic family: Syriac,
Samaritan, Mandaic, Nabataean, ...; the Devanagari-like and Bengali-like North Indian scripts;
Lao and the Tai scripts; Caucasian Albanian), and the construction differs: a glyph is drawn from
its bank mask with an affine warp and dilations, never a blur-and-threshold or an
elastic warp.

Letters written like a digit are left out when the bank is built (see `build`): those whose
rendering lies as near to a digit (of a reference outline font, or pen-drawn from a Hershey font) as
digits lie to each other across fonts, and those an audit with the default model found.
"""

from __future__ import annotations

import argparse
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

BANK_PATH = Path(__file__).with_name("script_glyphs.npz")
#: Side of a bank mask; the ink is fitted into `BANK_INK` pixels of it, aspect kept.
BANK_SIDE, BANK_INK = 32, 28
#: Script (the prefix of its characters' Unicode names) -> Noto fonts that carry it.
TRAINING_SCRIPTS: dict[str, tuple[str, ...]] = {
    "TAMIL": ("NotoSansTamil-Regular.ttf", "NotoSerifTamil-Regular.ttf"),
    "TELUGU": ("NotoSansTelugu-Regular.ttf", "NotoSerifTelugu-Regular.ttf"),
    "KANNADA": ("NotoSansKannada-Regular.ttf", "NotoSerifKannada-Regular.ttf"),
    "MALAYALAM": ("NotoSansMalayalam-Regular.ttf", "NotoSerifMalayalam-Regular.ttf"),
    "SINHALA": ("NotoSansSinhala-Regular.ttf", "NotoSerifSinhala-Regular.ttf"),
    "KHMER": ("NotoSansKhmer-Regular.ttf", "NotoSerifKhmer-Regular.ttf"),
    "MYANMAR": ("NotoSansMyanmar-Regular.ttf", "NotoSerifMyanmar-Regular.ttf"),
    "TIBETAN": ("NotoSerifTibetan-Regular.ttf",),
    "JAVANESE": ("NotoSansJavanese-Regular.ttf",),
    "BALINESE": ("NotoSansBalinese-Regular.ttf",),
    "SUNDANESE": ("NotoSansSundanese-Regular.ttf",),
    "BATAK": ("NotoSansBatak-Regular.ttf",),
    "BUGINESE": ("NotoSansBuginese-Regular.ttf",),
    "CHAM": ("NotoSansCham-Regular.ttf",),
    "LEPCHA": ("NotoSansLepcha-Regular.ttf",),
    "LIMBU": ("NotoSansLimbu-Regular.ttf",),
    "MEETEI MAYEK": ("NotoSansMeeteiMayek-Regular.ttf",),
    "OL CHIKI": ("NotoSansOlChiki-Regular.ttf",),
    "CHEROKEE": ("NotoSansCherokee-Regular.ttf",),
    "CANADIAN SYLLABICS": ("NotoSansCanadianAboriginal-Regular.ttf",),
    "RUNIC": ("NotoSansRunic-Regular.ttf",),
    "TIFINAGH": ("NotoSansTifinagh-Regular.ttf",),
    "VAI": ("NotoSansVai-Regular.ttf",),
    "BAMUM": ("NotoSansBamum-Regular.ttf",),
    "MENDE KIKAKUI": ("NotoSansMendeKikakui-Regular.ttf",),
    "NKO": ("NotoSansNKo-Regular.ttf",),
    "ADLAM": ("NotoSansAdlam-Regular.ttf",),
    "OSAGE": ("NotoSansOsage-Regular.ttf",),
    "DESERET": ("NotoSansDeseret-Regular.ttf",),
    "SHAVIAN": ("NotoSansShavian-Regular.ttf",),
    "YI": ("NotoSansYi-Regular.ttf",),
    "LINEAR B": ("NotoSansLinearB-Regular.ttf",),
    "CYPRIOT": ("NotoSansCypriot-Regular.ttf",),
    "UGARITIC": ("NotoSansUgaritic-Regular.ttf",),
    "OLD PERSIAN": ("NotoSansOldPersian-Regular.ttf",),
    "OLD TURKIC": ("NotoSansOldTurkic-Regular.ttf",),
    "OLD HUNGARIAN": ("NotoSansOldHungarian-Regular.ttf",),
    "PAHAWH HMONG": ("NotoSansPahawhHmong-Regular.ttf",),
    "MIAO": ("NotoSansMiao-Regular.ttf",),
    "BASSA VAH": ("NotoSansBassaVah-Regular.ttf",),
    "WANCHO": ("NotoSansWancho-Regular.ttf",),
    "MEDEFAIDRIN": ("NotoSansMedefaidrin-Regular.ttf",),
    "THAANA": ("NotoSansThaana-Regular.ttf",),
    "KAYAH LI": ("NotoSansKayahLi-Regular.ttf",),
    "SAURASHTRA": ("NotoSansSaurashtra-Regular.ttf",),
    "BRAHMI": ("NotoSansBrahmi-Regular.ttf",),
    "KHAROSHTHI": ("NotoSansKharoshthi-Regular.ttf",),
    "TANGUT": ("NotoSerifTangut-Regular.ttf",),
}
#: At most this many letters of one script: Yi, Tangut and the syllabaries would otherwise be most of the bank.
MAX_PER_SCRIPT = 120
FONT_DIR = Path("/usr/share/fonts/truetype/noto")


def _layout(glyph: Image.Image, side: int, box: int) -> np.ndarray | None:
    """The ink of ``glyph`` fitted into ``box`` pixels (aspect kept), centred by mass in ``side``."""
    bbox = glyph.getbbox()
    if bbox is None:
        return None
    glyph = glyph.crop(bbox)
    scale = box / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.Resampling.LANCZOS)
    ink = np.asarray(glyph, dtype=np.float64)
    ys, xs = np.indices(ink.shape)
    total = max(ink.sum(), 1e-9)
    cy, cx = (ys * ink).sum() / total, (xs * ink).sum() / total
    out = Image.new("L", (side, side), 0)
    out.paste(glyph, (int(round((side - 1) / 2 - cx)), int(round((side - 1) / 2 - cy))))
    return np.asarray(out, dtype=np.uint8)


def _render(char: str, font: ImageFont.FreeTypeFont, weight: int = 0) -> Image.Image:
    """``char`` white on black at 160x160, thickened by ``weight`` 3x3 dilations."""
    image = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(image).text((80, 80), char, fill=255, font=font, anchor="mm")
    for _ in range(weight):
        image = image.filter(ImageFilter.MaxFilter(3))
    return image


def _is_line_or_dot(mask: Image.Image, em: float) -> bool:
    """A dot (far smaller than the font's em) or a straight line: a 1, a dash or a full stop."""
    ink = np.argwhere(np.asarray(mask) > 127).astype(np.float64)
    if len(ink) < 10 or np.ptp(ink, axis=0).max() < 0.25 * em:
        return True
    minor, major = np.linalg.eigvalsh(np.cov(ink.T))
    return float(np.sqrt(max(minor, 0.0) / major)) < 0.2


def candidates() -> list[tuple[str, str, Path]]:
    """``(script, char, font)`` for every letter of `TRAINING_SCRIPTS` that a font draws."""
    from matplotlib.ft2font import FT2Font

    found = []
    for script, names in TRAINING_SCRIPTS.items():
        chars: dict[str, Path] = {}
        for name in names:
            path = FONT_DIR / name
            if not path.is_file():
                raise SystemExit(f"{path} is missing: apt-get install fonts-noto-core")
            for code in sorted(FT2Font(str(path)).get_charmap()):
                char = chr(code)
                if char in chars or not unicodedata.category(char).startswith("L"):
                    continue
                if unicodedata.name(char, "").startswith(script + " "):
                    chars[char] = path
        picked = sorted(chars)
        if len(picked) > MAX_PER_SCRIPT:
            idx = np.linspace(0, len(picked) - 1, MAX_PER_SCRIPT).round().astype(int)
            picked = [picked[i] for i in idx]
        found += [(script, c, chars[c]) for c in picked]
    return found


#: Fonts whose digits and digit-like Latin letters are the references of the lookalike test.
REFERENCE_FONTS = ("noto/NotoSans-Regular.ttf", "noto/NotoSans-Italic.ttf", "noto/NotoSerif-Regular.ttf",
                   "noto/NotoSerif-Italic.ttf", "dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Oblique.ttf",
                   "dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSansMono.ttf", "dejavu/DejaVuSansCondensed.ttf")
#: An accepted letter this near to a reference digit (blurred pixels, see `reference_distance`) is a lookalike.
AUDIT_DISTANCE = 3.0
#: Letters written like a digit, found by an audit (`audit`, ``python -m osr_train.script_glyphs audit``):
#: every letter that passed the pixel test was drawn four times and scored by the default model (seed 0);
#: those it accepted as a digit in two drawings or more and that lie within AUDIT_DISTANCE of a reference
#: digit are left out (192 of the 494 it accepted; looked at, most are shaped like a 2-9, an S, Z, G or B).
AUDITED_LOOKALIKES = frozenset(map(chr, (
    0x0C15, 0x0C34, 0x0C58, 0x0C95, 0x0CA4, 0x0CF1, 0x0D1F, 0x0D31, 0x0DA7, 0x1785, 0x178C, 0x1790,
    0x1791, 0x1793, 0x179A, 0x17B1, 0x17B2, 0x1008, 0x100D, 0x101B, 0x1025, 0x1081, 0x0F64, 0xA988,
    0xA98D, 0x1B11, 0x1B94, 0x1BCA, 0x1C17, 0x1C1A, 0x1C1F, 0x1C23, 0x1C4E, 0x1909, 0x190B, 0x190F,
    0xAAEA, 0xABDC, 0x1C5D, 0x1C64, 0x1C6A, 0x1C6B, 0x1C72, 0x13BE, 0x13C4, 0x13F5, 0x13FD, 0xAB9B,
    0xAB9E, 0x1518, 0x1530, 0x15B2, 0x15DC, 0x15F3, 0x15F9, 0x160B, 0x164C, 0x1652, 0x18C6, 0x16DC,
    0x2D31, 0x2D35, 0x2D52, 0xA50C, 0xA5DB, 0xA5FF, 0xA613, 0xA62B, 0xA6C0, 0xA6E0, 0x16951, 0x16A02,
    0x16A08, 0x1E814, 0x1E873, 0x07D4, 0x07DF, 0x07E5, 0x07F5, 0x1E900, 0x1E903, 0x1E907, 0x1E918, 0x1E919,
    0x1E922, 0x1E925, 0x1E929, 0x1E932, 0x104C7, 0x104EB, 0x104F2, 0x104F4, 0x104F7, 0x10400, 0x10403, 0x10405,
    0x1040D, 0x10413, 0x10416, 0x10423, 0x10428, 0x1042A, 0x10433, 0x10435, 0x1043A, 0x1043E, 0x10445, 0x1046E,
    0x10472, 0x1000D, 0x1002C, 0x100EC, 0x100F8, 0x10811, 0x10821, 0x10825, 0x10C01, 0x10C18, 0x10C1B, 0x10C23,
    0x10C27, 0x10C2D, 0x10C37, 0x10C80, 0x10C9B, 0x10CB2, 0x10CC0, 0x10CC1, 0x10CD3, 0x10CD7, 0x10CD9, 0x10CF2,
    0x16B01, 0x16B2D, 0x16B64, 0x16F02, 0x16F23, 0x16F2C, 0x16F32, 0x16F3B, 0x16F50, 0x16F94, 0x16AD2, 0x16AD8,
    0x16ADD, 0x16AE2, 0x16AE8, 0x1E2C2, 0x1E2C5, 0x1E2D5, 0x1E2D7, 0x1E2E0, 0x1E2E1, 0x1E2E2, 0x1E2E3, 0x1E2E4,
    0x1E2E7, 0x16E48, 0x16E56, 0x16E5B, 0x16E61, 0x16E67, 0x16E70, 0x16E72, 0x16E7F, 0x07B1, 0xA91E, 0xA882,
    0xA88F, 0xA89F, 0xA8A3, 0xA8A6, 0xA8A8, 0x11003, 0x11005, 0x1100D, 0x1100E, 0x11012, 0x11014, 0x11020,
    0x11024, 0x11027, 0x11033, 0x10A00, 0x10A1A, 0x10A1B, 0x10A21, 0x10A2A, 0x10A2F, 0x10A30, 0x10A31, 0x10A33,
)))


def _blurred(images: np.ndarray) -> np.ndarray:
    """Images blurred (sigma 1.5 px) and flattened, in [0, 1]: pixel distances that forgive a stroke's exact place."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(x.astype(np.float32), 1.5) for x in images]).reshape(len(images), -1) / 255


def _nearest(queries: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance of each query row to its nearest reference row, and that row's index."""
    ref_sq = (reference**2).sum(1)
    dist, idx = np.empty(len(queries), dtype=np.float32), np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        d2 = (q**2).sum(1)[:, None] + ref_sq[None, :] - 2 * q @ reference.T
        idx[start:start + chunk] = d2.argmin(1)
        dist[start:start + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return dist, idx


@lru_cache(maxsize=1)
def _references() -> tuple[np.ndarray, float]:
    """Digits and the Latin letters written like one (glyphs.LOOKALIKES), MNIST-style and blurred: in
    `REFERENCE_FONTS` at two stroke weights, and pen-drawn from the 15 Latin Hershey fonts twice (handwriting's
    variety), with the lookalike limit: 1.1 times the 75th percentile of each one's distance to the same character
    in another reference font. No MNIST image is used: the protocol's unknown digits stay unseen."""
    from osr_train.glyphs import FONTS, LOOKALIKES, _pen, _strokes

    chars = sorted(c for c in set("0123456789") | LOOKALIKES if c.isalnum() or c == "$")
    views, labels, fonts = [], [], []
    for k, name in enumerate(REFERENCE_FONTS):
        font = ImageFont.truetype(str(FONT_DIR.parent / name), 96)
        for char in chars:
            for weight in (1, 3):
                view = _layout(_render(char, font, weight), 28, 20)
                if view is not None:
                    views.append(view)
                    labels.append(char)
                    fonts.append(k)
    for k, hershey in enumerate(FONTS, start=len(REFERENCE_FONTS)):
        for char in chars:
            strokes = _strokes(hershey, char)
            for draw in range(2 if strokes else 0):
                pen = _pen(strokes, 96, np.random.default_rng([k, ord(char), draw]))
                view = _layout(Image.fromarray(pen), 28, 20)
                if view is not None:
                    views.append(view)
                    labels.append(char)
                    fonts.append(k)
    refs, ref_chars, ref_fonts = _blurred(np.stack(views)), np.asarray(labels), np.asarray(fonts)
    pairwise = np.sqrt(np.maximum(((refs[:, None] - refs[None]) ** 2).sum(-1), 0))
    same_char = (ref_chars[:, None] == ref_chars[None]) & (ref_fonts[:, None] != ref_fonts[None])
    return refs, 1.1 * float(np.percentile(np.where(same_char, pairwise, np.inf).min(1), 75))


def mnist_views(char: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
    """``char`` MNIST-style (20x20 box in 28x28) at two stroke weights, ``(2, 28, 28)``: what the lookalike tests compare."""
    views = [_layout(_render(char, font, w), 28, 20) for w in (1, 3)]
    if any(view is None for view in views):
        raise ValueError(f"{char!r} draws nothing in {font.getname()}")
    return np.stack([view for view in views if view is not None])


def reference_distance(views: np.ndarray) -> np.ndarray:
    """For ``(n, k, 28, 28)`` views of n characters: each one's distance to the nearest reference digit or
    digit-like letter (blurred pixels, the nearest of its k views)."""
    to_font, _ = _nearest(_blurred(views.reshape(-1, 28, 28)), _references()[0])
    return to_font.reshape(len(views), -1).min(1)


def font_lookalike(views: np.ndarray) -> np.ndarray:
    """For ``(n, k, 28, 28)`` views of n characters: whether one lies as near to a reference font's digit or
    digit-like letter as those characters lie to themselves across fonts."""
    return reference_distance(views) <= _references()[1]


def build(out: Path = BANK_PATH) -> dict[str, object]:
    """Render the bank, leave out dots, lines and letters written like a digit, and save it.

    Written like a digit: a letter whose MNIST-style rendering (at two stroke weights, blurred) lies as near
    to a digit or digit-like Latin letter of a reference font as those characters lie to themselves across
    fonts (`font_lookalike`), or one in `AUDITED_LOOKALIKES`."""
    masks, codes, scripts, views = [], [], [], []
    fonts: dict[Path, ImageFont.FreeTypeFont] = {}
    audited = 0
    for script, char, path in candidates():
        if char in AUDITED_LOOKALIKES:
            audited += 1
            continue
        font = fonts.setdefault(path, ImageFont.truetype(str(path), 96))
        clean = _render(char, font)
        if _is_line_or_dot(clean, 96):
            continue
        mask = _layout(clean, BANK_SIDE, BANK_INK)
        if mask is None:
            continue
        masks.append(mask)
        codes.append(ord(char))
        scripts.append(script)
        views.append(mnist_views(char, font))
    keep = ~font_lookalike(np.stack(views))
    names = sorted(set(scripts))
    np.savez_compressed(
        out,
        masks=np.stack(masks)[keep],
        codepoints=np.asarray(codes, dtype=np.int32)[keep],
        script=np.asarray([names.index(s) for s in scripts], dtype=np.int16)[keep],
        script_names=np.asarray(names),
    )
    left_out = "".join(chr(c) for c, k in zip(codes, keep, strict=True) if not k)
    return {"kept": int(keep.sum()), "digit_like": len(left_out), "audited": audited, "font_limit": _references()[1],
            "left_out": left_out}


@lru_cache(maxsize=1)
def bank() -> np.ndarray:
    """The bank's masks, uint8 ``(n, 32, 32)``."""
    with np.load(BANK_PATH) as data:
        return data["masks"]


def _draw(mask: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """One drawing of a bank mask (see `render_scripts`)."""
    big = 2 * side
    fill = rng.uniform(0.55, 0.85) * big / BANK_INK
    angle = np.radians(rng.uniform(-12, 12))
    shear, aspect = rng.uniform(-0.3, 0.3), rng.uniform(0.8, 1.25)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rotate @ np.array([[aspect, shear], [0.0, 1.0]]) * fill  # mask pixels -> canvas pixels
    inverse = np.linalg.inv(forward)
    offset = np.array([BANK_SIDE / 2, BANK_SIDE / 2]) - inverse @ np.array([big / 2, big / 2])
    image = Image.fromarray(mask).transform((big, big), Image.Transform.AFFINE, (*inverse[0], offset[0], *inverse[1], offset[1]),
                                            Image.Resampling.BILINEAR)
    for _ in range(int(rng.integers(0, 3))):  # the pen's weight: none, one or two dilations
        image = image.filter(ImageFilter.MaxFilter(3))
    ink = np.asarray(image, dtype=np.float32) * (rng.uniform(180, 256) / 255)
    return np.asarray(Image.fromarray(ink.astype(np.uint8)).resize((side, side), Image.Resampling.BOX), dtype=np.uint8)


def render_scripts(n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` letters of other scripts as uint8 ``(n, side, side)``, white on black: a bank mask with a
    random rotation, shear, aspect and size, thickened by none, one or two 3x3 dilations, at a
    random ink level, box-filtered down to ``side`` (the layout step re-fits it)."""
    out = np.empty((n, side, side), dtype=np.uint8)
    if n == 0:
        return out
    masks = bank()
    for i in range(n):
        out[i] = _draw(masks[int(rng.integers(len(masks)))], side, rng)
    return out


def audit(checkpoint: Path, bank_path: Path = BANK_PATH, draws: int = 4) -> str:
    """The bank's letters that the model of ``checkpoint`` accepts as one of its classes (its stored score at
    its threshold) in at least half of ``draws`` drawings each and that lie within `AUDIT_DISTANCE` of a
    reference digit (`font_lookalike`'s distance): `AUDITED_LOOKALIKES`. An accepted letter far from
    every digit stays in the bank: it is the hard unknown the outliers are for."""
    import torch

    from osr_train.checkpoint import load_checkpoint
    from osr_train.models import classifier_of
    from osr_train.scoring import ScoredClassifier
    from osr_train.training import Normalizer

    model, spec, _ = load_checkpoint(checkpoint)
    scored = ScoredClassifier(classifier_of(model), spec.score, spec.score_params, spec.temperature).eval()
    contract = spec.preprocessing
    with np.load(bank_path) as data:
        masks, codes = data["masks"], data["codepoints"]
    rng = np.random.default_rng(0)
    drawn = np.stack([_draw(m, contract.size, rng) for m in masks for _ in range(draws)])
    pixels = contract.conform(drawn) if contract.steps else drawn
    with torch.inference_mode():
        scores = torch.cat([scored(Normalizer(contract)(torch.from_numpy(pixels[i:i + 2048])))[2]
                            for i in range(0, len(pixels), 2048)]).numpy()
    accepted = [chr(int(c)) for c in codes[(scores >= spec.threshold).reshape(len(masks), draws).mean(1) >= 0.5]]
    fonts = {char: path for _, char, path in candidates()}
    loaded: dict[Path, ImageFont.FreeTypeFont] = {}
    views = np.stack([mnist_views(c, loaded.setdefault(fonts[c], ImageFont.truetype(str(fonts[c]), 96))) for c in accepted])
    return "".join(c for c, d in zip(accepted, reference_distance(views), strict=True) if d <= AUDIT_DISTANCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "audit"])
    parser.add_argument("checkpoint", type=Path, nargs="?", help="audit: the model.pt that judges the bank's letters")
    parser.add_argument("--out", type=Path, default=BANK_PATH)
    args = parser.parse_args()
    if args.command == "audit":
        if args.checkpoint is None:
            parser.error("audit needs a checkpoint")
        found = audit(args.checkpoint, args.out)
        print(f"{len(found)} lookalikes (accepted by {args.checkpoint}, near a reference digit): "
              + ", ".join(f"0x{ord(c):04X}" for c in found))
        return
    summary = build(args.out)
    print(f"{summary['kept']} letters kept; left out as written like a digit: {summary['audited']} by the audit, "
          f"{summary['digit_like']} by the pixel test (distance limit {summary['font_limit']:.2f}): {summary['left_out']}")


if __name__ == "__main__":
    main()
