"""ONNX export of a `ScoredClassifier` with a dynamic batch axis and ``osr.*`` metadata."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from osr_export import DEFAULT_OPSET
from osr_infer.errors import ExportError
from osr_infer.metadata import ModelMetadata
from osr_infer.outputs import INPUT_NAME, OUTPUT_NAMES
from osr_train.scoring import ScoredClassifier

log = logging.getLogger(__name__)




def _has_dynamic_batch(model: onnx.ModelProto) -> bool:
    tensors = list(model.graph.input) + list(model.graph.output)
    return all(t.type.tensor_type.shape.dim[0].dim_param and not t.type.tensor_type.shape.dim[0].dim_value for t in tensors)


def _dynamo_export(module: torch.nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    # torch.onnx warns on every export that the optional torchvision ops are not registered.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"x": {0: batch}}, opset_version=opset, external_data=False, verbose=False,
        )
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    return program.model_proto


def _legacy_export(module: torch.nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buffer,  # type: ignore[arg-type]  # a file object is accepted; the stubs say path
            dynamo=False, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}, opset_version=opset,
        )
    return onnx.load_from_string(buffer.getvalue())


def to_onnx_model(scored: ScoredClassifier, metadata: ModelMetadata, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export with the dynamo exporter; fall back to TorchScript-based export, loudly, if it
    fails or loses the dynamic batch axis. Never returns a fixed-batch model."""
    if opset < DEFAULT_OPSET:
        raise ExportError(f"opset {opset} is too old; {DEFAULT_OPSET} or newer is required")
    scored = scored.eval().cpu()
    c = metadata.contract
    example = torch.zeros(2, c.channels, c.size, c.size)
    try:
        model = _dynamo_export(scored, example, opset)
        if not _has_dynamic_batch(model):
            raise ExportError("the dynamo exporter fixed the batch axis")
    except Exception as exc:  # noqa: BLE001 - any exporter failure means: try the other path
        log.warning("dynamo ONNX export unusable (%s); falling back to the TorchScript-based exporter", exc)
        model = _legacy_export(scored, example, opset)
        if not _has_dynamic_batch(model):
            raise ExportError("neither ONNX exporter produced a dynamic batch axis") from None
    for key, value in metadata.to_props().items():
        entry = next((p for p in model.metadata_props if p.key == key), None) or model.metadata_props.add()
        entry.key, entry.value = key, value
    shape = ",".join(str(d) for d in metadata.input_shape)
    model.doc_string = f"osr-toolkit open-set classifier: input ({shape}) normalised per osr.preprocessing; outputs logits, probs, score"
    onnx.checker.check_model(model, full_check=True)
    if model.ByteSize() > 1.5 * 2**30:
        raise ExportError("model too large for a single-file ONNX")
    return model


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Serialise as one self-contained file (no ``.onnx.data``)."""
    Path(path).write_bytes(model.SerializeToString())
