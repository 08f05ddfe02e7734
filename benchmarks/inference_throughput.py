"""Inference throughput: ONNX Runtime vs PyTorch eager, and osr-infer end to end vs decode-only.

1. Runtimes: the exported model in ONNX Runtime (the session osr-infer builds) and the same
   checkpoint in PyTorch eager (``torch.inference_mode``, default threads) on the very same
   normalised batches, at batch 1 and 256, alternating so machine noise hits both.
   Goal (issue #4): ONNX Runtime >= 2.5x PyTorch eager at batch 256. ``--sweep`` adds
   context: other ORT thread settings, and PyTorch eager with channels-last weights.
2. Pipeline: ``osr-infer`` (its ``infer_command``: list files, decode in the worker pool,
   batch, ONNX Runtime, write results.csv, report) over the 10,000 CIFAR-10 test JPEGs,
   against decoding the same files with the same pool and nothing else.
   Goal: end to end >= 85 % of decode-only throughput.

Writes JSON (default ``benchmarks/results/inference_throughput.json``)::

    python benchmarks/inference_throughput.py [--checkpoint artifacts/siamese/model.pt]
        [--data-dir ../shared/datasets] [--repeats 5] [--sweep] [--wait-quiet 600]

The machine's load average before and after is recorded: numbers taken while other jobs
ran are not comparable (PyTorch's and ONNX Runtime's spinning thread pools collapse when
a core is taken away, single-threaded ONNX Runtime does not).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.console import Console

# torch is imported inside the functions that need it: osr-infer's decode workers re-run this
# script's top level (multiprocessing's rule for the main module), and should not pay for torch.
from osr_infer import cli
from osr_infer.decode import CHUNK_FILES, DecodePool, decode_files, default_workers
from osr_infer.io import write_json
from osr_infer.model import ort_threading
from osr_infer.preprocess import PreprocessContract
from osr_infer.session import InferenceModel
from osr_infer.sources import Source, resolve_sources

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def median_rate(samples: list[float]) -> float:
    return float(statistics.median(samples))


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (/proc/stat): the decode workers are children of a
    forkserver, not of this process, so rusage cannot see them. Other jobs count too, which
    is why the load average is recorded."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def model_contract(model: Path) -> PreprocessContract:
    """The preprocessing contract in an exported model's metadata (what osr-infer decodes with)."""
    return InferenceModel(model, threads=1, spin=False).contract


def folder_source(folder: Path, contract: PreprocessContract) -> Source:
    """A folder of images as osr-infer resolves it (unlabelled files: no model spec or classes needed)."""
    (source,) = resolve_sources([str(folder)], [], folder, contract, None, ())
    return source


def inline_decode_cpu_us(folder: Path, contract: PreprocessContract, n: int = 2000) -> float:
    """CPU per image of decoding alone, in this process (no pool, no inter-process traffic)."""
    paths = folder_source(folder, contract).file_paths[:n]
    t0 = time.process_time()
    decode_files(paths, contract)
    return (time.process_time() - t0) * 1e6 / len(paths)


# --- 1. runtimes on the same batches ----------------------------------------------------------


