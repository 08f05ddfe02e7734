"""osr_export: turn a trained checkpoint into verified TorchScript and ONNX artefacts."""
