"""k-nearest neighbours on normalised hidden features (Sun et al. 2022), for evaluation.

Not a registered score: a bank of training embeddings large enough for kNN would not fit the
edge budget of an ONNX file (1 MB; 18,000 x 128 numbers are 9 MB). The registered ``prototype``
score (osr_train.scoring) is its edge-sized form: 10 k-means centres a class and the nearest
one. ``experiments/feature_scores.py`` measures both against the stored score on any MNIST
checkpoint (docs/research/2026-11-27-feature-space-scores.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from osr_train.models import ConvNet

from osr_infer.preprocess import PreprocessContract
from osr_train.training import Normalizer, full_fp32

#: Where the hidden features are taken, for every network of ``osr_train.models``: ``hidden_pre``
#: is the first hidden layer's output before its activation, ``hidden`` the same after it (the
#: input of the second hidden layer), ``penultimate`` the embedding the logits are made from.
LAYERS = ("hidden_pre", "hidden", "penultimate")


@torch.inference_mode()
@full_fp32()
def hidden_features(model: ConvNet, images: np.ndarray, contract: PreprocessContract, batch_size: int = 2048) -> dict[str, np.ndarray]:
    """Logits and the features of `LAYERS` for uint8 ``images`` already in the contract's
    pixel shape (``contract.conform``): ``forward_with_layers``' outputs, and ``fc2``'s input from
    a hook (the activation differs between the networks)."""
    normalize = Normalizer(contract)
    captured: list[torch.Tensor] = []
    hook = model.fc2.register_forward_pre_hook(lambda _m, args: captured.append(args[0].float().cpu()))
    parts: dict[str, list[torch.Tensor]] = {"logits": [], "penultimate": [], "hidden_pre": []}
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            outputs = model.forward_with_layers(normalize(torch.from_numpy(images[start : start + batch_size])))
            for name, value in zip(parts, outputs, strict=True):
                parts[name].append(value.float().cpu())
    finally:
        hook.remove()
    return {**{name: torch.cat(values).numpy() for name, values in parts.items()}, "hidden": torch.cat(captured).numpy()}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class KnnScore:
    """Cosine similarity to the ``k``-th nearest training embedding: higher means more like a
    known class. ``fit`` keeps at most ``bank_size`` embeddings (a random subset, ``seed``)."""

    k: int = 10
    bank_size: int | None = None
    seed: int = 0
    bank: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    def fit(self, features: np.ndarray) -> "KnnScore":
        if len(features) < self.k:
            raise ValueError(f"{len(features)} embeddings cannot give a {self.k}-th nearest neighbour")
        if self.bank_size is not None and len(features) > self.bank_size:
            features = features[np.random.default_rng(self.seed).choice(len(features), self.bank_size, replace=False)]
        self.bank = _unit(np.asarray(features, dtype=np.float32))
        return self

    def score(self, features: np.ndarray, chunk: int = 4096) -> np.ndarray:
        out = np.empty(len(features), dtype=np.float32)
        for start in range(0, len(features), chunk):
            similarity = _unit(np.asarray(features[start : start + chunk], dtype=np.float32)) @ self.bank.T
            out[start : start + chunk] = -np.partition(-similarity, self.k - 1, axis=1)[:, self.k - 1]
        return out


@dataclass
class Standardised:
    """``(score - mean) / std`` with the mean and std of held-out known scores, so that two
    scores of different scales can be added."""

    mean: float = 0.0
    std: float = 1.0

    def fit(self, known: np.ndarray) -> "Standardised":
        self.mean, self.std = float(np.mean(known)), float(np.std(known)) or 1.0
        return self

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return (np.asarray(score, dtype=np.float64) - self.mean) / self.std
