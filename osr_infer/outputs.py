"""The one outputs record of an exported model, and the names of its graph's tensors.

Every runtime (ONNX Runtime at the edge, PyTorch and TorchScript at export time) returns a
`ModelOutputs`, so verification, parity and inference compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "probs", "score")
#: Images per ONNX Runtime call at the edge (and the decoders' chunk of files).
DEFAULT_BATCH_SIZE = 256
#: Items per task of a cluster engine (osr_infer.engines): large enough that a task's own cost is small
#: beside its files', small enough that a lost worker loses little work.
PARTITION_SIZE = 2048


@dataclass
class ModelOutputs:
    """One batch: ``logits``/``probs`` are float32 (N, classes), ``score`` is float32 (N,)."""

    logits: np.ndarray
    probs: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.logits)

    def __getitem__(self, index: slice | np.ndarray) -> "ModelOutputs":
        return ModelOutputs(self.logits[index], self.probs[index], self.score[index])

    @classmethod
    def concat(cls, parts: list["ModelOutputs"]) -> "ModelOutputs":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in OUTPUT_NAMES))

    @classmethod
    def from_arrays(cls, values: Sequence[Any]) -> "ModelOutputs":
        """``values``: three tensors or arrays (logits, probabilities, score)."""
        """``(logits, probs, score)`` from any runtime (torch tensors included) as float32 arrays."""
        arrays = [np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32) for v in values]
        if len(arrays) != len(OUTPUT_NAMES):
            raise ValueError(f"expected {len(OUTPUT_NAMES)} outputs {OUTPUT_NAMES}, got {len(arrays)}")
        return cls(*arrays)

    def check_shapes(self, n: int, n_classes: int) -> str | None:
        """A reason if the shapes are not ``(n, C), (n, C), (n,)``, else None."""
        want = {"logits": (n, n_classes), "probs": (n, n_classes), "score": (n,)}
        got = {name: tuple(getattr(self, name).shape) for name in want}
        bad = [f"{k} {got[k]} (expected {want[k]})" for k in want if got[k] != want[k]]
        return "; ".join(bad) or None
