"""The exported model's metadata: the model spec plus the facts of the export (torch-free).

In ONNX every field is a ``metadata_props`` entry named ``osr.<field>`` whose value is the
field's JSON encoding (``osr.threshold`` is ``4.41``, ``osr.score`` is ``"energy"`` with its
quotes); the spec's fields are top-level keys, so a client in any language reads
``osr.threshold`` without knowing the rest. In TorchScript the whole record is the
``osr.json`` extra file. NaN and infinities are refused: they are not JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from osr_infer.errors import ModelError
from osr_infer.preprocess import PreprocessContract
from osr_infer.spec import SCHEMA_VERSION, ModelSpec, SpecError, finite_json

PREFIX = "osr."
TORCHSCRIPT_EXTRA_FILE = "osr.json"
#: Fields of the export itself, next to the spec's.
EXPORT_FIELDS = ("input_shape", "checkpoint_sha256", "toolkit_version", "export_time", "quantization")


class MetadataError(ModelError, ValueError):
    """Metadata is missing, incomplete, inconsistent or too new."""


@dataclass
class ModelMetadata:
    spec: ModelSpec
    checkpoint_sha256: str
    toolkit_version: str
    export_time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # Optional, absent from fp32 exports: how an INT8 model was quantised (readers may ignore it).
    quantization: dict[str, Any] | None = None

    # The spec's facts, read through (one source of truth).
    @property
    def threshold(self) -> float:
        return self.spec.threshold

    @property
    def score(self) -> str:
        return self.spec.score

    @property
    def score_params(self) -> dict[str, Any]:
        return self.spec.score_params

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def contract(self) -> PreprocessContract:
        return self.spec.preprocessing

    @property
    def input_shape(self) -> list[Any]:
        """``["N", C, H, W]``: the batch axis is dynamic."""
        return ["N", *self.spec.input_shape]

    def to_dict(self) -> dict[str, Any]:
        data = {**self.spec.to_dict(), "input_shape": self.input_shape, "checkpoint_sha256": self.checkpoint_sha256,
                "toolkit_version": self.toolkit_version, "export_time": self.export_time}
        if self.quantization is not None:
            data["quantization"] = self.quantization
        return data

    def to_props(self) -> dict[str, str]:
        """``{"osr.threshold": "0.999", ...}`` for ONNX ``metadata_props``."""
        try:
            return {PREFIX + k: finite_json(v) for k, v in self.to_dict().items()}
        except SpecError as exc:
            raise MetadataError(str(exc)) from None

    def to_json(self) -> str:
        try:
            return json.dumps(self.to_dict(), indent=2, allow_nan=False)
        except ValueError as exc:
            raise MetadataError(f"not finite, so not JSON: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelMetadata":
        if not isinstance(data, dict):
            raise MetadataError(f"metadata must be a mapping, not {type(data).__name__}")
        missing = [k for k in ("checkpoint_sha256", "toolkit_version") if k not in data]
        if missing:
            raise MetadataError(f"metadata lacks {', '.join(missing)}")
        try:
            spec = ModelSpec.from_dict({k: v for k, v in data.items() if k not in EXPORT_FIELDS})
        except SpecError as exc:
            raise MetadataError(str(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:  # a field of the wrong kind
            raise MetadataError(f"invalid model spec ({type(exc).__name__}: {exc})") from None
        quantization = data.get("quantization")
        if quantization is not None and not isinstance(quantization, dict):
            raise MetadataError(f"quantization must be a mapping, not {type(quantization).__name__}")
        meta = cls(spec, str(data["checkpoint_sha256"]), str(data["toolkit_version"]), str(data.get("export_time", "")), quantization)
        if "input_shape" in data:
            shape = data["input_shape"]
            if not isinstance(shape, list) or list(shape)[1:] != list(spec.input_shape):
                raise MetadataError(f"input_shape {shape!r} contradicts the preprocessing ({list(spec.input_shape)})")
        return meta

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        """Parse ONNX ``custom_metadata_map``; non-``osr.`` keys are ignored."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise MetadataError("the model carries no osr.* metadata")
        try:
            return cls.from_dict({k: json.loads(v) for k, v in ours.items()})
        except (json.JSONDecodeError, RecursionError) as exc:
            raise MetadataError(f"malformed osr.* metadata: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMetadata":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise MetadataError(f"malformed {TORCHSCRIPT_EXTRA_FILE}: {exc}") from None


__all__ = ["MetadataError", "ModelMetadata", "PREFIX", "SCHEMA_VERSION", "TORCHSCRIPT_EXTRA_FILE"]
