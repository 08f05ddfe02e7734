"""Score a model on the realistic evaluation set of ``make_realistic.py``: photos and scans of
printed and handwritten digits (knowns) and printed letters (unknowns), through ``osr-infer``.

    python tools/make_realistic.py /tmp/realistic --n-digits 300 --n-letters 200
    python experiments/realistic_eval.py /tmp/realistic --model artifacts/siamese/model.onnx

Writes ``experiments/results/realistic_eval.json``: digits correct (accepted with the right
class), digits accepted, letters rejected, per kind (printed / handwritten / letter), and with
``--threshold`` (the card's MSP rule) when asked.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def evaluate(folder: Path, model: Path, threshold: float | None) -> dict:
    from experiment_support import infer_rows

    manifest = json.loads((folder / "manifest.json").read_text())
    entries = manifest["files"] if isinstance(manifest, dict) and "files" in manifest else manifest
    kinds = {str((folder / e["file"]).resolve()): e for e in entries}
    status, rows = infer_rows([folder / "digits"], model, unknown=[str(folder / "letters")], threshold=threshold)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        path = Path(row["path"]).resolve()
        entry = kinds.get(str(path), {})
        kind = entry.get("kind") or ("letter" if path.parent.name == "letters" else "digit")
        c = counts[kind]
        c["n"] += 1
        if kind == "letter":
            c["rejected"] += row["label"] == "unknown"
        else:
            c["accepted"] += row["label"] != "unknown"
            c["correct"] += row["label"] == path.parent.name
    summary = {kind: {**c, **({"rejected_share": c["rejected"] / c["n"]} if kind == "letter" else
                              {"correct_share": c["correct"] / c["n"], "accepted_share": c["accepted"] / c["n"]})}
               for kind, c in counts.items()}
    digits = [c for kind, c in counts.items() if kind != "letter"]
    n_digits = sum(c["n"] for c in digits)
    summary["all digits"] = {"n": n_digits, "correct_share": sum(c["correct"] for c in digits) / max(n_digits, 1)}
    return {"status": status, "threshold_option": threshold, "by_kind": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="output folder of make_realistic.py")
    parser.add_argument("--model", type=Path, default=Path("artifacts/siamese/model.onnx"))
    parser.add_argument("--threshold", type=float, default=None, help="also decide on MSP >= this (the card's rule)")
    parser.add_argument("--out", type=Path, default=RESULTS / "realistic_eval.json")
    args = parser.parse_args()
    result = {"model": str(args.model), "folder": str(args.folder), "own_threshold": evaluate(args.folder, args.model, None)}
    if args.threshold is not None:
        result["msp_threshold"] = evaluate(args.folder, args.model, args.threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
