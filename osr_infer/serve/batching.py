"""Dynamic micro-batching: requests of one image or a few, classified together.

A request's images (or tensors) join one queue, bounded by the number of images it holds;
a single task takes what is waiting, up to ``max_batch`` images, waits at most ``max_delay``
seconds for more while the batch is not full, and hands the batch to one worker thread, which
decodes it (the event loop never decodes) and runs the model. Each request's future then gets
its own rows. A full queue refuses new work at once (`QueueFull`: the server answers 503);
work already accepted is always finished, shutdown included (`stop` drains the queue).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from osr_infer.outputs import ModelOutputs
from osr_infer.preprocess import PreprocessContract
from osr_infer.session import InferenceModel

#: ONNX Runtime's calls in a batch of more images than this (memory stays bounded).
RUN_CHUNK = 256
#: Batches classified at once: one decoding while the other runs the model.
IN_FLIGHT_BATCHES = 2
#: Batches of at most this many images are decoded in the batch thread even where there is a
#: decoding process: at low load, the hop to the process would cost more than the decoding.
IN_THREAD_IMAGES = 0


class QueueFull(Exception):
    """The queue holds ``max_queue`` images already: come back later."""


@dataclass
class Job:
    """One request's work: encoded ``images`` (named for the reasons) or a normalised ``tensor``."""

    n: int
    images: list[bytes] | None = None
    names: list[str] | None = None
    tensor: np.ndarray | None = None
    future: "asyncio.Future[JobResult] | None" = None

    @property
    def nbytes(self) -> int:
        """The memory its inputs hold while it waits."""
        return self.tensor.nbytes if self.tensor is not None else sum(len(data) for data in self.images or ())


@dataclass
class JobResult:
    """What the model said about one job's items; ``failures`` (position, reason) were not classified."""

    outputs: ModelOutputs | None
    known: np.ndarray
    failures: list[tuple[int, str]]
    batch_images: int  # the size of the batch it was classified in


def _sniffed_name(data: bytes, k: int) -> str:
    """A name for the ``k``-th image whose suffix tells the decoders the format (the fast JPEG and
    PNG paths go by it); replaced by the client's name in the reasons."""
    if data[:3] == b"\xff\xd8\xff":
        return f"@upload{k}.jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return f"@upload{k}.png"
    return f"@upload{k}"


