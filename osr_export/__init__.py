"""osr_export: turn a trained checkpoint into verified TorchScript, ONNX and INT8 artefacts.

The public API, importable from here::

    from osr_export import export
    report = export("artifacts/siamese/model.pt", formats=("onnx",), quantize="int8")
    report.passed, report.written, report.formats    # one parity report per format

`export` -> `ExportReport`; it prints nothing (pass a
`osr_infer.reporting.Reporter` to hear from it) and raises
`osr_infer.errors.VerificationError` when an artefact disagrees with PyTorch.
Built on `osr_infer` (the spec, metadata schema, parity rule) and `osr_train`.
"""

from __future__ import annotations

from osr_infer.lazy import lazy_exports

#: The oldest ONNX opset the export supports, and its default (defined here: importing it is cheap).
DEFAULT_OPSET = 18

_WHERE = {"export": "pipeline", "ExportReport": "pipeline", "ExportOptions": "pipeline"}

__all__ = ["DEFAULT_OPSET", *sorted(_WHERE)]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
