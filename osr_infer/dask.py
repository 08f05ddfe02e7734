"""Batch inference on a Dask cluster (the ``[dask]`` extra): ``osr-infer --cluster dask:ADDRESS``.

>>> from distributed import Client                                   # doctest: +SKIP
>>> from osr_infer import Model                                      # doctest: +SKIP
>>> import osr_infer.dask                                            # doctest: +SKIP
>>> client = Client("tcp://scheduler:8786")                          # doctest: +SKIP
>>> frame = osr_infer.dask.predict("images/", Model.load(), client)  # doctest: +SKIP
>>> frame.to_parquet("results/")             # one Parquet file per partition    # doctest: +SKIP

Each partition of a few thousand files is one task: a worker loads the model once (from its
bytes, shipped with the run), decodes and classifies the partition with the same code as
``osr-infer`` (`osr_infer.engines.classify_partition`). Tasks are pure, so the partitions of a
worker that dies run again elsewhere: no row is lost or duplicated. Start workers with
``--nthreads 1`` and one process per core: ONNX Runtime gets one thread per partition.
"""

from __future__ import annotations

import itertools
import os
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from osr_infer.engines import ModelPayload, Partition, PartitionResult, classify_partition, ordered_batches, partitions
from osr_infer.errors import InputError
from osr_infer.outputs import DEFAULT_BATCH_SIZE, PARTITION_SIZE
from osr_infer.params import NONE, Interval, check
from osr_infer.spec import open_set_labels

if TYPE_CHECKING:
    import dask.dataframe
    import pandas
    from distributed import Client

    from osr_infer.model import Model
    from osr_infer.pipeline import ClassifiedBatch
    from osr_infer.sources import Source

#: Partitions in flight per worker thread: enough to keep every worker busy while the client
#: takes results in order, few enough that memory holds only a handful of results.
IN_FLIGHT_PER_THREAD = 3
#: The columns of `predict`'s frame: ``osr-infer``'s results, and ``error`` (empty for a
#: classified file; the reason for an unreadable one, whose other columns are empty).
COLUMNS = ("path", "label", "class_index", "probability", "score", "known", "error")


class DaskEngine:
    """A connection to a Dask scheduler that classifies a run's partitions on its workers."""

    name = "dask"

    def __init__(self, address: str | None = None, *, client: Client | None = None, partition_size: int | None = None,
                 timeout: float | None = None) -> None:
        check("partition_size", partition_size, Interval(int, 1, None), NONE)
        self._own_client = client is None
        self.client = client if client is not None else self._connect(address, timeout)
        self.partition_size = partition_size or PARTITION_SIZE

    @staticmethod
    def _connect(address: str | None, timeout: float | None) -> Client:
        """A client of the scheduler at ``address``; ``timeout`` (seconds) defaults to Dask's
        ``distributed.comm.timeouts.connect``."""
        from distributed import Client

        if not address:
            raise InputError("dask: give the scheduler's address (tcp://HOST:8786) or a Client")
        try:
            import dask.config

            return Client(address, timeout=timeout if timeout is not None else dask.config.get("distributed.comm.timeouts.connect"))
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None

    def close(self) -> None:
        """Close the connection this engine opened (a Client given to it stays open)."""
        if self._own_client:
            self.client.close()

    def describe(self) -> str:
        info = self.client.scheduler_info()
        return f"dask at {info.get('address', '?')} ({len(info.get('workers', {}))} workers, {self._threads(info)} threads)"

    def _threads(self, info: dict[str, Any] | None = None) -> int:
        """The cluster's worker threads (from ``info``, the scheduler's, when given)."""
        workers = (info if info is not None else self.client.scheduler_info()).get("workers", {})
        return sum(int(w.get("nthreads", 1)) for w in workers.values())

    def results(self, sources: list[Source], model: Model, batch_size: int) -> Iterator[PartitionResult]:
        """Each partition's result as it finishes (any order), a bounded number in flight."""
        from distributed import as_completed

        payload = self.client.scatter(ModelPayload.of(model), broadcast=True, hash=False)
        run = uuid.uuid4().hex[:12]
        pending = partitions(sources, self.partition_size)
        finished = as_completed()

        def submit(partition: Partition) -> None:
            finished.add(self.client.submit(classify_partition, payload, partition, batch_size, pure=False,
                                            key=f"osr-partition-{run}-{partition.number}"))

        for partition in itertools.islice(pending, IN_FLIGHT_PER_THREAD * max(1, self._threads())):
            submit(partition)
        try:
            for future in finished:
                result: PartitionResult = future.result()
                future.release()
                following = next(pending, None)
                if following is not None:
                    submit(following)
                yield result
        finally:
            finished.clear()
            payload.release()

    def batches(self, sources: list[Source], model: Model, batch_size: int) -> Iterator[ClassifiedBatch]:
        return ordered_batches(self.results(sources, model, batch_size))


