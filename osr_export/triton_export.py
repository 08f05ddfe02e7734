"""``osr-export --format triton``: a Triton Inference Server model repository around the verified ONNX model.

    triton/
      osr/
        config.pbtxt     the model's real input and output shapes, dynamic batching, the osr.* metadata as parameters
        1/model.onnx     the verified ONNX model

Triton decodes no images: its clients send the normalised tensors, so the preprocessing
contract travels in the config's ``parameters`` (and in the ONNX file's own metadata). The
config is parsed with Triton's own ``ModelConfig`` protobuf (``tritonclient`` ships it) and its
shapes compared with the ONNX graph's before anything is written; without tritonclient that
check is skipped and said.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osr_infer.metadata import ModelMetadata

#: The model's name in the repository (and in Triton's URLs: /v2/models/osr/infer), as osr-serve names it.
MODEL_NAME = "osr"
#: Images per batch Triton may form (the ONNX model's batch axis is dynamic).
MAX_BATCH_SIZE = 1024
#: How long Triton's dynamic batcher waits to fill a batch.
MAX_QUEUE_DELAY_US = 1000


@dataclass(frozen=True)
class TensorShape:
    name: str
    dims: tuple[int, ...]  # without the batch axis
    reshape_to_scalar: bool = False  # (N,) in the graph: Triton's dims [1], reshaped to []


def _quoted(text: str) -> str:
    """A protobuf text-format string literal."""
    from google.protobuf import text_encoding

    return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def graph_shapes(onnx_model: Path) -> tuple[list[TensorShape], list[TensorShape]]:
    """The ONNX graph's inputs and outputs, without their (dynamic) batch axis."""
    import onnx

    graph = onnx.load(str(onnx_model), load_external_data=False).graph

    def shapes(values: Any) -> list[TensorShape]:
        out = []
        for value in values:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim][1:]
            out.append(TensorShape(value.name, tuple(dims) or (1,), reshape_to_scalar=not dims))
        return out

    return shapes(graph.input), shapes(graph.output)


def config_text(onnx_model: Path, metadata: ModelMetadata, name: str = MODEL_NAME) -> str:
    """``config.pbtxt`` for the model: platform, batching, its real shapes, the metadata."""
    inputs, outputs = graph_shapes(onnx_model)

    def tensor(shape: TensorShape) -> str:
        reshape = " reshape: { shape: [ ] }" if shape.reshape_to_scalar else ""
        return f"  {{ name: {_quoted(shape.name)} data_type: TYPE_FP32 dims: [ {', '.join(map(str, shape.dims))} ]{reshape} }}"

    joined = ",\n".join
    parameters = joined(f"  {{ key: {_quoted(key)} value: {{ string_value: {_quoted(value)} }} }}" for key, value in
                        sorted(metadata.to_props().items()))
    input_block, output_block = joined(tensor(s) for s in inputs), joined(tensor(s) for s in outputs)
    return (
        f"# Written by osr-export --format triton: the verified ONNX model, its shapes and its osr.* metadata.\n"
        f"# Clients send the images normalised as osr.preprocessing says (Triton decodes no images).\n"
        f"name: {_quoted(name)}\n"
        f'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {MAX_BATCH_SIZE}\n"
        f"input [\n{input_block}\n]\n"
        f"output [\n{output_block}\n]\n"
        f"dynamic_batching {{ max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US} }}\n"
        f"version_policy: {{ latest: {{ num_versions: 1 }} }}\n"
        f"parameters [\n{parameters}\n]\n"
    )


def parse_config(text: str) -> Any:
    """``text`` parsed with Triton's ``ModelConfig`` protobuf; ImportError without tritonclient."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def check_config(text: str, onnx_model: Path) -> str:
    """Parse ``text`` as Triton does and compare its shapes with the graph's: a one-line
    description, or ValueError saying what differs."""
    try:
        config = parse_config(text)
    except ImportError:
        return "not parsed: tritonclient is not installed (pip install 'tritonclient[grpc]')"
    inputs, outputs = graph_shapes(onnx_model)
    declared = {t.name: tuple(t.dims) for t in [*config.input, *config.output]}
    wanted = {s.name: s.dims for s in [*inputs, *outputs]}
    if declared != wanted:
        raise ValueError(f"config.pbtxt declares {declared}, the graph has {wanted}")
    return (f"parsed by Triton's ModelConfig: {config.platform}, max batch {config.max_batch_size}, dynamic batching, "
            f"{len(config.parameters)} osr.* parameters, inputs {[(t.name, list(t.dims)) for t in config.input]}")


def write_repository(folder: Path, onnx_model: Path, metadata: ModelMetadata, name: str = MODEL_NAME) -> tuple[list[str], str]:
    """Fill ``folder`` (a model repository) with ``name/config.pbtxt`` and ``name/1/model.onnx``;
    the files written and the check's description."""
    text = config_text(onnx_model, metadata, name)
    checked = check_config(text, onnx_model)
    (folder / name / "1").mkdir(parents=True)
    (folder / name / "config.pbtxt").write_text(text)
    shutil.copyfile(onnx_model, folder / name / "1" / "model.onnx")
    return [f"{name}/config.pbtxt", f"{name}/1/model.onnx"], checked
