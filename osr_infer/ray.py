"""Batch inference on Ray Data (the ``[ray]`` extra): ``osr-infer --cluster ray:ADDRESS``.

>>> import ray                                                       # doctest: +SKIP
>>> import osr_infer.ray                                             # doctest: +SKIP
>>> from osr_infer import Model                                      # doctest: +SKIP
>>> ray.init("auto")                                                 # doctest: +SKIP
>>> rows = osr_infer.ray.predict("images/", Model.load(), concurrency=4)   # doctest: +SKIP
>>> rows.write_parquet("results/")                                   # doctest: +SKIP

The files are read by ``ray.data.read_binary_files`` (bytes, not Ray's PIL decoding) and
classified by `Classify`, a callable class: each of ``concurrency`` actors loads the model once
and decodes the bytes with this toolkit's own decoders, so the rows are ``osr-infer``'s. The
actors and read tasks are retried when a node is lost (Ray's lineage), and the rows keep the
input order (``preserve_order``), so no row is lost or duplicated.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from osr_infer.engines import ModelPayload, PartitionResult, as_batch, worker_model
from osr_infer.errors import InputError
from osr_infer.outputs import DEFAULT_BATCH_SIZE
from osr_infer.params import NONE, Interval, check
from osr_infer.spec import open_set_labels

if TYPE_CHECKING:
    import ray.data

    from osr_infer.model import Model
    from osr_infer.pipeline import ClassifiedBatch
    from osr_infer.sources import Source

#: Files per ``map_batches`` batch: Ray hands the rows back in order, so smaller blocks stream
#: (the first rows come sooner) where Dask's larger partitions cost less per file.
RAY_PARTITION_SIZE = 512
#: Concurrent read tasks (they take no CPU: each is a process reading files).
READERS = 4
#: The columns of `predict`'s rows: ``osr-infer``'s, and ``error`` (empty for a classified file).
COLUMNS = ("path", "label", "class_index", "probability", "score", "known", "error")


class Classify:
    """One actor of `predict`'s ``map_batches``: the model loaded once, then batches of
    ``{"path", "bytes"}`` rows decoded and classified, one output row per input row."""

    def __init__(self, payload: ModelPayload, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.model = worker_model(payload)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from osr_infer.decode import decode_files
        from osr_infer.engines import classify_pixels

        paths = [str(p) for p in batch["path"]]
        ok, pixels, failed = decode_files(paths, self.model.contract, contents=[bytes(b) for b in batch["bytes"]])
        rows = classify_pixels(self.model, pixels, self.batch_size)
        n = len(paths)
        out: dict[str, np.ndarray] = {
            "path": np.array(paths, dtype=object), "label": np.full(n, None, dtype=object),
            "class_index": np.full(n, -1, dtype=np.int64), "probability": np.full(n, np.nan, dtype=np.float32),
            "score": np.full(n, np.nan, dtype=np.float32), "known": np.zeros(n, dtype=bool), "error": np.full(n, "", dtype=object),
        }
        out["label"][ok] = open_set_labels(self.model.classes, rows.pred, rows.known)
        out["class_index"][ok], out["probability"][ok], out["score"][ok], out["known"][ok] = rows.pred, rows.probability, rows.score, rows.known
        for k, reason in failed:
            out["error"][k] = reason
        return out


def predict(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    model: Model,
    *,
    unknown: Iterable[str | os.PathLike[str]] = (),
    shard: tuple[int, int] | None = None,
    concurrency: int | None = None,
    partition_size: int = RAY_PARTITION_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ray.data.Dataset:
    """Classify the files of ``sources`` (files, folders, ``s3://`` prefixes...) on the Ray
    cluster this process is connected to (``ray.init``), lazily: a Ray Dataset of the columns
    `COLUMNS`, in input order. ``concurrency``: classifying actors (default: one per CPU of the
    cluster); ``partition_size``: files per ``map_batches`` batch. ``.write_parquet(folder)``
    writes it from the workers; ``.iter_batches()`` streams it here."""
    run = model.predict_files(sources, unknown=unknown, shard=shard, batch_size=batch_size,
                              cluster=RayEngine(None, partition_size=partition_size, concurrency=concurrency))
    return _dataset(run.sources, model, batch_size, partition_size, concurrency)


def _dataset(sources: list[Source], model: Model, batch_size: int, partition_size: int, concurrency: int | None) -> ray.data.Dataset:
    import ray
    import ray.data

    memory = [s.name for s in sources if not s.from_files]
    if memory:
        raise InputError(f"ray reads files: {', '.join(memory)} is a data set held in memory (run it without the cluster)")
    paths = [_ray_path(path) for source in sources for path in source.file_paths]
    if not paths:
        raise InputError("nothing to classify")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in input order, whatever finishes first
    context.enable_progress_bars = False  # the caller reports progress (osr-infer's own bar)
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    actors = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # Reading is I/O: its tasks take no CPU from the classifying actors (which hold one each).
    files = ray.data.read_binary_files(paths, include_paths=True, override_num_blocks=max(1, -(-len(paths) // partition_size)),
                                       num_cpus=0, concurrency=READERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # restarts are passed as remote arguments, as Ray documents
        return files.map_batches(
            Classify, fn_constructor_args=(ModelPayload.of(model), batch_size),
            batch_size=partition_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
            zero_copy_batch=True, max_restarts=-1, max_task_retries=-1,
        )


def _probe(address: str | None) -> None:
    """Fail at once where a HOST:PORT address does not answer (Ray itself retries for minutes)."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"cluster ray:{address}: give ray:auto, ray:HOST:PORT (the head's GCS port) or ray:ray://HOST:10001")
    try:
        with socket.create_connection((host, int(port)), timeout=10):
            pass
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The process's file descriptor 2 sent to /dev/null for the block (C++ writes there directly)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ray_path(path: str) -> str:
    """A path as Ray's readers take it: absolute (a URL as it is)."""
    return path if "://" in path else os.path.abspath(path)


class RayEngine:
    """A connection to a Ray cluster that classifies a run's files with Ray Data."""

    name = "ray"

    def __init__(self, address: str | None = None, *, partition_size: int | None = None, concurrency: int | None = None) -> None:
        import ray

        check("partition_size", partition_size, Interval(int, 1, None), NONE)
        check("concurrency", concurrency, Interval(int, 1, None), NONE)
        self.partition_size = partition_size or RAY_PARTITION_SIZE
        self.concurrency = concurrency
        self._connected_here = False
        if not ray.is_initialized():
            _probe(address)
            # Ray's C++ core logs to stderr (an actor's restart policy, at every run): fatal errors only,
            # and the line saying so hidden (the connection's failures are exceptions, reported below).
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
            try:
                with _quiet_stderr():
                    ray.init(address=address or "auto", log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot reach the Ray cluster at {address or 'auto'}: {str(exc).splitlines()[0]}") from None
            self._connected_here = True

    def describe(self) -> str:
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return f"ray ({len(nodes)} nodes, {int(ray.cluster_resources().get('CPU', 0))} CPUs)"

    def close(self) -> None:
        import ray

        if self._connected_here:
            ray.shutdown()

    def batches(self, sources: list[Source], model: Model, batch_size: int) -> Iterator[ClassifiedBatch]:
        return (as_batch(result) for result in self._results(sources, model, batch_size))  # in order already

    def _results(self, sources: list[Source], model: Model, batch_size: int) -> Iterator[PartitionResult]:
        """The dataset's rows, in input order, as one result per source's stretch of rows; each
        row checked against the item it must be (the engine's order is the run's)."""
        dataset = _dataset(sources, model, batch_size, self.partition_size, self.concurrency)
        expected = ((s, i) for s, source in enumerate(sources) for i in range(len(source)))
        number = 0
        for rows in dataset.iter_batches(batch_size=self.partition_size, batch_format="numpy", prefetch_batches=2):
            for result in _as_results(rows, expected, sources, number):
                number += 1
                yield result


def _as_results(rows: dict[str, np.ndarray], expected: Iterator[tuple[int, int]], sources: list[Source],
                number: int) -> Iterator[PartitionResult]:
    """A batch of rows as results, one per run of rows from the same source."""
    items = [next(expected) for _ in range(len(rows["path"]))]
    for k, (s, i) in enumerate(items):
        path = str(rows["path"][k])
        if _ray_path(path).split("://", 1)[-1] != _ray_path(sources[s].file_paths[i]).split("://", 1)[-1]:
            raise RuntimeError(f"ray returned {path} where {sources[s].file_paths[i]} was due: rows out of order")
    start = 0
    while start < len(items):
        s = items[start][0]
        stop = start
        while stop < len(items) and items[stop][0] == s:
            stop += 1
        chunk = slice(start, stop)
        ok = rows["error"][chunk] == ""
        index = np.array([i for _, i in items[start:stop]], dtype=np.int64)
        failures = [(sources[s].file_paths[i], str(reason)) for (_, i), reason, good in zip(items[start:stop], rows["error"][chunk], ok, strict=True)
                    if not good]
        yield PartitionResult(number, s, index[ok], rows["class_index"][chunk][ok], rows["probability"][chunk][ok],
                              rows["score"][chunk][ok], rows["known"][chunk][ok], failures)
        number += 1
        start = stop
