"""osr_infer: batched ONNX Runtime inference (edge code: torch-free except parity.py)."""
