"""One osr-infer run: decoded pieces -> fixed-size batches -> ONNX Runtime -> results.

The decode pool streams pieces ahead of the model; pieces are packed into
``--batch-size`` batches in a reused buffer (batches may span sources), normalised by the
model's contract, classified, and the rows are streamed to the results file and, with
``--parity``, handed to the PyTorch comparison on the very same array.
"""

from __future__ import annotations

import queue
from collections import deque
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from osr_infer.decode import DecodePool, Piece
from osr_infer.errors import InferenceError, ParameterError
from osr_infer.results import ResultsWriter
from osr_infer.spec import UNLABELLED
from osr_infer.spec import open_set_labels as label_column
from osr_infer.outputs import DEFAULT_BATCH_SIZE, ModelOutputs
from osr_infer.session import InferenceModel
from osr_infer.sources import Source



class BatchObserver(Protocol):
    """Anything that wants each batch as the model saw it (the parity check)."""

    def observe(self, x: np.ndarray, outputs: ModelOutputs, source: np.ndarray) -> None: ...


@dataclass
class Batch:
    pixels: np.ndarray  # uint8 (n, *pixel_shape); the batch's own: never written again after it is emitted
    source: np.ndarray  # int32 (n,) source of each row
    index: np.ndarray  # int64 (n,) position of each row within its source


class Batcher:
    """Packs pieces of any size into batches of exactly ``batch_size`` rows (the last one shorter).

    An emitted batch keeps its buffer and the batcher fills a new one: the classifier thread may
    still be reading a batch while the next is packed (memory stays bounded by the queue).
    """

    def __init__(self, batch_size: int, image_shape: tuple[int, ...]) -> None:
        self.batch_size = batch_size
        self._pixels = np.empty((batch_size, *image_shape), dtype=np.uint8)
        self._source = np.empty(batch_size, dtype=np.int32)
        self._index = np.empty(batch_size, dtype=np.int64)
        self._n = 0

    def add(self, piece: Piece) -> Iterator[Batch]:
        k, m, size = 0, len(piece.index), self.batch_size
        while k < m:
            take = min(size - self._n, m - k)
            if self._n == 0 and take == size:  # a whole batch inside the piece: no copy
                yield Batch(piece.pixels[k : k + take], np.full(take, piece.source, dtype=np.int32), piece.index[k : k + take])
            else:
                self._pixels[self._n : self._n + take] = piece.pixels[k : k + take]
                self._source[self._n : self._n + take] = piece.source
                self._index[self._n : self._n + take] = piece.index[k : k + take]
                self._n += take
                if self._n == size:
                    yield self._emit()
            k += take

    def flush(self) -> Iterator[Batch]:
        if self._n:
            yield self._emit()

    def _emit(self) -> Batch:
        n, self._n = self._n, 0
        pixels, self._pixels = self._pixels[:n], np.empty_like(self._pixels)
        return Batch(pixels, self._source[:n].copy(), self._index[:n].copy())


@dataclass
class Predictions:
    """Per classified image, in output order."""

    source: np.ndarray
    index: np.ndarray
    pred: np.ndarray  # argmax class
    probability: np.ndarray  # top softmax probability
    score: np.ndarray  # the model's own score (its ``score`` output)
    known: np.ndarray  # the run's decision: model.decide, i.e. max(probs) or score >= threshold

    @classmethod
    def concat(cls, parts: list["Predictions"]) -> "Predictions":
        if not parts:
            return cls(*(np.empty(0, dtype=d) for d in (np.int32, np.int64, np.int64, np.float32, np.float32, bool)))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.pred)


