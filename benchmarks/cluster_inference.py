"""Cluster engines against one machine: ``osr-infer`` locally, on Dask and on Ray Data, same run.

The 10,000 CIFAR-10 test JPEGs, classified by the shipped model:

* **local**: the whole command, ``osr-infer FOLDER --output x.csv`` (its default workers);
* **Dask**: the whole command against a running cluster of two single-threaded worker
  processes (``LocalCluster``, one per core), ``--cluster dask:ADDRESS``, at two partition
  sizes: the difference gives the cost of a partition, the rest the cost of a file;
* **Ray**: a local Ray instance with two CPUs, through `osr_infer.ray.RayEngine` in this
  process: its start-up (connection, actors, first partition) and its steady state (the
  images/s after the first partition arrived).

Rounds alternate between the engines so that machine noise hits all of them; the medians are
kept. Goals (issue #33): Dask >= 0.8x and Ray (steady) >= 0.6x the local images/s.

    python benchmarks/cluster_inference.py [--folder DIR] [--rounds 3]

Writes ``benchmarks/results/cluster_inference.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from osr_infer.io import write_json

HERE = Path(__file__).resolve().parent
OSR_INFER = str(Path(sys.executable).with_name("osr-infer"))


def command_seconds(folder: Path, out: Path, *extra: str) -> float:
    """Wall time of one whole ``osr-infer`` command (start-up included)."""
    t0 = time.perf_counter()
    done = subprocess.run([OSR_INFER, str(folder), "--output", str(out), "--no-progress", *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"osr-infer failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def ray_run(folder: Path) -> dict[str, float]:
    """One Ray run in this process: seconds to the first partition, and the steady images/s after it."""
    from osr_infer import Model
    from osr_infer.ray import RayEngine

    model = Model.load(threads=1)
    t0 = time.perf_counter()
    run = model.predict_files(folder, cluster=RayEngine(None))  # its default partitions (RAY_PARTITION_SIZE)
    first_at, first_rows, rows = None, 0, 0
    for batch in run:
        rows += len(batch)
        if first_at is None:
            first_at, first_rows = time.perf_counter(), rows
    end = time.perf_counter()
    assert first_at is not None
    return {"first_partition_s": first_at - t0, "steady_images_per_s": (rows - first_rows) / (end - first_at),
            "whole_images_per_s": rows / (end - t0), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets"))
                        / "cifar10-test-jpeg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "cluster_inference.json")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    import ray
    from distributed import LocalCluster

    from osr_infer.ray import RAY_PARTITION_SIZE

    n = sum(1 for _ in args.folder.rglob("*.jpg"))
    sizes = (2048, 32)
    seconds: dict[str, list[float]] = {"local": [], **{f"dask_{p}": [] for p in sizes}}
    ray_rounds: list[dict[str, float]] = []
    t0 = time.perf_counter()
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                           dashboard_address=None) as cluster:
        out = Path(tmp) / "results.csv"
        command_seconds(args.folder, out)  # warm the page cache and the imports
        command_seconds(args.folder, out, "--cluster", f"dask:{cluster.scheduler_address}")  # the workers' imports
        ray_run(args.folder)  # the actors' first start (Ray caches its worker processes)
        for _ in range(args.rounds):
            seconds["local"].append(command_seconds(args.folder, out))
            for p in sizes:
                seconds[f"dask_{p}"].append(command_seconds(args.folder, out, "--cluster", f"dask:{cluster.scheduler_address}",
                                                            "--partition-size", str(p)))
            ray_rounds.append(ray_run(args.folder))
    ray.shutdown()
    median = {k: statistics.median(v) for k, v in seconds.items()}
    local_rate = n / median["local"]
    dask_rate = n / median["dask_2048"]
    # T(p) = per_file * n + per_partition * n / p, from the two partition sizes (whole commands).
    partitions = {p: -(-n // p) for p in sizes}
    per_partition = (median["dask_32"] - median["dask_2048"]) / (partitions[32] - partitions[2048])
    ray_steady = statistics.median(r["steady_images_per_s"] for r in ray_rounds)
    result = {
        "benchmark": "cluster_inference", "images": n, "folder": str(args.folder), "rounds": args.rounds,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "command_seconds": seconds,
        "local_images_per_s": round(local_rate, 1),
        "dask": {"workers": 2, "threads_per_worker": 1, "partition_size": 2048, "images_per_s": round(dask_rate, 1),
                 "ratio_to_local": round(dask_rate / local_rate, 3),
                 "seconds_per_partition_on_the_client": round(per_partition, 4),
                 "core_ms_per_file": round(2 * median["dask_2048"] / n * 1000, 4)},
        "ray": {"cpus": 2, "partition_size": RAY_PARTITION_SIZE, "start_seconds": round(ray_start, 2),
                "first_partition_seconds": round(statistics.median(r["first_partition_s"] for r in ray_rounds), 2),
                "steady_images_per_s": round(ray_steady, 1), "steady_ratio_to_local": round(ray_steady / local_rate, 3),
                "whole_run_images_per_s": round(statistics.median(r["whole_images_per_s"] for r in ray_rounds), 1),
                "rounds": ray_rounds},
        "command": "python benchmarks/cluster_inference.py",
    }
    write_json(args.output, result)
    print(f"local {local_rate:,.0f} images/s; dask {dask_rate:,.0f} ({dask_rate / local_rate:.2f}x); "
          f"ray steady {ray_steady:,.0f} ({ray_steady / local_rate:.2f}x), start {ray_start:.1f} s + first partition "
          f"{result['ray']['first_partition_seconds']} s; {per_partition * 1000:.1f} ms a partition")


if __name__ == "__main__":
    main()
