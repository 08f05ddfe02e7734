"""Regenerate the open-set table of docs/results.md: seed recipe vs best recipe, per score.

Evaluates each checkpoint on its data set's test knowns and all unknown sets (CIFAR-10 test
by default, from $OSR_DATA_DIR) and writes a Markdown table and the raw figures as JSON.

    OSR_DATA_DIR=../shared/datasets python experiments/open_set_table.py \\
        artifacts/baseline/model.pt artifacts/siamese/model.pt artifacts/siamese-best/model.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from osr_infer.cli_support import ConsoleReporter

from experiment_support import write_table
from osr_train.report import evaluate_command

HERE = Path(__file__).resolve().parent


def table(rows: list[dict]) -> str:
    lines = [
        "| model (recipe) | score | closed-set acc. | AUROC | FPR@95%TPR | threshold | known accept. | unknown reject. | 11-class acc. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        label = f"{m['model']} ({m['recipe']})"
        for score, ood in m["ood_pooled"].items():
            stored = score == m["score"]
            at = (
                f"{m['threshold']:.4g} | {m['known_acceptance']:.2%} | {m['unknown_rejection']:.2%} | {m['open_set_accuracy']:.2%}"
                if stored else "| | |"
            )
            name = f"**{score}** (exported)" if stored else score
            lines.append(f"| {label} | {name} | {m['closed_set_accuracy']:.2%} | {ood['auroc']:.4%} | {ood['fpr_at_95_tpr']:.2%} | {at} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", "data")))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "open_set_table")
    args = parser.parse_args()
    reporter = ConsoleReporter(Console(stderr=True))  # progress of each evaluation
    rows = []
    for ckpt in args.checkpoints:
        metrics = evaluate_command(ckpt, data_dir=args.data_dir, tsne=True, reporter=reporter)
        rows.append({k: v for k, v in metrics.items() if not k.startswith("confusion")})
    write_table(args.output, rows, table(rows))


if __name__ == "__main__":
    main()
