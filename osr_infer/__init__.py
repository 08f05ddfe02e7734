"""osr_infer: the torch-free bottom layer of osr-toolkit, and the ``osr-infer`` command.

It holds everything an edge install needs and everything the training and export layers
share: the model spec and preprocessing contract (``spec``, ``preprocess``), image decoding
(``decode``), the metadata schema (``metadata``), the score registry (``scores``), numpy
metrics (``metrics``), the parity rule (``parity_rule``), atomic writes (``io``), the data
set registry and readers (``data``), and the ONNX Runtime session (``session``). It never
imports torch, ``osr_train`` or ``osr_export``; ``--parity`` loads the torch side on demand.
"""

__version__ = "0.2.0"
