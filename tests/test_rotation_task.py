"""Rotation prediction as an auxiliary task (``--rotation-weight``): the turned images, the
training-only head, and what it leaves in the model and its record."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from osr_train.checkpoint import load_checkpoint
from conftest import train_model
from osr_train.config import TrainConfig
from osr_train.recipes import RECIPES
from osr_train.training import ROTATION_SLOPE, ROTATION_TURNS, Trainer


def test_the_turned_half_is_each_image_turned_by_its_label():
    stub = SimpleNamespace(generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    x = torch.randn(64, 1, 9, 9)  # not symmetric: every turn gives a different image
    before = x.clone()
    turned, turns = Trainer._turned_half(stub, x)
    assert turned.shape == (32, 1, 9, 9) and turns.shape == (32,)
    assert set(turns.tolist()) == set(range(len(ROTATION_TURNS)))  # 32 draws of 4 turns
    for image, original, k in zip(turned, x[:32], turns.tolist(), strict=True):
        assert torch.equal(image, torch.rot90(original, k, dims=(1, 2)))
        for other in set(range(4)) - {k}:
            assert not torch.equal(image, torch.rot90(original, other, dims=(1, 2)))
    assert torch.equal(x, before)  # the known batch itself is left as it was (it is also classified)


def test_every_recipe_names_its_rotation_weight():
    assert TrainConfig.from_recipe("seed").rotation_weight == 0.0  # the notebook has no such task
    assert all(TrainConfig.from_recipe(r).rotation_weight >= 0 for r in RECIPES)


@pytest.mark.slow
def test_the_rotation_head_learns_and_stays_out_of_the_model(tmp_path, monkeypatch):
    trainers: list[Trainer] = []
    original_fit = Trainer.fit

    def keep(self):
        trainers.append(self)
        return original_fit(self)

    monkeypatch.setattr(Trainer, "fit", keep)
    base = dict(model="siamese", dataset="digits", layout=False, pretrain_epochs=1, epochs=6, device="cpu", seed=1, threads=1)
    train_model(tmp_path / "plain", **base)
    train_model(tmp_path / "turned", **base, rotation_weight=0.5)
    plain, turned = trainers
    assert plain.rotation_head is None and turned.rotation_head is not None

    # The head names the turn of validation knowns it never saw, far above chance (1 in 4).
    val = turned.normalize(turned.val.x)
    k = torch.arange(len(val)) % 4
    images = torch.stack([torch.rot90(img, int(t), dims=(1, 2)) for img, t in zip(val, k, strict=True)])
    with torch.no_grad():
        _, _, hidden = turned.classifier.forward_with_layers(images)
        accuracy = (turned.rotation_head(torch.nn.functional.leaky_relu(hidden, ROTATION_SLOPE)).argmax(1) == k).float().mean()
    assert accuracy > 0.6

    # Training-only: the model file has the same weights' names as without it, and says how it was trained.
    plain_model, _, plain_record = load_checkpoint(tmp_path / "plain" / "model.pt")
    model, spec, record = load_checkpoint(tmp_path / "turned" / "model.pt")
    assert list(model.state_dict()) == list(plain_model.state_dict())
    assert record["hyperparameters"]["rotation_weight"] == 0.5 and plain_record["hyperparameters"]["rotation_weight"] == 0.0
    assert not torch.equal(model.fc1.weight, plain_model.fc1.weight)  # the task changed the shared layers
