"""The model that ships with the package: its card run, and whether a re-created one is the same.

1. The card run: ``osr-infer mnist:test --unknown cifar10:test`` with the shipped model
   (``osr_infer/models/mnist-default.onnx``), the figures ``docs/model-card.md`` quotes:
   closed-set accuracy, known acceptance, unknown rejection, AUROC of the stored score, and
   the top-probability rule (``--threshold 0.999``) on the same images. Goals (issue #31):
   closed-set >= 99.5 %, CIFAR-10 AUROC >= 99.95 %.
2. ``--compare NEW.onnx`` (a model re-created with ``make shipped-model``): the weights
   (every ONNX initializer) bit for bit, the osr.* metadata but the export time and the
   checkpoint's hash, and the outputs on the 20,000 images of the card run.

    python experiments/shipped_model.py [--data-dir ../shared/datasets] [--compare artifacts/shipped-seed0/model.onnx]

Writes ``experiments/results/shipped_model.json`` (without ``--compare``: the card run only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from osr_infer.io import write_json
from osr_infer.model import Model, shipped_model_path

HERE = Path(__file__).resolve().parent
#: Metadata that differs between two exports of the same weights.
VOLATILE = ("osr.export_time", "osr.checkpoint_sha256", "osr.toolkit_version")


def card_run(model: Model, data_dir: Path) -> dict[str, Any]:
    """The card's figures: what ``osr-infer mnist:test --unknown cifar10:test`` reports."""
    from osr_infer.report import run_metrics

    run = model.predict_files(["mnist:test"], unknown=["cifar10:test"], data_dir=data_dir).collect()
    metrics = run_metrics(run)["all labelled"]
    return {
        "decision": model.decision_rule,
        "closed_set_accuracy": metrics["closed_set_accuracy"], "known_acceptance": metrics["known_acceptance"],
        "unknown_rejection": metrics["unknown_rejection"], "open_set_accuracy": metrics["open_set_accuracy"],
        "auroc": metrics["ood"]["auroc"], "fpr_at_95_tpr": metrics["ood"]["fpr_at_95_tpr"],
        "n_known": metrics["n_known"], "n_unknown": metrics["n_unknown"],
    }


def outputs(path: Path, data_dir: Path) -> np.ndarray:
    model = Model.load(path)
    return np.concatenate([np.stack([b.score, b.probability]) for b in model.predict_files(
        ["mnist:test"], unknown=["cifar10:test"], data_dir=data_dir)], axis=1)


def compare(shipped: Path, candidate: Path, data_dir: Path) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load(str(shipped)), onnx.load(str(candidate))
    wa = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    wb = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    same_weights = wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) and wa[k].dtype == wb[k].dtype for k in wa)
    ma = {p.key: p.value for p in a.metadata_props if p.key not in VOLATILE}
    mb = {p.key: p.value for p in b.metadata_props if p.key not in VOLATILE}
    oa, ob = outputs(shipped, data_dir), outputs(candidate, data_dir)
    return {
        "candidate": str(candidate), "weights_bit_for_bit": bool(same_weights), "metadata_equal_but_export_time_and_hash": ma == mb,
        "metadata_differences": sorted(k for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k)),
        "outputs_bit_for_bit": bool(np.array_equal(oa, ob)), "max_abs_difference": float(np.abs(oa - ob).max()),
        "graph_equal": a.graph.SerializeToString() == b.graph.SerializeToString(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--compare", type=Path, help="A re-created model to compare with the shipped one.")
    parser.add_argument("--reference", type=Path, help="Compare with this model instead of the shipped one (e.g. two runs of one seed).")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "shipped_model.json")
    args = parser.parse_args()
    path = shipped_model_path()
    model = Model.load()
    result: dict[str, Any] = {
        "model": "osr_infer/models/" + path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size, "card_run": card_run(model, args.data_dir),
        "top_probability_rule": card_run(Model.load(threshold=0.999), args.data_dir),
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    if args.compare is not None:
        result["recreated"] = compare(args.reference or path, args.compare, args.data_dir)
        result["recreated"]["reference"] = str(args.reference or result["model"])
    write_json(args.output, result)
    card = result["card_run"]
    print(f"card run ({card['decision']}): closed-set {card['closed_set_accuracy']:.2%}, known acceptance "
          f"{card['known_acceptance']:.2%}, unknown rejection {card['unknown_rejection']:.2%}, AUROC {card['auroc']:.2%}")
    if "recreated" in result:
        print(f"re-created: {result['recreated']}")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