class MicroBatcher:
    """The queue, the batching task and the worker threads that decode (or have a process
    decode) and classify. A batch waits up to ``max_delay`` for more requests only while
    another batch is running: alone, a request is classified at once."""

    def __init__(self, session: InferenceModel, contract: PreprocessContract, *, max_batch: int, max_delay: float,
                 max_queue: int, max_queue_bytes: int = 256 * 2**20, decode_workers: int = 1, on_batch: Any = None) -> None:
        self.session, self.contract = session, contract
        #: Processes that decode (0: the batch thread itself): decoding holds the GIL for much of its
        #: time, which would stall the event loop's thread.
        self.decode_workers = decode_workers
        self._decoders: Any = None
        self.max_batch, self.max_delay, self.max_queue = max_batch, max_delay, max_queue
        #: Images accepted and not yet answered, and the bytes they hold (what bounds the queue).
        self.pending, self.pending_bytes = 0, 0
        self.max_queue_bytes = max_queue_bytes
        self.on_batch = on_batch  # called with (images, seconds) after each batch, in the event loop
        self._queue: asyncio.Queue[Job | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(IN_FLIGHT_BATCHES, thread_name_prefix="osr-batch")
        if self.decode_workers:
            import os
            from concurrent.futures import ProcessPoolExecutor

            from osr_infer.workers import _worker_init, prepare_workers

            self._decoders = ProcessPoolExecutor(self.decode_workers, mp_context=prepare_workers(), initializer=_worker_init,
                                                 initargs=(os.getpid(),))
            self._decoders.submit(_sniffed_name, b"", 0).result()  # started now, not by the first request
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Finish every job accepted, then stop."""
        if self._queue is not None and self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._decoders is not None:
            self._decoders.shutdown(wait=True)

    def submit(self, job: Job) -> "asyncio.Future[JobResult]":
        """Queue ``job``; `QueueFull` when its images would take the queue past ``max_queue``
        images or ``max_queue_bytes`` (a job larger than the whole queue is still taken when the
        queue is empty: the request size limit bounds it)."""
        if self._queue is None or not self.running:
            raise QueueFull("the server is not running")
        if self.pending and self.pending + job.n > self.max_queue:
            raise QueueFull(f"{self.pending} images are queued (the queue holds {self.max_queue})")
        if self.pending and self.pending_bytes + job.nbytes > self.max_queue_bytes:
            raise QueueFull(f"the queued images hold {self.pending_bytes / 2**20:.0f} MiB (the queue holds {self.max_queue_bytes / 2**20:.0f} MiB)")
        job.future = asyncio.get_running_loop().create_future()
        self.pending += job.n
        self.pending_bytes += job.nbytes
        self._queue.put_nowait(job)
        return job.future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        # Two batches at a time: one decoding while the other runs the model.
        slots = asyncio.Semaphore(IN_FLIGHT_BATCHES)
        running: set[asyncio.Task[None]] = set()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            await slots.acquire()  # meanwhile more requests queue up: the batch grows
            jobs, n = [first], first.n
            # Wait for more only while another batch is running: an idle model takes a lone request at once.
            deadline = loop.time() + (self.max_delay if running else 0.0)
            while n < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        more = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if more is None:
                    stopping = True  # after this batch
                    break
                jobs.append(more)
                n += more.n
            task = asyncio.create_task(self._run_batch(jobs, n, slots))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)
        # Stopping: whatever is still queued (nothing is accepted once stop() was called by the server).
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job is not None:
                await slots.acquire()
                await self._run_batch([job], job.n, slots)

    async def _run_batch(self, jobs: list[Job], n: int, slots: asyncio.Semaphore) -> None:
        """Classify ``jobs`` in a worker thread and hand each its result (or the model's error)."""
        live = [job for job in jobs if job.future is not None and not job.future.done()]  # a timed-out request is not run
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._classify, live) if live else []
        except Exception as exc:  # noqa: BLE001 - the model failed: every request of the batch gets the error
            for job in live:
                if job.future is not None and not job.future.done():
                    job.future.set_exception(exc)
        else:
            for job, result in zip(live, results, strict=True):
                if job.future is not None and not job.future.done():
                    job.future.set_result(result)
            if self.on_batch is not None and live:
                self.on_batch(sum(job.n for job in live), time.perf_counter() - started)
        finally:
            self.pending -= n
            self.pending_bytes -= sum(job.nbytes for job in jobs)
            slots.release()

    def _decode(self, names: list[str], contents: list[bytes]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """The images of a whole batch in one call (the layout step works on stacks), in a
        decoding process when there is one."""
        from osr_infer.decode import decode_files

        fast = len(names) > 1  # the stacked layout step pays off from two images on; PIL's path alone is quicker for one
        if self._decoders is not None and len(names) > IN_THREAD_IMAGES:
            ok, pixels, failed = self._decoders.submit(decode_files, names, self.contract, fast, contents).result()
        else:
            ok, pixels, failed = decode_files(names, self.contract, fast, contents=contents)
        return ok, pixels, failed

    def _classify(self, jobs: list[Job]) -> list[JobResult]:
        """In the worker thread: decode the batch's images, run the model on the whole batch, split it up."""
        encoded = [(j, k, data) for j, job in enumerate(jobs) if job.images is not None for k, data in enumerate(job.images)]
        decoded: dict[int, tuple[list[int], list[np.ndarray], list[tuple[int, str]]]] = {}
        if encoded:
            names = [_sniffed_name(data, g) for g, (_, _, data) in enumerate(encoded)]
            ok, pixels, failed = self._decode(names, [data for _, _, data in encoded])
            for row, g in enumerate(ok.tolist()):
                j, k, _ = encoded[g]
                entry = decoded.setdefault(j, ([], [], []))
                entry[0].append(k)
                entry[1].append(pixels[row])
            for g, reason in failed:
                j, k, _ = encoded[g]
                names_of_job = jobs[j].names or []
                decoded.setdefault(j, ([], [], []))[2].append((k, reason.replace(names[g], names_of_job[k] if k < len(names_of_job) else str(k))))
        parts: list[np.ndarray] = []
        failures: list[list[tuple[int, str]]] = []
        empty = np.empty((0, *self.contract.input_shape), np.float32)
        for j, job in enumerate(jobs):
            if job.tensor is not None:
                parts.append(job.tensor)
                failures.append([])
                continue
            _, rows, failed = decoded.get(j, ([], [], []))
            parts.append(self.contract.normalize(np.stack(rows)) if rows else empty)
            failures.append(failed)
        x = np.concatenate(parts) if len(parts) > 1 else parts[0]
        outputs = ModelOutputs.concat([self.session.run(x[s:s + RUN_CHUNK]) for s in range(0, len(x), RUN_CHUNK)]) if len(x) else None
        known = self.session.decide(outputs) if outputs is not None else np.zeros(0, dtype=bool)
        results, start = [], 0
        for part, failed in zip(parts, failures, strict=True):
            end = start + len(part)
            mine = outputs[start:end] if outputs is not None and end > start else None
            results.append(JobResult(mine, known[start:end], failed, len(x)))
            start = end
        return results
