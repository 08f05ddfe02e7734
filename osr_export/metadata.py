"""The model metadata schema, defined once and shared by export and inference (torch-free).

In ONNX every field is a ``metadata_props`` entry named ``osr.<field>`` whose value is the
field's JSON encoding (exporters already put their own keys there, hence the prefix). In
TorchScript the whole record is the ``osr.json`` extra file.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from osr_train.preprocess import PreprocessContract
from osr_train.scores import score_spec

PREFIX = "osr."
TORCHSCRIPT_EXTRA_FILE = "osr.json"
SCHEMA_VERSION = 1


class MetadataError(ValueError):
    """Metadata is missing, incomplete or inconsistent."""


@dataclass
class ModelMetadata:
    threshold: float
    score: str
    class_names: list[str]
    input_shape: list[Any]  # ["N", 1, 28, 28]: the batch axis is dynamic
    preprocessing: dict[str, Any]
    architecture: str
    dataset: str
    checkpoint_sha256: str
    toolkit_version: str
    export_time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    score_params: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    # Optional, absent from fp32 exports: how an INT8 model was quantised (readers may ignore it).
    quantization: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        try:
            score_spec(self.score).check_threshold(self.threshold)
            PreprocessContract.from_dict(self.preprocessing)
        except (ValueError, TypeError) as exc:
            raise MetadataError(str(exc)) from None
        if len(self.class_names) < 2:
            raise MetadataError("class_names needs at least two classes")

    @property
    def contract(self) -> PreprocessContract:
        return PreprocessContract.from_dict(self.preprocessing)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["quantization"] is None:
            del data["quantization"]  # keeps fp32 metadata exactly as schema 1 first defined it
        return data

    def to_props(self) -> dict[str, str]:
        """``{"osr.threshold": "0.999", ...}`` for ONNX ``metadata_props``."""
        return {PREFIX + k: json.dumps(v) for k, v in self.to_dict().items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelMetadata":
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = required - set(data)
        if missing:
            raise MetadataError(f"metadata lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        """Parse ONNX ``custom_metadata_map``; non-``osr.`` keys are ignored."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise MetadataError("the model carries no osr.* metadata")
        try:
            return cls.from_dict({k: json.loads(v) for k, v in ours.items()})
        except json.JSONDecodeError as exc:
            raise MetadataError(f"malformed osr.* metadata: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMetadata":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise MetadataError(f"malformed {TORCHSCRIPT_EXTRA_FILE}: {exc}") from None