def predict(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    model: Model,
    client: Client | None = None,
    *,
    unknown: Iterable[str | os.PathLike[str]] = (),
    data_dir: str | os.PathLike[str] | None = None,
    shard: tuple[int, int] | None = None,
    partition_size: int = PARTITION_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dask.dataframe.DataFrame:
    """Classify ``sources`` (as `Model.predict_files` takes them) on a Dask cluster, lazily: a
    Dask DataFrame with a partition per ``partition_size`` files, in input order, of the columns
    `COLUMNS` (``error`` is empty for a classified file). ``client``: the cluster's
    (default: the current one). ``.to_parquet(folder)`` writes one file per partition, from the
    workers; ``.compute()`` gathers every row, in order."""
    import dask
    import dask.dataframe as dd
    from distributed import default_client

    engine = DaskEngine(client=client or default_client(), partition_size=partition_size)
    run = model.predict_files(sources, unknown=unknown, data_dir=data_dir, shard=shard, batch_size=batch_size, cluster=engine)
    shipped = dask.delayed(ModelPayload.of(model), pure=True)
    names = [source.name for source in run.sources]
    parts = [dask.delayed(_frame, pure=True)(shipped, partition, batch_size, model.classes, names[partition.source])
             for partition in partitions(run.sources, partition_size)]
    if not parts:
        return dd.from_pandas(_empty_frame(), npartitions=1)
    return dd.from_delayed(parts, meta=_empty_frame(), verify_meta=False)


def _frame(payload: ModelPayload, partition: Partition, batch_size: int, classes: tuple[str, ...], source_name: str) -> pandas.DataFrame:
    """A partition's rows as a DataFrame (runs on a worker): classified rows and unreadable files, in input order."""
    import pandas as pd

    result = classify_partition(payload, partition, batch_size)
    if partition.paths is not None:
        ids = [partition.paths[i - partition.start] for i in result.index.tolist()]
    else:
        ids = [f"{source_name}:{i}" for i in result.index.tolist()]
    rows = pd.DataFrame({
        "path": ids,
        "label": open_set_labels(classes, result.pred, result.known),
        "class_index": result.pred.astype(np.int64), "probability": result.probability, "score": result.score,
        "known": result.known.astype(bool), "error": "",
    })
    rows["_order"] = result.index
    if result.failures:
        assert partition.paths is not None  # only files fail
        position = {path: partition.start + k for k, path in enumerate(partition.paths)}
        failed = pd.DataFrame({"path": [p for p, _ in result.failures], "label": None, "class_index": -1,
                               "probability": np.nan, "score": np.nan, "known": False,
                               "error": [reason for _, reason in result.failures]})
        failed["_order"] = [position[p] for p, _ in result.failures]
        rows = pd.concat([rows, failed]).sort_values("_order", kind="stable")
    return rows.drop(columns="_order").astype(_DTYPES).reset_index(drop=True)


_DTYPES: dict[str, Any] = {"path": "string", "label": "string", "class_index": "int64", "probability": "float32",
                           "score": "float32", "known": "bool", "error": "string"}


def _empty_frame() -> pandas.DataFrame:
    import pandas as pd

    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in _DTYPES.items()})
