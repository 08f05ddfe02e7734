"""The exported model as an ONNX Runtime session, with its ``osr.*`` metadata.

Everything the edge side needs to know about a model comes from the model file: the
preprocessing contract, the class names, the score and its threshold. The graph computes
``logits``, ``probs`` and ``score`` itself, so a decision is one comparison, on one of two
quantities:

* by default, and with ``score_threshold``, the model's own score: ``score >= threshold``
  (the ``score`` output; a model without one decides on msp);
* with ``threshold``, on any model, the top softmax probability (msp, the maximum of
  ``probs``): ``max(probs) >= threshold``, the seed notebook's rule.

`osr_infer.Model` is the public face of this session; this module is its engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from osr_infer.errors import InferenceError, ModelError, ParameterError
from osr_infer.metadata import MetadataError, ModelMetadata
from osr_infer.outputs import ModelOutputs
from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.providers import REDUCED_PRECISIONS, OpenVinoRunner, ResolvedProvider, check_started
from osr_infer.providers import resolve as resolve_provider
from osr_infer.scores import score_spec
from osr_infer.spec import ModelSpec, is_finite_number

REQUIRED_OUTPUTS = ("logits", "probs")
#: The quantity ``threshold`` is on: the top softmax probability.
MSP = "msp"
#: Where a run's threshold came from (`InferenceModel.threshold_origin`): the
#: ``threshold`` or ``score_threshold`` parameter, or the model's own stored threshold.
ORIGINS = ("threshold", "score_threshold", "model")
#: The name of a model's ``score`` output when no osr.* metadata names its score.
SCORE_OUTPUT = "score"


def session_options(threads: int, *, spin: bool) -> ort.SessionOptions:
    """Full graph optimisation, ``threads`` intra-op threads, sequential execution.

    ``spin=False`` stops idle ORT threads from busy-waiting, which would steal the cores
    the decoding workers run on.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class InferenceModel:
    """An exported osr-toolkit model, ready to classify normalised batches."""

    def __init__(
        self,
        path: str | Path,
        threshold: float | None = None,
        *,
        score_threshold: float | None = None,
        threads: int | None = None,
        spin: bool = True,
        provider: ResolvedProvider | None = None,
    ) -> None:
        """``threshold``: decide on the top softmax probability, ``max(probs) >= threshold``
        (in (0, 1)); ``score_threshold``: decide on the model's own score at this threshold
        instead of its stored one. At most one of them. ``provider``: where it runs
        (`osr_infer.providers.resolve`; default the CPU)."""
        self.path = Path(path)
        self.provider = provider if provider is not None else resolve_provider("cpu")
        if self.path.is_file():
            self.provider = self.provider.for_model(self.path)  # TensorRT's engine cache: a folder per model, versions, GPU
        self.threads, self.spin = max(1, threads or os.cpu_count() or 1), spin
        #: What a user of this model should know about how it decides or what it lacks (the
        #: commands print them as notes; a program may log them).
        self.notes: list[str] = []
        if threshold is not None and score_threshold is not None:
            raise ParameterError("threshold", BOTH_THRESHOLDS)
        if not self.path.is_file():
            raise ModelError(f"model not found: {self.path}")
        try:
            self._session = ort.InferenceSession(
                str(self.path), session_options(self.threads, spin=spin), providers=self.provider.session_providers()
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for foreign files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self.provider.name != "cpu":
                raise ParameterError("provider", f"{self.path}: provider {self.provider.name} failed to start ({reason})") from None
            raise ModelError(f"{self.path} is not a loadable ONNX model ({reason})") from None
        self._openvino: OpenVinoRunner | None = None
        if self.provider.runtime == "onnxruntime":
            check_started(self._session, self.provider, str(self.path))
        self.metadata = self._read_metadata(threshold is not None or score_threshold is not None)
        self.spec: ModelSpec | None = self.metadata.spec if self.metadata else None
        self.contract: PreprocessContract = self.metadata.contract if self.metadata else PREPROCESSING
        self.score_name = self.metadata.score if self.metadata else None
        self.input_name = self._check_input()
        self._output_names, self._has_score = self._check_outputs()
        # The decision: which quantity, at which threshold, and where that threshold came from.
        self.decides_on_probs, self.decision_score, self.threshold, self.threshold_origin = self._resolve_decision(
            threshold, score_threshold
        )
        if self.metadata is None:
            self.notes.append(
                f"{self.path.name} has no osr.* metadata: deciding on {self.decision_rule} and using the toolkit's default "
                f"preprocessing ({PREPROCESSING.describe()}, mean {PREPROCESSING.mean}, std {PREPROCESSING.std})"
            )
        elif self.decides_on_probs and self.score_name != MSP:
            self.notes.append(
                f"`threshold` is on the top softmax probability (msp), not on {self.path.name}'s own {self.score_name} score "
                f"(threshold {self.metadata.threshold:g}); `score_threshold` sets that one"
            )
        if self.metadata is not None and self.decides_on_probs and self.metadata.spec.temperature != 1.0:
            fit = self.metadata.spec.calibration.get("temperature")
            why = (f", fitted in training so that msp >= {fit['msp_threshold']:g} accepts {100 * fit['target_tpr']:g}% of validation knowns"
                   if isinstance(fit, dict) and {"msp_threshold", "target_tpr"} <= set(fit) else "")
            self.notes.append(
                f"{self.path.name}'s probabilities are softmax(logits / {self.metadata.spec.temperature:.4g}), its temperature{why}"
            )
        if self.provider.runtime == "openvino":  # ONNX Runtime's session above holds the metadata; OpenVINO runs
            self._openvino = OpenVinoRunner(str(self.path), self.provider, self.threads, self._output_names)
            if any(p in self._openvino.precision for p in REDUCED_PRECISIONS):
                self.notes.append(f"OpenVINO runs in {self._openvino.precision}: scores differ from f32 and decisions near the "
                                  "threshold can change (INFERENCE_PRECISION_HINT=f32 keeps them)")
        elif self.provider.reduced_precision():
            self.notes.append(f"{self.provider.name} runs with {self.provider.reduced_precision()}: scores differ from f32 and "
                              "decisions near the threshold can change (osr-export --verify-provider counts them)")
        n_classes = self._session.get_outputs()[self._output_names.index("logits")].shape[1]
        if self.metadata:
            self.class_names = tuple(self.metadata.class_names)
            if isinstance(n_classes, int) and n_classes != len(self.class_names):
                raise ModelError(f"{self.path}: the model has {n_classes} outputs but its metadata names {len(self.class_names)} classes")
        else:
            if not isinstance(n_classes, int):
                raise ModelError(f"{self.path}: without osr.* metadata the number of classes must be fixed in the graph")
            self.class_names = tuple(str(i) for i in range(n_classes))

    def _read_metadata(self, threshold_given: bool) -> ModelMetadata | None:
        props = self._session.get_modelmeta().custom_metadata_map
        try:
            return ModelMetadata.from_props(props)
        except MetadataError as exc:
            if any(k.startswith("osr.") for k in props):
                raise ModelError(f"{self.path}: invalid osr.* metadata ({exc})") from None
            if not threshold_given:
                raise ModelError(
                    f"{self.path} carries no osr.* metadata, so its threshold is unknown: give `threshold` (on the top "
                    "softmax probability) or `score_threshold` (on its score output); osr-export embeds threshold, score "
                    "and preprocessing"
                ) from None
            return None

    def _resolve_decision(self, threshold: float | None, score_threshold: float | None) -> tuple[bool, str, float, str]:
        """``(on probs, score name, threshold, origin)`` of the decision ``score >= threshold``."""
        if threshold is not None:
            self._check_threshold("threshold", MSP, threshold)
            return True, MSP, float(threshold), "threshold"
        # The model's own score: its metadata's, else the graph's score output, else msp.
        name = self.score_name or (SCORE_OUTPUT if self._has_score else MSP)
        on_probs = not self._has_score  # run() then fills the score with max(probs)
        if score_threshold is not None:
            self._check_threshold("score_threshold", name, score_threshold)
            return on_probs, name, float(score_threshold), "score_threshold"
        assert self.metadata is not None  # _read_metadata demands a threshold otherwise
        return on_probs, name, float(self.metadata.threshold), "model"

    @property
    def calibrated(self) -> bool:
        """Whether the model's stored threshold was calibrated (not fixed) in training."""
        return self.metadata is not None and self.metadata.spec.calibration.get("method") not in (None, "fixed")

    @staticmethod
    def _check_threshold(parameter: str, score: str, value: float) -> None:
        try:
            if score == SCORE_OUTPUT:  # an unnamed score: any finite number
                if not is_finite_number(value):
                    raise ValueError(f"threshold must be a finite number, got {value!r}")
            else:
                score_spec(score).check_threshold(value)
        except ValueError as exc:
            raise ParameterError(parameter, f"{parameter}: {exc}") from None

    def _check_input(self) -> str:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, the model has {len(inputs)}")
        shape, want = inputs[0].shape, list(self.contract.input_shape)
        if inputs[0].type != "tensor(float)" or len(shape) != 4 or [d for d in shape[1:]] != want:
            raise ModelError(
                f"{self.path}: input {inputs[0].name} is {inputs[0].type} {shape}, but the preprocessing makes float [N, {', '.join(map(str, want))}]"
            )
        if isinstance(shape[0], int) and shape[0] != 1:
            self.notes.append(f"{self.path.name} has a fixed batch size of {shape[0]}")
        name: str = inputs[0].name
        return name

    def _check_outputs(self) -> tuple[list[str], bool]:
        names = [o.name for o in self._session.get_outputs()]
        missing = [n for n in REQUIRED_OUTPUTS if n not in names]
        if missing:
            raise ModelError(f"{self.path}: outputs are {names}; osr-infer needs 'logits', 'probs' and 'score' (export with osr-export)")
        if "score" in names:
            return [*REQUIRED_OUTPUTS, "score"], True
        if self.score_name not in (None, "msp"):
            raise ModelError(
                f"{self.path} has no 'score' output and its metadata score is {self.score_name!r}, which osr-infer "
                "will not recompute outside the graph: re-export the model with osr-export"
            )
        self.notes.append(f"{self.path.name} has no 'score' output: using the top softmax probability (msp)")
        return list(REQUIRED_OUTPUTS), False

    @property
    def fixed_batch(self) -> int | None:
        dim = self._session.get_inputs()[0].shape[0]
        return dim if isinstance(dim, int) else None

    def run(self, x: np.ndarray) -> ModelOutputs:
        """Normalised float32 ``(N, C, H, W)`` -> outputs; `decide` makes the decision."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            if self._openvino is not None:
                out = self._openvino.run(self.input_name, x)
            else:
                out = self._session.run(self._output_names, {self.input_name: x})
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types (Fail, RuntimeException...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InferenceError(f"{self.path}: the model failed to run on a batch of {len(x)} ({reason})") from None
        logits, probs = out[0], out[1]
        if logits.ndim != 2 or probs.shape != logits.shape or not len(logits) == len(x):
            raise InferenceError(f"{self.path}: the model returned logits {logits.shape} and probs {probs.shape} for {len(x)} images")
        score = out[2] if self._has_score else probs.max(axis=1)
        return ModelOutputs(logits, probs, score)

    @property
    def decision_rule(self) -> str:
        """``msp >= 0.999``, ``energy >= 4.36612``: what the run decides on."""
        return f"{self.decision_score} >= {self.threshold:g}"

    def decision_values(self, outputs: ModelOutputs) -> np.ndarray:
        """The quantity compared with `threshold`: ``max(probs)`` with ``threshold``, else the score."""
        return outputs.probs.max(axis=1) if self.decides_on_probs else outputs.score

    def decide(self, outputs: ModelOutputs) -> np.ndarray:
        """Known (True) or unknown, per image."""
        return self.decision_values(outputs) >= self.threshold

    def describe(self, flags: dict[str, str] | None = None) -> str:
        """``PATH (SiameseNet, 10 classes, 1x28x28; decides on energy >= 4.36612, the model's calibrated threshold)``;
        a threshold that was given is named by its parameter, or by its flag in ``flags``."""
        shape = "x".join(map(str, self.contract.input_shape))
        what = self.metadata.spec.architecture if self.metadata else "no osr.* metadata"
        return f"{self.path} ({what}, {len(self.class_names)} classes, {shape}; decides on {self.decision_rule}{self.origin_text(flags)})"

    def origin_text(self, flags: dict[str, str] | None = None) -> str:
        """`` (--threshold)`` or ``, the model's calibrated threshold``: where the threshold came from."""
        label = self.origin_label(flags)
        return f", {label}" if self.threshold_origin == "model" else f" ({label})"

    def origin_label(self, flags: dict[str, str] | None = None) -> str:
        """``threshold`` (or its flag in ``flags``) or ``the model's calibrated threshold``."""
        if self.threshold_origin == "model":
            return f"the model's {'calibrated ' if self.calibrated else ''}threshold"
        return (flags or {}).get(self.threshold_origin, self.threshold_origin)


BOTH_THRESHOLDS = "give `threshold` (on the top softmax probability) or `score_threshold` (on the model's own score), not both"
