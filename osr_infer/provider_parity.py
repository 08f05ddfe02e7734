"""Does a provider decide as the CPU does? The same model file on both, the same inputs, compared.

A GPU, TensorRT or OpenVINO runs the model with other kernels (and, when asked, in reduced
precision), so scores differ in their last bits and a decision near the threshold can flip. What
matters to a user is counted per group of inputs: decision flips (known/unknown), top-class
disagreements and the largest score difference, against ONNX Runtime's CPU provider.
``osr-export --verify-provider NAME`` runs it on the export's probe and fails on any flip unless
``max_flips`` allows some.

>>> from osr_infer import Model
>>> from osr_infer.provider_parity import compare_provider, source_inputs
>>> x, groups = source_inputs(Model.load(), ["mnist:test", "cifar10:test"])      # doctest: +SKIP
>>> parity = compare_provider(Model.load().path, x, "openvino", groups=groups)  # doctest: +SKIP
>>> parity.passed, parity.flips, parity.summary()                                # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osr_infer.errors import ParameterError
from osr_infer.outputs import DEFAULT_BATCH_SIZE, ModelOutputs


@dataclass(frozen=True)
class GroupParity:
    """One group of inputs (e.g. the probe's MNIST test digits) on the provider against the CPU."""

    name: str
    images: int
    decision_flips: int
    top_class_disagreements: int
    max_abs_score_difference: float


@dataclass
class ProviderParity:
    """A provider against the CPU provider on the same inputs: per group, and in total."""

    provider: str  # as the run describes it (name and options)
    groups: list[GroupParity]
    max_flips: int = 0
    images_per_s: float = 0.0
    cpu_images_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def flips(self) -> int:
        return sum(g.decision_flips for g in self.groups)

    @property
    def top_class_disagreements(self) -> int:
        return sum(g.top_class_disagreements for g in self.groups)

    @property
    def max_abs_score_difference(self) -> float:
        return max((g.max_abs_score_difference for g in self.groups), default=0.0)

    @property
    def passed(self) -> bool:
        return self.flips <= self.max_flips and all(np.isfinite(g.max_abs_score_difference) for g in self.groups)

    def summary(self) -> str:
        n = sum(g.images for g in self.groups)
        verdict = "PASS" if self.passed else "FAIL"
        allowed = f" (at most {self.max_flips} allowed)" if self.max_flips else ""
        return (f"{verdict} provider {self.provider}: {self.flips} decision flips{allowed}, {self.top_class_disagreements} top-class "
                f"disagreements, max |score difference| {self.max_abs_score_difference:.2g} against the CPU provider on {n:,} images")

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "passed": self.passed, "max_flips": self.max_flips, "decision_flips": self.flips,
                "top_class_disagreements": self.top_class_disagreements, "max_abs_score_difference": self.max_abs_score_difference,
                "images_per_s": self.images_per_s, "cpu_images_per_s": self.cpu_images_per_s, "notes": self.notes,
                "groups": [asdict(g) for g in self.groups]}


def _run_all(session: Any, x: np.ndarray, batch_size: int) -> tuple[ModelOutputs, float]:
    t0 = time.perf_counter()
    parts = [session.run(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
    return ModelOutputs.concat(parts), time.perf_counter() - t0


def compare_provider(
    model: str | Path,
    x: np.ndarray,
    provider: str,
    provider_options: dict[str, str] | None = None,
    *,
    groups: list[tuple[str, slice]] | None = None,
    max_flips: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ProviderParity:
    """Run ``model`` (an ONNX file) on ``provider`` and on the CPU provider over ``x`` (normalised
    float32 ``(N, C, H, W)``, as the model's contract makes it) and count what differs, per group
    of ``groups`` (name, slice of ``x``; default one group). The decisions are the model's own
    (its score and stored threshold). Raises `ParameterError` naming ``provider`` where the
    provider is not available, ``max_flips`` where it is negative."""
    from osr_infer.providers import resolve
    from osr_infer.session import InferenceModel

    if not isinstance(max_flips, int) or isinstance(max_flips, bool) or max_flips < 0:
        raise ParameterError("max_flips", f"max_flips must be a non-negative integer, not {max_flips!r}")
    if x.ndim != 4 or len(x) == 0:
        raise ParameterError("x", f"x must be a non-empty batch (N, C, H, W), not of shape {x.shape}")
    reference = InferenceModel(model, provider=resolve("cpu"))
    tested = InferenceModel(model, provider=resolve(provider, provider_options))
    expected, cpu_seconds = _run_all(reference, x, batch_size)
    got, seconds = _run_all(tested, x, batch_size)
    flips = reference.decide(expected) != tested.decide(got)
    top = expected.probs.argmax(axis=1) != got.probs.argmax(axis=1)
    difference = np.abs(got.score.astype(np.float64) - expected.score.astype(np.float64))
    difference[~np.isfinite(got.score)] = np.inf
    result = []
    for name, part in groups or [("inputs", slice(0, len(x)))]:
        result.append(GroupParity(name, int(len(flips[part])), int(flips[part].sum()), int(top[part].sum()),
                                  float(difference[part].max()) if len(difference[part]) else 0.0))
    return ProviderParity(tested.provider.describe(), result, max_flips, round(len(x) / max(seconds, 1e-9), 1),
                          round(len(x) / max(cpu_seconds, 1e-9), 1), list(tested.notes))


def source_inputs(model: Any, sources: list[str], data_dir: str | Path | None = None) -> tuple[np.ndarray, list[tuple[str, slice]]]:
    """The normalised inputs of ``sources`` (files, folders, data set references such as
    ``mnist:test``) for `compare_provider`, through ``model``'s (an `osr_infer.Model`) contract,
    with one group per source."""
    from osr_infer.data import default_data_dir
    from osr_infer.sources import resolve_sources

    root = Path(data_dir) if data_dir is not None else default_data_dir()
    parts, groups, start = [], [], 0
    for source in resolve_sources(sources, [], root, model.contract, model.spec, model.classes):
        pixels = source.images if source.images is not None else model.preprocess(list(source.paths or []))
        parts.append(model.contract.normalize(pixels))
        groups.append((source.name, slice(start, start + len(pixels))))
        start += len(pixels)
    return np.concatenate(parts), groups


__all__ = ["GroupParity", "ProviderParity", "compare_provider", "source_inputs"]
