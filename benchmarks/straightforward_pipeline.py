"""The straightforward pipeline a user would write from the integration guide, for comparison.

    python benchmarks/straightforward_pipeline.py FOLDER MODEL OUT.csv

The integration guide's snippet (docs/integration.md) (PIL decoding and the contract's preprocessing, the layout
step included where the model has it), run over a folder in a ``multiprocessing.Pool`` of one
process per core (``imap``, 64 files a task), ONNX Runtime at batch 256, labels written to a
CSV. ``decode_paths.py`` times it against ``osr-infer`` in the same run, as a subprocess, so
that start-up counts for both.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import re
import sys
from pathlib import Path

import numpy as np

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "integration.md"
SUFFIXES = (".png", ".jpg", ".jpeg")


def snippet(model: Path) -> str:
    """The integration guide's code, reading ``model``."""
    match = re.search(r"<!-- snippet: integration -->\s*```python\n(.*?)```", GUIDE.read_text(), re.S)
    if not match:
        raise SystemExit(f"the integration snippet was not found in {GUIDE}")
    return match.group(1).replace('"model.onnx"', repr(str(model)))


def main() -> None:
    folder, model, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                   if name.lower().endswith(SUFFIXES))
    exec(snippet(model), globals())  # noqa: S102 - the integration guide's snippet, run as a user's script would; defines session, meta and preprocess, as a user's script would
    session, meta, preprocess = globals()["session"], globals()["meta"], globals()["preprocess"]
    rows = []

    def classify(batch_paths: list[str], inputs: list[np.ndarray]) -> None:
        logits, score = session.run(["logits", "score"], {"input": np.stack(inputs)})
        known = score >= meta["threshold"]
        for path, k, ok in zip(batch_paths, logits.argmax(1), known, strict=True):
            rows.append((path, meta["class_names"][k] if ok else "unknown"))

    with multiprocessing.Pool(os.cpu_count()) as pool:
        batch: list[np.ndarray] = []
        for x in pool.imap(preprocess, paths, chunksize=64):
            batch.append(x)
            if len(batch) == 256:
                classify(paths[len(rows) : len(rows) + 256], batch)
                batch = []
        if batch:
            classify(paths[len(rows) :], batch)
    with open(out, "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows])


if __name__ == "__main__":
    main()
