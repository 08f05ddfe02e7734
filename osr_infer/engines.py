"""Running a `FileRun` on a cluster engine (Dask, Ray): the engine-independent half.

A run is cut into *partitions* of a few thousand items (`Partition`): file paths, or the
pixels of an in-memory data set. A worker classifies one with the very `Model` code a local
run uses (`classify_partition`: the same decoding, batches and decision), so every engine
gives the rows ``osr-infer`` gives. The model travels as its bytes (`ModelPayload`), not as a
path the workers may not see; each worker process loads it once (`worker_model`).

Partitions are pure: running one again gives the same rows, so an engine that re-runs the
partitions of a lost worker loses and duplicates nothing. The client takes the results in
partition order (`ordered_batches`), whatever order they finish in.

An engine is one entry of `ENGINES`: ``"dask"`` (`osr_infer.dask`), ``"ray"`` (`osr_infer.ray`).
"""

from __future__ import annotations

import hashlib
import importlib
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol

import numpy as np

from osr_infer.errors import InputError, ParameterError
from osr_infer.outputs import PARTITION_SIZE
from osr_infer.spec import UNLABELLED

if TYPE_CHECKING:
    from osr_infer.model import Model
    from osr_infer.pipeline import ClassifiedBatch, Predictions
    from osr_infer.sources import Source

#: Cluster engines by the scheme of ``cluster`` (``dask:ADDRESS``, ``ray:ADDRESS``): module and class.
ENGINES = {"dask": "osr_infer.dask:DaskEngine", "ray": "osr_infer.ray:RayEngine"}


@dataclass(frozen=True)
class ModelPayload:
    """What every worker needs to load the run's model: the file's bytes and the decision rule."""

    data: bytes
    sha256: str
    threshold: float | None = None
    score_threshold: float | None = None

    @classmethod
    def of(cls, model: "Model") -> "ModelPayload":
        data = Path(model.path).read_bytes()
        return cls(data, hashlib.sha256(data).hexdigest(), **model.thresholds)


_MODELS: dict[tuple[str, float | None, float | None], "Model"] = {}
_MODELS_LOCK = threading.Lock()


def worker_model(payload: ModelPayload) -> "Model":
    """The payload's model in this worker process, loaded once (later partitions reuse it),
    with one ONNX Runtime thread: an engine runs one partition per core."""
    from osr_infer.io import atomic_path
    from osr_infer.model import Model

    key = (payload.sha256, payload.threshold, payload.score_threshold)
    with _MODELS_LOCK:
        if not _MODELS:
            from osr_infer.workers import keep_heap

            # As a decoding worker: engines start theirs with glibc trimming the heap at 64 KB
            # (Dask's MALLOC_TRIM_THRESHOLD_), which made every partition 1.6x slower here.
            keep_heap()
        if key not in _MODELS:
            folder = Path(tempfile.gettempdir()) / "osr-toolkit-models"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{payload.sha256}.onnx"
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != payload.sha256:
                with atomic_path(path) as temp:
                    temp.write_bytes(payload.data)
            _MODELS[key] = Model.load(path, threshold=payload.threshold, score_threshold=payload.score_threshold,
                                      threads=1, spin=False)
        return _MODELS[key]


@dataclass(frozen=True)
class Partition:
    """Items ``start:stop`` of source ``source``: their file paths, or their pixels."""

    number: int
    source: int
    start: int
    stop: int
    paths: list[str] | None = None
    pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class PartitionResult:
    """A partition's rows (in its order; ``index`` is each row's position in its source) and
    its unreadable files, (path, reason)."""

    number: int
    source: int
    index: np.ndarray
    pred: np.ndarray
    probability: np.ndarray
    score: np.ndarray
    known: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)


