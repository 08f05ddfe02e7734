"""ONNX Runtime's arithmetic rate against numpy's sgemm on this CPU, in one run.

    python benchmarks/onnxruntime_sgemm.py --model artifacts/siamese/model.onnx

The model's floating-point work per image is counted from the graph (2 x multiply-adds of
every Conv, Gemm and MatMul, shapes from ONNX shape inference at batch 1). ONNX Runtime runs
the exported model at batch 256 on 1 thread and on all cores (the session settings osr-infer
uses, no spinning), numpy multiplies 1024 x 1024 float32 matrices, both best of rounds,
interleaved. The ratio of the two GFLOP/s says how close inference is to what this CPU's
BLAS reaches; the goal is at least 70 %. Writes ``benchmarks/results/onnxruntime_sgemm_<threads>thread.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

HERE = Path(__file__).resolve().parent


def flops_per_image(model_path: Path) -> float:
    """2 x the multiply-adds of the Conv, Gemm and MatMul nodes, for one image."""
    model = onnx.load(str(model_path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]
            kernel = weights[node.input[1]]  # (out channels, in channels / group, kh, kw)
            macs += int(np.prod(out)) * int(np.prod(kernel[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            b = weights.get(node.input[1]) or shapes[node.input[1]]
            out = shapes[node.output[0]]
            inner = b[0] if node.op_type == "MatMul" or not any(a.name == "transB" and a.i for a in node.attribute) else b[1]
            macs += int(np.prod(out)) * int(inner)
    return 2.0 * macs


def best_seconds(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("artifacts/siamese/model.onnx"))
    parser.add_argument("--threads", type=int, default=1, help="threads for both (numpy's BLAS is set before import)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):  # numpy reads it once, at import: run again with it
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    import onnxruntime as ort

    from osr_infer.session import session_options

    flops = flops_per_image(args.model)
    session = ort.InferenceSession(str(args.model), session_options(args.threads, spin=False), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = [256 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    a, b = (np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32) for _ in range(2))
    session.run(None, {name: batch}), a @ b  # warm up
    ort_times, gemm_times = [], []
    for _ in range(args.rounds):  # interleaved: a busy moment costs both
        ort_times.append(best_seconds(lambda: session.run(None, {name: batch}), 3))
        gemm_times.append(best_seconds(lambda: a @ b, 3))
    ort_seconds, gemm_seconds = min(ort_times), min(gemm_times)
    ort_rate = flops * len(batch) / ort_seconds / 1e9
    gemm_rate = 2.0 * 1024 ** 3 / gemm_seconds / 1e9
    result = {
        "command": "python " + " ".join(sys.argv),
        "model": str(args.model),
        "threads": args.threads,
        "mflop_per_image": round(flops / 1e6, 3),
        "onnxruntime_images_per_s": round(len(batch) / ort_seconds, 1),
        "onnxruntime_gflops": round(ort_rate, 1),
        "numpy_sgemm_gflops": round(gemm_rate, 1),
        "onnxruntime_share_of_sgemm": round(ort_rate / gemm_rate, 3),
        "goal": 0.70,
        "met": ort_rate / gemm_rate >= 0.70,
        "cpus": os.cpu_count(),
    }
    out = HERE / "results" / f"onnxruntime_sgemm_{args.threads}thread.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['mflop_per_image']} MFLOP an image; ONNX Runtime {result['onnxruntime_images_per_s']:,.0f} images/s = "
          f"{ort_rate:.1f} GFLOP/s, numpy sgemm {gemm_rate:.1f} GFLOP/s: {ort_rate / gemm_rate:.0%} (goal 70 %); wrote {out}")


if __name__ == "__main__":
    main()
