"""osr-infer end to end: the fast path against the PIL-only path and a straightforward pipeline.

    python benchmarks/decode_paths.py --model artifacts/siamese/model.onnx

Three ways to classify a folder, each a whole command in a subprocess (start-up included),
median of ``--repeat`` alternating runs:
- ``fast``: ``osr-infer FOLDER --model M --output r.csv`` (``--decoder fast``, the default:
  libjpeg-turbo directly, small images laid out or resized as stacks);
- ``pil``: the same with ``--decoder pil``, the reference path (PIL decodes every file and the
  layout step runs image by image): the same pixels, so the results file must be identical;
- ``straightforward``: ``benchmarks/straightforward_pipeline.py``, the integration guide's
  snippet in a ``multiprocessing.Pool`` with ONNX Runtime at batch 256, what a user would
  write; its labels must be osr-infer's.
On:
- the 10,000 CIFAR-10 test JPEGs (real data), with the model as exported (the default model
  has the layout step) and with the same network under a plain-resize contract;
- a folder of 12-megapixel phone-sized JPEGs (4032x3024, written here), where draft mode
  decodes 1/8 of each side (504x378): decode work scaled to what the 28x28 output needs.
The results files of the two paths must be identical (same pixels, so same rows).
Writes ``benchmarks/results/decode_paths.json``.
"""

from __future__ import annotations

import argparse
import csv
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


def commands(folder: Path, model: Path, out: Path) -> dict[str, list[str]]:
    infer = [str(OSR_INFER), str(folder), "--model", str(model), "--no-progress"]
    return {
        "fast": [*infer, "--output", str(out / "fast.csv"), "--decoder", "fast"],
        "pil": [*infer, "--output", str(out / "pil.csv"), "--decoder", "pil"],
        "straightforward": [sys.executable, str(HERE / "straightforward_pipeline.py"), str(folder), str(model), str(out / "user.csv")],
    }


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def labels(path: Path) -> dict[str, str]:
    with open(path) as fh:
        rows = list(csv.reader(fh))[1:]
    return {row[0]: row[1] for row in rows}


def compare(folder: Path, model: Path, repeat: int, tmp: Path) -> dict:
    runs = commands(folder, model, tmp)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, command in runs.items():
            times[name].append(timed(command))
    n = sum(1 for _ in open(tmp / "fast.csv")) - 1
    seconds = {name: statistics.median(values) for name, values in times.items()}
    return {
        "images": n,
        **{f"{name}_seconds": round(value, 3) for name, value in seconds.items()},
        **{f"{name}_images_per_s": round(n / value, 1) for name, value in seconds.items()},
        "speed-up_vs_pil": round(seconds["pil"] / seconds["fast"], 3),
        "speed-up_vs_straightforward": round(seconds["straightforward"] / seconds["fast"], 3),
        "identical_results_fast_pil": (tmp / "fast.csv").read_bytes() == (tmp / "pil.csv").read_bytes(),
        "same_labels_as_straightforward": labels(tmp / "fast.csv") == labels(tmp / "user.csv"),
        "runs": {name: [round(t, 3) for t in values] for name, values in times.items()},
    }


def start_up(model: Path, tmp: Path, repeat: int) -> dict:
    """The whole command on one small PNG (in-process decoding), against the import floor."""
    image = tmp / "one.png"
    Image.new("L", (28, 28), 0).save(image)
    floor = [sys.executable, "-c", "import onnxruntime, numpy, PIL.Image"]
    one = [str(OSR_INFER), str(image), "--model", str(model), "--no-progress"]
    times: dict[str, list[float]] = {"import_floor": [], "osr_infer_one_png": []}
    for _ in range(repeat):
        times["import_floor"].append(timed(floor))
        times["osr_infer_one_png"].append(timed(one))
    floor_s, one_s = statistics.median(times["import_floor"]), statistics.median(times["osr_infer_one_png"])
    return {"import_floor_seconds": round(floor_s, 3), "osr_infer_one_png_seconds": round(one_s, 3),
            "above_floor_seconds": round(one_s - floor_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("artifacts/siamese/model.onnx"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    import compileall

    compileall.compile_dir(HERE.parent / "osr_infer", quiet=2)  # no run pays for compiling stale bytecode
    cifar = args.data_dir / "cifar10-test-jpeg"
    result: dict = {"command": "python " + " ".join(sys.argv), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plain = plain_copy(args.model, tmp / "plain.onnx")
        if cifar.is_dir():
            result["cifar10_model_as_exported"] = compare(cifar, args.model, args.repeat, tmp)
            result["cifar10_plain_resize"] = compare(cifar, plain, args.repeat, tmp)
        photos = phone_photos(tmp / "photos", args.photos)
        result["phone_photos_12mp_model_as_exported"] = compare(photos, args.model, args.repeat, tmp)
        result["start_up"] = start_up(args.model, tmp, 3 * args.repeat)
    result["machine"] = {"cpus": os.cpu_count(), "note": "ratios within one run; runs alternate fast, pil, straightforward"}
    for name, row in result.items():
        if isinstance(row, dict) and "speed-up_vs_pil" in row:
            print(f"{name}: fast {row['fast_images_per_s']:,.0f} images/s, PIL {row['pil_images_per_s']:,.0f} "
                  f"({row['speed-up_vs_pil']:.2f}x), straightforward {row['straightforward_images_per_s']:,.0f} "
                  f"({row['speed-up_vs_straightforward']:.2f}x); identical results: {row['identical_results_fast_pil']}, "
                  f"same labels: {row['same_labels_as_straightforward']}")
    print(f"start-up: osr-infer on one PNG {result['start_up']['above_floor_seconds']:.3f} s above the import floor")
    out = HERE / "results" / "decode_paths.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
