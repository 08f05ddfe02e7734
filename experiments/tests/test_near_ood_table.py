"""The near-OOD table's per-score view (experiments/near_ood_table.py --per-score): every score's
AUROC per set, the stored one marked, and the share rejected at the model's threshold."""

import importlib
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1]


def _row(name: str, stored: str) -> dict:
    return {"name": name, "score": stored, "known_acceptance": 0.99, "closed_set_accuracy": 0.995,
            "sets": {"greek": {"n": 600, "rejected": 0.8, "auroc": {"msp": 0.95, "kl_uniform": 0.99, "openmax": 0.985}},
                     "letters2k": {"n": 2000, "rejected": 0.959, "auroc": {"msp": 0.97, "kl_uniform": 0.9985, "openmax": 0.997}}}}


def test_the_per_score_table_lists_every_score_per_set_and_marks_the_stored_one(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    near_ood_table = importlib.import_module("near_ood_table")
    lines = near_ood_table.score_table(_row("default", "kl_uniform")).splitlines()
    assert lines[0].split(" | ")[1:4] == ["AUROC msp", "AUROC kl_uniform (stored)", "AUROC openmax"]
    assert len(lines) == 2 + 2 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert lines[2] == "| greek (600) | 95.00% | **99.00%** | 98.50% | 80.0% |"
    assert lines[3] == "| letters2k (2,000) | 97.00% | **99.85%** | 99.70% | 95.9% |"
    other = near_ood_table.score_table(_row("seed", "msp")).splitlines()
    assert "AUROC msp (stored)" in other[0] and other[2].startswith("| greek (600) | **95.00%** | 99.00% |")
