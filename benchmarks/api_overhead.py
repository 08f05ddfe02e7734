"""The Python API costs nothing: ``Model.predict_files`` against ``osr-infer`` on the same folder.

``osr-infer`` is a client of :meth:`osr_infer.Model.predict_files`, so the two should decode,
batch and classify at the same rate. Both run in this process on the 10,000 CIFAR-10 test
JPEGs (every file decoded by the worker pool, the default workers and ONNX Runtime threads),
in alternating rounds so that machine noise hits both; each round times the whole call
(model loading, listing, decoding, classifying; the command also writes its results file and
its report, to /dev/null). Goal (issue #31): the API within 5 % of the command's images/s.

    python benchmarks/api_overhead.py [MODEL.onnx] [--folder DIR] [--rounds 5]

Writes ``benchmarks/results/api_overhead.json``. The model defaults to the shipped one.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from osr_infer import Model, cli
from osr_infer.io import write_json

HERE = Path(__file__).resolve().parent


def run_api(model_path: Path | None, folder: Path) -> int:
    model = Model.load(model_path)
    return sum(len(batch) for batch in model.predict_files(folder))


def run_cli(model_path: Path | None, folder: Path, out: Path) -> int:
    model = model_path if model_path is not None else Model.load().path
    status = cli.infer_command(cli.InferOptions([str(folder)], model=model, output=out, progress=False))
    assert status == 0, status
    return sum(1 for _ in open(out)) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=None, help="An ONNX model [default: the shipped one].")
    parser.add_argument("--folder", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets"))
                        / "cifar10-test-jpeg")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "api_overhead.json")
    args = parser.parse_args()
    cli.out = Console(file=io.StringIO())  # the report is not what is measured
    cli.err = Console(file=io.StringIO())
    rates: dict[str, list[float]] = {"osr-infer": [], "Model.predict_files": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.csv"
        n = run_cli(args.model, args.folder, out)  # warm the page cache, the forkserver and the imports
        run_api(args.model, args.folder)
        for _ in range(args.rounds):
            for name, fn in (("osr-infer", lambda: run_cli(args.model, args.folder, out)),
                             ("Model.predict_files", lambda: run_api(args.model, args.folder))):
                t0 = time.perf_counter()
                rows = fn()
                rates[name].append(rows / (time.perf_counter() - t0))
                assert rows == n, (name, rows, n)
    medians = {name: statistics.median(v) for name, v in rates.items()}
    ratio = medians["Model.predict_files"] / medians["osr-infer"]
    result = {
        "benchmark": "Model.predict_files against osr-infer, whole calls, alternating rounds",
        "folder": str(args.folder), "images": n, "rounds": args.rounds,
        "images_per_s": {name: [round(r) for r in v] for name, v in rates.items()},
        "images_per_s_median": {name: round(v) for name, v in medians.items()},
        "ratio_api_vs_cli": round(ratio, 3),
        "goal": "ratio >= 0.95", "met": ratio >= 0.95,
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average_after": os.getloadavg()},
    }
    write_json(args.output, result)
    for name, value in medians.items():
        print(f"{name:22s} {value:10,.0f} images/s (median of {args.rounds})")
    print(f"API / CLI: {ratio:.3f}; written {args.output}")


if __name__ == "__main__":
    main()
