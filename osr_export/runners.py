"""Uniform ``float32 (N,1,H,W) -> Outputs`` callables for PyTorch, ONNX Runtime and TorchScript.

Verification compares these, so each format is run exactly as a deployment would run it:
the ONNX file through an ``InferenceSession`` with its default graph optimisations, the
TorchScript file after ``torch.jit.load`` from disk.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from osr_export.onnx_export import INPUT_NAME, OUTPUT_NAMES


@dataclass
class Outputs:
    logits: np.ndarray  # (N, C) float32
    probs: np.ndarray  # (N, C) float32
    score: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.logits)

    @classmethod
    def concat(cls, parts: list["Outputs"]) -> "Outputs":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("logits", "probs", "score")))

    def check_shapes(self, n: int, n_classes: int) -> str | None:
        """A reason if the shapes are not ``(n, C), (n, C), (n,)``, else None."""
        want = {"logits": (n, n_classes), "probs": (n, n_classes), "score": (n,)}
        got = {name: tuple(getattr(self, name).shape) for name in want}
        bad = [f"{k} {got[k]} (expected {want[k]})" for k in want if got[k] != want[k]]
        return "; ".join(bad) or None


Runner = Callable[[np.ndarray], Outputs]


def _as_outputs(values) -> Outputs:  # noqa: ANN001 - tuple of tensors or arrays
    arrays = [np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32) for v in values]
    if len(arrays) != len(OUTPUT_NAMES):
        raise ValueError(f"expected {len(OUTPUT_NAMES)} outputs {OUTPUT_NAMES}, got {len(arrays)}")
    return Outputs(*arrays)


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

    def run(x: np.ndarray) -> Outputs:
        with torch.inference_mode():
            return _as_outputs(module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))))

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

    def run(x: np.ndarray) -> Outputs:
        return _as_outputs(session.run(names, {input_name: np.ascontiguousarray(x, dtype=np.float32)}))

    return run


def run_batched(
    runner: Runner, x: np.ndarray, batch_size: int, on_batch: Callable[[int], None] | None = None
) -> Outputs:
    """Run ``x`` through ``runner`` in batches of ``batch_size`` (the last one may be smaller)."""
    parts = []
    for start in range(0, len(x), batch_size):
        parts.append(runner(x[start : start + batch_size]))
        if on_batch is not None:
            on_batch(min(batch_size, len(x) - start))
    return Outputs.concat(parts)
