"""The near-OOD table of the research log (docs/research/): each model on each unknown set, per score.

    python tools/make_near_ood.py /tmp/near-ood --n 600
    python tools/make_letters.py /tmp/letters --n 2000
    OSR_DATA_DIR=../shared/datasets python experiments/near_ood_table.py artifacts/siamese-seed/model.pt \\
        artifacts/siamese/model.pt --near-ood /tmp/near-ood --letters /tmp/letters

Each checkpoint is evaluated (``osr-train evaluate``) on its test knowns (MNIST test) against
every set of ``make_near_ood.py``, the rendered Latin letters of ``make_letters.py`` and the
CIFAR-10 test JPEGs. For each set: AUROC of every score, and the share rejected at the model's
exported threshold on its stored score; with ``--per-score``, also each model's AUROC of every score
on each set. Writes ``experiments/results/near_ood_table.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rich.console import Console

from osr_infer.cli_support import ConsoleReporter

from experiment_support import write_table
from osr_train.report import evaluate_command

HERE = Path(__file__).resolve().parent


def label(row: dict) -> str:
    """A column's name: the one given (--names), else the network, the recipe and its epochs, the stored score."""
    if row.get("name"):
        return row["name"]
    return f"{row['architecture']} ({row['recipe']}, {row['epochs']} epochs, {row['score']})"


def table(rows: list[dict]) -> str:
    models = [label(r) for r in rows]
    lines = ["| unknown set | " + " | ".join(f"{m}: AUROC (stored score) / rejected at its threshold" for m in models)
             + " | best AUROC of any score (which) |",
             "|---|" + "---|" * (len(models) + 1)]
    for name in rows[0]["sets"]:
        cells = []
        best = (0.0, "")
        for r in rows:
            s = r["sets"][name]
            cells.append(f"{s['auroc'][r['score']]:.2%} / {s['rejected']:.1%}")
            for score, auroc in s["auroc"].items():
                best = max(best, (auroc, f"{label(r)}: {score}"))
        lines.append(f"| {name} ({rows[0]['sets'][name]['n']:,}) | " + " | ".join(cells) + f" | {best[0]:.2%} ({best[1]}) |")
    accept = " | ".join(f"{r['known_acceptance']:.2%} knowns accepted, closed-set {r['closed_set_accuracy']:.2%}" for r in rows)
    lines.append(f"| MNIST test (knowns, 10,000) | {accept} | |")
    return "\n".join(lines)


def score_table(row: dict) -> str:
    """One model's AUROC of every registered score on each set (the stored score in bold), and the
    share its exported threshold rejects."""
    scores = list(next(iter(row["sets"].values()))["auroc"])
    lines = [f"| {label(row)}: unknown set | " + " | ".join(f"AUROC {s}" + (" (stored)" if s == row["score"] else "") for s in scores)
             + " | rejected at its threshold |",
             "|---|" + "---|" * (len(scores) + 1)]
    for name, result in row["sets"].items():
        cells = [f"**{result['auroc'][s]:.2%}**" if s == row["score"] else f"{result['auroc'][s]:.2%}" for s in scores]
        lines.append(f"| {name} ({result['n']:,}) | " + " | ".join(cells) + f" | {result['rejected']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--near-ood", type=Path, required=True, help="the folder make_near_ood.py wrote")
    parser.add_argument("--letters", type=Path, help="the folder make_letters.py wrote")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "near_ood_table")
    parser.add_argument("--names", nargs="+", help="a column name per checkpoint (models of one network and recipe look alike)")
    parser.add_argument("--per-score", action="store_true", help="also a table per model: every score's AUROC on each set")
    args = parser.parse_args()
    if args.names and len(args.names) != len(args.checkpoints):
        parser.error(f"--names: {len(args.names)} names for {len(args.checkpoints)} checkpoints")
    names = args.names or [None] * len(args.checkpoints)
    sets = sorted(p for p in args.near_ood.iterdir() if p.is_dir())
    if args.letters:
        sets.append(args.letters)
    cifar = args.data_dir / "cifar10-test-jpeg"
    if cifar.is_dir():
        sets.append(cifar)
    reporter = ConsoleReporter(Console(stderr=True))  # progress of each evaluation
    rows = []
    for checkpoint, name in zip(args.checkpoints, names, strict=True):
        with tempfile.TemporaryDirectory() as tmp:
            metrics = evaluate_command(checkpoint, data_dir=args.data_dir, ood_dirs=sets, out=Path(tmp), tsne=False, reporter=reporter)
        per_set = {}
        for set_name, result in metrics["per_unknown_set"].items():
            per_set[set_name] = {"n": result["at_threshold"]["n_unknown"], "rejected": result["at_threshold"]["unknown_rejection"],
                             "auroc": {s: r["auroc"] for s, r in result["ood"].items()},  # every registered score
                             "fpr_at_95_tpr": {s: r["fpr_at_95_tpr"] for s, r in result["ood"].items()}}
        rows.append({"checkpoint": str(checkpoint), "name": name, "model": metrics["model"], "recipe": metrics["recipe"], "score": metrics["score"],
                     "architecture": metrics["architecture"], "epochs": metrics["epochs"],
                     "threshold": metrics["threshold"], "closed_set_accuracy": metrics["closed_set_accuracy"],
                     "known_acceptance": metrics["known_acceptance"], "sets": per_set})
    markdown = table(rows)
    if args.per_score:
        markdown += "".join("\n\n" + score_table(row) for row in rows)
    write_table(args.output, rows, markdown)


if __name__ == "__main__":
    main()
