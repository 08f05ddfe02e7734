"""The pieces of osr-export that need no export: probe building, parity statistics, metadata schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_fake_mnist
from export_testing import write_cifar_jpegs, write_cifar_pickle
from osr_infer.data.digits import DIGIT_CLASSES
from osr_infer.data.mnist import MNIST_CLASSES
from osr_infer.metadata import MetadataError, ModelMetadata
from osr_export.probe import ProbeError, allocate, build_probe, calibration_images, parse_probe_size
from osr_infer.outputs import ModelOutputs as Outputs
from osr_export.verify import FormatReport
from osr_infer.parity_rule import ParityRow, compare, merge_stats
from osr_infer.preprocess import PREPROCESSING
from osr_infer.spec import UNKNOWN, DatasetSpec, ModelSpec

MNIST = ModelSpec(class_names=MNIST_CLASSES, dataset=DatasetSpec("mnist", split_seed=0, all_classes=MNIST_CLASSES))
DIGITS = ModelSpec(class_names=DIGIT_CLASSES, dataset=DatasetSpec("digits", split_seed=0, all_classes=DIGIT_CLASSES))


# --- probe ------------------------------------------------------------------------------------


def test_parse_probe_size():
    assert parse_probe_size("all") is None and parse_probe_size("FULL") is None and parse_probe_size("64") == 64
    for bad in ("0", "-3", "many", "1.5"):
        with pytest.raises(ValueError):
            parse_probe_size(bad)


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [([100, 100], 50, [25, 25]), ([10, 500], 100, [10, 90]), ([7, 3], None, [7, 3]), ([7, 3], 99, [7, 3]), ([5, 5], 1, [1, 0])],
)
def test_allocate_splits_evenly_and_refills_from_larger_sources(sizes, total, expected):
    assert allocate(sizes, total) == expected


def test_digits_probe_has_labelled_knowns_and_photo_unknowns():
    probe = build_probe(DIGITS, size=200)
    # the knowns are the test split only: validation images calibrate INT8, so they stay out of the probe
    assert probe.real_data and [(s.name, s.role, len(s)) for s in probe.sources] == [
        ("digits-test", "known", 100), ("sample-photos", "unknown", 100)
    ]
    known = probe.sources[0]
    assert known.images.dtype == np.uint8 and known.images.shape[1:] == (28, 28)
    assert set(np.unique(known.labels)) <= set(range(10)) and (probe.sources[1].labels == UNKNOWN).all() and UNKNOWN == -1
    again = build_probe(DIGITS, size=200)
    assert np.array_equal(again.sources[0].images, known.images)  # fixed: reruns compare the same images


@pytest.mark.parametrize("layout", ["pickle", "jpeg"])
def test_mnist_probe_reads_mnist_test_and_cifar10_from_the_data_dir(tmp_path, layout):
    data = write_fake_mnist(tmp_path / "data", n_train=30, n_test=40)
    (write_cifar_pickle if layout == "pickle" else write_cifar_jpegs)(data, n=50)
    full = build_probe(MNIST, data, size=None)
    assert [(s.name, s.role, len(s)) for s in full.sources] == [("mnist-test", "known", 40), ("cifar10-test", "unknown", 50)]
    part = build_probe(MNIST, data, size=20)
    assert [len(s) for s in part.sources] == [10, 10]
    assert full.sources[1].images.shape[1:] == (28, 28)


def test_mnist_probe_without_cifar_notes_it(tmp_path):
    data = write_fake_mnist(tmp_path / "data", n_train=30, n_test=40)
    probe = build_probe(MNIST, data, size=None)
    assert probe.real_data and [s.name for s in probe.sources] == ["mnist-test"]
    # the registry is generic: mnist's only default unknowns are CIFAR-10, so "no unknowns" is "no CIFAR-10"
    assert len(probe.notes) == 1 and "no unknowns for mnist" in probe.notes[0] and str(data) in probe.notes[0]
    assert "knowns only" in probe.notes[0]


def test_held_out_classes_are_probed_as_unknowns_and_kept_out_of_calibration(tmp_path):
    """--known-classes 7,2,5: the knowns are relabelled 0..2 in that order; the test images of the
    other classes are a probe source of their own, as unknowns, and never calibrate INT8."""
    from osr_infer.data import load_mnist

    data = write_fake_mnist(tmp_path / "data", n_train=120, n_test=40)
    write_cifar_jpegs(data, n=30)
    spec = ModelSpec(class_names=("7", "2", "5"),
                     dataset=DatasetSpec("mnist", split_seed=0, all_classes=MNIST_CLASSES, known_classes=(7, 2, 5)))
    probe = build_probe(spec, data, size=None)
    assert [(s.name, s.role, len(s)) for s in probe.sources] == [
        ("mnist-test", "known", 12), ("mnist-test-unknown-classes", "unknown", 28), ("cifar10-test", "unknown", 30)
    ]
    test = load_mnist(data, "test")
    known, held_out = probe.sources[0], probe.sources[1]
    for new_label, old_label in enumerate((7, 2, 5)):
        assert np.array_equal(known.images[known.labels == new_label], test.images[test.labels == old_label])
    assert (held_out.labels == UNKNOWN).all() and (probe.sources[2].labels == UNKNOWN).all()
    assert np.array_equal(held_out.images, test.images[~np.isin(test.labels, (7, 2, 5))])
    images, name = calibration_images(spec, data, n=1000)
    train = load_mnist(data, "train")
    known_train = {img.tobytes() for img in train.images[np.isin(train.labels, (7, 2, 5))]}
    assert "mnist-train-val" in name and 0 < len(images) < 20 and all(img.tobytes() in known_train for img in images)


def test_missing_data_falls_back_to_random_inputs_and_says_so(tmp_path):
    probe = build_probe(MNIST, tmp_path, size=64)
    assert not probe.real_data and "random" in probe.origin and "MNIST not found" in probe.origin
    assert len(probe) == 64 and probe.sources[0].role == "random"
    unknown = build_probe(MNIST.replace(dataset=DatasetSpec("something-else")), size=8)
    assert not unknown.real_data and "something-else" in unknown.origin
    with pytest.raises(ProbeError, match="needs the real data"):
        build_probe(MNIST, tmp_path, size=None)


def test_calibration_uses_the_validation_split(tmp_path):
    images, name = calibration_images(DIGITS, n=100)
    assert images.shape == (100, 28, 28) and "digits-val" in name
    data = write_fake_mnist(tmp_path / "data", n_train=120, n_test=40)
    images, name = calibration_images(MNIST, data, n=16)
    assert len(images) == 16 and "mnist-train-val" in name


# --- parity statistics ------------------------------------------------------------------------


def _outputs(logits: np.ndarray) -> Outputs:
    logits = logits.astype(np.float32)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return Outputs(logits, probs.astype(np.float32), probs.max(1).astype(np.float32))


def test_compare_counts_differences_and_flags_failures():
    rng = np.random.default_rng(0)
    ref = _outputs(rng.normal(0, 5, size=(200, 10)))
    same = compare(ref, ref, threshold=0.9, atol=1e-4)
    assert same["max_abs_logits"] == 0 and same["argmax_disagree"] == 0 and same["decision_disagree"] == 0
    shifted = _outputs(ref.logits + np.float32(3e-4) * (np.arange(10) == 0))
    stats = compare(ref, shifted, threshold=0.9, atol=1e-4)
    row = ParityRow("onnx", 1, "x", **stats)
    assert stats["max_abs_logits"] == pytest.approx(3e-4, rel=1e-2)
    assert any("max |Δlogits|" in f for f in row.failures(1e-4))
    assert not ParityRow("onnx", 1, "x", **compare(ref, shifted, threshold=0.9, atol=1e-3)).failures(1e-3)


def test_flips_at_the_threshold_or_between_tied_logits_are_not_failures():
    logits = np.zeros((2, 10), np.float32)
    logits[0, 3] = 10.0  # confident
    logits[1, 2], logits[1, 5] = 4.0, 4.0 - 1e-5  # nearly tied: class 2 wins by 1e-5
    ref = _outputs(logits)
    threshold = float(ref.score[0]) - 3e-5  # image 0 is accepted, by 3e-5
    got = Outputs(ref.logits.copy(), ref.probs, ref.score.copy())
    got.score[0] -= np.float32(5e-5)  # within atol, but now below the threshold
    got.logits[1, 5] += np.float32(2e-5)  # within atol, but class 5 now wins
    stats = compare(ref, got, threshold=threshold, atol=1e-4)
    assert stats["near_threshold"] == 1 and stats["near_threshold_disagree"] == 1 and stats["decision_disagree"] == 0
    assert stats["argmax_ties"] == 1 and stats["argmax_tie_disagree"] == 1 and stats["argmax_disagree"] == 0
    assert not ParityRow("onnx", 1, "x", **stats).failures(1e-4)
    strict = compare(ref, got, threshold=threshold, atol=1e-6)  # with a tighter tolerance both are real flips
    assert strict["decision_disagree"] == 1 and strict["argmax_disagree"] == 1


def test_a_real_decision_flip_fails_even_within_atol():
    logits = np.zeros((1, 10), np.float32)
    logits[0, 0] = 8.0
    ref = _outputs(logits)
    got = Outputs(ref.logits, ref.probs, ref.score - np.float32(0.01))  # score output broken, logits fine
    stats = compare(ref, got, threshold=float(ref.score[0]) - 0.005, atol=1e-4)
    assert stats["decision_disagree"] == 1
    report = FormatReport("onnx", 1e-4, 0.5, rows=[ParityRow("onnx", 1, "x", **stats)])
    assert not report.passed and report.summary().startswith("FAIL")


def test_non_finite_outputs_fail():
    ref = _outputs(np.ones((2, 10)))
    bad = Outputs(ref.logits.copy(), ref.probs, ref.score)
    bad.logits[0, 0] = np.nan
    stats = compare(ref, bad, threshold=0.5, atol=1e-4)
    assert stats["nonfinite"] == 1 and ParityRow("onnx", 1, "x", **stats).failures(1e-4)


# --- metadata schema extension ----------------------------------------------------------------


def _metadata(**extra) -> ModelMetadata:
    spec = DIGITS.replace(threshold=0.99, score="msp", preprocessing=PREPROCESSING, architecture="SiameseNet")
    meta = ModelMetadata(spec, checkpoint_sha256="0" * 64, toolkit_version="0.1.0", **extra)
    assert meta.class_names == tuple(str(d) for d in range(10)) and meta.input_shape == ["N", 1, 28, 28]
    return meta


def test_quantization_field_is_optional_and_absent_from_fp32_metadata():
    fp32 = _metadata()
    assert "osr.quantization" not in fp32.to_props() and "quantization" not in json.loads(fp32.to_json())
    int8 = _metadata(quantization={"format": "QDQ"})
    back = ModelMetadata.from_props(int8.to_props())
    assert back.quantization == {"format": "QDQ"} and ModelMetadata.from_json(int8.to_json()).quantization == {"format": "QDQ"}
    assert ModelMetadata.from_props(fp32.to_props()).quantization is None
    assert ModelMetadata.from_props(int8.to_props()).spec == int8.spec == fp32.spec  # the spec survives the round trip


def test_metadata_refuses_non_finite_values():
    """NaN and infinities are not JSON: metadata carrying one is refused, never written."""
    bad = _metadata(quantization={"scale": float("nan")})
    with pytest.raises(MetadataError, match="not finite"):
        bad.to_props()
    with pytest.raises(MetadataError, match="not finite"):
        bad.to_json()


def test_statistics_merged_batch_by_batch_equal_one_comparison():
    """osr-infer --parity merges per-batch statistics; they must equal comparing everything at once."""
    rng = np.random.default_rng(1)
    ref = _outputs(rng.normal(0, 3, size=(300, 10)))
    noise = rng.normal(0, 4e-5, size=(300, 10)).astype(np.float32)
    got = _outputs(ref.logits + noise)
    threshold = float(np.median(ref.score))
    whole = compare(ref, got, threshold, 1e-4)
    merged = None
    for part in (slice(0, 7), slice(7, 7), slice(7, 256), slice(256, 300)):
        ref_part, got_part = (Outputs(o.logits[part], o.probs[part], o.score[part]) for o in (ref, got))
        merged = merge_stats(merged, compare(ref_part, got_part, threshold, 1e-4))
    assert merged.keys() == whole.keys()
    for key, value in whole.items():
        assert merged[key] == pytest.approx(value, rel=1e-9), key
