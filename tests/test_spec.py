"""The model spec: one record from training to the edge, versioned, validated, and read back everywhere."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from osr_infer.metadata import MetadataError, ModelMetadata
from osr_infer.preprocess import PREPROCESSING, PreprocessContract
from osr_infer.spec import SCHEMA_VERSION, UNKNOWN, DatasetSpec, ModelSpec, SpecError
from osr_train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from osr_train.models import build_model

DIGITS = tuple(str(d) for d in range(10))


def spec(**changes) -> ModelSpec:
    return ModelSpec(**{"class_names": DIGITS, "dataset": DatasetSpec("digits", 0, 10_000, DIGITS), **changes})


def test_round_trips_through_json_and_keeps_every_fact():
    s = spec(score="energy", threshold=4.25, preprocessing=PreprocessContract.for_shape(32, 3), calibration={"method": "target_tpr"},
             temperature=0.42)
    back = ModelSpec.from_dict(json.loads(s.to_json()))
    assert back == s
    assert back.input_shape == (3, 32, 32) and back.unknown_label == UNKNOWN == -1
    assert back.label_names()[-1] == "unknown" and back.n_classes == 10


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(class_names=("a",)), "at least two"),
        (dict(class_names=("a", "a")), "distinct"),
        (dict(class_names=("cat", "unknown")), "distinct and not 'unknown'"),
        (dict(class_names="ab"), "list of names"),
        (dict(score="entropy"), "unknown score"),
        (dict(threshold=math.inf), "finite"),
        (dict(threshold=-math.inf, score="energy"), "finite"),
        (dict(threshold=math.nan), "finite"),
        (dict(threshold=1.5), "outside (0, 1)"),
        (dict(unknown_label=10), "convention"),
        (dict(temperature=0.0), "temperature must be a positive"),
        (dict(temperature=math.nan), "temperature must be a positive"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(changes, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec(**changes)


def test_a_newer_schema_is_refused_and_schema_1_is_upgraded():
    data = spec().to_dict()
    with pytest.raises(SpecError, match="newer osr-toolkit .* upgrade"):
        ModelSpec.from_dict({**data, "schema_version": SCHEMA_VERSION + 1})
    v1 = {"architecture": "SiameseNet", "class_names": list(DIGITS), "threshold": 0.999, "score": "msp",
          "preprocessing": {"size": 28, "channels": 1, "grayscale": "ITU-R 601-2 luma (PIL convert('L'))",
                            "resize": "bilinear", "mean": 0.5, "std": 0.5},
          "dataset": "mnist"}
    v2 = {k: v for k, v in data.items() if k != "temperature"} | {"schema_version": 2}
    assert ModelSpec.from_dict(v2).temperature == 1.0  # before the fitted temperature: plain softmax
    upgraded = ModelSpec.from_dict(v1)
    assert upgraded.preprocessing == PreprocessContract(exif=False, alpha="drop") and upgraded.dataset.reference == "mnist"
    assert upgraded.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(std=[math.nan]), "finite"),
        (dict(mean=[math.inf]), "finite"),
        (dict(std=[0.0]), "positive"),
        (dict(channels=3), "makes 1 channel"),
        (dict(steps=["layout-v9"]), "unknown preprocessing step"),
        (dict(version=99), "newer"),
        (dict(size=2), "size"),
    ],
)
def test_invalid_contracts_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        PreprocessContract.from_dict({**PREPROCESSING.to_dict(), **changes})


def test_metadata_never_writes_non_json_numbers_and_refuses_them_when_read():
    meta = ModelMetadata(spec(score="energy", threshold=3.0), "0" * 64, "0.2.0")
    props = meta.to_props()
    assert json.loads(props["osr.threshold"]) == 3.0 and json.loads(props["osr.score"]) == "energy"
    assert json.loads(props["osr.input_shape"]) == ["N", 1, 28, 28]
    assert ModelMetadata.from_props(props).to_dict() == meta.to_dict()
    for key, value in (("osr.threshold", "Infinity"), ("osr.threshold", "NaN"),
                       ("osr.preprocessing", json.dumps({**PREPROCESSING.to_dict(), "std": [float("nan")]}).replace("NaN", "NaN")),
                       ("osr.class_names", "7"), ("osr.schema_version", str(SCHEMA_VERSION + 1)),
                       ("osr.input_shape", '["N", 3, 28, 28]')):
        with pytest.raises(MetadataError):
            ModelMetadata.from_props({**props, key: value})


def test_the_network_is_built_from_the_spec():
    seed = build_model(spec())
    assert sum(p.numel() for p in seed.parameters()) == 108_362  # the seed's network, exactly
    rgb = build_model(spec(preprocessing=PreprocessContract.for_shape(32, 3)).replace(class_names=tuple("abcdefghijkl"), dataset=DatasetSpec("folder:x")))
    out = rgb(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 12)


def test_checkpoints_store_the_spec_and_refuse_a_newer_format(tmp_path):
    s = spec(score="max_logit", threshold=2.0)
    model = build_model(s)
    path = save_checkpoint(tmp_path / "m.pt", model, s, {"recipe": "seed"})
    _, back, record = load_checkpoint(path)
    assert back == s and record["recipe"] == "seed"
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer osr-toolkit"):
        load_checkpoint(tmp_path / "newer.pt")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--score-threshold", "inf", "--score", "energy"], "--score-threshold must be a number in (-inf, inf), got inf"),
        (["--score-threshold", "-inf", "--score", "energy"], "--score-threshold must be a number"),
        (["--threshold", "0.9"], "--threshold is osr-infer's rule on the top softmax probability"),
        (["--lr", "nan"], "--lr must be a number in (0, 10], got nan"),
        (["--margin", "nan"], "--margin must be a number in (0, inf), got nan"),
        (["--batch-size", "0"], "--batch-size must be an integer in [2, 1048576], got 0"),
        (["--target-tpr", "1"], "--target-tpr must be a number in (0, 1)"),
    ],
)
def test_training_options_are_validated_once_before_any_work(tmp_path, args, message):
    from osr_train.cli import app

    result = CliRunner().invoke(app, ["siamese", "--dataset", "digits", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o").exists()


def test_export_refuses_an_infinite_threshold(trained_digits, tmp_path):
    from osr_export.cli import app

    for value in ("inf", "-inf", "nan"):
        result = CliRunner().invoke(app, [str(trained_digits / "model.pt"), "--score-threshold", value, "--out", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert "--score-threshold must be a number" in result.output
    assert not list(tmp_path.iterdir())


def test_digits_reference_uses_the_models_split_seed(tmp_path):
    """A model trained with --seed 1 is scored on the test digits of seed 1, none of which it trained on."""
    from osr_infer.data.digits import load_digits_open_set
    from osr_infer.sources import resolve_source

    seeded = spec().replace(dataset=DatasetSpec("digits", 1, 10_000, DIGITS))
    source = resolve_source("digits", None, PREPROCESSING, seeded, DIGITS)
    split = load_digits_open_set(seed=1)
    known = source.images[source.labels >= 0]
    assert len(known) == len(split.test) == 360
    train = {img.tobytes() for img in split.train.images}
    assert not any(img.tobytes() in train for img in known)
    np.testing.assert_array_equal(known, split.test.images)
