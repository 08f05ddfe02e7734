"""Each available provider against ONNX Runtime's CPU provider: decision flips, top-class
disagreements, the largest score difference, and images/s, on 10,000 MNIST test digits and the
10,000 CIFAR-10 test JPEGs (the shipped model unless a model is given). OpenVINO is measured in
f32 (the default) and, where the CPU has it, in bf16.

    python benchmarks/provider_parity.py [MODEL.onnx] [--data-dir DIR]

Writes ``benchmarks/results/provider_parity.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from osr_infer import Model, providers
from osr_infer.io import write_json

HERE = Path(__file__).resolve().parent
SOURCES = ("mnist:test", "cifar10:test")


def classify(model: Model, source: str, data_dir: Path) -> tuple[dict[str, np.ndarray], float]:
    t0 = time.perf_counter()
    batches = list(model.predict_files(source, data_dir=data_dir))
    seconds = time.perf_counter() - t0
    return {f: np.concatenate([getattr(b, f) for b in batches]) for f in ("known", "class_index", "score")}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=None)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets")))
    parser.add_argument("--output", type=Path, default=HERE / "results" / "provider_parity.json")
    args = parser.parse_args()
    runs: list[tuple[str, str, dict[str, str]]] = [(name, name, {}) for name in providers.available()]
    if "openvino" in providers.available():
        import openvino as ov

        if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            runs.append(("openvino bf16", "openvino", {"INFERENCE_PRECISION_HINT": "bf16"}))
    reference = Model.load(args.model, provider="cpu")
    expected = {source: classify(reference, source, args.data_dir) for source in SOURCES}
    result: dict[str, object] = {"benchmark": "provider_parity", "model": str(reference.path), "reference": "cpu",
                                 "machine": {"cores": os.cpu_count(), "platform": platform.platform()}, "runs": {}}
    for label, name, options in runs:
        model = Model.load(args.model, provider=name, provider_options=options)
        per_source = {}
        for source in SOURCES:
            rows, seconds = classify(model, source, args.data_dir)
            ref, ref_seconds = expected[source]
            per_source[source] = {
                "images": len(rows["known"]), "decision_flips": int((rows["known"] != ref["known"]).sum()),
                "top_class_disagreements": int((rows["class_index"] != ref["class_index"]).sum()),
                "max_abs_score_difference": float(np.abs(rows["score"] - ref["score"]).max()),
                "images_per_s": round(len(rows["known"]) / seconds, 1), "cpu_images_per_s": round(len(ref["known"]) / ref_seconds, 1),
            }
        result["runs"][label] = {"provider": model.provider.describe(), "notes": model.notes, "sources": per_source}  # type: ignore[index]
        print(label, {s: (v["decision_flips"], v["top_class_disagreements"], f"{v['max_abs_score_difference']:.2e}") for s, v in per_source.items()})
    result["command"] = "python benchmarks/provider_parity.py"
    write_json(args.output, result)


if __name__ == "__main__":
    main()