def partitions(sources: list["Source"], size: int = PARTITION_SIZE) -> Iterator[Partition]:
    """The run's items cut into partitions of at most ``size``, in input order (lazily: a
    listing of millions of paths is not copied into partitions all at once)."""
    number = 0
    for s, source in enumerate(sources):
        for start in range(0, len(source), size):
            stop = min(start + size, len(source))
            if source.from_files:
                yield Partition(number, s, start, stop, paths=source.file_paths[start:stop])
            else:
                yield Partition(number, s, start, stop, pixels=source.arrays[start:stop])
            number += 1


def classify_partition(payload: ModelPayload, partition: Partition, batch_size: int) -> PartitionResult:
    """Classify one partition in this process (what a worker runs), through the same
    pipeline as a local run: decoding in-process, the model's batches and decision."""
    from osr_infer.pipeline import classify_source
    from osr_infer.sources import Source

    model = worker_model(payload)
    labels = np.full(len(partition), UNLABELLED, dtype=np.int64)
    if partition.paths is not None:
        source = Source("partition", labels, paths=partition.paths)
    else:
        source = Source("partition", labels, images=partition.pixels)
    done, failures = classify_source(source, model.session, batch_size)
    return PartitionResult(partition.number, partition.source, done.index + partition.start, done.pred, done.probability,
                           done.score, done.known, failures)


def classify_pixels(model: "Model", pixels: np.ndarray, batch_size: int) -> "Predictions":
    """Classify decoded pixels (a worker's share) in the model's batches: its rows, in order."""
    from osr_infer.pipeline import classify_source
    from osr_infer.sources import Source

    rows, _ = classify_source(Source("pixels", np.full(len(pixels), UNLABELLED, dtype=np.int64), images=pixels), model.session,
                              batch_size)
    return rows


def as_batch(result: PartitionResult) -> "ClassifiedBatch":
    """A partition's result as the batch a local run would have produced for its items."""
    from osr_infer.pipeline import ClassifiedBatch, Predictions

    n = len(result.index)
    rows = Predictions(np.full(n, result.source, dtype=np.int32), result.index.astype(np.int64), result.pred,
                       result.probability, result.score, result.known)
    return ClassifiedBatch(rows, list(result.failures), [result.source] * len(result.failures))


def ordered_batches(results: Iterable[PartitionResult]) -> Iterator["ClassifiedBatch"]:
    """Results that arrive in any order, handed out in partition order (each held only until
    the partitions before it have arrived)."""
    waiting: dict[int, PartitionResult] = {}
    following = 0
    for result in results:
        waiting[result.number] = result
        while following in waiting:
            yield as_batch(waiting.pop(following))
            following += 1
    if waiting:
        raise RuntimeError(f"partitions missing before {min(waiting)}: the engine lost results")


class ClusterEngine(Protocol):
    """What `FileRun` needs of an engine: the run's batches, in input order."""

    name: str

    def batches(self, sources: list["Source"], model: "Model", batch_size: int) -> Iterator["ClassifiedBatch"]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def parse_cluster(cluster: str) -> tuple[str, str]:
    """``ENGINE:ADDRESS`` as (engine, address); a ParameterError naming ``cluster`` otherwise."""
    engine, sep, address = cluster.partition(":")
    if not sep or engine not in ENGINES or not address:
        raise ParameterError("cluster", f"cluster must be dask:ADDRESS (dask:tcp://HOST:8786) or ray:ADDRESS (ray:auto, "
                             f"ray:ray://HOST:10001), not {cluster!r}")
    return engine, address


def connect(cluster: str, **options: Any) -> ClusterEngine:
    """The engine ``cluster`` names, connected (``dask:tcp://HOST:8786``, ``ray:auto``...).
    An InputError saying what to install when the engine's extra is missing."""
    engine, address = parse_cluster(cluster)
    module_name, class_name = ENGINES[engine].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cluster {engine} needs the [{engine}] extra: pip install 'osr-toolkit[{engine}]' ({exc})") from None
    engine_class: Any = getattr(module, class_name)
    return engine_class(address, **options)  # type: ignore[no-any-return]
