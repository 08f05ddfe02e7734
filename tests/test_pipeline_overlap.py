"""osr-infer classifies on a thread of its own, fed by a bounded queue: order kept, memory
bounded, and the classifier's errors raised where the run is driven."""

from __future__ import annotations

import threading
import time
from pathlib import Path

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


def test_the_command_gives_each_image_its_own_result_as_one_batch_of_the_model_would(tmp_path, tmp_path_factory, trained_digits):
    """The whole command (decoding, batching and classifying overlapped, batches of 32) against
    the model run on all the images at once without any of that: the same rows in the same order."""
    import numpy as np
    from PIL import Image

    from infer_testing import cached_digits_onnx, digit_images
    from osr_infer import Model
    from osr_infer.cli import InferOptions, infer_command
    from osr_infer.results import read_results

    folder = tmp_path / "images"
    folder.mkdir()
    images = digit_images(300, seed=2)[0]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    model = cached_digits_onnx(tmp_path_factory, trained_digits)
    out = tmp_path / "r.csv"
    assert infer_command(InferOptions([str(folder)], model=model, output=out, batch_size=32, workers=0)) == 0
    rows = read_results(out)
    assert [Path(r["path"]).name for r in rows] == [f"{i:03d}.png" for i in range(300)]
    reference = Model.load(model).predict(list(images))
    assert [r["label"] for r in rows] == list(reference.labels)
    # ONNX Runtime's last bits depend on a row's place in its batch
    np.testing.assert_allclose([float(r["score"]) for r in rows], reference.score, rtol=1e-5, atol=1e-6)


def test_every_row_is_the_result_of_its_own_image_when_batches_are_packed_from_small_pieces():
    """Pieces smaller than a batch are packed into a buffer; the classifier thread may still read
    one batch while the next is packed. Each row must be its own image's result (a shared buffer
    once gave the first rows of a folder the last batch's images)."""
    import numpy as np

    from osr_infer.decode import Piece
    from osr_infer.outputs import ModelOutputs
    from osr_infer.preprocess import PreprocessContract

    contract = PreprocessContract.for_shape(4, 1)
    n_images, n_classes = 203, 10

    class SlowModel:
        """Its class is the image's first pixel; slow enough that packing runs ahead of it."""

        fixed_batch = None
        class_names = tuple(str(c) for c in range(n_classes))
        decides_on_probs = False
        threshold = 0.0

        def __init__(self) -> None:
            self.contract = contract

        def run(self, x: np.ndarray) -> ModelOutputs:
            time.sleep(0.02)
            first = np.rint((x[:, 0, 0, 0] * contract.std[0] + contract.mean[0]) * 255).astype(np.int64)
            logits = np.eye(n_classes, dtype=np.float32)[first % n_classes] * 10
            return ModelOutputs(logits, np.full_like(logits, 1 / n_classes), logits.max(axis=1))

        def decide(self, outputs: ModelOutputs) -> np.ndarray:
            return np.ones(len(outputs.score), dtype=bool)

    class Source:
        def __len__(self) -> int:
            return n_images

    class SmallPieces:
        def pieces(self, sources):
            for start in range(0, n_images, 3):
                index = np.arange(start, min(start + 3, n_images))
                pixels = np.zeros((len(index), 4, 4), dtype=np.uint8)
                pixels[:, 0, 0] = index % n_classes
                yield Piece(0, index, pixels, [])

    run = pipeline.run_inference([Source()], SlowModel(), SmallPieces(), batch_size=8)
    np.testing.assert_array_equal(run.predictions.index, np.arange(n_images))
    np.testing.assert_array_equal(run.predictions.pred, np.arange(n_images) % n_classes)
