"""``--parity CHECKPOINT``: does the ONNX model agree with the PyTorch model it came from?

The only module of osr_infer that imports torch. The PyTorch model runs on the very same
normalised arrays that ONNX Runtime just classified (``torch.from_numpy`` shares the
memory), so any difference is the runtime's, not the input's. Reported per source,
Polygraphy-style: max/mean |delta logits|, max |delta probs|, max |delta score|, argmax
agreement and decision agreement at the threshold, each PASSED or FAILED against ``atol``
(default 1e-4). An argmax flip between near-tied top logits, or a decision flip for an
input whose score lies within ``atol`` of the threshold, is reported but is not a failure:
at that distance the two runtimes are both right. Scores can be large (Mahalanobis
distances), so the score tolerance and the threshold band scale as ``atol * max(1, |x|)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from osr_infer.errors import InferError
from osr_infer.session import InferenceModel, ModelOutputs
from osr_train.checkpoint import CheckpointError, file_sha256
from osr_train.scoring import ScoredClassifier

DEFAULT_ATOL = 1e-4


@dataclass
class SourceParity:
    """Running comparison over one source."""

    name: str
    n: int = 0
    logits_max: float = 0.0
    logits_sum: float = 0.0
    logits_count: int = 0
    probs_max: float = 0.0
    score_max: float = 0.0
    score_scaled_max: float = 0.0  # max |delta| / max(1, |score|): scores like Mahalanobis run into the hundreds
    argmax_disagree: int = 0
    argmax_ties: int = 0  # disagreements between top logits within atol: reported, not failures
    decision_disagree: int = 0
    decision_near: int = 0  # inputs whose score is within atol of the threshold (either runtime)
    decision_near_flips: int = 0  # disagreements among those: reported, not failures

    @property
    def logits_mean(self) -> float:
        return self.logits_sum / self.logits_count if self.logits_count else 0.0

    def failures(self, atol: float) -> list[str]:
        out = []
        if self.logits_max > atol:
            out.append("logits")
        if self.probs_max > atol:
            out.append("probs")
        if self.score_scaled_max > atol:
            out.append("score")
        if self.argmax_disagree - self.argmax_ties:
            out.append("argmax")
        if self.decision_disagree - self.decision_near_flips:
            out.append("decision")
        return out


class ParityCheck:
    """Collects ONNX-vs-PyTorch differences batch by batch (a pipeline observer)."""

    def __init__(self, checkpoint: str | Path, model: InferenceModel, source_names: list[str], atol: float = DEFAULT_ATOL) -> None:
        from osr_export.source import scored_from_checkpoint

        if not atol > 0:
            raise InferError(f"--atol must be positive, not {atol}")
        self.checkpoint, self.atol, self.threshold = Path(checkpoint), float(atol), model.threshold
        self.model_path = model.path
        self.notes: list[str] = []
        try:
            scored, config = scored_from_checkpoint(self.checkpoint)
        except CheckpointError as exc:
            raise InferError(f"--parity: {exc}") from None
        meta = model.metadata
        if meta is not None:
            if (meta.score, meta.score_params) != (scored.score_name, scored.score_params):
                # Compare like with like: the score the ONNX graph computes is the metadata's.
                scored = ScoredClassifier(scored.classifier, meta.score, meta.score_params)
            if file_sha256(self.checkpoint) != meta.checkpoint_sha256:
                self.notes.append(
                    f"{self.checkpoint} is not the checkpoint {model.path.name} was exported from (sha256 differs); "
                    "differences will be large"
                )
        if len(config["class_names"]) != len(model.class_names):
            raise InferError(f"--parity: {self.checkpoint} has {len(config['class_names'])} classes, the ONNX model {len(model.class_names)}")
        self.scored = scored.eval()
        self.sources = [SourceParity(name) for name in source_names]

    @torch.inference_mode()
    def observe(self, x: np.ndarray, outputs: ModelOutputs, source: np.ndarray) -> None:
        logits, probs, score = (t.numpy() for t in self.scored(torch.from_numpy(x)))
        d_logits = np.abs(logits - outputs.logits)
        d_probs = np.abs(probs - outputs.probs).max(axis=1)
        d_score = np.abs(score - outputs.score)
        d_score_scaled = d_score / np.maximum(1.0, np.abs(score))
        arg_pt, arg_ort = logits.argmax(1), outputs.logits.argmax(1)
        top2 = np.sort(logits, axis=1)[:, -2:]
        tie = (top2[:, 1] - top2[:, 0]) <= self.atol
        dec_pt, dec_ort = score >= self.threshold, outputs.score >= self.threshold
        band = self.atol * max(1.0, abs(self.threshold))
        near = (np.abs(score - self.threshold) <= band) | (np.abs(outputs.score - self.threshold) <= band)
        for s in np.unique(source).tolist():
            m = source == s
            p = self.sources[s]
            p.n += int(m.sum())
            p.logits_max = max(p.logits_max, float(d_logits[m].max()))
            p.logits_sum += float(d_logits[m].sum(dtype=np.float64))
            p.logits_count += int(d_logits[m].size)
            p.probs_max = max(p.probs_max, float(d_probs[m].max()))
            p.score_max = max(p.score_max, float(d_score[m].max()))
            p.score_scaled_max = max(p.score_scaled_max, float(d_score_scaled[m].max()))
            flips = m & (arg_pt != arg_ort)
            p.argmax_disagree += int(flips.sum())
            p.argmax_ties += int((flips & tie).sum())
            flips = m & (dec_pt != dec_ort)
            p.decision_disagree += int(flips.sum())
            p.decision_near += int((m & near).sum())
            p.decision_near_flips += int((flips & near).sum())

    @property
    def passed(self) -> bool:
        return not any(p.failures(self.atol) for p in self.sources if p.n)

    def lines(self) -> list[str]:
        """The report, one line per check; ``[I]`` info, ``[E]`` failure (Polygraphy's tags)."""
        atol, ok = self.atol, lambda bad: "FAILED" if bad else "PASSED"
        out = [
            f"[I] Parity: ONNX Runtime ({self.model_path}) vs PyTorch ({self.checkpoint}), "
            f"atol {atol:g}, decision threshold {self.threshold:g}"
        ]
        for p in self.sources:
            if not p.n:
                out.append(f"[W]     {p.name}: no image classified, nothing compared")
                continue
            failed = p.failures(atol)
            tag = lambda what: "[E]" if what in failed else "[I]"  # noqa: E731
            out.append(f"[I]     {p.name} ({p.n:,} images)")
            out.append(f"{tag('logits')}         logits   : max |Δ| {p.logits_max:.3e}, mean |Δ| {p.logits_mean:.3e} (atol {atol:g})  {ok('logits' in failed)}")
            out.append(f"{tag('probs')}         probs    : max |Δ| {p.probs_max:.3e} (atol {atol:g})  {ok('probs' in failed)}")
            out.append(f"{tag('score')}         score    : max |Δ| {p.score_max:.3e} (atol {atol:g} x max(1, |score|))  {ok('score' in failed)}")
            ties = f"; {p.argmax_ties:,} between near-tied logits (reported, not counted)" if p.argmax_ties else ""
            out.append(f"{tag('argmax')}         argmax   : {p.n - p.argmax_disagree:,}/{p.n:,} agree{ties}  {ok('argmax' in failed)}")
            near = f"; {p.decision_near:,} within atol of the threshold ({p.decision_near_flips:,} of them differ; reported, not counted)"
            out.append(
                f"{tag('decision')}         decision : {p.n - p.decision_disagree:,}/{p.n:,} agree at {self.threshold:g}{near}  "
                f"{ok('decision' in failed)}"
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
