"""The one training configuration, `TrainConfig`, and the recipes as overrides of it.

Every hyper-parameter has one default here, the seed notebook's, and one constraint; a recipe
(`osr_train.recipes.RECIPES`) is only the fields it changes. ``osr-train`` builds its
configuration with `TrainConfig.from_recipe` from the options it was given, and its help
texts quote the recipes' values from the same table. Torch-free, so ``--help`` stays fast.

>>> from osr_train import TrainConfig
>>> TrainConfig.from_recipe("best", epochs=5).epochs, TrainConfig.from_recipe("seed").score
(5, 'msp')
>>> TrainConfig(lr=float("nan"))
Traceback (most recent call last):
...
osr_infer.errors.ParameterError: lr must be a number in (0, 10], got nan
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from osr_infer.errors import ParameterError
from osr_infer.params import NONE, Constraint, Interval, OneOf, validate
from osr_infer.scores import SCORES, score_spec
from osr_train.recipes import DEFAULT_RECIPE, NETWORKS, RECIPES

MODELS = ("baseline", "siamese")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a model; the defaults are the seed notebook's (``recipe="seed"``).

    The decision: the stored ``score`` is accepted at ``score_threshold`` when that is given,
    else at the threshold that accepts ``target_tpr`` of the validation knowns. With
    ``msp_target_tpr``, the softmax temperature is fitted so that the card's rule (top
    probability >= 0.999) accepts that share of validation knowns.
    """

    model: str = "siamese"  # "baseline" (cross-entropy) or "siamese" (contrastive pre-training, then cross-entropy)
    recipe: str = "seed"  # the recipe these values started from (recorded with the model)
    epochs: int = 30  # cross-entropy epochs
    pretrain_epochs: int = 40  # contrastive epochs (Siamese only)
    batch_size: int | None = None  # None: 64 for the baseline, 128 for the Siamese stages (the seed's)
    lr: float = 1e-3  # Adam's learning rate (the peak of a one-cycle schedule)
    margin: float = 2.0  # the contrastive loss's margin
    seed: int = 0  # split, initialisation and shuffling
    device: str = "auto"  # "auto" picks CUDA when available
    schedule: str = "constant"  # or "onecycle"
    augment: bool = False  # small affine warps of the knowns, on the device
    outlier_weight: float = 0.0  # outlier exposure: weight of the uniform-posterior loss; 0: off
    outlier_batch: int = 64  # synthetic outliers per batch
    drawn_knowns: int = 0  # per class named by one character: that many pen-drawn glyphs added to training
    network: str = "seed"  # the layers (recipes.NETWORKS): the seed's CNN, or the wider edge-sized one
    rotation_weight: float = 0.0  # rotation prediction as an auxiliary task; 0: off
    script_outliers: float = 0.0  # how often letters of other scripts are drawn among the outliers; 0: never
    score: str = "msp"  # the known-vs-unknown score stored in the model (osr_infer.scores.SCORES)
    score_threshold: float | None = 0.999  # accept when score >= this; None: calibrate at target_tpr
    target_tpr: float | None = None  # calibrate the threshold to accept this share of validation knowns
    layout: bool | None = False  # the layout step (MNIST-style crop, fit, centre); None: on for greyscale inputs
    msp_target_tpr: float | None = None  # fit the softmax temperature for the card's 0.999 rule; None: temperature 1

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "model": [OneOf(MODELS)],
        "recipe": [OneOf((*RECIPES, "custom"))],
        "epochs": [Interval(int, 1, 100_000)],
        "pretrain_epochs": [Interval(int, 0, 100_000)],
        "batch_size": [Interval(int, 2, 1 << 20), NONE],
        "lr": [Interval(float, 0, 10, closed="right")],
        "margin": [Interval(float, 0, None, closed="neither")],
        "seed": [Interval(int, 0, 2**32 - 1)],
        "device": [OneOf(("auto", "cpu", "cuda"))],
        "schedule": [OneOf(("constant", "onecycle"))],
        "augment": [OneOf((True, False))],
        "outlier_weight": [Interval(float, 0, 100)],
        "outlier_batch": [Interval(int, 0, 1 << 20)],
        "drawn_knowns": [Interval(int, 0, 1 << 20)],
        "network": [OneOf(tuple(NETWORKS))],
        "rotation_weight": [Interval(float, 0, 100)],
        "script_outliers": [Interval(float, 0, 100)],
        "score": [OneOf(tuple(SCORES))],
        "score_threshold": [Interval(float, None, None), NONE],
        "target_tpr": [Interval(float, 0, 1, closed="neither"), NONE],
        "layout": [OneOf((True, False)), NONE],
        "msp_target_tpr": [Interval(float, 0, 1, closed="neither"), NONE],
    }

    def __post_init__(self) -> None:
        validate(self, self.constraints)
        if self.score_threshold is not None:
            try:
                score_spec(self.score).check_threshold(self.score_threshold)
            except ValueError as exc:
                raise ParameterError("score_threshold", f"score_threshold: {exc}") from None
        if (self.score_threshold is None) == (self.target_tpr is None):
            raise ParameterError(
                "score_threshold", "give `score_threshold` (a fixed threshold) or `target_tpr` (calibrated on validation knowns), "
                "exactly one")
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", 64 if self.model == "baseline" else 128)

    @classmethod
    def from_recipe(cls, recipe: str = DEFAULT_RECIPE, **overrides: Any) -> "TrainConfig":
        """The recipe's configuration with ``overrides`` (``None`` values are ignored). A
        ``target_tpr`` given without ``score_threshold`` calibrates (the recipe's fixed
        threshold is dropped), and the other way round."""
        if recipe not in RECIPES:
            raise ParameterError("recipe", f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ParameterError(unknown[0], f"{unknown[0]} is not a training parameter")
        values = {**RECIPES[recipe], **given, "recipe": recipe}
        if "target_tpr" in given and "score_threshold" not in given:
            values["score_threshold"] = None
        elif "score_threshold" in given and "target_tpr" not in given:
            values["target_tpr"] = None
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @property
    def architecture(self) -> str:
        return NETWORKS[self.network][self.model]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recipe_defaults(field: str, model: str | None = None) -> str:
    """``best: 40, seed: 30``: each recipe's value of ``field``, for help texts."""
    def value(recipe: str) -> Any:
        config = TrainConfig.from_recipe(recipe, **({"model": model} if model else {}))
        return getattr(config, field)

    def show(v: Any) -> str:
        return "none" if v is None else (f"{v:g}" if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v))

    return "; ".join(f"{name}: {show(value(name))}" for name in RECIPES)
