"""osr_export: turn a trained checkpoint into verified TorchScript, ONNX and INT8 artefacts.

Built on :mod:`osr_infer` (the spec, metadata schema, parity rule) and :mod:`osr_train`.
"""

#: The oldest ONNX opset the export supports, and its default (defined here: importing it is cheap).
DEFAULT_OPSET = 18
