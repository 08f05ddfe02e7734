"""osr_infer: the torch-free bottom layer of osr-toolkit, and the ``osr-infer`` command.

The public API, importable from here::

    from osr_infer import Model
    model = Model.load()                      # the model shipped with the package
    p = model.predict(["digit.png"])          # paths, PIL images, uint8 arrays, bytes
    p.labels, p.class_index, p.score, p.probability, p.known

* `Model`, `Predictions`, `FileRun`: inference (``osr_infer.model``);
* `ModelSpec`, `PreprocessContract`: what a model means and how an image becomes
  its input;
* the exception tree under `OSRError` (``osr_infer.errors``).

Below it: image decoding (``decode``), the metadata schema (``metadata``), the score registry
(``scores``), numpy metrics (``metrics``), the parity rule (``parity_rule``), atomic writes
(``io``), the data set registry and readers (``data``) and the ONNX Runtime session
(``session``). It never imports torch, ``osr_train`` or ``osr_export``. Importing it changes
nothing in the host program (Pillow's globals included); names load on first use.
"""

from __future__ import annotations

from osr_infer.lazy import lazy_exports

__version__ = "0.3.0"

_WHERE = {
    "Model": "model", "Predictions": "model", "FileRun": "model", "shipped_model_path": "model",
    "ModelSpec": "spec", "PreprocessContract": "preprocess",
    "OSRError": "errors", "ParameterError": "errors", "DataError": "errors", "ModelError": "errors",
    "InputError": "errors", "OutputError": "errors", "InferenceError": "errors", "ExportError": "errors",
    "VerificationError": "errors", "TrainingError": "errors", "TrainingInterrupted": "errors",
}

__all__ = ["__version__", *sorted(_WHERE)]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
