"""The exported model as an ONNX Runtime session, with its ``osr.*`` metadata.

Everything the edge side needs to know about a model comes from the model file: the
preprocessing contract, the class names, the score and its threshold (``--threshold``
overrides only the threshold). The graph computes ``logits``, ``probs`` and ``score``
itself, so the decision here is just ``score >= threshold``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from osr_infer.metadata import MetadataError, ModelMetadata
from osr_infer.errors import InferError
from osr_infer.outputs import ModelOutputs
from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.scores import score_spec
from osr_infer.spec import ModelSpec, is_finite_number

DEFAULT_MODEL = Path("artifacts/siamese/model.onnx")
REQUIRED_OUTPUTS = ("logits", "probs")


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

    def __init__(self, path: str | Path, threshold: float | None = None, *, threads: int | None = None, spin: bool = True) -> None:
        self.path = Path(path)
        self.notes: list[str] = []  # things the user should know (printed by the CLI)
        if not self.path.is_file():
            hint = " (export one with `osr-export --format onnx`, or pass --model)" if self.path == DEFAULT_MODEL else ""
            raise InferError(f"model not found: {self.path}{hint}")
        try:
            self._session = ort.InferenceSession(
                str(self.path), session_options(threads or os.cpu_count() or 1, spin=spin), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for foreign files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InferError(f"{self.path} is not a loadable ONNX model ({reason})") from None
        self.metadata = self._read_metadata(threshold)
        self.spec: ModelSpec | None = self.metadata.spec if self.metadata else None
        self.contract: PreprocessContract = self.metadata.contract if self.metadata else PREPROCESSING
        self.score_name = self.metadata.score if self.metadata else None
        self.threshold = self._resolve_threshold(threshold)
        self.input_name = self._check_input()
        self._output_names, self._has_score = self._check_outputs()
        n_classes = self._session.get_outputs()[self._output_names.index("logits")].shape[1]
        if self.metadata:
            self.class_names = tuple(self.metadata.class_names)
            if isinstance(n_classes, int) and n_classes != len(self.class_names):
                raise InferError(f"{self.path}: the model has {n_classes} outputs but its metadata names {len(self.class_names)} classes")
        else:
            if not isinstance(n_classes, int):
                raise InferError(f"{self.path}: without osr.* metadata the number of classes must be fixed in the graph")
            self.class_names = tuple(str(i) for i in range(n_classes))

    def _read_metadata(self, threshold: float | None) -> ModelMetadata | None:
        props = self._session.get_modelmeta().custom_metadata_map
        try:
            return ModelMetadata.from_props(props)
        except MetadataError as exc:
            if any(k.startswith("osr.") for k in props):
                raise InferError(f"{self.path}: invalid osr.* metadata ({exc})") from None
            if threshold is None:
                raise InferError(
                    f"{self.path} carries no osr.* metadata, so its threshold is unknown: pass --threshold "
                    "(export with osr-export to embed threshold, score and preprocessing)"
                ) from None
            self.notes.append(
                f"{self.path.name} has no osr.* metadata: using threshold {threshold:g} and the toolkit's default "
                f"preprocessing ({PREPROCESSING.describe()}, mean {PREPROCESSING.mean}, std {PREPROCESSING.std})"
            )
            return None

    def _resolve_threshold(self, threshold: float | None) -> float:
        if threshold is None:
            assert self.metadata is not None  # _read_metadata demands --threshold otherwise
            return float(self.metadata.threshold)
        try:
            if self.metadata is not None:
                score_spec(self.metadata.score).check_threshold(threshold)
            elif not is_finite_number(threshold):
                raise ValueError(f"threshold must be a finite number, got {threshold}")
        except ValueError as exc:
            raise InferError(f"--threshold: {exc}") from None
        return float(threshold)

    def _check_input(self) -> str:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise InferError(f"{self.path}: expected one input, the model has {len(inputs)}")
        shape, want = inputs[0].shape, list(self.contract.input_shape)
        if inputs[0].type != "tensor(float)" or len(shape) != 4 or [d for d in shape[1:]] != want:
            raise InferError(
                f"{self.path}: input {inputs[0].name} is {inputs[0].type} {shape}, but the preprocessing makes float [N, {', '.join(map(str, want))}]"
            )
        if isinstance(shape[0], int) and shape[0] != 1:
            self.notes.append(f"{self.path.name} has a fixed batch size of {shape[0]}")
        return inputs[0].name

    def _check_outputs(self) -> tuple[list[str], bool]:
        names = [o.name for o in self._session.get_outputs()]
        missing = [n for n in REQUIRED_OUTPUTS if n not in names]
        if missing:
            raise InferError(f"{self.path}: outputs are {names}; osr-infer needs 'logits', 'probs' and 'score' (export with osr-export)")
        if "score" in names:
            return [*REQUIRED_OUTPUTS, "score"], True
        if self.score_name not in (None, "msp"):
            raise InferError(
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
        """Normalised float32 ``(N, C, H, W)`` -> outputs; the decision is ``score >= threshold``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self._session.run(self._output_names, {self.input_name: x})
        logits, probs = out[0], out[1]
        score = out[2] if self._has_score else probs.max(axis=1)
        return ModelOutputs(logits, probs, score)

    def describe(self) -> str:
        origin = f"{self.metadata.architecture}, {self.metadata.dataset}" if self.metadata else "no osr.* metadata"
        return f"{self.path} ({origin}; score {self.score_name or 'score output'} >= {self.threshold:g})"
