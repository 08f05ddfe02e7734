"""osr_train: models, losses, two-stage training, calibration and evaluation (needs torch).

The public API, importable from here::

    from osr_train import TrainConfig, train
    trained = train(TrainConfig.from_recipe("best", epochs=10), dataset="mnist")
    trained.spec, trained.metrics
    trained.save("artifacts/siamese/model.pt")          # what osr-export reads

* `TrainConfig`: the one training configuration (the seed notebook's defaults),
  `RECIPES` the named sets of overrides (``best``, ``seed``);
* `train` -> `TrainedModel`; it prints nothing (pass a
  `osr_infer.reporting.Reporter` to hear from it).

Built on `osr_infer` (the spec, the data sets, the metrics), never the reverse. Names
load on first use: ``TrainConfig`` needs no torch.
"""

from __future__ import annotations

from osr_infer.lazy import lazy_exports

from osr_infer import __version__

_WHERE = {"TrainConfig": "config", "RECIPES": "recipes", "train": "pipeline", "TrainedModel": "pipeline"}

__all__ = ["__version__", *sorted(_WHERE)]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
