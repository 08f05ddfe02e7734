"""Write near-OOD evaluation sets: characters that are no digit, written MNIST-style.

    python tools/make_near_ood.py /tmp/near-ood --n 600      # 600 images per set
    osr-train evaluate artifacts/siamese/model.pt --ood-dir /tmp/near-ood/greek --ood-dir ...

One folder per set: letters of other scripts (Greek, Cyrillic, Hebrew, Arabic, Devanagari and
Bengali, Thai, Georgian and Armenian, Ethiopic) and symbols and punctuation. Each character is
rendered from an OpenType/TrueType font of Debian's ``fonts-noto-core`` (or DejaVu, bundled with
matplotlib and Debian) and then made to look written: a random stroke weight (blur and a soft
threshold), rotation and shear, and an elastic warp (a smooth random displacement field, as in
Simard et al. 2003), then laid out as MNIST was: white on black, fitted into a 20x20 box, centred
by its centre of mass in 28x28. Characters drawn like a digit (Greek omicron and theta, Cyrillic
ze and che, Hebrew vav and samekh, Arabic alif and heh, Ethiopic ʿayn, brackets, infinity, ...)
are left out: rejecting them would be convention, not open-set skill.

How this differs from what training sees: the training outliers (osr_train/outliers.py,
glyphs.py) are Latin letters, Japanese kana and kanji and symbols drawn with the Hershey *vector*
(centre-line) fonts, made-up characters from their pieces, and synthetic textures and shapes;
these sets are *outline* fonts and scripts training never draws (Hershey's Greek and Cyrillic
are left out of training for that reason), with a warp that training does not use. Training also
draws letters of 48 other scripts from Noto outline fonts (osr_train/script_glyphs.py): none of
these sets' scripts nor a script descended from or shaped like them, drawn with an affine warp
and dilations, never this blur-and-threshold or elastic warp. One overlap:
many characters of the ``symbols`` set (maths, arrows, card suits, a note) are among Hershey's
symbols that training draws, in another font and construction. Nothing here is used in training
or calibration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

#: Set -> (characters, font file names, tried in order; a character uses the first that has it).
SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "greek": ("αβγδεζηκλμνξπρστυφχψωΓΔΛΞΠΣΦΨΩ", ("NotoSans-Regular.ttf", "NotoSerif-Regular.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf")),
    "cyrillic": ("вгджийклмнпфцшщъыьэюяГДЖИЙЛПФЦШЩЪЫЬЭЮЯ", ("NotoSans-Regular.ttf", "NotoSerif-Regular.ttf", "DejaVuSans.ttf", "DejaVuSerif.ttf")),
    "hebrew": ("אבגדהחטכלמנעפצקרשת", ("NotoSansHebrew-Regular.ttf", "NotoSerifHebrew-Regular.ttf", "NotoRashiHebrew-Regular.ttf", "DejaVuSans.ttf")),
    "arabic": ("بتثجحخدذرزسشصضطظعغفقكلمني", ("NotoSansArabic-Regular.ttf", "NotoNaskhArabic-Regular.ttf", "NotoKufiArabic-Regular.ttf", "DejaVuSans.ttf")),
    "devanagari-bengali": ("अआइईउऊएऐओकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसहকখগঘঙচছজঝটঠডঢণতথদধনপফবভমযরলশষসহ",
                           ("NotoSansDevanagari-Regular.ttf", "NotoSerifDevanagari-Regular.ttf",
                            "NotoSansBengali-Regular.ttf", "NotoSerifBengali-Regular.ttf")),
    "thai": ("กขคฆงจฉชซญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ", ("NotoSansThai-Regular.ttf", "NotoSerifThai-Regular.ttf", "NotoLoopedThai-Regular.ttf")),
    "georgian-armenian": ("აბგდევზთიკლმნოპჟრსტუფქღყშჩცძწჭხჯჰԱԲԳԴԵԶԷԸԹԺԻԼԽԾԿՀՁՂՃՄՅՆՇՈՉՊՋՌՍՎՏՐՑՒՓՔՖ",
                          ("NotoSansGeorgian-Regular.ttf", "NotoSerifGeorgian-Regular.ttf",
                           "NotoSansArmenian-Regular.ttf", "NotoSerifArmenian-Regular.ttf", "DejaVuSans.ttf")),
    "ethiopic": ("ሀለሐመሠረሰሸቀበቨተቸኀነኘአከኸወዘዠየደጀገጠጨጰጸፀፈፐ", ("NotoSansEthiopic-Regular.ttf", "NotoSerifEthiopic-Regular.ttf")),
    "symbols": ("+×÷=%&#@$€£¥§¶*?<>~±∑∏√≈≠≤≥∆∂∫♪☺✓✗←→↑↓♠♣♥♦",
                ("DejaVuSans.ttf", "DejaVuSerif.ttf", "NotoSansMath-Regular.ttf", "NotoSansSymbols-Regular.ttf", "NotoSansSymbols2-Regular.ttf")),
}
FONT_DIRS = (Path("/usr/share/fonts/truetype/noto"), Path("/usr/share/fonts/truetype/dejavu"))


def find_font(name: str) -> Path | None:
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    try:
        import matplotlib

        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        return bundled if bundled.is_file() else None
    except ImportError:
        return None


def fonts_for(chars: str, names: tuple[str, ...]) -> dict[str, list[Path]]:
    """For each character, the fonts (of ``names``, where installed) that have a glyph for it."""
    from matplotlib.ft2font import FT2Font

    found: dict[str, list[Path]] = {c: [] for c in chars}
    for name in names:
        path = find_font(name)
        if path is None:
            continue
        charmap = FT2Font(str(path)).get_charmap()
        for c in chars:
            if charmap.get(ord(c)):
                found[c].append(path)
    return {c: paths for c, paths in found.items() if paths}


def elastic(image: Image.Image, rng: np.random.Generator, amplitude: float, cells: int = 4) -> Image.Image:
    """A smooth random warp: displacements drawn on a coarse grid, upsampled bicubically."""
    from scipy.ndimage import map_coordinates

    w, h = image.size
    fields = []
    for _ in range(2):
        coarse = Image.fromarray(rng.normal(0, 1, (cells, cells)).astype(np.float32), mode="F")
        fields.append(np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC)) * amplitude)
    ys, xs = np.indices((h, w), dtype=np.float32)
    warped = map_coordinates(np.asarray(image, dtype=np.float32), [ys + fields[1], xs + fields[0]], order=1, mode="constant")
    return Image.fromarray(np.clip(warped, 0, 255).astype(np.uint8), mode="L")


def restroke(mask: Image.Image, radius: float, level: float, softness: float = 48.0) -> Image.Image:
    """Blur, then a soft threshold at ``level``: below 128 thickens strokes, above thins them."""
    mask = mask.filter(ImageFilter.GaussianBlur(radius))
    lo = level - softness / 2
    return mask.point([int(round(255 * min(1.0, max(0.0, (v - lo) / softness)))) for v in range(256)])


def mnist_layout(glyph: Image.Image) -> Image.Image:
    """MNIST's own layout: the ink fitted into 20x20 (aspect kept), centred by mass in 28x28."""
    box = glyph.getbbox()
    if box is None:
        raise ValueError("no ink")
    glyph = glyph.crop(box)
    scale = 20 / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.Resampling.LANCZOS)
    ink = np.asarray(glyph, dtype=np.float64)
    ys, xs = np.indices(ink.shape)
    total = max(ink.sum(), 1e-9)
    cy, cx = (ys * ink).sum() / total, (xs * ink).sum() / total
    out = Image.new("L", (28, 28), 0)
    out.paste(glyph, (int(round(13.5 - cx)), int(round(13.5 - cy))))
    return out


