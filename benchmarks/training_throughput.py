"""Training-loop overhead: one full epoch of ``Trainer`` vs a bare forward/backward loop.

Both loops run in this process over the same in-memory uint8 tensors (real MNIST when
``--data-dir`` has it, else random images of MNIST's size), alternating so that machine
noise hits both. The goal of issue #2: ratio full/bare <= 1.15. Writes JSON.

    python benchmarks/training_throughput.py [--data-dir ../shared/datasets] [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from osr_infer.cli_support import ConsoleReporter
from osr_infer.data.datasets import ImageSet, OpenSetData
from osr_infer.preprocess import PREPROCESSING
from osr_infer.spec import DatasetSpec, ModelSpec
from osr_train.models import build_model
from osr_train.training import Normalizer, TrainConfig, Trainer

HERE = Path(__file__).resolve().parent


def load_data(data_dir: Path | None) -> tuple[OpenSetData, ModelSpec]:
    """The data and the spec of the baseline trained on it: MNIST's 1x28x28 and ten classes either way."""
    if data_dir is not None and (data_dir / "MNIST" / "raw").is_dir():
        from osr_infer.data import describe_dataset, open_set_source

        dataset, contract = describe_dataset("mnist", data_dir)
        train, val, test, _ = open_set_source(dataset, data_dir).known_splits(contract, progress=False)  # no unknowns: not trained on
        data = OpenSetData(dataset.reference, train, val, test, dataset.all_classes)
    else:
        rng = np.random.default_rng(0)
        names = tuple(str(d) for d in range(10))
        def make(n: int, name: str) -> ImageSet:
            return ImageSet(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n), name)

        data = OpenSetData("random", make(50_000, "train"), make(10_000, "val"), make(10_000, "test"), names)
        dataset, contract = DatasetSpec("random", all_classes=names), PREPROCESSING
    return data, ModelSpec(class_names=data.class_names, architecture="ConvNet", preprocessing=contract, dataset=dataset)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bare_epoch(data: OpenSetData, spec: ModelSpec, batch_size: int, seed: int, device: str) -> float:
    """Forward/backward/step over the same tensors (already on ``device``): nothing else."""
    torch.manual_seed(seed)
    model = build_model(spec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    normalize = Normalizer(spec.preprocessing)
    x, y = torch.from_numpy(data.train.images).to(device), torch.from_numpy(data.train.labels).to(device)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(device)
    synchronize(device)
    t0 = time.perf_counter()
    for start in range(0, len(y) - 1, batch_size):
        idx = order[start : start + batch_size]
        loss = F.cross_entropy(model(normalize(x[idx])), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    synchronize(device)
    return time.perf_counter() - t0


def full_epoch(data: OpenSetData, spec: ModelSpec, batch_size: int, seed: int, out_dir: Path, device: str) -> float:
    """One epoch of the real loop: batches, optimiser, progress bar, validation, checkpoint."""
    config = TrainConfig(model="baseline", epochs=1, batch_size=batch_size, seed=seed, device=device)
    assert config.architecture == spec.architecture
    # the progress bar drawn, as in a real run, to nowhere
    reporter = ConsoleReporter(Console(file=open(os.devnull, "w"), force_terminal=True))
    trainer = Trainer(config, data, spec, out_dir, reporter, {"model": "baseline", "recipe": "seed"})
    synchronize(device)
    t0 = time.perf_counter()
    trainer.fit()  # ends with a checkpoint written from the device's weights: synchronised
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--output", type=Path, help="[default: results/training_throughput.json, or _cuda.json with --device cuda]")
    args = parser.parse_args()
    if args.output is None:
        args.output = HERE / "results" / f"training_throughput{'_cuda' if args.device == 'cuda' else ''}.json"
    data, spec = load_data(args.data_dir)
    bare, full = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bare_epoch(data, spec, args.batch_size, 99, args.device)  # warm-up (allocator, kernels)
        for r in range(args.repeats):
            bare.append(bare_epoch(data, spec, args.batch_size, r, args.device))
            full.append(full_epoch(data, spec, args.batch_size, r, Path(tmp), args.device))
            print(f"repeat {r + 1}: bare {bare[-1]:.2f} s, full {full[-1]:.2f} s, ratio {full[-1] / bare[-1]:.3f}")
    result = {
        "benchmark": "training epoch: full loop vs bare forward/backward loop",
        "data": data.dataset,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "batch_size": args.batch_size,
        "bare_seconds": bare,
        "full_seconds": full,
        "ratio_median": statistics.median(f / b for f, b in zip(full, bare, strict=True)),
        "goal_ratio_max": 1.15,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median ratio {result['ratio_median']:.3f} (goal <= 1.15) -> {args.output}")


if __name__ == "__main__":
    main()
