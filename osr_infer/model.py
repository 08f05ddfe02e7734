"""The public inference API: one model object, as ``osr-infer`` uses it.

>>> from osr_infer import Model
>>> model = Model.load()                                  # the shipped default model
>>> p = model.predict(["digit.png", pil_image, pixels, jpeg_bytes])   # doctest: +SKIP
>>> p.labels, p.class_index, p.score, p.probability, p.known          # doctest: +SKIP

`Model.predict` takes paths, PIL images, uint8 arrays and the bytes of image files, and
applies the model's preprocessing contract to each (EXIF orientation, alpha, colour, the
layout step, resize, normalisation) exactly as ``osr-infer`` does: the same pixels, bit for bit,
so the same labels and scores (ONNX Runtime's last bit of a score can depend on the row's place
in its batch).
`Model.predict_files` streams files, folders and data set references through the
decoding pool, batch by batch; unreadable files are reported in each batch and skipped.
``osr-infer`` is a thin client of both. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from osr_infer.errors import InputError, ModelError, ParameterError
from osr_infer.outputs import DEFAULT_BATCH_SIZE
from osr_infer.params import NONE, Interval, OneOf, check
from osr_infer.spec import UNKNOWN, open_set_labels

if TYPE_CHECKING:
    from PIL import Image

    from osr_infer.decode import DecodePool
    from osr_infer.engines import ClusterEngine
    from osr_infer.metadata import ModelMetadata
    from osr_infer.pipeline import BatchObserver, ClassifiedBatch, InferenceRun
    from osr_infer.results import ResultsWriter
    from osr_infer.preprocess import PreprocessContract
    from osr_infer.session import InferenceModel
    from osr_infer.sources import Source
    from osr_infer.spec import ModelSpec

#: One input of `Model.predict`: a path, the bytes of an image file, a PIL image, or
#: uint8 pixels (``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA).
ImageInput = Union[str, os.PathLike[str], bytes, "Image.Image", np.ndarray]

#: The shipped model: the default recipe trained on MNIST with seed 0 (docs/model-card.md).
SHIPPED_MODEL = "mnist-default.onnx"
#: Bounds that keep memory and processes proportionate (a batch of 65,536 RGB 32x32 images is 800 MB of floats).
MAX_BATCH_SIZE = 65_536
MAX_WORKERS = 256
DECODERS = ("fast", "pil")


def shipped_model_path() -> Path:
    """The ONNX file of the model that ships with the package (``Model.load()`` loads it)."""
    return Path(str(resources.files("osr_infer") / "models" / SHIPPED_MODEL))


@dataclass(frozen=True)
class Predictions:
    """One row per input, as numpy arrays (``len(p)`` rows).

    ``class_index`` is the top class whether accepted or not; ``known`` the decision
    (`Model.decision_rule`); ``labels`` the class name where known, else ``"unknown"``;
    ``label_index`` the class index where known, else -1 (negative labels for unknowns, as
    pytorch-ood's detectors give them). ``probability`` is the top softmax probability and
    ``score`` the model's own known-vs-unknown score. From `Model.predict_files`,
    ``paths`` names each row's file (or ``source:index`` for an in-memory data set),
    ``failures`` lists the files skipped since the previous batch as ``(path, reason)`` (and
    ``failure_sources`` the source of each), and ``source``/``index`` say which source and
    which of its items each row is.
    """

    class_names: tuple[str, ...]
    class_index: np.ndarray
    probability: np.ndarray
    score: np.ndarray
    known: np.ndarray
    paths: tuple[str, ...] | None = None
    failures: tuple[tuple[str, str], ...] = ()
    failure_sources: tuple[int, ...] = ()
    source: np.ndarray | None = field(default=None, repr=False)
    index: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.class_index)

    @property
    def label_index(self) -> np.ndarray:
        return np.where(self.known, self.class_index, UNKNOWN).astype(np.int64)

    @property
    def labels(self) -> np.ndarray:
        return open_set_labels(self.class_names, self.class_index, self.known)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per row: ``path`` (when known), ``label``, ``class_index``, ``probability``,
        ``score``, ``known``: the fields ``osr-infer`` writes, as Python values."""
        rows = []
        for k, label in enumerate(self.labels.tolist()):
            row: dict[str, Any] = {"path": self.paths[k]} if self.paths is not None else {}
            row.update(label=label, class_index=int(self.class_index[k]), probability=float(self.probability[k]),
                       score=float(self.score[k]), known=bool(self.known[k]))
            rows.append(row)
        return rows


class FileRun:
    """What `Model.predict_files` returns: iterate it for `Predictions` batches.

    The sources are resolved when it is made (a missing folder or a typo fails at once):
    ``sources`` holds them with their labels, ``notes`` what the resolution left out. While
    iterating, ``decode_notes()`` says what happened to the decoding pool (a worker that died).
    """

    def __init__(self, model: "Model", sources: list["Source"], pool: "DecodePool", batch_size: int,
                 observers: list["BatchObserver"], engine: "ClusterEngine | None" = None) -> None:
        self.model = model
        self.sources = sources
        self.notes = [s.note for s in sources if s.note]
        self._pool = pool
        self._batch_size = batch_size
        self._observers = observers
        #: The cluster engine that classifies the partitions (None: this machine, ``workers`` processes).
        self.engine = engine
        self.closes_engine = False  # True: the engine is this run's own, closed when the run ends

    @property
    def total(self) -> int:
        """Items over all sources (files, or images of an in-memory data set)."""
        return sum(len(s) for s in self.sources)

    def resume_after(self, item_id: str, cell: Callable[[str], str] = str) -> int:
        """Start after the item whose id (its ``path``) is ``item_id``, as ``cell`` writes ids:
        the items up to it were classified by an earlier run (``osr-infer --resume``). Returns
        how many items are left out; a ParameterError naming ``resume`` if no item has that id."""
        skipped = 0
        for s, source in enumerate(self.sources):
            ids = [cell(source.item_id(i)) for i in range(len(source))]
            if item_id in ids:
                position = ids.index(item_id) + 1
                nothing = np.arange(0)
                self.sources = [*[src.subset(nothing) for src in self.sources[:s]],
                                source.subset(np.arange(position, len(source))), *self.sources[s + 1 :]]
                return skipped + position
            skipped += len(source)
        raise ParameterError("resume", f"`resume`: the results end with {item_id}, which is none of these sources' items: "
                             "give the run's own sources")

    @property
    def batch_size(self) -> int:
        """Rows per batch (the model's own where it takes a fixed batch)."""
        return self._batch_size

    @property
    def workers(self) -> int:
        """Decoding processes this run uses (0: decoding in the calling process)."""
        return self._pool.workers

    def decode_notes(self) -> list[str]:
        return self._pool.notes()

    def collect(self, *, writer: "ResultsWriter | None" = None,
                on_batch: "Callable[[ClassifiedBatch], None] | None" = None) -> "InferenceRun":
        """Run it all and keep every row: the `InferenceRun` that
        ``osr-infer``'s report and metrics read (``osr_infer.report.run_metrics``). Rows are
        streamed to ``writer`` (a results file); ``on_batch`` sees each batch as it is classified."""
        from osr_infer.pipeline import collect_batches

        with self._batches() as batches:
            return collect_batches(self.sources, self.model.session, batches, writer=writer, on_batch=on_batch)

    def observe(self, observer: "BatchObserver") -> None:
        """Hand ``observer`` each batch as the model sees it (before iterating; not on a cluster,
        where the model runs elsewhere)."""
        if self.engine is not None:
            raise ParameterError("observers", f"`observers` see the model's batches on this machine; {self.engine.name} "
                                 "classifies them on its workers")
        self._observers.append(observer)

    @contextlib.contextmanager
    def _batches(self) -> Iterator[Iterator["ClassifiedBatch"]]:
        """The run's classified batches, in input order: from the engine, or this machine's pool."""
        if self.engine is not None:
            try:
                yield self.engine.batches(self.sources, self.model, self._batch_size)
            finally:
                if self.closes_engine:
                    self.engine.close()
            return
        from osr_infer.pipeline import iter_batches

        with self._pool as pool:
            yield iter_batches(self.sources, self.model.session, pool, batch_size=self._batch_size, observers=self._observers)

    def __iter__(self) -> Iterator[Predictions]:
        with self._batches() as batches:
            for batch in batches:
                rows = batch.rows
                paths = tuple(self.sources[s].item_id(i) for s, i in zip(rows.source.tolist(), rows.index.tolist(), strict=True))
                yield Predictions(self.model.classes, rows.pred, rows.probability, rows.score, rows.known, paths,
                                  tuple(batch.failures), tuple(batch.failure_sources), rows.source, rows.index)


class Model:
    """An exported osr-toolkit model (ONNX), ready to classify images: a known class, or unknown.

    Use `load`. The model decides ``score >= threshold`` on its own score and stored
    threshold, unless ``threshold`` (on the top softmax probability, the seed's 0.999 rule)
    or ``score_threshold`` (on its own score) was given to `load`.
    """

    def __init__(self, session: "InferenceModel", *, shipped: bool = False, threads: int | None = None,
                 spin: bool | None = None, threshold: float | None = None, score_threshold: float | None = None) -> None:
        self.session = session
        self.provider = session.provider  # where it runs (osr_infer.providers): the runs of this model keep it
        self.shipped = shipped  # the model that ships with the package
        self._threads, self._spin = threads, spin  # as given to load(): None lets each run choose
        self._thresholds = {"threshold": threshold, "score_threshold": score_threshold}  # as given to load()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        threshold: float | None = None,
        score_threshold: float | None = None,
        threads: int | None = None,
        spin: bool | None = None,
        provider: str = "cpu",
        provider_options: dict[str, str] | None = None,
    ) -> "Model":
        """Load ``path`` (an ONNX file written by ``osr-export``, or its URL: ``s3://``,
        ``https://``... as `osr_infer.remote` reads them), or with no path the model that
        ships with the package (`shipped_model_path`).

        ``threshold``: accept when the top softmax probability reaches it, in (0, 1);
        ``score_threshold``: accept when the model's own score reaches it; at most one.
        ``threads``: ONNX Runtime's intra-op threads (default: every core, or what
        `predict_files` leaves its decoding workers); ``spin``: let idle runtime threads
        busy-wait (default: only when nothing decodes beside them).
        ``provider``: where it runs, ``cpu`` (default), ``cuda``, ``tensorrt``, ``coreml``...
        or ``auto`` (the best available; `osr_infer.providers`), with ONNX Runtime's
        ``provider_options``. Raises `ModelError` for a missing or unusable model and
        `ParameterError` for a bad threshold or a provider that is not available (never a
        silent CPU run)."""
        from osr_infer.session import InferenceModel

        check("threshold", threshold, Interval(float, 0, 1, closed="neither"), NONE)
        check("score_threshold", score_threshold, Interval(float, None, None), NONE)
        check("threads", threads, Interval(int, 1, 1024), NONE)
        shipped = path is None
        from osr_infer.remote import is_url

        if path is not None and is_url(os.fspath(path)):
            from osr_infer.remote import fetch_model

            path = fetch_model(os.fspath(path))
        if path is None:
            path = shipped_model_path()
            if not Path(path).is_file():
                raise ModelError(f"the shipped model is missing from this installation ({path}): reinstall osr-toolkit")
        from osr_infer.providers import resolve

        resolved = resolve(provider, provider_options)
        session = InferenceModel(Path(path), threshold, score_threshold=score_threshold, threads=threads or default_cores(),
                                 spin=True if spin is None else spin, provider=resolved)
        return cls(session, shipped=shipped, threads=threads, spin=spin, threshold=threshold, score_threshold=score_threshold)

    # -- what the model is -------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.session.path

    @property
    def thresholds(self) -> dict[str, float | None]:
        """The ``threshold`` and ``score_threshold`` given to `load` (None: the model's own rule)."""
        return dict(self._thresholds)

    @property
    def spec(self) -> "ModelSpec | None":
        """The model spec (classes, preprocessing, score, threshold, data set); None for an ONNX
        file without osr.* metadata."""
        return self.session.spec

    @property
    def metadata(self) -> "ModelMetadata | None":
        return self.session.metadata

    @property
    def classes(self) -> tuple[str, ...]:
        """The known classes, in label order."""
        return tuple(self.session.class_names)

    @property
    def contract(self) -> "PreprocessContract":
        """How an image becomes the network's input (`PreprocessContract`)."""
        return self.session.contract

    @property
    def threshold(self) -> float:
        """The threshold of the decision (`decision_rule`)."""
        return self.session.threshold

    @property
    def decision_rule(self) -> str:
        """What a row is accepted on: ``kl_uniform >= 0.4512``, ``msp >= 0.999``."""
        return self.session.decision_rule

    @property
    def threshold_origin(self) -> str:
        """``"model"`` (its stored threshold), ``"threshold"`` or ``"score_threshold"`` (given to `load`)."""
        return self.session.threshold_origin

    @property
    def notes(self) -> list[str]:
        """What a user of this model should know about how it decides or what it lacks."""
        return list(self.session.notes)

    def describe(self, flags: dict[str, str] | None = None) -> str:
        """One line: the file, the network, the classes, the input, the decision and its origin."""
        text = self.session.describe(flags)
        return f"{text} [the model shipped with osr-toolkit]" if self.shipped else text

    def __repr__(self) -> str:
        return f"Model({self.describe()})"

    # -- in-memory inputs ---------------------------------------------------------------------

    def preprocess(self, inputs: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """The inputs through the contract's decoding, colour, layout and resize steps: uint8
        pixels, one per input, of the contract's ``pixel_shape`` (normalisation is the
        model's: ``model.contract.normalize``). Raises InputError naming an input it cannot read."""
        items = _as_list(inputs)
        pixels = np.empty((len(items), *self.contract.pixel_shape), dtype=np.uint8)
        paths = [(k, item) for k, item in enumerate(items) if isinstance(item, (str, os.PathLike))]
        if paths:
            from osr_infer.decode import decode_files

            ok, decoded, failed = decode_files([os.fspath(p) for _, p in paths], self.contract)
            if failed:
                k, reason = failed[0]
                raise InputError(f"input {paths[k][0]} ({os.fspath(paths[k][1])}): {reason}")
            pixels[[paths[k][0] for k in ok.tolist()]] = decoded
        for k, item in enumerate(items):
            if not isinstance(item, (str, os.PathLike)):
                pixels[k] = self._pixels_of(k, item)
        return pixels

    def predict(self, inputs: ImageInput | Sequence[ImageInput], *, batch_size: int = DEFAULT_BATCH_SIZE) -> Predictions:
        """Classify ``inputs``: one path, bytes, PIL image or array, or a list of them (a 3-D
        array that is not one colour image, or a 4-D array, is a batch of images). One row per
        input, in order. Raises `InputError` naming the first input
        that cannot be read (nothing is classified then)."""
        check("batch_size", batch_size, Interval(int, 1, MAX_BATCH_SIZE))
        from osr_infer.pipeline import classify_source
        from osr_infer.sources import Source
        from osr_infer.spec import UNLABELLED

        pixels = self.preprocess(inputs)
        rows, _ = classify_source(Source("inputs", np.full(len(pixels), UNLABELLED), images=pixels), self.session, batch_size)
        return Predictions(self.classes, rows.pred, rows.probability, rows.score, rows.known)

    def _pixels_of(self, k: int, item: Any) -> np.ndarray:
        from PIL import Image

        from osr_infer.preprocess import ImageDecodeError, convert_decoded, finish_converted, load_converted_bytes

        try:
            if isinstance(item, (bytes, bytearray, memoryview)):
                return finish_converted(load_converted_bytes(bytes(item), self.contract), self.contract)
            if isinstance(item, Image.Image):
                return finish_converted(convert_decoded(item, self.contract), self.contract)
            if isinstance(item, np.ndarray):
                return finish_converted(self.contract.convert(image_of_array(item)), self.contract)
        except ImageDecodeError as exc:
            raise InputError(f"input {k} ({_kind(item)}): {exc}") from None
        raise InputError(f"input {k}: {type(item).__name__} is not an image; give a path, the bytes of an image file, "
                         "a PIL image or uint8 pixels")

    # -- files, folders, data sets --------------------------------------------------------------

    def predict_files(
        self,
        sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        unknown: Iterable[str | os.PathLike[str]] = (),
        workers: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        decoder: str = "fast",
        data_dir: str | os.PathLike[str] | None = None,
        observers: Sequence["BatchObserver"] = (),
        shard: tuple[int, int] | None = None,
        cluster: "str | ClusterEngine | None" = None,
    ) -> FileRun:
        """Classify files, folders (recursive) and data set references (``mnist:test``,
        ``folder:PATH``...), streaming: iterate the result for `Predictions` batches of
        ``batch_size`` rows, in input order. ``unknown`` sources count every image as unknown
        (for labels and metrics). Files are decoded by ``workers`` processes (default: one per
        core, none for a handful of files); an unreadable file is listed in the next batch's
        ``failures`` and skipped. ``decoder="pil"`` decodes everything with Pillow (the
        reference; the same pixels). ``observers`` see each batch as the model saw it.
        ``shard=(i, n)`` classifies only shard ``i`` of ``n``: the files whose path relative to
        their source hashes to ``i`` (`osr_infer.sources.shard_of`), so ``n`` runs, on as many
        machines, classify every file exactly once. ``cluster`` runs the partitions on a
        cluster engine instead of local processes: ``"dask:tcp://HOST:8786"``, ``"ray:auto"``,
        or an engine from `osr_infer.engines.connect` (the same rows, in the same order)."""
        from osr_infer.data import default_data_dir
        from osr_infer.decode import DecodePool, decode_files, decode_files_pil
        from osr_infer.sources import resolve_sources
        from osr_infer.workers import small_run

        check("batch_size", batch_size, Interval(int, 1, MAX_BATCH_SIZE))
        check("workers", workers, Interval(int, 0, MAX_WORKERS), NONE)
        check("decoder", decoder, OneOf(DECODERS))
        specs = [os.fspath(sources)] if isinstance(sources, (str, os.PathLike)) else [os.fspath(s) for s in sources]
        unknown_specs = [os.fspath(s) for s in unknown]
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        resolved = resolve_sources(specs, unknown_specs, root, self.contract, self.spec, self.classes)
        if shard is not None:
            from osr_infer.sources import take_shard

            resolved = [take_shard(s, *check_shard(shard)) for s in resolved]
        n_workers = self.auto_workers(specs + unknown_specs) if workers is None else workers
        if workers is None and small_run([path for s in resolved for path in (s.paths or [])]):
            n_workers = 0  # a small folder: in-process decoding is done before a worker would have started
        if not any(s.from_files for s in resolved):
            n_workers = 0
        self._tune_session(n_workers, batch_size)
        if self.session.fixed_batch is not None:
            batch_size = self.session.fixed_batch
        decode = decode_files if decoder == "fast" else decode_files_pil
        if cluster is not None:
            from osr_infer.engines import connect

            if decoder != "fast":
                raise ParameterError("decoder", "`decoder` 'pil' is for checking the fast path on this machine; a cluster decodes the fast way")
            if observers:
                raise ParameterError("observers", "`observers` see the model's batches on this machine, not on a `cluster`")
            if workers is not None:
                raise ParameterError("workers", "`workers` are this machine's decoding processes; a `cluster` decodes on its workers")
            engine = connect(cluster) if isinstance(cluster, str) else cluster
            run = FileRun(self, resolved, DecodePool(self.contract, 0), batch_size, [], engine=engine)
            run.closes_engine = isinstance(cluster, str)  # an engine it connected itself
            return run
        # The workers start when the run is iterated, and stop when it ends: a run never iterated holds no process.
        pool = DecodePool(self.contract, n_workers, decode=decode)
        return FileRun(self, resolved, pool, batch_size, list(observers))

    @staticmethod
    def auto_workers(specs: Sequence[str]) -> int:
        """The decoding processes for these sources by default: one per core, none for a
        handful of plain files (starting workers would cost more than decoding them)."""
        from osr_infer.workers import few_plain_files

        return 0 if few_plain_files(list(specs)) else default_cores()

    def _tune_session(self, decode_workers: int, batch_size: int) -> None:
        """Match ONNX Runtime's threads to the run, unless `load` was told (a new session
        only when the threading differs: the model is small, loading costs milliseconds)."""
        threads, spin = ort_threading(decode_workers, batch_size)
        threads = self._threads or threads
        spin = self._spin if self._spin is not None else spin
        if (threads, spin) != (self.session.threads, self.session.spin):
            from osr_infer.session import InferenceModel

            self.session = InferenceModel(self.session.path, **self._thresholds, threads=threads, spin=spin, provider=self.provider)


def default_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ort_threading(decode_workers: int, batch_size: int) -> tuple[int, bool]:
    """ONNX Runtime intra-op threads and spinning for a run (measured in benchmarks/).

    While worker processes decode, ONNX Runtime takes the cores they leave, and at least a
    quarter of them, without busy-waiting (its idle threads then cost nothing). A single
    inference thread starves a many-core machine: on 16 cores with 16 workers, end to end
    went from 13.4k images/s with 1 thread to 23.8k with 4 (pipeline_threads_16core.json);
    on 2 cores, 1 and 2 threads measure the same. One image per call is fastest on one
    thread; in-memory data gets all cores.
    """
    cores = default_cores()
    if decode_workers > 0:
        return max(1, cores - decode_workers, cores // 4), False
    if batch_size <= 4:
        return 1, False
    return cores, True


def image_of_array(pixels: np.ndarray) -> "Image.Image":
    """uint8 pixels as a PIL image: ``(H, W)`` or ``(H, W, 1)`` grey, ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA."""
    from PIL import Image

    from osr_infer.preprocess import ImageDecodeError

    if pixels.dtype != np.uint8:
        raise ImageDecodeError(f"pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))) or min(pixels.shape[:2]) < 1:
        raise ImageDecodeError(f"pixels must be (H, W), (H, W, 3) or (H, W, 4), got {pixels.shape}")
    mode = "L" if pixels.ndim == 2 else ("RGB" if pixels.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(pixels), mode=mode)


def _is_one_array_image(item: np.ndarray) -> bool:
    return item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``(i, n)`` with ``0 <= i < n``, or a ParameterError naming ``shard``."""
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ParameterError("shard", f"shard must be (index, count), two integers, not {shard!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ParameterError("shard", f"shard must be (index, count) with 0 <= index < count, not ({index}, {count})")
    return index, count


def _as_list(inputs: Any) -> list[Any]:
    """``predict``'s argument as a list of single inputs."""
    from PIL import Image

    if isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        return [inputs]
    if isinstance(inputs, np.ndarray):
        return [inputs] if _is_one_array_image(inputs) else list(inputs)
    try:
        return list(inputs)
    except TypeError:
        raise InputError(f"{type(inputs).__name__} is not an image or a sequence of images") from None


def _kind(item: Any) -> str:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"{len(item):,} bytes"
    if isinstance(item, np.ndarray):
        return f"array {item.dtype} {item.shape}"
    return type(item).__name__


__all__ = ["FileRun", "ImageInput", "Model", "Predictions", "ort_threading", "shipped_model_path"]
