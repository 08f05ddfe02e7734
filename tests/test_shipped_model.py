"""The model that ships with the package: what its card says it is, and what it does on real data."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from conftest import REPO

CARD = REPO / "docs" / "model-card.md"
RESULTS = REPO / "experiments" / "results" / "shipped_model.json"


def test_the_shipped_model_is_the_one_its_card_describes():
    from osr_infer import Model
    from osr_infer.model import shipped_model_path

    model = Model.load()
    assert model.shipped and model.path == shipped_model_path()
    assert model.classes == tuple(str(d) for d in range(10))
    seed = int(re.search(r"^SHIPPED_SEED \?= (\d+)$", (REPO / "Makefile").read_text(), re.M).group(1))
    assert model.spec.dataset.name == "mnist" and model.spec.dataset.split_seed == seed  # what `make shipped-model` trains
    assert f"osr-train siamese --seed {seed} --threads 1" in CARD.read_text()
    assert model.spec.score == "kl_uniform" and model.contract.layout and model.threshold_origin == "model"
    sha = hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
    card = CARD.read_text()
    assert sha in card and json.loads(RESULTS.read_text())["sha256"] == sha
    assert f"{model.threshold:.6g}" in card  # the stored threshold, quoted
    # The card names the command that re-creates it.
    assert "make shipped-model" in card and "\nshipped-model:" in (REPO / "Makefile").read_text()


@pytest.mark.slow
def test_the_card_run_on_real_data(shared_data):
    """``osr-infer mnist:test --unknown cifar10:test`` with the shipped model: the figures its
    card quotes (experiments/results/shipped_model.json), and CIFAR-10 AUROC >= 99.95 %."""
    from osr_infer import Model
    from osr_infer.report import run_metrics

    run = Model.load().predict_files(["mnist:test"], unknown=["cifar10:test"], data_dir=shared_data).collect()
    metrics = run_metrics(run)["all labelled"]
    card = json.loads(RESULTS.read_text())["card_run"]
    got = {"closed_set_accuracy": metrics["closed_set_accuracy"], "known_acceptance": metrics["known_acceptance"],
           "unknown_rejection": metrics["unknown_rejection"], "auroc": metrics["ood"]["auroc"]}
    for key, value in got.items():
        assert value == pytest.approx(card[key], abs=1e-9), key
    assert metrics["ood"]["auroc"] >= 0.9995
    quoted = re.findall(r"closed-set accuracy \| ([\d.]+) %", CARD.read_text())
    assert quoted and float(quoted[0]) == pytest.approx(100 * card["closed_set_accuracy"], abs=0.005)
    assert metrics["n_known"] == 10_000 and metrics["n_unknown"] == 10_000 and np.isfinite(metrics["ood"]["auroc"])
