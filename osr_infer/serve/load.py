"""A load generator for an HTTP endpoint that takes one body per request (``/predict``).

Closed loop (`closed_loop`): ``clients`` connections, each sending its next request as soon as
its previous answer arrived, for a fixed number of requests or seconds: the throughput a
service reaches under that load. Open loop (`open_loop`): requests at a fixed rate, each on
the first free connection, whatever the answers do: the latency at a given load (e.g. half the
throughput). HTTP/1.1 with keep-alive over asyncio streams, a few microseconds a request, so
that on a small machine the client takes little of the CPU the service needs.

>>> import asyncio
>>> from osr_infer.serve.load import closed_loop
>>> report = asyncio.run(closed_loop("http://127.0.0.1:8000/predict", [jpeg_bytes], clients=32, requests=3200))  # doctest: +SKIP
>>> report.images_per_s, report.p50_ms, report.p99_ms, report.errors                                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np


@dataclass
class LoadReport:
    """What a load run saw: answers by status, latencies, throughput."""

    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies_ms: np.ndarray = field(repr=False)
    failures: int = 0  # connections that broke before an answer
    images_per_request: int = 1

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return self.requests - self.ok

    @property
    def images_per_s(self) -> float:
        return self.ok * self.images_per_request / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    @property
    def p50_ms(self) -> float:
        return self.percentile(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile(99)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "ok": self.ok, "errors": self.errors, "failures": self.failures,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "seconds": round(self.seconds, 3),
                "images_per_s": round(self.images_per_s, 1), "p50_ms": round(self.p50_ms, 2), "p99_ms": round(self.p99_ms, 2)}


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs bodies and reads the answers."""

    def __init__(self, url: str, content_type: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, body); raises ConnectionError where the connection broke before the answer."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise ConnectionError("the connection closed before an answer") from exc
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        answer = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def closed_loop(url: str, bodies: list[bytes], *, clients: int = 32, requests: int | None = None, seconds: float | None = None,
                      content_type: str = "application/octet-stream", images_per_request: int = 1) -> LoadReport:
    """``clients`` connections sending ``bodies`` in turn until ``requests`` were sent or
    ``seconds`` passed (one of them)."""
    if (requests is None) == (seconds is None):
        raise ValueError("give requests or seconds")
    sent = itertools.count()
    turn = itertools.cycle(range(len(bodies)))
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    failures = 0
    started = time.perf_counter()
    stop_at = started + seconds if seconds is not None else float("inf")

    async def client() -> None:
        nonlocal failures
        connection = Connection(url, content_type)
        try:
            while time.perf_counter() < stop_at and (requests is None or next(sent) < requests):
                t0 = time.perf_counter()
                try:
                    status, _ = await connection.post(bodies[next(turn)])
                except (ConnectionError, OSError):
                    failures += 1
                    statuses[0] += 1
                    connection.close()
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return LoadReport(sum(statuses.values()), elapsed, dict(statuses), np.asarray(latencies), failures, images_per_request)


async def open_loop(url: str, bodies: list[bytes], *, rate: float, seconds: float, connections: int = 64,
                    content_type: str = "application/octet-stream") -> LoadReport:
    """Requests at ``rate`` a second for ``seconds``, each on a free connection (at most
    ``connections`` in flight); a latency counts from when its request was due."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(url, content_type))
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    failures = 0
    total = int(rate * seconds)
    started = time.perf_counter()

    async def one(k: int) -> None:
        nonlocal failures
        due = started + k / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        connection = await pool.get()
        try:
            status, _ = await connection.post(bodies[k % len(bodies)])
            latencies.append((time.perf_counter() - due) * 1000)
            statuses[status] += 1
        except (ConnectionError, OSError):
            failures += 1
            statuses[0] += 1
            connection.close()
        finally:
            pool.put_nowait(connection)

    await asyncio.gather(*(one(k) for k in range(total)))
    elapsed = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait().close()
    return LoadReport(sum(statuses.values()), elapsed, dict(statuses), np.asarray(latencies), failures)
