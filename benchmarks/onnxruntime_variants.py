"""Why ONNX Runtime is not 2.5x PyTorch at batch 256 here: every graph variant, timed in one run.

Exports the checkpoint as ``osr-export`` does (fp32 and INT8, into a temp folder), then times
on the same batch of 256 at all cores (images/s, best of rounds, interleaved, with a pause
before each so that no runner pays for the previous one's spinning threads):

- ``pytorch eager`` and ``pytorch eager channels-last`` (the reference and its best layout);
- ``ort fp32`` (the exported model: NCHWc layout chosen by ORT_ENABLE_ALL);
- ``ort fp32 without NCHWc`` (the NchwcTransformer disabled);
- ``ort fp32, conv1 padded to 16 channels`` (exact: zero filters and zero weights, so
  that the NCHWc blocks of 16 need no reorder after the first layer);
- ``ort int8`` (osr-export's QDQ model) and ``ort int8, conv2 only`` (the 1-channel first
  convolution left in fp32).

It also records ONNX Runtime's per-operator profile of the exported model, and its CPU time
per image on one thread at batch 64 to 1024: that is what inference costs the decoding
workers in ``osr-infer`` (see inference_throughput.py). Writes JSON.

    python benchmarks/onnxruntime_variants.py [artifacts/siamese/model.pt] [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import collections
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from rich.console import Console

from benchmark_support import export_everything, exported_model_arguments

BATCH = 256


def session(path: Path, threads: int, *, disabled: tuple[str, ...] = (), profile: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if threads == 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(path.parent / "profile")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))


def ort_runner(sess: ort.InferenceSession) -> Callable[[np.ndarray], object]:
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def pad_first_conv(source: Path, target: Path, block: int = 16) -> Path:
    """The same function with conv1 given zero filters up to ``block`` channels, and conv2 zero weights for them."""
    model = onnx.load(str(source))
    inits = {i.name: i for i in model.graph.initializer}
    conv1, conv2 = [n for n in model.graph.node if n.op_type == "Conv"][:2]
    w1, b1, w2 = (numpy_helper.to_array(inits[n]) for n in (conv1.input[1], conv1.input[2], conv2.input[1]))
    pad = block - w1.shape[0]
    if pad <= 0:
        raise SystemExit(f"conv1 already has {w1.shape[0]} channels")
    padded = {
        conv1.input[1]: np.concatenate([w1, np.zeros((pad, *w1.shape[1:]), w1.dtype)]),
        conv1.input[2]: np.concatenate([b1, np.zeros(pad, b1.dtype)]),
        conv2.input[1]: np.concatenate([w2, np.zeros((w2.shape[0], pad, *w2.shape[2:]), w2.dtype)], axis=1),
    }
    for name, array in padded.items():
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
    del model.graph.value_info[:]  # stale channel counts; ORT infers them again
    onnx.save(model, str(target))
    return target


def int8_conv2_only(fp32: Path, target: Path, calibration: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from osr_export.quantize import QUANTIZED_OPS, _calibration_reader, float_head_nodes

    prepared = target.with_suffix(".prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    model = onnx.load(str(prepared))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    quantize_static(
        str(prepared), str(target), _calibration_reader(calibration), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=[*float_head_nodes(model), first_conv], per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    return target


def operator_profile(path: Path, x: np.ndarray, runs: int = 50) -> dict[str, float]:
    """Share of kernel time per operator (ORT's own profiler), exported model, all cores."""
    sess = session(path, os.cpu_count() or 1, profile=True)
    run = ort_runner(sess)
    for _ in range(runs):
        run(x)
    events = json.loads(Path(sess.end_profiling()).read_text())
    totals: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[f"{event['args']['op_name']} ({event['name'].removesuffix('_kernel_time')})"] += event["dur"]
    whole = sum(totals.values())
    return {name: round(100 * t / whole, 1) for name, t in totals.most_common()}


def cpu_us_per_image(run: Callable[[np.ndarray], object], x: np.ndarray, images: int = 20_480) -> float:
    run(x)
    best = float("inf")
    for _ in range(3):
        calls = max(1, images // len(x))
        t0 = time.process_time()
        for _ in range(calls):
            run(x)
        best = min(best, (time.process_time() - t0) * 1e6 / (calls * len(x)))
    return round(best, 1)


def main() -> None:
    args = exported_model_arguments(__doc__, "onnxruntime_variants.json")
    console = Console(stderr=True)

    import torch

    from osr_export.probe import calibration_images
    from osr_export.source import scored_from_checkpoint

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        export_everything(args.checkpoint, tmp, args.data_dir)
        scored, spec, _ = scored_from_checkpoint(args.checkpoint)
        contract = spec.preprocessing
        calibration = contract.normalize(calibration_images(spec, args.data_dir, 512)[0])
        fp32 = tmp / "model.onnx"
        variants = {
            "ort fp32 (exported, NCHWc)": session(fp32, cores),
            "ort fp32 without NCHWc": session(fp32, cores, disabled=("NchwcTransformer",)),
            "ort fp32, conv1 padded to 16 channels": session(pad_first_conv(fp32, tmp / "padded.onnx"), cores),
            "ort int8 (exported)": session(tmp / "model.int8.onnx", cores),
            "ort int8, conv2 only": session(int8_conv2_only(fp32, tmp / "conv2.int8.onnx", calibration), cores),
        }
        runners: dict[str, Callable[[np.ndarray], object]] = {name: ort_runner(s) for name, s in variants.items()}
        classifier = scored.eval()

        @torch.inference_mode()
        def eager(x: np.ndarray) -> object:
            return classifier(torch.from_numpy(x))

        channels_last = copy.deepcopy(classifier)
        channels_last.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # in place; the stubs omit memory_format

        @torch.inference_mode()
        def eager_cl(x: np.ndarray) -> object:
            return channels_last(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

        runners = {"pytorch eager": eager, "pytorch eager channels-last": eager_cl, **runners}
        rng = np.random.default_rng(0)
        x = contract.normalize(rng.integers(0, 256, (BATCH, *contract.pixel_shape), dtype=np.uint8))  # the model's input shape
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for run in runners.values():
            run(x)
        for _ in range(args.rounds):
            for name, run in runners.items():
                time.sleep(0.25)  # let the previous runner's spinning threads (ORT, OpenMP) go idle first
                calls, t0 = 40, time.perf_counter()
                for _ in range(calls):
                    run(x)
                samples[name].append(calls * BATCH / (time.perf_counter() - t0))
        rates = {name: round(max(v), 1) for name, v in samples.items()}
        one_thread = ort_runner(session(fp32, 1))
        per_image = {str(b): cpu_us_per_image(one_thread, np.ascontiguousarray(np.resize(x, (b, *spec.input_shape)))) for b in (64, 128, 256, 512, 1024)}
        profile = operator_profile(fp32, x)

    reference = rates["pytorch eager"]
    result = {
        "benchmark": "onnxruntime graph variants vs PyTorch eager, batch 256, all cores",
        "checkpoint": str(args.checkpoint),
        "input_shape": list(spec.input_shape),
        "images_per_s_best_of_rounds": rates,
        "ratio_vs_pytorch_eager": {name: round(rate / reference, 2) for name, rate in rates.items()},
        "onnxruntime_1_thread_cpu_us_per_image_by_batch": per_image,
        "exported_model_operator_time_percent": profile,
        "machine": {
            "cpus": cores, "platform": platform.platform(), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for name, rate in rates.items():
        console.print(f"{name:40s} {rate:10,.0f} images/s  {rate / reference:5.2f}x eager")
    console.print(f"ORT one thread, CPU µs per image by batch: {per_image}")
    console.print(f"written {args.output}")


if __name__ == "__main__":
    main()
