"""osr-infer classifies on a thread of its own, fed by a bounded queue: order kept, memory
bounded, and the classifier's errors raised where the run is driven."""

from __future__ import annotations

import threading
import time

import pytest

from osr_infer import pipeline
from osr_infer.pipeline import QUEUE_BATCHES, _ClassifierThread


def test_batches_are_classified_in_order():
    seen: list[int] = []
    classifier = _ClassifierThread(seen.append)
    for i in range(200):
        classifier.submit(i)
    classifier.finish()
    classifier.stop()
    assert seen == list(range(200))


def test_an_error_of_the_classifier_is_raised_in_the_driving_thread():
    def classify(i: int) -> None:
        if i == 3:
            raise RuntimeError("onnxruntime failed on batch 3")

    classifier = _ClassifierThread(classify)
    with pytest.raises(RuntimeError, match="batch 3"):
        for i in range(100):
            classifier.submit(i)
        classifier.finish()
    classifier.stop()


def test_the_queue_holds_at_most_a_few_batches():
    release = threading.Event()
    classifier = _ClassifierThread(lambda batch: release.wait())
    submitted = []

    def drive() -> None:
        for i in range(QUEUE_BATCHES + 3):
            classifier.submit(i)
            submitted.append(i)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    time.sleep(0.5)
    assert len(submitted) == QUEUE_BATCHES + 1  # one being classified, QUEUE_BATCHES waiting
    release.set()
    driver.join(5)
    classifier.finish()
    classifier.stop()
    assert len(submitted) == QUEUE_BATCHES + 3


def test_results_are_the_same_with_and_without_the_classifier_thread(tmp_path, tmp_path_factory, trained_digits, monkeypatch):
    """The whole command, both ways: the same rows in the same order."""
    from PIL import Image

    from infer_testing import cached_digits_onnx, digit_images
    from osr_infer.cli import InferOptions, infer_command

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(digit_images(300, seed=2)[0]):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    model = cached_digits_onnx(tmp_path_factory, trained_digits)
    outputs = []
    for overlap in (True, False):
        monkeypatch.setattr(pipeline, "OVERLAP", overlap)
        out = tmp_path / f"r{overlap}.csv"
        assert infer_command(InferOptions([str(folder)], model=model, output=out, batch_size=32, workers=0, progress=False)) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == 301
