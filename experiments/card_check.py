"""The card's third command on real files: ``osr-infer images/ --threshold 0.999`` on a folder of
MNIST test digits (PNG), CIFAR-10 test photos (the original JPEGs) and rendered letters.

    export OSR_DATA_DIR=../shared/datasets
    osr-train siamese && osr-export --format onnx
    python experiments/card_check.py /tmp/card --model artifacts/siamese/model.onnx

Writes ``OUT/images/<digit>/``, ``OUT/images/unknown-cifar10/`` and ``OUT/images/unknown-letters/``
(1,000 + 1,000 + 500 files by default; seeded), runs osr-infer on the folder twice (the card's
``--threshold 0.999``, then the model's own calibrated score) and writes
``experiments/results/card_check.json``: digits correct (accepted with the right class), and
CIFAR-10 and letters rejected. The letters come from ``make_letters.py`` (Pillow's font,
MNIST-style); nothing here is used in training or calibration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def build(folder: Path, data_dir: Path, n_digits: int, n_cifar: int, n_letters: int, seed: int) -> None:
    from osr_infer.data.mnist import load_mnist

    sys.path.insert(0, str(HERE.parent / "tools"))  # the letter generator
    from make_letters import LETTERS, render

    rng = np.random.default_rng(seed)
    test = load_mnist(data_dir, "test")
    for i in rng.choice(len(test.images), n_digits, replace=False):
        path = folder / str(int(test.labels[i])) / f"mnist-{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i]).save(path)
    photos = sorted((data_dir / "cifar10-test-jpeg").rglob("*.jpg"))
    if not photos:
        raise SystemExit(f"no CIFAR-10 JPEGs under {data_dir / 'cifar10-test-jpeg'}")
    (folder / "unknown-cifar10").mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(rng.choice(len(photos), min(n_cifar, len(photos)), replace=False)):
        shutil.copyfile(photos[i], folder / "unknown-cifar10" / f"{k:05d}.jpg")  # the original bytes
    (folder / "unknown-letters").mkdir(parents=True, exist_ok=True)
    for i in range(n_letters):
        letter = LETTERS[i % len(LETTERS)]
        render(letter, rng).save(folder / "unknown-letters" / f"{i:05d}_{letter}.png")


def score(folder: Path, model: Path, threshold: float | None) -> dict:
    from experiment_support import infer_rows

    status, rows = infer_rows([folder], model, threshold=threshold)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        group = Path(row["path"]).parent.name
        kind = group if group.startswith("unknown-") else "digits"
        c = counts[kind]
        c["n"] += 1
        if kind == "digits":
            c["correct"] += row["label"] == group
        else:
            c["rejected"] += row["label"] == "unknown"
    summary = {k: {**c, ("correct_share" if k == "digits" else "rejected_share"): (c["correct"] if k == "digits" else c["rejected"]) / c["n"]}
               for k, c in counts.items()}
    return {"status": status, "threshold_option": threshold, "by_group": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to build the image folder in (OUT/images)")
    parser.add_argument("--model", type=Path, default=Path("artifacts/siamese/model.onnx"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", "data")))
    parser.add_argument("--n-digits", type=int, default=1000)
    parser.add_argument("--n-cifar", type=int, default=1000)
    parser.add_argument("--n-letters", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = args.out / "images"
    if not images.is_dir():
        build(images, args.data_dir, args.n_digits, args.n_cifar, args.n_letters, args.seed)
    report: dict[str, Any] = {
        "model": str(args.model),
        "folder": f"python experiments/card_check.py {args.out} (--n-digits {args.n_digits} --n-cifar {args.n_cifar} "
                  f"--n-letters {args.n_letters} --seed {args.seed})",
        "card_threshold_0.999": score(images, args.model, 0.999),
        "own_threshold": score(images, args.model, None),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "card_check.json").write_text(json.dumps(report, indent=1) + "\n")
    for name in ("card_threshold_0.999", "own_threshold"):
        print(name, {k: round(v.get("correct_share", v.get("rejected_share")), 4) for k, v in report[name]["by_group"].items()})


if __name__ == "__main__":
    main()
