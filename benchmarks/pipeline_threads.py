"""How ``osr-infer`` should split the cores between decoding workers and ONNX Runtime threads.

For each (decoding workers, ONNX Runtime intra-op threads) pair, ``osr-infer`` end to end on a
folder of images (default: the 10,000 CIFAR-10 test JPEGs) against decode-only with the same
workers, rounds interleaved. On 2 cores there is nothing to split; on many cores a single
inference thread can become the bottleneck. Writes JSON.

    python benchmarks/pipeline_threads.py [MODEL.onnx] [--folder DIR] [--repeats 3] [--pairs 16:1,16:4,12:4]
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import platform
import tempfile
from pathlib import Path

from rich.console import Console

from inference_throughput import decode_only, end_to_end, measure, model_contract, summarise
from osr_infer import cli
from osr_infer.decode import default_workers
from osr_infer.io import write_json

HERE = Path(__file__).resolve().parent


def default_pairs(cores: int) -> list[tuple[int, int]]:
    threads = sorted({1, 2, max(1, cores // 4), max(1, cores // 2)})
    return [(cores, t) for t in threads] + [(cores - t, t) for t in threads if 0 < t < cores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=Path("artifacts/siamese/model.onnx"), help="An ONNX model exported by osr-export.")
    parser.add_argument("--folder", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")) / "cifar10-test-jpeg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", help="workers:threads,... [default: a grid for this machine's cores]")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "pipeline_threads.json")
    args = parser.parse_args()
    cores = default_workers()
    pairs = [tuple(int(v) for v in p.split(":")) for p in args.pairs.split(",")] if args.pairs else default_pairs(cores)
    contract = model_contract(args.model)  # decode-only decodes as osr-infer does for this model
    cli.out = Console(file=io.StringIO())  # the report is not what is measured
    decode_samples: dict[int, list[tuple[float, float]]] = {}
    e2e_samples: dict[tuple[int, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.csv"
        decode_only(args.folder, contract, cores)  # warm the page cache and the forkserver
        end_to_end(args.folder, args.model, cores, out)  # and the first run's imports and allocations
        for _ in range(args.repeats):
            for workers in sorted({w for w, _ in pairs}, reverse=True):
                decode_samples.setdefault(workers, []).append(measure(functools.partial(decode_only, args.folder, contract, workers)))
            for workers, threads in pairs:
                run = functools.partial(end_to_end, args.folder, args.model, workers, out, ort_threads=threads)
                e2e_samples.setdefault((workers, threads), []).append(measure(run))
    decode = {workers: summarise(v) for workers, v in decode_samples.items()}
    e2e = {pair: summarise(v) for pair, v in e2e_samples.items()}
    e2e_key = lambda pair: f"end_to_end/workers_{pair[0]}/ort_threads_{pair[1]}"  # noqa: E731
    table = {f"decode_only/workers_{w}": v for w, v in decode.items()} | {e2e_key(pair): v for pair, v in e2e.items()}
    best_decode = max(v["images_per_s_median"] for v in decode.values())
    ratios = {e2e_key(pair): round(v["images_per_s_median"] / decode[pair[0]]["images_per_s_median"], 3) for pair, v in e2e.items()}
    result = {
        "benchmark": "osr-infer end to end by decoding workers and ONNX Runtime threads",
        "folder": str(args.folder),
        "cores": cores,
        "variants": table,
        "ratio_end_to_end_vs_decode_only_same_workers": ratios,
        "ratio_end_to_end_vs_best_decode_only": {e2e_key(pair): round(v["images_per_s_median"] / best_decode, 3) for pair, v in e2e.items()},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "load_average_after": os.getloadavg()},
    }
    write_json(args.output, result)
    for key, value in table.items():
        print(f"{key:40s} {value['images_per_s_median']:10,.0f} images/s  {ratios.get(key, '')}")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
