"""The model spec: one typed, versioned record of everything a trained model means.

It is created once, when training starts, stored in the checkpoint and in the exported
model's metadata, and read back by export, evaluation and inference; nothing downstream
assumes a shape, a class count or a label convention of its own. It holds:

* the preprocessing contract (input size, channels, colour conversion, resize,
  normalisation, further steps);
* the class names (2 or more) and the unknown convention: class ``k`` is label ``k``,
  an unknown is the negative label `UNKNOWN` (as pytorch-ood does);
* the score, its fitted parameters, the threshold and how it was chosen;
* the softmax temperature: ``probs = softmax(logits / temperature)``, the probabilities the
  card's rule (``--threshold``, on the top one) reads; 1 unless training fitted it (schema 3);
* the data set: its registry reference, the split seed and validation size, and which of
  its classes are the knowns (the others are unknowns in evaluation);
* the architecture and the schema version. A record written by a newer toolkit is refused
  with a clear error; schema 1 (before the spec) is read and upgraded.

Torch-free: the edge side reads it from ONNX metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from osr_infer.errors import ModelError
from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.scores import score_spec

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")

SCHEMA_VERSION = 3
#: The label of an unknown (out-of-distribution) input, in data sets, predictions and metrics.
UNKNOWN = -1
#: The label of an input whose truth is not known (an unlabelled folder).
UNLABELLED = -2
UNKNOWN_NAME = "unknown"


class SpecError(ModelError, ValueError):
    """A model spec is missing, incomplete, inconsistent or too new."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where the knowns came from, precisely enough to rebuild the same splits."""

    reference: str = "mnist"  # a data set registry reference: mnist, digits, folder:PATH, idx:PATH
    split_seed: int = 0
    n_val: int = 10_000
    all_classes: tuple[str, ...] = ()  # the data set's own classes, before --known-classes
    known_classes: tuple[int, ...] | None = None  # indices into all_classes; None: all of them

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_classes", tuple(str(c) for c in self.all_classes))
        if self.known_classes is not None:
            object.__setattr__(self, "known_classes", tuple(int(k) for k in self.known_classes))
        if not isinstance(self.reference, str) or not self.reference:
            raise SpecError(f"dataset reference must be a non-empty string, not {self.reference!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise SpecError(f"split_seed must be a non-negative integer, not {self.split_seed!r}")
        if isinstance(self.n_val, bool) or not isinstance(self.n_val, int) or self.n_val < 1:
            raise SpecError(f"n_val must be a positive integer, not {self.n_val!r}")
        if self.known_classes is not None:
            bad = [k for k in self.known_classes if not 0 <= k < len(self.all_classes)]
            if bad or len(set(self.known_classes)) != len(self.known_classes):
                raise SpecError(f"known_classes {list(self.known_classes)} must be distinct indices into {len(self.all_classes)} classes")

    @property
    def known_names(self) -> tuple[str, ...]:
        """The names of the known classes, in label order (all classes without ``known_classes``)."""
        if self.known_classes is None:
            return self.all_classes
        return tuple(self.all_classes[k] for k in self.known_classes)

    @property
    def name(self) -> str:
        """The registry entry: ``folder`` for ``folder:PATH``."""
        return self.reference.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "split_seed": self.split_seed, "n_val": self.n_val,
            "all_classes": list(self.all_classes),
            "known_classes": None if self.known_classes is None else list(self.known_classes),
        }

    @classmethod
    def from_dict(cls, data: Any) -> "DatasetSpec":
        if isinstance(data, str):  # schema 1 stored the name only
            return cls(reference=data)
        if not isinstance(data, dict):
            raise SpecError(f"dataset must be a mapping, not {type(data).__name__}")
        return _construct(cls, data, "dataset")


