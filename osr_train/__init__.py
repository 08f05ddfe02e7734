"""osr_train: data, models, two-stage training, evaluation and threshold calibration.

Importing this package is cheap and torch-free: the edge side (``osr_infer``) reuses the
preprocessing contract, the data readers and the metrics from here without pulling torch.
"""

__version__ = "0.1.0"
