"""What the quality experiments share: a model's rows over folders, through the public API, and
the writing of a results table with its raw figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def infer_rows(inputs: list[Path], model: Path, *, threshold: float | None = None,
               unknown: list[str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Every row ``osr-infer INPUTS --model MODEL [--threshold T] [--unknown U]`` would write, as
    dicts (``osr_infer.Predictions.to_rows``), and the command's exit status: 3 where a file was
    skipped, else 0."""
    from osr_infer import Model

    m = Model.load(model, threshold=threshold)
    rows: list[dict[str, Any]] = []
    skipped = 0
    for batch in m.predict_files([str(p) for p in inputs], unknown=unknown or ()):
        rows.extend(batch.to_rows())
        skipped += len(batch.failures)
    return (3 if skipped else 0), rows


def write_table(output: Path, rows: Any, markdown: str) -> None:
    """``output``.json (the raw figures) and ``output``.md (the table the docs quote), and the table printed."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
