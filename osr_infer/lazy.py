"""Package roots that name their API without importing it: names load on first use (PEP 562).

``osr-infer one.png`` must not pay for the data-set readers, and ``from osr_train import
TrainConfig`` must not import torch; each package root lists where its names live and gets
its module ``__getattr__`` and ``__dir__`` from `lazy_exports`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose name ``n`` lives in ``package.where[n]``."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook of PEP 562
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module-level hook of PEP 562
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
