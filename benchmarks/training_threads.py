"""Training on a shared machine: torch threads against a busy core.

    python benchmarks/training_threads.py [--seconds 6]

Times forward/backward/step of the toolkit's network (batch 128, the best recipe's) on the CPU
with 1 thread and with one per core, first on a quiet machine, then with one process spinning
on a core (another user's job). Writes ``benchmarks/results/training_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from osr_infer.decode import default_workers

HERE = Path(__file__).resolve().parent


def spin() -> None:
    while True:
        pass


def images_per_second(threads: int, seconds: float) -> float:
    from osr_infer.spec import ModelSpec
    from osr_train.models import build_model

    torch.set_num_threads(threads)
    model = build_model(ModelSpec(class_names=tuple("0123456789")))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        done += len(x)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    cores = default_workers()
    counts = sorted({1, cores})
    result: dict = {"command": "python " + " ".join(sys.argv), "cores": cores, "torch": torch.__version__}
    for condition in ("quiet", "one core busy"):
        hog = None
        if condition != "quiet":
            hog = multiprocessing.get_context("spawn").Process(target=spin, daemon=True)
            hog.start()
            time.sleep(0.5)
        try:
            result[condition] = {f"{n} thread(s)": round(images_per_second(n, args.seconds), 1) for n in counts}
        finally:
            if hog is not None:
                hog.terminate()
                hog.join()
        print(condition, result[condition])
    out = HERE / "results" / "training_threads.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
