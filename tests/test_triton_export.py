"""``osr-export --format triton`` (#34, item 3): a Triton model repository whose config Triton's
own ``ModelConfig`` protobuf parses, naming the model's real shapes, with the metadata."""

from __future__ import annotations

import json

import onnx
from export_testing import run_export
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from osr_infer import Model


def test_triton_repository_parses_with_modelconfig_and_names_the_real_shapes(trained_digits, tmp_path):
    result = run_export(trained_digits / "model.pt", "--format", "triton", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "triton: osr/config.pbtxt parsed by Triton's ModelConfig" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["triton"]  # the folder only (the ONNX model inside it)
    config = text_format.Parse((tmp_path / "triton" / "osr" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    onnx_file = tmp_path / "triton" / "osr" / "1" / "model.onnx"
    graph = onnx.load(str(onnx_file)).graph
    real = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:] for v in [*graph.input, *graph.output]}
    assert real == {"input": [1, 28, 28], "logits": [10], "probs": [10], "score": []}
    assert (config.name, config.platform) == ("osr", "onnxruntime_onnx")
    assert config.max_batch_size >= 256 and config.HasField("dynamic_batching")
    assert [(t.name, list(t.dims), t.data_type) for t in config.input] == [("input", [1, 28, 28], model_config_pb2.TYPE_FP32)]
    outputs = {t.name: (list(t.dims), list(t.reshape.shape), t.HasField("reshape")) for t in config.output}
    assert outputs == {"logits": ([10], [], False), "probs": ([10], [], False), "score": ([1], [], True)}  # (N,) as dims [1] reshaped to []
    model = Model.load(onnx_file)
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert json.loads(parameters["osr.threshold"]) == model.threshold
    assert json.loads(parameters["osr.class_names"]) == list(model.classes)
    assert json.loads(parameters["osr.preprocessing"]) == json.loads(model.metadata.to_props()["osr.preprocessing"])


def test_a_config_that_does_not_match_the_model_is_refused_and_nothing_is_written(trained_digits, tmp_path, monkeypatch):
    from osr_export import triton_export

    real = triton_export.config_text
    monkeypatch.setattr(triton_export, "config_text", lambda *a, **k: real(*a, **k).replace("dims: [ 10 ]", "dims: [ 11 ]", 1))
    broken = run_export(trained_digits / "model.pt", "--format", "triton", "--out", tmp_path / "b")
    assert broken.exit_code == 2 and "the Triton config does not match the model" in broken.output
    assert not (tmp_path / "b").exists()
