"""Static INT8 quantisation (QDQ) of the exported ONNX model with ONNX Runtime's own tools.

The convolutional and fully connected backbone is quantised; the final classifier layer
(the producer of ``logits``) and everything computed from the logits (softmax, score) stay
float32. Quantising those would put the score on an 8-bit grid: with an MSP threshold of
0.999 and a step of 1/255, no input would ever be accepted. The quantised model is then
judged on accuracy and on agreement with the fp32 model, not on a 1e-4 tolerance.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich import box
from rich.table import Table

from osr_infer.errors import ExportError
from osr_infer.metadata import ModelMetadata
from osr_infer.outputs import INPUT_NAME, ModelOutputs
from osr_infer.metrics import open_set_predictions

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "MaxPool", "Relu", "Reshape", "Flatten")
DEFAULT_MIN_AGREEMENT = 0.95


class QuantizationError(ExportError):
    """ONNX Runtime could not quantise the model."""


def _calibration_reader(x: np.ndarray, batch_size: int = 64):  # noqa: ANN202 - CalibrationDataReader
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds the normalised validation knowns in batches."""

        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.start >= len(x):
                return None
            batch = x[self.start : self.start + batch_size]
            self.start += batch_size
            return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

        def rewind(self) -> None:
            self.start = 0

    return Reader()


