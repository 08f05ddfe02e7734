"""Uniform ``float32 (N,1,H,W) -> ModelOutputs`` callables for PyTorch, ONNX Runtime and TorchScript.

Verification compares these, so each format is run exactly as a deployment would run it:
the ONNX file through an ``InferenceSession`` with its default graph optimisations, the
TorchScript file after ``torch.jit.load`` from disk.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from osr_infer.outputs import INPUT_NAME, OUTPUT_NAMES, ModelOutputs


Runner = Callable[[np.ndarray], ModelOutputs]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run tiny (batch-1) torch calls on one thread: with OpenMP's spin-waits on a busy
    machine a 28x28 conv otherwise takes milliseconds instead of microseconds."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_runner(module) -> Runner:  # noqa: ANN001 - nn.Module or ScriptModule
    import torch

    def run(x: np.ndarray) -> ModelOutputs:
        with torch.inference_mode():
            return ModelOutputs.from_arrays(module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))))

    return run


def onnx_session(path: str | Path, threads: int | None = None):  # noqa: ANN201 - ort.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_runner(path: str | Path, threads: int | None = None) -> Runner:
    session = onnx_session(path, threads)
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    if input_name != INPUT_NAME or names != list(OUTPUT_NAMES):
        raise ValueError(f"unexpected signature: input {input_name!r}, outputs {names} (expected {INPUT_NAME!r}, {list(OUTPUT_NAMES)})")

    def run(x: np.ndarray) -> ModelOutputs:
        return ModelOutputs.from_arrays(session.run(names, {input_name: np.ascontiguousarray(x, dtype=np.float32)}))

    return run


def run_batched(
    runner: Runner, x: np.ndarray, batch_size: int, on_batch: Callable[[int], None] | None = None
) -> ModelOutputs:
    """Run ``x`` through ``runner`` in batches of ``batch_size`` (the last one may be smaller)."""
    parts = []
    for start in range(0, len(x), batch_size):
        parts.append(runner(x[start : start + batch_size]))
        if on_batch is not None:
            on_batch(min(batch_size, len(x) - start))
    return ModelOutputs.concat(parts)