def make_batches(data_dir: Path, contract: PreprocessContract, batch: int, n_images: int) -> list[np.ndarray]:
    """Normalised float32 batches of real images through the model's contract (CIFAR-10 JPEGs, or noise when absent)."""
    folder = data_dir / "cifar10-test-jpeg"
    if folder.is_dir():
        with DecodePool(contract, default_workers()) as pool:
            source = folder_source(folder, contract)
            source.paths = source.file_paths[:n_images]
            source.labels = source.labels[:n_images]
            pixels = np.concatenate([p.pixels for p in pool.pieces([source])])
    else:
        pixels = np.random.default_rng(0).integers(0, 256, (n_images, *contract.pixel_shape), dtype=np.uint8)
    x = contract.normalize(pixels)
    return [np.ascontiguousarray(x[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)]


def time_pass(fn: Callable[[np.ndarray], object], batches: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for x in batches:
        fn(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - t0)


def runtime_comparison(onnx_path: Path, scored, contract: PreprocessContract, data_dir: Path, repeats: int, sweep: bool) -> dict:  # noqa: ANN001 - a torch module
    import torch

    cores = default_workers()
    torch_threads = torch.get_num_threads()

    @torch.inference_mode()
    def torch_eager(x: np.ndarray) -> object:
        return scored(torch.from_numpy(x))

    # Context, not the goal's baseline: the same eager module with channels-last weights
    # (oneDNN's NHWC convolutions), a one-line PyTorch-side optimisation.
    scored_cl = copy.deepcopy(scored).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def torch_eager_channels_last(x: np.ndarray) -> object:
        return scored_cl(torch.from_numpy(x))

    results: dict = {"torch_threads": torch_threads, "batches": {}}
    for batch, n_images in ((1, 2_000), (256, 256 * 40)):
        threads, spin = ort_threading(0, batch)  # the session osr-infer builds for in-memory data at this batch size
        sessions = {"onnxruntime": InferenceModel(onnx_path, threads=threads, spin=spin)}
        sessions["onnxruntime_1_thread"] = InferenceModel(onnx_path, threads=1, spin=False)  # osr-infer's while decoding
        if sweep:
            sessions["onnxruntime_all_cores_spin"] = InferenceModel(onnx_path, threads=cores, spin=True)
            sessions["onnxruntime_all_cores_no_spin"] = InferenceModel(onnx_path, threads=cores, spin=False)
        batches = make_batches(data_dir, contract, batch, n_images)
        runners = {name: s.run for name, s in sessions.items()} | {"pytorch_eager": torch_eager}
        if sweep:
            runners["pytorch_eager_channels_last"] = torch_eager_channels_last
        for fn in runners.values():  # warm-up: allocator, kernels, ORT arena
            time_pass(fn, batches[: max(1, len(batches) // 10)])
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, fn in runners.items():
                rates[name].append(time_pass(fn, batches))
        entry: dict[str, Any] = {f"{name}_images_per_s": round(median_rate(r), 1) for name, r in rates.items()}
        entry |= {f"{name}_images_per_s_best": round(max(r), 1) for name, r in rates.items()}
        entry["samples_images_per_s"] = {name: [round(v, 1) for v in r] for name, r in rates.items()}
        entry["images_per_pass"] = sum(len(x) for x in batches)
        entry["onnxruntime_threads"], entry["onnxruntime_spinning"] = threads, spin
        entry["ratio_onnxruntime_vs_pytorch"] = round(median_rate(rates["onnxruntime"]) / median_rate(rates["pytorch_eager"]), 2)
        entry["ratio_best_of"] = round(max(rates["onnxruntime"]) / max(rates["pytorch_eager"]), 2)
        results["batches"][str(batch)] = entry
    if sweep:  # the same comparison with PyTorch limited to one thread, for context
        torch.set_num_threads(1)
        batches = make_batches(data_dir, contract, 256, 256 * 40)
        time_pass(torch_eager, batches[:4])
        results["pytorch_eager_1_thread_batch_256_images_per_s"] = round(median_rate([time_pass(torch_eager, batches) for _ in range(repeats)]), 1)
        torch.set_num_threads(torch_threads)
    return results


# --- 2. osr-infer end to end vs decode-only -----------------------------------------------------


def decode_only(folder: Path, contract: PreprocessContract, workers: int, chunk_files: int = CHUNK_FILES) -> int:
    """List and decode every file (through the model's contract) with the pool osr-infer uses, and nothing else."""
    source = folder_source(folder, contract)
    n = 0
    with DecodePool(contract, workers, chunk_files=chunk_files) as pool:
        for piece in pool.pieces([source]):
            n += len(piece.index)
    return n


def end_to_end(
    folder: Path, model: Path, workers: int, out: Path, chunk_files: int = CHUNK_FILES, batch_size: int = 256,
    ort_threads: int | None = None,
) -> int:
    """``osr-infer FOLDER --model M --output results.csv`` in-process (report printed to /dev/null);
    with another chunk or thread count, the same pieces assembled by the benchmark."""
    if (chunk_files, ort_threads) != (CHUNK_FILES, None):
        from benchmark_support import end_to_end_with

        return end_to_end_with(folder, model, workers, out, threads=ort_threads, chunk_files=chunk_files, batch_size=batch_size)
    options = cli.InferOptions([str(folder)], model=model, output=out, workers=workers, batch_size=batch_size, progress=False)
    status = cli.infer_command(options)
    assert status == 0, status
    return sum(1 for _ in open(out)) - 1


def measure(fn: Callable[[], int]) -> tuple[float, float]:
    """(images per second of wall time, machine CPU microseconds per image)."""
    c0, t0 = machine_cpu_seconds(), time.perf_counter()
    n = fn()
    wall, cpu = time.perf_counter() - t0, machine_cpu_seconds() - c0
    return n / wall, cpu * 1e6 / n


def summarise(samples: list[tuple[float, float]]) -> dict:
    rates, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return {
        "images_per_s_median": round(median_rate(rates), 1), "images_per_s_best": round(max(rates), 1),
        "machine_cpu_us_per_image_median": round(median_rate(cpus), 1), "samples_images_per_s": [round(r, 1) for r in rates],
    }


def pipeline_comparison(folder: Path, model: Path, workers: int, repeats: int, tmp: Path, sweep: bool) -> dict:
    """Alternating rounds of end-to-end and decode-only; optional variants of chunking and workers."""
    out = tmp / "results.csv"
    contract = model_contract(model)  # decode-only decodes as osr-infer does for this model
    cli.out = Console(file=io.StringIO())  # the report is not what is measured
    variants: dict[tuple[str, str, int, int], Callable[[], int]] = {
        ("end_to_end", "process", CHUNK_FILES, workers): functools.partial(end_to_end, folder, model, workers, out),
        ("decode_only", "process", CHUNK_FILES, workers): functools.partial(decode_only, folder, contract, workers),
    }
    if sweep:
        grid = [(32, workers), (64, workers), (128, workers), (CHUNK_FILES, 1)]
        for chunk, w in grid:
            variants[("end_to_end", "process", chunk, w)] = functools.partial(end_to_end, folder, model, w, out, chunk)
            variants[("decode_only", "process", chunk, w)] = functools.partial(decode_only, folder, contract, w, chunk)
    decode_only(folder, contract, workers)  # warm the page cache
    samples: dict = {key: [] for key in variants}
    for _ in range(repeats):
        for key, fn in variants.items():
            samples[key].append(measure(fn))
    table = {f"{what}/{kind}/chunk_{chunk}/workers_{w}": summarise(v) for (what, kind, chunk, w), v in samples.items()}
    e2e = table[f"end_to_end/process/chunk_{CHUNK_FILES}/workers_{workers}"]
    dec = table[f"decode_only/process/chunk_{CHUNK_FILES}/workers_{workers}"]
    result = {
        "images": sum(1 for _ in open(out)) - 1,
        "workers": workers,
        "batch_size": 256,
        "decode_chunk_files": CHUNK_FILES,
        "end_to_end": e2e,
        "decode_only": dec,
        "ratio_end_to_end_vs_decode_only": round(e2e["images_per_s_median"] / dec["images_per_s_median"], 3),
        "ratio_best_of": round(e2e["images_per_s_best"] / dec["images_per_s_best"], 3),
        "ratio_by_machine_cpu_time": round(dec["machine_cpu_us_per_image_median"] / e2e["machine_cpu_us_per_image_median"], 3),
    }
    if sweep:
        result["variants"] = table
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "osr-infer"), str(folder), "--model", str(model), "--output", str(out), "--no-progress"],
        capture_output=True, text=True,
    )
    result["cli_subprocess_seconds_incl_python_startup"] = round(time.perf_counter() - t0, 2)
    assert done.returncode == 0, done.stderr
    return result


def wait_for_quiet(max_wait: float, limit: float = 0.6) -> float:
    """Wait (up to ``max_wait`` s) for the 1-minute load average to drop below ``limit``: on a
    shared 2-core machine other jobs distort both sides of every ratio."""
    t0 = time.perf_counter()
    while os.getloadavg()[0] >= limit and time.perf_counter() - t0 < max_wait:
        time.sleep(5)
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_ckpt = next((p for p in (REPO / "artifacts/siamese/model.pt", REPO / "artifacts/baseline/model.pt") if p.is_file()), None)
    parser.add_argument("--checkpoint", type=Path, default=default_ckpt)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", REPO.parent / "shared" / "datasets")))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", action="store_true", help="Also record the tuning variants (threads, chunk and batch sizes).")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "inference_throughput.json")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS", help="First wait up to this long for a load average below 0.6.")
    args = parser.parse_args()
    if args.checkpoint is None or not args.checkpoint.is_file():
        parser.error("no checkpoint: train one (osr-train) or pass --checkpoint")
    import torch

    from osr_export.onnx_export import save_onnx, to_onnx_model
    from osr_export.source import metadata_from_checkpoint, scored_from_checkpoint

    folder = args.data_dir / "cifar10-test-jpeg"
    if args.wait_quiet:
        wait_for_quiet(args.wait_quiet)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scored, spec, config = scored_from_checkpoint(args.checkpoint)
        onnx_path = tmp / "model.onnx"
        with contextlib.redirect_stderr(io.StringIO()):
            save_onnx(to_onnx_model(scored, metadata_from_checkpoint(args.checkpoint, spec, config)), onnx_path)
        runtimes = runtime_comparison(onnx_path, scored.eval(), spec.preprocessing, args.data_dir, args.repeats, args.sweep)
        pipeline = pipeline_comparison(folder, onnx_path, default_workers(), args.repeats, tmp, args.sweep) if folder.is_dir() else None
    b256 = runtimes["batches"]["256"]["ratio_onnxruntime_vs_pytorch"]
    if pipeline:
        # While decoding saturates the cores, every microsecond of inference is taken from decoding:
        # end-to-end / decode-only <= decode CPU / (decode CPU + ONNX Runtime CPU), even with no other cost.
        ort_us = 1e6 / runtimes["batches"]["256"]["onnxruntime_1_thread_images_per_s"]
        dec_us = inline_decode_cpu_us(folder, spec.preprocessing)
        pipeline["analysis"] = {
            "decode_cpu_us_per_image_in_process": round(dec_us, 1),
            "onnxruntime_cpu_us_per_image_1_thread_isolated": round(ort_us, 1),
            "end_to_end_machine_cpu_us_per_image": pipeline["end_to_end"]["machine_cpu_us_per_image_median"],
            "decode_only_machine_cpu_us_per_image": pipeline["decode_only"]["machine_cpu_us_per_image_median"],
            "upper_bound_ratio_if_inference_cost_only_onnxruntime": round(dec_us / (dec_us + ort_us), 3),
        }
    report = {
        "benchmark": "inference_throughput",
        "checkpoint": str(args.checkpoint),
        "runtimes": runtimes,
        "pipeline": pipeline,
        "goals": {
            "onnxruntime_vs_pytorch_batch_256": {"goal": 2.5, "measured": b256, "met": b256 >= 2.5},
            "end_to_end_vs_decode_only": (
                {"goal": 0.85, "measured": pipeline["ratio_end_to_end_vs_decode_only"], "met": pipeline["ratio_end_to_end_vs_decode_only"] >= 0.85}
                if pipeline else None
            ),
        },
        "machine": {
            "cpus": os.cpu_count(), "usable_cpus": default_workers(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__,
            "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
    }
    write_json(args.output, report)
    print(json.dumps(report["goals"], indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
