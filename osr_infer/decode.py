"""Parallel image decoding that streams ahead of inference.

Files are decoded in chunks by a pool of worker processes (``--workers``, default the CPU
count): decoding a small image is mostly Python work under the GIL, so threads barely
scale, while processes do. The main process meanwhile runs ONNX Runtime on the chunks
that are ready, so decoding and inference overlap; a bounded window of chunks in flight
keeps memory flat however many files there are. ``workers=0`` decodes in the calling
thread (for debugging, or a machine where processes are unwelcome).

Every file goes through `osr_infer.preprocess.load_image` with the model's contract;
a file that fails is reported with its reason and skipped, never fatal. A worker process
that dies (killed, out of memory, a crashing codec) is replaced and its files decoded again;
a file that kills its worker is reported like any other unreadable file.
"""

from __future__ import annotations

import math
import os
from collections import deque
# Only concurrent.futures' base here: the process pool (and multiprocessing, about 10 ms of
# start-up) is imported when a run starts workers. A broken process pool is a BrokenExecutor.
from concurrent.futures import BrokenExecutor, Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from osr_infer.errors import InferenceError, ParameterError
from osr_infer.workers import _noop, _worker_init, prepare_workers
from osr_infer.outputs import DEFAULT_BATCH_SIZE
from osr_infer.preprocess import (ImageDecodeError, PreprocessContract, finish_converted, image_of, load_converted,
                                  load_converted_bytes, load_stackable)

if TYPE_CHECKING:
    from osr_infer.sources import Source

#: Files per decoding task: large enough to amortise inter-process overhead, and equal to the
#: default batch size so that a decoded chunk is a batch, with no re-packing (tuned in
#: benchmarks/: 256 beat 32, 64 and 128 end to end). Small sources are split evenly instead.
CHUNK_FILES = DEFAULT_BATCH_SIZE


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Piece:
    """Consecutive items of one source, decoded: ``pixels[k]`` is item ``index[k]``."""

    source: int
    index: np.ndarray  # int64 positions within the source
    pixels: np.ndarray  # uint8 (k, size, size)
    failures: list[tuple[str, str]]  # (path, reason) for the files of this piece that failed


#: What a worker returns for a list of paths: (positions decoded, their pixels, [(position, reason)]).
Decoded = tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]
DecodeFn = Callable[[Sequence[str], PreprocessContract], Decoded]

#: Worker deaths a run survives (each restarts the pool) before it stops with an error.
MAX_WORKER_CRASHES = 16


