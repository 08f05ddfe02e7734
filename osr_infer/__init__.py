"""osr_infer: batched ONNX Runtime inference (edge code: torch-free except parity.py).

``session`` the model and its osr.* metadata; ``sources`` what SOURCE arguments mean;
``decode`` parallel image decoding; ``pipeline`` batches -> ONNX Runtime -> rows;
``results`` the CSV/JSONL file; ``report`` tables and metrics; ``parity`` the PyTorch
comparison (the only module that imports torch); ``cli`` the ``osr-infer`` command.
"""