@dataclass(frozen=True)
class ModelSpec:
    """What a model means, from training to every edge (see the module docstring)."""

    class_names: tuple[str, ...]
    architecture: str = "SiameseNet"
    preprocessing: PreprocessContract = PREPROCESSING
    score: str = "msp"
    score_params: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.999
    calibration: dict[str, Any] = field(default_factory=lambda: {"method": "fixed"})
    dataset: DatasetSpec = DatasetSpec()
    temperature: float = 1.0  # probs = softmax(logits / temperature)
    unknown_label: int = UNKNOWN
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.class_names, (str, bytes)) or not isinstance(self.class_names, (list, tuple)):
            raise SpecError(f"class_names must be a list of names, not {type(self.class_names).__name__}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if len(self.class_names) < 2 or not all(isinstance(n, str) and n for n in self.class_names):
            raise SpecError("class_names needs at least two non-empty names")
        if len(set(self.class_names)) != len(self.class_names) or UNKNOWN_NAME in self.class_names:
            raise SpecError(f"class names must be distinct and not {UNKNOWN_NAME!r}: {list(self.class_names)}")
        if self.unknown_label != UNKNOWN:
            raise SpecError(f"unknown_label {self.unknown_label!r} is not this toolkit's convention ({UNKNOWN})")
        if not is_finite_number(self.temperature) or not self.temperature > 0:
            raise SpecError(f"temperature must be a positive finite number, not {self.temperature!r}")
        object.__setattr__(self, "temperature", float(self.temperature))
        if not isinstance(self.score_params, dict) or not isinstance(self.calibration, dict):
            raise SpecError("score_params and calibration must be mappings")
        try:
            score_spec(self.score).check_threshold(self.threshold)
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        object.__setattr__(self, "threshold", float(self.threshold))  # an integer (any size) in JSON is a float threshold
        if self.dataset.known_classes is not None and self.dataset.known_names != self.class_names:
            raise SpecError(
                f"class_names {list(self.class_names)} are not the known classes {list(self.dataset.known_names)} of the data set"
            )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.preprocessing.input_shape

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with ``changes``, validated again."""
        return replace(self, **changes)

    def label_names(self) -> list[str]:
        """Class names followed by ``unknown``: the columns of open-set confusion matrices."""
        return [*self.class_names, UNKNOWN_NAME]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "architecture": self.architecture,
            "class_names": list(self.class_names), "unknown_label": self.unknown_label,
            "preprocessing": self.preprocessing.to_dict(), "score": self.score, "score_params": self.score_params,
            "threshold": self.threshold, "calibration": self.calibration, "dataset": self.dataset.to_dict(),
            "temperature": self.temperature,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelSpec":
        if not isinstance(data, dict):
            raise SpecError(f"a model spec must be a mapping, not {type(data).__name__}")
        data = dict(data)
        version = data.get("schema_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SpecError(f"schema_version must be a positive integer, not {version!r}")
        if version > SCHEMA_VERSION:
            raise SpecError(
                f"this model was written by a newer osr-toolkit (spec schema {version}; this one reads up to "
                f"{SCHEMA_VERSION}): upgrade osr-toolkit"
            )
        data["schema_version"] = SCHEMA_VERSION  # schemas 1 and 2 are read and upgraded below (temperature 1)
        try:
            data["preprocessing"] = PreprocessContract.from_dict(data.get("preprocessing", PREPROCESSING.to_dict()))
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        data["dataset"] = DatasetSpec.from_dict(data.get("dataset", {}))
        return _construct(cls, data, "model spec")


def _construct(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls`` (a dataclass) from ``data``, with one SpecError naming what is missing or unknown."""
    assert dataclasses.is_dataclass(cls)
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = required - set(data)
    if missing:
        raise SpecError(f"{what} lacks {', '.join(sorted(missing))}")
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except SpecError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpecError(f"invalid {what}: {exc}") from None


def finite_json(value: Any) -> str:
    """JSON that refuses NaN and infinities (which are not JSON) instead of writing them."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise SpecError(f"not finite, so not JSON: {exc}") from None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def open_set_labels(class_names: "tuple[str, ...] | list[str]", pred: "np.ndarray", known: "np.ndarray") -> "np.ndarray":
    """The ``label`` column: each row's class name where it is known, ``unknown`` where not."""
    import numpy as np

    names = np.array([*class_names, UNKNOWN_NAME], dtype=object)
    labels: np.ndarray = names[np.where(known, pred, len(class_names))]
    return labels
