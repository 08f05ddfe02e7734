"""Which characters of the near-OOD sets a model accepts as a digit, and as which one: per character,
through ``osr-infer`` on the exported model (what a device would answer).

    python tools/make_near_ood.py /tmp/near-ood --n 600
    python tools/make_letters.py /tmp/letters --n 2000
    python experiments/near_ood_characters.py artifacts/siamese/model.onnx --near-ood /tmp/near-ood --letters /tmp/letters

The sets name each file after its character (``00012_U05D3.png``, ``00007_M.png``). For each set: the
share rejected, and the characters accepted most often with the digit they are taken for. With
``--lookalikes``, also the share rejected of the characters that the training bank's pixel test
(osr_train.script_glyphs.font_lookalike, fixed before these figures and blind to any model) calls written
like a digit, and of the others: is what is accepted shaped like a digit? Writes
``experiments/results/near_ood_characters.{json,md}`` and a gallery, ``docs/research/near_ood_characters.png`` (the
research log shows it; ``--gallery``): for each
set, one drawing of each of its most accepted characters, titled with the share accepted and the digit.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from experiment_support import infer_rows, write_table
from osr_infer.spec import UNKNOWN_NAME

HERE = Path(__file__).resolve().parent


def character_of(path: Path) -> str:
    """The character a set's file name carries: ``_U05D3`` (a code point) or the character itself."""
    tag = path.stem.split("_", 1)[-1]
    return chr(int(tag[1:], 16)) if tag.startswith("U") and len(tag) > 1 else tag


def characters_of(rows: list[dict]) -> dict[str, dict]:
    """Per character: drawings, share accepted, the digit it is accepted as most often, and one accepted file."""
    by_char: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_char[character_of(Path(row["path"]))].append(row)
    out = {}
    for char, items in by_char.items():
        accepted = [r for r in items if r["label"] != UNKNOWN_NAME]
        taken_for = Counter(r["label"] for r in accepted).most_common(1)
        out[char] = {"n": len(items), "accepted": len(accepted) / len(items),
                     "taken_for": taken_for[0][0] if taken_for else None,
                     "example": (max(accepted, key=lambda r: r["score"]) if accepted else items[0])["path"]}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["accepted"]))


def pixel_lookalikes(near_ood: Path) -> dict[str, list[str]]:
    """Per set of ``make_near_ood.py``: its characters that the training bank's pixel test calls written like a
    digit, in any of the set's fonts that has them (the fonts the manifest lists)."""
    import json

    from PIL import ImageFont

    sys.path.insert(0, str(HERE.parent / "tools"))  # the evaluation sets' generator
    from make_near_ood import SETS, fonts_for
    from osr_train.script_glyphs import font_lookalike, mnist_views

    manifest = json.loads((near_ood / "manifest.json").read_text())
    found = {}
    for name, entry in manifest.items():
        fonts = fonts_for(entry["characters"], tuple(entry["fonts"]) if entry.get("fonts") else SETS[name][1])
        found[name] = [c for c, paths in fonts.items()
                       if paths and font_lookalike(np.stack([mnist_views(c, ImageFont.truetype(str(p), 96)) for p in paths])).any()]
    return found


def rejected_among(characters: dict[str, dict], chars: set[str], inside: bool) -> tuple[float, int]:
    """Share rejected of the drawings of the characters in ``chars`` (``inside``) or of the others, and their count."""
    picked = [v for c, v in characters.items() if (c in chars) == inside]
    n = sum(v["n"] for v in picked)
    return (sum(v["n"] * (1 - v["accepted"]) for v in picked) / n if n else float("nan")), n


def table(result: dict, top: int) -> str:
    split = "lookalikes" in result
    lines = [f"Model `{result['model']}`, at its exported threshold.", "",
             "| unknown set | rejected | " + ("rejected: pixel look-alikes / the others | " if split else "")
             + "characters | accepted most often (share accepted, taken for) |", "|---|---|---|---|" + ("---|" if split else "")]
    for name, s in result["sets"].items():
        worst = [f"{c} {v['accepted']:.0%} as {v['taken_for']}" for c, v in list(s["characters"].items())[:top] if v["accepted"] > 0]
        never = sum(v["accepted"] == 0 for v in s["characters"].values())
        cells = f"| {name} ({s['n']:,}) | {s['rejected']:.1%} | "
        if split:
            chars = set(result["lookalikes"].get(name, []))
            (like, n_like), (other, n_other) = rejected_among(s["characters"], chars, True), rejected_among(s["characters"], chars, False)
            cells += (f"{like:.1%} of {n_like:,} ({len(chars)} characters) / " if n_like else "none / ") + f"{other:.1%} of {n_other:,} | "
        lines.append(cells + f"{len(s['characters'])}, {never} never accepted | " + (", ".join(worst) or "none") + " |")
    return "\n".join(lines)


def gallery(result: dict, path: Path, top: int) -> Path:
    """One row per set: a drawing of each of its most accepted characters (the accepted one with the
    highest score), titled with the share accepted and the digit it is taken for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    sets = result["sets"]
    fig, axes = plt.subplots(len(sets), top, figsize=(1.1 * top, 1.3 * len(sets)), squeeze=False)
    for ax_row, (name, s) in zip(axes, sets.items(), strict=True):
        chars = [(c, v) for c, v in s["characters"].items() if v["accepted"] > 0][:top]
        for k, ax in enumerate(ax_row):
            ax.set_xticks([]), ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if k < len(chars):
                c, v = chars[k]
                ax.imshow(np.asarray(Image.open(v["example"]).convert("L")), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{v['accepted']:.0%} as {v['taken_for']}", fontsize=7)
            else:
                ax.axis("off")
    fig.suptitle(f"Near-OOD characters accepted most often ({Path(result['model']).name})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an exported model (model.onnx)")
    parser.add_argument("--near-ood", type=Path, required=True, help="the folder make_near_ood.py wrote")
    parser.add_argument("--letters", type=Path, help="the folder make_letters.py wrote")
    parser.add_argument("--lookalikes", action="store_true", help="split each near-OOD set by the pixel look-alike test")
    parser.add_argument("--top", type=int, default=10, help="characters listed (and drawn) per set")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "near_ood_characters")
    parser.add_argument("--gallery", type=Path, default=HERE.parent / "docs" / "research" / "near_ood_characters.png")
    args = parser.parse_args()
    folders = sorted(p for p in args.near_ood.iterdir() if p.is_dir()) + ([args.letters] if args.letters else [])
    result: dict = {"model": str(args.model), "sets": {}}
    for folder in folders:
        _, rows = infer_rows([folder], args.model)
        result["sets"][folder.name] = {"n": len(rows), "rejected": float(np.mean([r["label"] == UNKNOWN_NAME for r in rows])),
                                       "characters": characters_of(rows)}
    if args.lookalikes:
        result["lookalikes"] = pixel_lookalikes(args.near_ood)
    write_table(args.output, result, table(result, args.top))
    print(f"gallery: {gallery(result, args.gallery, args.top)}")


if __name__ == "__main__":
    main()
