"""``osr-infer --parity CHECKPOINT``: does the ONNX model agree with the PyTorch model it came from?

The torch side of osr-infer, loaded by its CLI only when ``--parity`` is given (the edge
install has no torch). The PyTorch model runs on the very same
normalised arrays that ONNX Runtime just classified (``torch.from_numpy`` shares the
memory), so any difference is the runtime's, not the input's. Reported per source,
Polygraphy-style: max/mean |delta logits|, max |delta probs|, max |delta score|, argmax
agreement and decision agreement, each PASSED or FAILED against ``atol`` (default 1e-4).
The decisions compared are the run's own: on the top softmax probability
(``max(probs) >= P``) when the run was given ``--threshold P``, else on the score at the
model's threshold or ``--score-threshold``.

The statistics and the rule that judges them are osr-export's (`osr_export.verify.compare`),
so that the export-time check and this one can never disagree about what "within tolerance"
means: the score may differ by ``atol + SCORE_RTOL * |score|`` (scores such as Mahalanobis
distances run into the hundreds); an argmax flip between top logits within ``2 * atol`` of
each other, or a decision flip for an input whose PyTorch score lies within the score
tolerance of the threshold, is reported but is not a failure: at that distance both
runtimes are right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osr_infer.outputs import ModelOutputs
from osr_infer.parity_rule import DEFAULT_ATOL, SCORE_RTOL, ParityRow, compare, merge_stats
from osr_infer.errors import ModelError, ParameterError
from osr_infer.session import InferenceModel
from osr_train.checkpoint import CheckpointError, file_sha256
from osr_train.scoring import ScoredClassifier


#: The `compare` statistics about decisions, recomputed on max(probs) when the run decides on it.
DECISION_STATS = ("decision_disagree", "near_threshold", "near_threshold_disagree")


def _msp_as_score(outputs: ModelOutputs) -> ModelOutputs:
    """The outputs with the top softmax probability in place of the score (the quantity ``threshold`` is on)."""
    return ModelOutputs(outputs.logits, outputs.probs, outputs.probs.max(axis=1))


@dataclass
class SourceParity:
    """The comparison so far over one source: `compare` statistics, merged batch by batch."""

    name: str
    stats: dict[str, Any] | None = None

    @property
    def n(self) -> int:
        return self.stats["n"] if self.stats else 0

    def add(self, stats: dict[str, Any]) -> None:
        self.stats = merge_stats(self.stats, stats)

    def row(self) -> ParityRow:
        assert self.stats is not None
        return ParityRow("onnx", 0, self.name, **self.stats)

    def failures(self, atol: float) -> list[str]:
        """The checks that fail (``finite``, ``logits``, ``probs``, ``score``, ``argmax``, ``decision``)."""
        return self.row().failed_checks(atol) if self.n else []


class ParityCheck:
    """Collects ONNX-vs-PyTorch differences batch by batch (a pipeline observer)."""

    def __init__(self, checkpoint: str | Path, model: InferenceModel, source_names: list[str], atol: float = DEFAULT_ATOL) -> None:
        from osr_export.source import scored_from_checkpoint

        if not atol > 0:
            raise ParameterError("atol", f"atol must be positive, not {atol}")
        self.checkpoint, self.atol, self.threshold = Path(checkpoint), float(atol), model.threshold
        # The decision the run makes: on max(probs) (--threshold) or on the score, at self.threshold.
        self.on_probs, self.decision_rule = model.decides_on_probs, model.decision_rule
        self.model_path = model.path
        self.notes: list[str] = []
        try:
            scored, spec, _ = scored_from_checkpoint(self.checkpoint)
        except CheckpointError as exc:
            raise ModelError(f"`parity`: {exc}") from None
        meta = model.metadata
        if meta is not None:
            if (meta.score, meta.score_params, meta.spec.temperature) != (scored.score_name, scored.score_params, scored.temperature):
                # Compare like with like: the score the ONNX graph computes is the metadata's.
                scored = ScoredClassifier(scored.classifier, meta.score, meta.score_params, meta.spec.temperature)
            if file_sha256(self.checkpoint) != meta.checkpoint_sha256:
                self.notes.append(
                    f"{self.checkpoint} is not the checkpoint {model.path.name} was exported from (sha256 differs); "
                    "differences will be large"
                )
        if spec.n_classes != len(model.class_names) or spec.input_shape != model.contract.input_shape:
            raise ModelError(
                f"`parity`: {self.checkpoint} takes {spec.input_shape} and has {spec.n_classes} classes; the ONNX model "
                f"takes {model.contract.input_shape} and has {len(model.class_names)}"
            )
        self.scored = scored.eval()
        self.sources = [SourceParity(name) for name in source_names]

    @torch.inference_mode()
    def observe(self, x: np.ndarray, outputs: ModelOutputs, source: np.ndarray) -> None:
        reference = ModelOutputs.from_arrays(self.scored(torch.from_numpy(x)))
        for s in np.unique(source).tolist():
            m = source == s
            ref, got = reference[m], outputs[m]
            stats = compare(ref, got, self.threshold, self.atol)
            if self.on_probs:  # the decision is on max(probs): compare those decisions, by the same rule
                on_msp = compare(_msp_as_score(ref), _msp_as_score(got), self.threshold, self.atol)
                stats.update({k: on_msp[k] for k in DECISION_STATS})
            self.sources[s].add(stats)

    @property
    def passed(self) -> bool:
        return not any(p.failures(self.atol) for p in self.sources if p.n)

    def lines(self) -> list[str]:
        """The report, one line per check; ``[I]`` info, ``[E]`` failure (Polygraphy's tags)."""
        atol, ok = self.atol, lambda bad: "FAILED" if bad else "PASSED"
        out = [
            f"[I] Parity: ONNX Runtime ({self.model_path}) vs PyTorch ({self.checkpoint}), "
            f"atol {atol:g}, decision {self.decision_rule}"
        ]
        for p in self.sources:
            if not p.n:
                out.append(f"[W]     {p.name}: no image classified, nothing compared")
                continue
            failed, st = p.failures(atol), p.stats
            assert st is not None

            def tag(what: str, failed: list[str] = failed) -> str:  # bound now: `failed` is this row's
                return "[E]" if what in failed else "[I]"

            out.append(f"[I]     {p.name} ({p.n:,} images)")
            if st["nonfinite"]:
                out.append(f"[E]         finite   : {st['nonfinite']:,} images with NaN or infinite outputs  FAILED")
            out.append(
                f"{tag('logits')}         logits   : max |Δ| {st['max_abs_logits']:.3e}, mean |Δ| {st['mean_abs_logits']:.3e} "
                f"(atol {atol:g})  {ok('logits' in failed)}"
            )
            out.append(f"{tag('probs')}         probs    : max |Δ| {st['max_abs_probs']:.3e} (atol {atol:g})  {ok('probs' in failed)}")
            out.append(
                f"{tag('score')}         score    : max |Δ| {st['max_abs_score']:.3e} (atol {atol:g} + {SCORE_RTOL:g} x |score|)  "
                f"{ok('score' in failed)}"
            )
            ties = st["argmax_tie_disagree"]
            agree = p.n - st["argmax_disagree"] - ties
            tied = f"; {ties:,} between top logits within 2 x atol (reported, not counted)" if ties else ""
            out.append(f"{tag('argmax')}         argmax   : {agree:,}/{p.n:,} agree{tied}  {ok('argmax' in failed)}")
            agree = p.n - st["decision_disagree"] - st["near_threshold_disagree"]
            near = (
                f"; {st['near_threshold']:,} within the {'probs' if self.on_probs else 'score'} tolerance of the threshold "
                f"({st['near_threshold_disagree']:,} of them differ; reported, not counted)"
            )
            out.append(
                f"{tag('decision')}         decision : {agree:,}/{p.n:,} agree at {self.decision_rule}{near}  {ok('decision' in failed)}"
            )
            if failed:
                out.append(f"[E]     FAILED | {p.name} | mismatched: {', '.join(failed)}")
            else:
                out.append(f"[I]     PASSED | {p.name} | all outputs matched")
        compared = [p for p in self.sources if p.n]
        total = sum(p.n for p in compared)
        if self.passed:
            out.append(f"[I] PASSED | parity ONNX Runtime vs PyTorch | {len(compared)} source(s), {total:,} images within tolerance")
        else:
            bad = [p.name for p in compared if p.failures(atol)]
            out.append(f"[E] FAILED | parity ONNX Runtime vs PyTorch | out of tolerance: {', '.join(bad)}")
        return out
