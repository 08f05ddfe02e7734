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

from osr_infer import Model, providers
from osr_infer.provider_parity import compare_provider, source_inputs
from osr_infer.io import write_json

HERE = Path(__file__).resolve().parent
SOURCES = ("mnist:test", "cifar10:test")


def images_per_s(model: Model, source: str, data_dir: Path) -> float:
    """The whole pipeline's speed on ``source`` (decoding included), as osr-infer runs it."""
    t0 = time.perf_counter()
    rows = sum(len(batch) for batch in model.predict_files(source, data_dir=data_dir))
    return rows / (time.perf_counter() - t0)


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
    x, groups = source_inputs(reference, list(SOURCES), args.data_dir)  # the same inputs for every provider
    cpu_speed = {source: images_per_s(reference, source, args.data_dir) for source in SOURCES}
    result: dict[str, object] = {"benchmark": "provider_parity", "model": str(reference.path), "reference": "cpu",
                                 "machine": {"cores": os.cpu_count(), "platform": platform.platform()}, "runs": {}}
    for label, name, options in runs:
        parity = compare_provider(reference.path, x, name, options, groups=groups)
        model = Model.load(args.model, provider=name, provider_options=options)
        per_source = {group.name: {"images": group.images, "decision_flips": group.decision_flips,
                                   "top_class_disagreements": group.top_class_disagreements,
                                   "max_abs_score_difference": group.max_abs_score_difference,
                                   "images_per_s": round(images_per_s(model, group.name, args.data_dir), 1),
                                   "cpu_images_per_s": round(cpu_speed[group.name], 1)} for group in parity.groups}
        result["runs"][label] = {"provider": parity.provider, "notes": parity.notes, "sources": per_source}  # type: ignore[index]
        print(label, parity.summary())
    result["command"] = "python benchmarks/provider_parity.py"
    write_json(args.output, result)


if __name__ == "__main__":
    main()