def float_head_nodes(model: onnx.ModelProto, output: str = "logits") -> list[str]:
    """The nodes kept in float: everything but the backbone that feeds the ``output`` layer.

    The backbone is every node upstream of the inputs of the node producing ``output`` (the
    convolutions and the hidden fully connected layers). What is left is the last layer and
    all of the score's own computation, whatever the score is computed from: softmax and
    logsumexp after the logits, or a Mahalanobis distance's subtraction and products on the
    embedding. Quantising those would put the score on an 8-bit grid.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    head = producers.get(output)
    if head is None:
        return []
    backbone: set[str] = set()
    stack = [producers[i] for i in head.input if i in producers]
    while stack:
        node = stack.pop()
        if node.name in backbone:
            continue
        backbone.add(node.name)
        stack.extend(producers[i] for i in node.input if i in producers)
    return [node.name for node in model.graph.node if node.name not in backbone]


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    metadata: ModelMetadata,
    calibration_name: str,
    per_channel: bool = True,
) -> dict[str, Any]:
    """Write the QDQ INT8 model of ``fp32_path`` to ``out_path``; return its quantisation record.

    ``calibration`` is normalised float32 ``(N,C,H,W)``. The ``osr.*`` metadata is carried
    over, plus ``osr.quantization`` describing how the model was quantised.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="osr-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=False)
            head = float_head_nodes(onnx.load(str(prepared)))
            quantize_static(
                str(prepared), str(quantized), _calibration_reader(calibration), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=head, per_channel=per_channel,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            model = onnx.load(str(quantized))
        except Exception as exc:  # noqa: BLE001 - ORT raises many types
            raise QuantizationError(f"INT8 quantisation failed: {type(exc).__name__}: {exc}") from None
    record = {
        "method": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": "int8 per-channel symmetric" if per_channel else "int8 per-tensor",
        "activations": "int8",
        "calibration": f"MinMax on {calibration_name}",
        "float_nodes": head,
    }
    stamped = ModelMetadata(metadata.spec, metadata.checkpoint_sha256, metadata.toolkit_version, metadata.export_time, record)
    del model.metadata_props[:]
    for key, value in stamped.to_props().items():
        model.metadata_props.add(key=key, value=value)
    # quant_pre_process declares every opset domain ORT knows; keep only those the graph uses.
    used = {n.domain for n in model.graph.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.checker.check_model(model, full_check=True)
    Path(out_path).write_bytes(model.SerializeToString())
    return record


@dataclass
class SourceAccuracy:
    source: str
    role: str
    n: int
    fp32: dict[str, float | None]
    int8: dict[str, float | None]
    argmax_agreement: float
    decision_agreement: float
    open_set_agreement: float
    max_abs_probs: float


@dataclass
class Int8Report:
    threshold: float
    min_agreement: float
    rows: list[SourceAccuracy] = field(default_factory=list)
    size_fp32: int = 0
    size_int8: int = 0

    @property
    def open_set_agreement(self) -> float:
        n = sum(r.n for r in self.rows)
        return sum(r.open_set_agreement * r.n for r in self.rows) / n if n else 0.0

    @property
    def passed(self) -> bool:
        return bool(self.rows) and self.open_set_agreement >= self.min_agreement

    def summary(self) -> str:
        n = sum(r.n for r in self.rows)
        word = "PASS" if self.passed else "FAIL"
        ratio = f"; {self.size_int8 / self.size_fp32:.0%} of the fp32 file size" if self.size_fp32 else ""
        return (
            f"{word} int8: open-set predictions agree with fp32 on {self.open_set_agreement:.2%} of {n:,} images "
            f"(minimum {self.min_agreement:.0%}){ratio}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "threshold": self.threshold,
            "min_agreement": self.min_agreement,
            "open_set_agreement": self.open_set_agreement,
            "size_fp32": self.size_fp32,
            "size_int8": self.size_int8,
            "rows": [asdict(r) for r in self.rows],
        }


def _accuracy(out: ModelOutputs, labels: np.ndarray, role: str, threshold: float) -> dict[str, float | None]:
    pred = out.logits.argmax(1)
    accepted = out.score >= threshold
    if role == "known":
        truth = labels
        return {
            "closed_set_accuracy": float(np.mean(pred == labels)),
            "acceptance": float(np.mean(accepted)),
            "open_set_accuracy": float(np.mean(open_set_predictions(pred, out.score, threshold) == truth)),
        }
    return {"closed_set_accuracy": None, "acceptance": float(np.mean(accepted)),
            "open_set_accuracy": float(np.mean(~accepted)) if role == "unknown" else None}


def int8_report(
    fp32: ModelOutputs, int8: ModelOutputs, sources: list[tuple[str, str, slice, np.ndarray]], threshold: float, min_agreement: float
) -> Int8Report:
    """Per probe source: fp32 and int8 accuracy, and how often int8 agrees with fp32."""
    report = Int8Report(threshold, min_agreement)
    for name, role, part, labels in sources:
        a = fp32[part]
        b = int8[part]
        pa, pb = a.logits.argmax(1), b.logits.argmax(1)
        report.rows.append(SourceAccuracy(
            source=name, role=role, n=len(a),
            fp32=_accuracy(a, labels, role, threshold), int8=_accuracy(b, labels, role, threshold),
            argmax_agreement=float(np.mean(pa == pb)),
            decision_agreement=float(np.mean((a.score >= threshold) == (b.score >= threshold))),
            open_set_agreement=float(np.mean(
                open_set_predictions(pa, a.score, threshold) == open_set_predictions(pb, b.score, threshold)
            )),
            max_abs_probs=float(np.abs(a.probs.astype(np.float64) - b.probs).max()) if len(a) else 0.0,
        ))
    return report


def int8_table(report: Int8Report) -> Table:
    table = Table(title=f"INT8 vs fp32 (threshold {report.threshold:g})", header_style="bold", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("probe", "n", "accuracy\nfp32 / int8", "accepted\nfp32 / int8", "open-set acc.\nfp32 / int8",
                "argmax\nagree", "decisions\nagree", "open-set\nagree", "max\n|Δprobs|"):
        table.add_column(col, justify="left" if col == "probe" else "right", no_wrap=True)

    def pair(row: SourceAccuracy, key: str) -> str:
        a, b = row.fp32[key], row.int8[key]
        return "-" if a is None or b is None else f"{a:.2%} / {b:.2%}"

    for row in report.rows:
        table.add_row(
            row.source, f"{row.n:,}", pair(row, "closed_set_accuracy"), pair(row, "acceptance"),
            pair(row, "open_set_accuracy"), f"{row.argmax_agreement:.2%}", f"{row.decision_agreement:.2%}",
            f"{row.open_set_agreement:.2%}", f"{row.max_abs_probs:.3f}",
        )
    return table


__all__ = ["Int8Report", "QuantizationError", "int8_report", "int8_table", "quantize_int8"]
