"""osr-infer end to end with the fast JPEG path against the PIL-only path, in one run.

    python benchmarks/decode_paths.py --model artifacts/siamese/model.onnx

The whole command (``osr-infer FOLDER --model M --output r.csv --decoder fast|pil``, a
subprocess: start-up included), median of ``--repeat`` alternating runs, on:
- the 10,000 CIFAR-10 test JPEGs (real data), with the model as exported (the default model
  has the layout step) and with the same network under a plain-resize contract;
- a folder of 12-megapixel phone-sized JPEGs (4032x3024, written here), where draft mode
  decodes 1/8 of each side (504x378): decode work scaled to what the 28x28 output needs.
The results files of the two paths must be identical (same pixels, so same rows).
Writes ``benchmarks/results/decode_paths.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
OSR_INFER = Path(sys.executable).with_name("osr-infer")


def plain_copy(model: Path, target: Path) -> Path:
    """The same network with the plain-resize contract (no layout step): decoding dominates there."""
    import onnx

    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "osr.preprocessing":
            contract = json.loads(prop.value)
            contract["steps"] = []
            prop.value = json.dumps(contract)
    onnx.save(proto, str(target))
    return target


def phone_photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(215, 240, (48, 64, 3), dtype=np.uint8)
        page = Image.fromarray(base).resize((4032, 3024), Image.Resampling.BILINEAR)
        x, y = int(rng.integers(1200, 2600)), int(rng.integers(800, 1800))
        ImageDraw.Draw(page).line([(x, y), (x + 300, y), (x + 80, y + 700)], fill=(25, 25, 90), width=70)
        page.save(folder / f"{i:03d}.jpg", quality=88)
    return folder


def timed_run(folder: Path, model: Path, decoder: str, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(OSR_INFER), str(folder), "--model", str(model), "--output", str(out), "--decoder", decoder, "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(folder: Path, model: Path, repeat: int, tmp: Path) -> dict:
    times: dict[str, list[float]] = {"fast": [], "pil": []}
    for _ in range(repeat):
        for decoder in times:
            times[decoder].append(timed_run(folder, model, decoder, tmp / f"{decoder}.csv"))
    n = sum(1 for _ in open(tmp / "fast.csv")) - 1
    same = (tmp / "fast.csv").read_bytes() == (tmp / "pil.csv").read_bytes()
    fast, pil = statistics.median(times["fast"]), statistics.median(times["pil"])
    return {"images": n, "fast_seconds": round(fast, 3), "pil_seconds": round(pil, 3), "fast_images_per_s": round(n / fast, 1),
            "pil_images_per_s": round(n / pil, 1), "speed-up": round(pil / fast, 3), "identical_results": same,
            "runs": {k: [round(t, 3) for t in v] for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("artifacts/siamese/model.onnx"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    cifar = args.data_dir / "cifar10-test-jpeg"
    result: dict = {"command": "python " + " ".join(sys.argv), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain = plain_copy(args.model, tmp / "plain.onnx")
        if cifar.is_dir():
            result["cifar10_model_as_exported"] = compare(cifar, args.model, args.repeat, tmp)
            result["cifar10_plain_resize"] = compare(cifar, plain, args.repeat, tmp)
        photos = phone_photos(tmp / "photos", args.photos)
        result["phone_photos_12mp_model_as_exported"] = compare(photos, args.model, args.repeat, tmp)
    for name, row in result.items():
        if isinstance(row, dict) and "speed-up" in row:
            print(f"{name}: fast {row['fast_images_per_s']:,.0f} images/s, PIL {row['pil_images_per_s']:,.0f}: "
                  f"{row['speed-up']:.2f}x, identical results: {row['identical_results']}")
    out = HERE / "results" / "decode_paths.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
