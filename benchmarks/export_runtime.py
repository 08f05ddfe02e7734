"""Exported-model speed on CPU: PyTorch eager vs TorchScript vs ONNX Runtime fp32 vs ONNX Runtime INT8.

Exports the checkpoint (the same code path as ``osr-export``, into a temp folder), then times
each runtime on the same normalised inputs, interleaved round by round so that machine noise
hits all of them: batch 1 (latency, one thread) and batch 1024 (throughput, all threads).
Ratios are relative to PyTorch eager in the same run. Writes JSON.

    python benchmarks/export_runtime.py [artifacts/siamese/model.pt] [--data-dir ../shared/datasets] [--rounds 5]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmark_support import export_everything, exported_model_arguments
from rich.table import Table



def timed(fn, x: np.ndarray, repeats: int) -> float:  # noqa: ANN001
    """Median seconds of one call over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    args = exported_model_arguments(__doc__, "export_runtime.json")
    console = Console(stderr=True)

    import torch

    from osr_export.runners import onnx_runner, torch_runner, torch_threads
    from osr_export.source import scored_from_checkpoint
    from osr_export.torchscript_export import load_torchscript

    with tempfile.TemporaryDirectory() as tmp:
        export_everything(args.checkpoint, Path(tmp), args.data_dir)
        scored, spec, _ = scored_from_checkpoint(args.checkpoint)
        runners_many = {
            "pytorch eager": torch_runner(scored),
            "torchscript": torch_runner(load_torchscript(Path(tmp) / "model.torchscript.pt")[0]),
            "onnxruntime fp32": onnx_runner(Path(tmp) / "model.onnx"),
            "onnxruntime int8": onnx_runner(Path(tmp) / "model.int8.onnx"),
        }
        runners_one = dict(runners_many)
        runners_one["onnxruntime fp32"] = onnx_runner(Path(tmp) / "model.onnx", threads=1)
        runners_one["onnxruntime int8"] = onnx_runner(Path(tmp) / "model.int8.onnx", threads=1)
        sizes = {k: (Path(tmp) / f).stat().st_size for k, f in (
            ("torchscript", "model.torchscript.pt"), ("onnxruntime fp32", "model.onnx"), ("onnxruntime int8", "model.int8.onnx"))}

        rng = np.random.default_rng(0)  # random pixels of the model's input shape, through its contract
        x_many = spec.preprocessing.normalize(rng.integers(0, 256, (1024, *spec.preprocessing.pixel_shape), dtype=np.uint8))
        x_one = x_many[:1]
        one: dict[str, list[float]] = {k: [] for k in runners_one}
        many: dict[str, list[float]] = {k: [] for k in runners_many}
        for name in runners_many:  # warm-up
            runners_many[name](x_many)
            with torch_threads(1):
                runners_one[name](x_one)
        for _ in range(args.rounds):
            for name in runners_many:
                with torch_threads(1):
                    one[name].append(timed(runners_one[name], x_one, 200))
                many[name].append(timed(runners_many[name], x_many, 5))

    base_one, base_many = statistics.median(one["pytorch eager"]), statistics.median(many["pytorch eager"])
    results = {
        name: {
            "batch1_latency_us": statistics.median(one[name]) * 1e6,
            "batch1_speedup_vs_eager": base_one / statistics.median(one[name]),
            "batch1024_images_per_s": 1024 / statistics.median(many[name]),
            "batch1024_speedup_vs_eager": base_many / statistics.median(many[name]),
            "file_bytes": sizes.get(name),
        }
        for name in runners_many
    }
    table = Table(title=f"Exported-model CPU speed ({args.checkpoint}, median of {args.rounds} rounds)")
    for col in ("runtime", "batch 1 latency", "vs eager", "batch 1024 img/s", "vs eager", "file"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    for name, r in results.items():
        table.add_row(name, f"{r['batch1_latency_us']:.0f} µs", f"{r['batch1_speedup_vs_eager']:.2f}x",
                      f"{r['batch1024_images_per_s']:,.0f}", f"{r['batch1024_speedup_vs_eager']:.2f}x",
                      f"{r['file_bytes'] / 1024:.0f} KiB" if r["file_bytes"] else "-")
    console.print(table)
    payload = {
        "benchmark": "export_runtime", "checkpoint": str(args.checkpoint), "dataset": spec.dataset.reference,
        "input_shape": list(spec.input_shape),
        "rounds": args.rounds, "results": results,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0]},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