def write_one(char: str, font: Path, rng: np.random.Generator) -> Image.Image:
    size = 96
    image = Image.new("L", (size, size), 0)
    pil_font = ImageFont.truetype(str(font), int(rng.integers(44, 60)))
    ImageDraw.Draw(image).text((size / 2, size / 2), char, fill=255, font=pil_font, anchor="mm")
    shear = float(rng.uniform(-0.3, 0.3))
    image = image.transform(image.size, Image.Transform.AFFINE, (1, shear, -shear * size / 2, 0, 1, 0), Image.Resampling.BILINEAR)
    image = image.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    image = elastic(image, rng, amplitude=float(rng.uniform(1.5, 4.0)))
    return mnist_layout(restroke(image, radius=float(rng.uniform(0.8, 2.2)), level=float(rng.uniform(80, 170))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--print-sets", action="store_true", help="print every set's characters as JSON and stop (what the training bank must avoid)")
    parser.add_argument("--n", type=int, default=600, help="images per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ",".join(SETS))
    args = parser.parse_args()
    if args.print_sets:
        print(json.dumps({name: chars for name, (chars, _) in SETS.items()}, ensure_ascii=False))
        return
    if args.folder is None:
        parser.error("FOLDER is required (or --print-sets)")
    manifest = {}
    for k, name in enumerate(args.sets.split(",")):
        chars, names = SETS[name]
        fonts = fonts_for(chars, names)
        if not fonts:
            print(f"{name}: no font installed for it (apt-get install fonts-noto-core); skipped")
            continue
        rng = np.random.default_rng([args.seed, k])
        folder = args.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        usable = sorted(fonts)
        written = 0
        while written < args.n:
            char = usable[int(rng.integers(len(usable)))]
            font = fonts[char][int(rng.integers(len(fonts[char])))]
            try:
                write_one(char, font, rng).save(folder / f"{written:05d}_U{ord(char):04X}.png")
            except ValueError:  # a glyph that came out empty
                continue
            written += 1
        font_names = sorted({p.name for ps in fonts.values() for p in ps})
        manifest[name] = {"characters": "".join(usable), "fonts": font_names, "n": written}
        print(f"{name}: {written} images of {len(usable)} characters in {len(font_names)} font(s)")
    (args.folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