def decode_files(paths: Sequence[str], contract: PreprocessContract, fast: bool = True,
                 contents: Sequence[bytes] | None = None) -> Decoded:
    """Decode ``paths`` (runs in a worker): (positions decoded, their pixels, [(position, reason)]).
    ``contents``: the files' bytes, read already (by a cluster engine's reader; ``paths`` then
    name them, for their suffixes and the reasons).

    ``fast``: JPEGs through libjpeg-turbo, and small images laid out as stacks of the same size
    (`PreprocessContract.finish_stack`); both give the reference path's pixels, bit for bit.
    False: PIL and one image at a time, the reference path."""
    pixels = np.empty((len(paths), *contract.pixel_shape), dtype=np.uint8)
    done = np.zeros(len(paths), dtype=bool)
    failed: list[tuple[int, str]] = []
    # Small images of one size (and channels) are laid out together: JPEGs as the decoder's pixels.
    stacks: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    stacking = fast and contract.can_stack
    # Objects in a store (s3://...) are read together, concurrently.
    fetched: dict[int, bytes | str] = dict(enumerate(contents)) if contents is not None else _fetch_urls(paths)
    for i, path in enumerate(paths):
        try:
            data = fetched.get(i)
            if isinstance(data, str):
                raise ImageDecodeError(data)
            if stacking:
                loaded = load_stackable(path, contract, data)
                if isinstance(loaded, np.ndarray):
                    stacks.setdefault(loaded.shape, []).append((i, loaded))
                    continue
                pixels[i] = finish_converted(loaded, contract)
            elif data is not None:
                pixels[i] = finish_converted(load_converted_bytes(data, contract), contract)
            else:
                pixels[i] = finish_converted(load_converted(path, contract, fast), contract)
            done[i] = True
        except ImageDecodeError as exc:
            failed.append((i, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not sink the batch
            failed.append((i, f"decoder error: {type(exc).__name__}: {exc}"))
    for members in stacks.values():
        index = np.array([i for i, _ in members], dtype=np.int64)
        try:
            pixels[index] = contract.finish_stack(contract.in_color(np.stack([array for _, array in members])))
            done[index] = True
        except Exception:  # noqa: BLE001 - a bug in the stacked step: each image the reference way, failures its own
            for i, array in members:
                try:
                    pixels[i] = finish_converted(contract.convert(image_of(array)), contract)
                    done[i] = True
                except Exception as exc:  # noqa: BLE001
                    failed.append((i, f"decoder error: {type(exc).__name__}: {exc}"))
    ok = np.flatnonzero(done)
    return ok.astype(np.int64), pixels[ok], sorted(failed)


def _fetch_urls(paths: Sequence[str]) -> dict[int, bytes | str]:
    """The bytes (or the reason they could not be read) of the paths that are URLs, by position."""
    from osr_infer.remote import is_url

    urls = [k for k, path in enumerate(paths) if is_url(path)]
    if not urls:
        return {}
    from osr_infer.remote import read_objects

    return dict(zip(urls, read_objects([paths[k] for k in urls]), strict=True))


def decode_files_pil(paths: Sequence[str], contract: PreprocessContract) -> Decoded:
    """`decode_files` with PIL for every format (``osr-infer --decoder pil``)."""
    return decode_files(paths, contract, fast=False)


def _survived(pending: Future[Decoded] | Piece) -> bool:
    """Whether a window entry still holds (or will hold) decoded pixels after its pool died."""
    return isinstance(pending, Piece) or (pending.done() and not pending.cancelled() and pending.exception() is None)


class DecodePool:
    """Ordered, bounded-prefetch decoding of sources into `Piece` s.

    Use as a context manager; `start` starts the workers before the first chunk.
    """

    def __init__(
        self, contract: PreprocessContract, workers: int | None = None, *, chunk_files: int = CHUNK_FILES,
        decode: DecodeFn = decode_files, max_crashes: int = MAX_WORKER_CRASHES,
    ) -> None:
        self.contract = contract
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 0:
            raise ParameterError("workers", f"workers must be 0 or more, not {self.workers}")
        self.chunk_files = max(1, int(chunk_files))
        self.decode = decode
        self.max_crashes = max_crashes
        self.crashes = 0  # worker processes that died and were replaced
        self._executor: Executor | None = None

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> "DecodePool":
        if self._executor is None and self.workers > 0:
            from concurrent.futures import ProcessPoolExecutor

            context = prepare_workers()
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),))
            try:
                self._executor.submit(_noop).result()  # start the workers now, not on the first chunk
            except BrokenExecutor:
                self.close()
                raise InferenceError(
                    "the decoding worker processes could not start (see the error above); rerun with `workers` 0 to decode in-process"
                ) from None
        return self

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def notes(self) -> list[str]:
        """What the user should know about the decoding (the commands print them)."""
        if not self.crashes:
            return []
        return [
            f"a decoding worker process died {self.crashes} time(s) (killed, out of memory, or a crashing decoder); "
            "the pool was restarted and the files in flight were decoded again"
        ]

    def pieces(self, sources: list[Source], memory_chunk: int = 4096) -> Iterator[Piece]:
        """Every item of every source, in order; files decoded ``chunk_files`` at a time.

        If a worker process dies (killed, out of memory, a decoder crash), the pool is restarted,
        the chunks in flight are submitted again, and the chunk being collected is decoded one
        file per task, so that a file that kills its worker is reported and skipped like any
        other unreadable file. After ``max_crashes`` deaths the run stops with an error.
        """
        if any(source.from_files for source in sources):
            self.start()
        window: deque[tuple[int, int, int, Future[Decoded] | Piece]] = deque()
        max_in_flight = max(2, 4 * self.workers)
        tasks = self._tasks(sources, memory_chunk)
        exhausted = False
        while True:
            while not exhausted and len(window) < max_in_flight:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                window.append(self._submit(sources, *task))
            if not window:
                return
            s, start, stop, pending = window.popleft()
            if isinstance(pending, Piece):
                yield pending
                continue
            try:
                piece = self._collect(sources[s], s, start, pending.result())
            except BrokenExecutor:
                self._restart(None)
                # Alone on the new pool, so that a death now is this chunk's; then the chunks
                # that were in flight and lost with the old pool are submitted again.
                piece = self._decode_one_by_one(sources, s, start, stop)
                window = deque(entry if _survived(entry[3]) else self._submit(sources, *entry[:3]) for entry in window)
            yield piece

    def _restart(self, culprit: str | None) -> None:
        """Replace a pool whose worker died; give up after ``max_crashes`` deaths."""
        self.crashes += 1
        if self._executor is not None:
            # Kill the surviving workers before joining them: in CPython 3.11 a worker of a
            # broken pool can stay blocked on its task queue, and shutdown() then never returns.
            for process in list((getattr(self._executor, "_processes", None) or {}).values()):
                process.kill()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.crashes > self.max_crashes:
            last = f" (the last while decoding {culprit})" if culprit else ""
            raise InferenceError(
                f"decoding worker processes died {self.crashes} times{last}: giving up; check memory, or rerun with `workers` 0 to decode in-process"
            )
        self.start()

    def _decode_one_by_one(self, sources: list[Source], s: int, start: int, stop: int) -> Piece:
        """Decode a chunk whose worker died, one file per task, waiting for each: a file whose
        task kills the worker again is the culprit, and is reported as unreadable."""
        assert self._executor is not None
        source = sources[s]
        positions: list[int] = []
        pixels: list[np.ndarray] = []
        failures: list[tuple[str, str]] = []
        for i in range(start, stop):
            path = source.file_paths[i]
            try:
                ok, decoded, failed = self._executor.submit(self.decode, [path], self.contract).result()
            except BrokenExecutor:
                failures.append((path, "the image decoder crashed on this file (its worker process died)"))
                self._restart(path)
                continue
            if len(ok):
                positions.append(i)
                pixels.append(decoded[0])
            failures.extend((path, reason) for _, reason in failed)
        stacked = np.stack(pixels) if pixels else np.empty((0, *self.contract.pixel_shape), dtype=np.uint8)
        return Piece(s, np.asarray(positions, dtype=np.int64), stacked, failures)

    def _tasks(self, sources: list[Source], memory_chunk: int) -> Iterator[tuple[int, int, int]]:
        for s, source in enumerate(sources):
            step = self.chunk_files if source.from_files else memory_chunk
            if source.from_files and self.workers > 1:  # keep every worker busy on a small folder
                step = max(1, min(step, math.ceil(len(source) / self.workers)))
            for start in range(0, len(source), step):
                yield s, start, min(len(source), start + step)

    def _submit(self, sources: list[Source], s: int, start: int, stop: int) -> tuple[int, int, int, Future[Decoded] | Piece]:
        source = sources[s]
        if not source.from_files:
            return s, start, stop, Piece(s, np.arange(start, stop, dtype=np.int64), source.arrays[start:stop], [])
        paths = source.file_paths[start:stop]
        if self._executor is None:  # workers=0: decode here, now
            future: Future[Decoded] = Future()
            future.set_result(self.decode(paths, self.contract))
            return s, start, stop, future
        try:
            return s, start, stop, self._executor.submit(self.decode, paths, self.contract)
        except BrokenExecutor as exc:  # a worker died since the last chunk: handled on collection
            future = Future()
            future.set_exception(exc)
            return s, start, stop, future

    @staticmethod
    def _collect(source: Source, s: int, start: int, decoded: Decoded) -> Piece:
        positions, pixels, failed = decoded
        return Piece(s, positions + start, pixels, [(source.file_paths[start + i], reason) for i, reason in failed])
