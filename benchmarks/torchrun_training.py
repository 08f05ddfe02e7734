"""Training under torchrun: two CPU ranks (gloo, one thread each) against one process with two threads.

Both train the same configuration on real MNIST (the seed recipe's baseline, ``--epochs``
epochs, global batch 64) and are timed by their own epoch log (training and validation, not
loading the data or evaluating). Reported: training images/s of each and the closed-set test
accuracy of each (goal, issue #33: within 0.2 points of each other), beside what another seed
moves a one-process run's accuracy by. On a machine with a GPU
per rank, ``--device cuda`` gives NCCL ranks.

    python benchmarks/torchrun_training.py [--epochs 5] [--data-dir DIR]

Writes ``benchmarks/results/torchrun_training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from osr_infer.io import write_json

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
#: MNIST's training split (the rest of its 60,000 is validation): the images of an epoch.
MNIST_TRAIN = 50_000


def train(command: list[str], out: Path) -> dict[str, float]:
    """Run one training command; its epoch seconds, images/s and test accuracy."""
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    history = json.loads((out / "history.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = sum(h["seconds"] for h in history)
    return {"epoch_seconds": round(seconds, 2), "images_per_s": round(len(history) * MNIST_TRAIN / seconds, 1),
            "closed_set_accuracy": metrics["closed_set_accuracy"], "wall_seconds": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "torchrun_training.json")
    args = parser.parse_args()
    common = ["baseline", "--dataset", "mnist", "--recipe", "seed", "--epochs", str(args.epochs), "--batch-size", "64",
              "--data-dir", str(args.data_dir), "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        one, other, two = Path(tmp) / "one", Path(tmp) / "other", Path(tmp) / "two"
        single = train([str(BIN / "osr-train"), *common, "--threads", "2", "--out", str(one)], one)
        ranks = train([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "osr_train", *common, "--out", str(two)], two)
        # What another seed alone moves the accuracy by: the yardstick for the two runs' difference.
        other_seed = train([str(BIN / "osr-train"), *common, "--threads", "2", "--seed", "1", "--out", str(other)], other)
    result = {
        "benchmark": "torchrun_training", "data": "mnist (50,000 train, 10,000 validation)", "recipe": "seed", "model": "baseline",
        "epochs": args.epochs, "global_batch": 64, "device": args.device,
        "one_process_two_threads": single, "torchrun_two_ranks_one_thread": ranks, "one_process_seed_1": other_seed,
        "seed_spread_points": round(100 * abs(other_seed["closed_set_accuracy"] - single["closed_set_accuracy"]), 3),
        "speed_ratio": round(ranks["images_per_s"] / single["images_per_s"], 3),
        "accuracy_difference_points": round(100 * abs(ranks["closed_set_accuracy"] - single["closed_set_accuracy"]), 3),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "command": "python benchmarks/torchrun_training.py",
    }
    write_json(args.output, result)
    print(json.dumps({k: result[k] for k in ("one_process_two_threads", "torchrun_two_ranks_one_thread", "speed_ratio",
                                             "accuracy_difference_points", "seed_spread_points")}, indent=1))


if __name__ == "__main__":
    main()