@dataclass
class InferenceRun:
    """What a run produced; the report and the tests read this."""

    sources: list[Source]
    model: InferenceModel
    predictions: Predictions
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), in input order
    failed_per_source: list[int] = field(default_factory=list)
    seconds: float = 0.0
    output_rows: int | None = None

    @property
    def images_per_second(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds > 0 else float("nan")

    def decision_values(self) -> np.ndarray:
        """Per image, the quantity the run decided on (``known`` is ``decision_values() >= model.threshold``):
        the top softmax probability with ``--threshold``, else the model's score."""
        return self.predictions.probability if self.model.decides_on_probs else self.predictions.score

    def true_labels(self) -> np.ndarray:
        """Label of each classified image (a class index, UNKNOWN, or UNLABELLED)."""
        out = np.full(len(self.predictions), UNLABELLED, dtype=np.int64)
        for s, source in enumerate(self.sources):
            mask = self.predictions.source == s
            out[mask] = source.labels[self.predictions.index[mask]]
        return out

    def open_set_labels(self) -> list[str]:
        """``label`` column values: class name where accepted, ``unknown`` where rejected."""
        labels: list[str] = label_column(self.model.class_names, self.predictions.pred, self.predictions.known).tolist()
        return labels


#: Batches waiting for the classifier at most: memory stays bounded by a few batches.
QUEUE_BATCHES = 2


class _ClassifierThread:
    """Runs ``classify`` on each submitted batch, in order, on one thread; its first exception
    is raised in the submitting thread (at the next submit, or at finish)."""

    def __init__(self, classify: Callable[["Batch"], None]) -> None:
        self._classify = classify
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osr-classify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None or self._stopping.is_set():
                return
            try:
                self._classify(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._error = exc
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _put(self, item: "Batch | None") -> bool:
        """Queue ``item`` while the classifier lives (waiting while the queue is full); False once it has ended."""
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def submit(self, batch: "Batch") -> None:
        self._raise()
        if not self._put(batch):
            self._raise()
            raise InferenceError("the classifier thread stopped unexpectedly")

    def finish(self) -> None:
        """Wait until every submitted batch is classified; raise the classifier's error if any."""
        self._put(None)
        self._thread.join()
        self._raise()

    def stop(self) -> None:
        """On the way out (an error or Ctrl-C in the main thread): drop what is queued and end."""
        self._stopping.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._put(None)
        self._thread.join(timeout=10)


@dataclass
class ClassifiedBatch:
    """One batch as classified: its rows (in input order) and the files that failed since the
    previous batch, (path, reason)."""

    rows: Predictions
    failures: list[tuple[str, str]]
    failure_sources: list[int]  # the source of each failure


def iter_batches(
    sources: list[Source],
    model: InferenceModel,
    pool: DecodePool,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    observers: list[BatchObserver] | None = None,
) -> Iterator[ClassifiedBatch]:
    """Classify every item of ``sources``, streaming: batches come out in input order, each
    with the unreadable files (reported and skipped) met since the one before. Decoding,
    batching and classifying overlap; at most a few batches are held at once."""
    if batch_size < 1:
        raise ParameterError("batch_size", f"batch_size must be at least 1, not {batch_size}")
    fixed = model.fixed_batch
    if fixed is not None:
        batch_size = fixed  # a fixed-batch model gets exactly that (the last batch padded)
    contract = model.contract
    observers = observers or []
    done: deque[Predictions] = deque()  # classified, not yet handed out (appended by the classifier thread)

    def classify(batch: Batch) -> None:
        pixels, n = batch.pixels, len(batch.index)
        if fixed is not None and n < fixed:  # pad a short last batch for a fixed-batch model
            pixels = np.concatenate([pixels, np.zeros((fixed - n, *pixels.shape[1:]), dtype=np.uint8)])
        x = contract.normalize(pixels)
        out = model.run(x)
        if fixed is not None and n < fixed:
            x, out = x[:n], ModelOutputs(out.logits[:n], out.probs[:n], out.score[:n])
        pred = out.logits.argmax(axis=1)
        probability = out.probs.max(axis=1)
        known = model.decide(out)
        for observer in observers:
            observer.observe(x, out, batch.source)
        done.append(Predictions(batch.source, batch.index, pred, probability, out.score.astype(np.float32, copy=False), known))

    failures: list[tuple[str, str]] = []
    failure_sources: list[int] = []

    def ready() -> Iterator[ClassifiedBatch]:
        nonlocal failures, failure_sources
        while done:
            rows = done.popleft()
            yield ClassifiedBatch(rows, failures, failure_sources)
            failures, failure_sources = [], []

    # Classify on a thread of its own, fed by a bounded queue, while this thread collects decoded
    # pieces and batches them (ONNX Runtime releases the GIL while it runs).
    classifier = _ClassifierThread(classify)
    try:
        batcher = Batcher(batch_size, contract.pixel_shape)
        for piece in pool.pieces(sources):
            failures.extend(piece.failures)
            failure_sources.extend([piece.source] * len(piece.failures))
            for batch in batcher.add(piece):
                classifier.submit(batch)
            yield from ready()
        for batch in batcher.flush():
            classifier.submit(batch)
        classifier.finish()
        yield from ready()
        if failures:  # files that failed after the last batch
            yield ClassifiedBatch(Predictions.concat([]), failures, failure_sources)
    finally:
        classifier.stop()


def classify_source(source: Source, model: InferenceModel, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[Predictions, list[tuple[str, str]]]:
    """Every row of one source classified in this process (decoding in-process, the model's
    batches and decision), and its unreadable files, (path, reason): what `Model.predict` and
    a cluster worker's partition run."""
    parts: list[Predictions] = []
    failures: list[tuple[str, str]] = []
    with DecodePool(model.contract, 0) as pool:
        for batch in iter_batches([source], model, pool, batch_size=batch_size):
            parts.append(batch.rows)
            failures.extend(batch.failures)
    return Predictions.concat(parts), failures


def run_inference(
    sources: list[Source],
    model: InferenceModel,
    pool: DecodePool,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    writer: ResultsWriter | None = None,
    observers: list[BatchObserver] | None = None,
    on_batch: Callable[[ClassifiedBatch], None] | None = None,
) -> InferenceRun:
    """Classify every item of ``sources`` (`iter_batches`) and keep every row: the run
    that ``osr-infer`` reports on. Rows are streamed to ``writer``; ``on_batch`` sees each
    batch as it is classified (progress, failures)."""
    batches = iter_batches(sources, model, pool, batch_size=batch_size, observers=observers)
    return collect_batches(sources, model, batches, writer=writer, on_batch=on_batch)


def collect_batches(
    sources: list[Source],
    model: InferenceModel,
    batches: Iterable[ClassifiedBatch],
    *,
    writer: ResultsWriter | None = None,
    on_batch: Callable[[ClassifiedBatch], None] | None = None,
) -> InferenceRun:
    """Keep every row of ``batches`` (a local run's `iter_batches`, or a cluster engine's,
    over ``sources``): the run ``osr-infer`` reports on. Rows are streamed to ``writer``;
    ``on_batch`` sees each batch as it arrives (progress, failures)."""
    parts: list[Predictions] = []
    failures: list[tuple[str, str]] = []
    failed_per_source = [0] * len(sources)
    t0 = time.perf_counter()
    for batch in batches:
        rows = batch.rows
        if writer is not None and len(rows):
            ids = [sources[s].item_id(i) for s, i in zip(rows.source.tolist(), rows.index.tolist(), strict=True)]
            writer.write(ids, label_column(model.class_names, rows.pred, rows.known).tolist(), rows.probability, rows.score)
        failures.extend(batch.failures)
        for s in batch.failure_sources:
            failed_per_source[s] += 1
        parts.append(rows)
        if on_batch is not None:
            on_batch(batch)
    seconds = time.perf_counter() - t0
    return InferenceRun(sources, model, Predictions.concat(parts), failures, failed_per_source, seconds, writer.rows if writer else None)
