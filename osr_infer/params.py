"""Declarative parameter constraints, checked once where a configuration enters.

Modelled on scikit-learn's ``_parameter_constraints``: a typed configuration (a dataclass)
lists, per field, the constraints one of which the value must satisfy, and calls
`validate` in ``__post_init__``. The error is a `ParameterError`
(a ValueError) that names the parameter and what was expected, in one line:
``lr must be a number in (0, inf), got nan``; the command-line tools map the parameter to their
flag (``--lr``). NaN and infinities never pass an interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from osr_infer.errors import ParameterError

class Constraint:
    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """A finite int or float within ``[low, high]`` (``None``: unbounded; ``closed`` says which
    ends belong to it: "both", "left", "right" or "neither")."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return False
        if not math.isfinite(value):
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        def number(v: float) -> str:
            return f"{int(v)}" if self.kind is int else f"{v:g}"

        low = "-inf" if self.low is None else number(self.low)
        high = "inf" if self.high is None else number(self.high)
        what = "an integer" if self.kind is int else "a number"
        return f"{what} in {left}{low}, {high}{right}"


@dataclass(frozen=True)
class OneOf(Constraint):
    options: tuple[Any, ...]

    def accepts(self, value: Any) -> bool:
        return value in self.options

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.options))


@dataclass(frozen=True)
class InstanceOf(Constraint):
    kind: type | tuple[type, ...]
    what: str

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def describe(self) -> str:
        return self.what


class _NoneConstraint(Constraint):
    def accepts(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "unset"


NONE = _NoneConstraint()


def option_name(field: str) -> str:
    """The command-line flag of a parameter: ``batch_size`` -> ``--batch-size``."""
    return "--" + field.replace("_", "-")


def check(parameter: str, value: Any, *allowed: Constraint) -> None:
    """Raise ParameterError naming ``parameter`` unless one of ``allowed`` accepts ``value``."""
    if not any(c.accepts(value) for c in allowed):
        expected = " or ".join(c.describe() for c in allowed if c is not NONE)
        raise ParameterError(parameter, f"{parameter} must be {expected}, got {value!r}")


def validate(config: Any, constraints: dict[str, list[Constraint]]) -> None:
    """Raise ParameterError naming the first field of ``config`` that no constraint of its list accepts."""
    for f in fields(config):
        allowed = constraints.get(f.name)
        if allowed is not None:
            check(f.name, getattr(config, f.name), *allowed)
