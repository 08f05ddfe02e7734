"""osr_train: models, losses, two-stage training, calibration and evaluation (needs torch).

Built on :mod:`osr_infer` (the spec, the data sets, the metrics), never the reverse.
"""

from osr_infer import __version__

__all__ = ["__version__"]
