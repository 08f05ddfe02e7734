"""The service: `Model` behind the Open Inference Protocol, ``/predict`` and ``/metrics``.

Every answer carries the model's SHA-256 (header ``X-Model-SHA256``). Bad input is a 4xx with
a one-line reason (``{"error": ...}``) and the server keeps serving; a full queue is 503 with
``Retry-After``; a body that does not arrive in time is 408, one too large 413, a request not
answered within the timeout 504.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, ClassVar

import numpy as np

from osr_infer.errors import ParameterError
from osr_infer.io import file_sha256
from osr_infer.params import NONE, Constraint, Interval, validate
from osr_infer.serve.batching import Job, JobResult, MicroBatcher, QueueFull
from osr_infer.serve.protocol import HEADER_LENGTH, ProtocolError, encode_response, parse_request
from osr_infer.spec import open_set_labels

if TYPE_CHECKING:
    from osr_infer.model import Model

#: The outputs of an infer request: name -> datatype.
OUTPUT_TYPES = {"logits": "FP32", "probs": "FP32", "score": "FP32", "class_index": "INT64", "label": "BYTES", "known": "BOOL"}
MODEL_VERSION = "1"
JSON = "application/json"


@dataclass
class ServeConfig:
    """How the service batches and bounds its work, validated once."""

    name: str = "osr"
    max_batch: int = 64  # images per model call
    max_delay_ms: float = 1.0  # how long a batch that is not full waits for more
    max_queue: int = 2048  # images accepted and not answered; beyond: 503
    max_queue_bytes: int = 256 * 2**20  # and the memory they hold; beyond: 503
    max_body_bytes: int = 16 * 2**20  # a larger request body: 413
    timeout_s: float = 30.0  # from the request's arrival to its answer: 408 (body) or 504
    retry_after_s: int = 1
    #: Processes that decode the images of /predict (0: the batch thread decodes); default one
    #: where there are two cores or more (decoding holds the GIL much of its time).
    decode_workers: int | None = None

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "max_batch": [Interval(int, 1, 65536)],
        "max_delay_ms": [Interval(float, 0, 10_000)],
        "max_queue": [Interval(int, 1, 10_000_000)],
        "max_queue_bytes": [Interval(int, 2**20, 2**40)],
        "max_body_bytes": [Interval(int, 1024, 2**34)],
        "timeout_s": [Interval(float, 0, 86_400, closed="right")],
        "retry_after_s": [Interval(int, 1, 3600)],
        "decode_workers": [Interval(int, 0, 64), NONE],
    }

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or not self.name.isprintable():
            raise ParameterError("name", f"name must be a non-empty model name without '/', not {self.name!r}")
        validate(self, self.constraints)
        if self.decode_workers is None:
            import os

            self.decode_workers = 1 if (os.cpu_count() or 1) >= 2 else 0


class HTTPFailure(Exception):
    """An answer other than 200: its status, its one-line reason and extra headers."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


class Metrics:
    """Prometheus metrics in a registry of the service's own."""

    def __init__(self, name: str, sha256: str, provider: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("osr_requests", "Requests answered, by endpoint and status code.", ["endpoint", "code"],
                                registry=self.registry)
        self.images = Counter("osr_images", "Images (or tensors) classified, by endpoint.", ["endpoint"], registry=self.registry)
        self.latency = Histogram("osr_request_seconds", "Time from a request's arrival to its answer.", ["endpoint"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.batch = Histogram("osr_batch_images", "Images per model call (micro-batching).",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry)
        self.batch_seconds = Histogram("osr_batch_seconds", "Decoding and model time of a batch.", registry=self.registry)
        self.queued = Gauge("osr_queue_images", "Images accepted and not yet answered.", registry=self.registry)
        info = Gauge("osr_model_info", "The model served.", ["name", "sha256", "provider"], registry=self.registry)
        info.labels(name, sha256, provider).set(1)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _deadline(deadline: float) -> Any:
    """A timeout at ``deadline`` (``time.perf_counter()``'s clock) around an ``async with`` block:
    `asyncio.TimeoutError` when it passes (no task of its own, unlike ``asyncio.wait_for``)."""
    delay = max(deadline - time.perf_counter(), 0.001)
    return asyncio.timeout(delay) if hasattr(asyncio, "timeout") else _timeout_310(delay)


@asynccontextmanager
async def _timeout_310(delay: float) -> AsyncIterator[None]:
    """``asyncio.timeout`` for Python 3.10: cancel the task at the deadline, raise TimeoutError."""
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def cancel() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(delay, cancel)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise asyncio.TimeoutError() from None
        raise
    finally:
        handle.cancel()


def _media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _check_image_type(kind: str) -> None:
    """/predict takes an image's bytes under any type but these (a form, JSON, text)."""
    if kind in (JSON, "application/x-www-form-urlencoded", "text/plain"):
        raise HTTPFailure(415, f"/predict takes image bytes (application/octet-stream) or multipart/form-data files, not {kind}")


def _error_answer(exc: Exception) -> tuple[int, dict[str, str], dict[str, str]]:
    """The one error format: (status, ``{"error": one line}``, extra headers). An `HTTPFailure`
    says its own status; a `ProtocolError` is the client's (400); anything else, the model
    failing or a bug, is 500, and the server goes on."""
    if isinstance(exc, HTTPFailure):
        return exc.status, {"error": _one_line(exc.reason)}, exc.headers
    if isinstance(exc, ProtocolError):
        return 400, {"error": _one_line(str(exc))}, {}
    return 500, {"error": _one_line(f"{type(exc).__name__}: {exc}")}, {}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class Service:
    """One model served: its routes, batcher and metrics (`app` is the ASGI application)."""

    def __init__(self, model: "Model", config: ServeConfig | None = None) -> None:
        self.model, self.config = model, config or ServeConfig()
        self.sha256 = file_sha256(model.path)
        self.metrics = Metrics(self.config.name, self.sha256, model.provider.describe())
        self.batcher = MicroBatcher(model.session, model.contract, max_batch=self.config.max_batch,
                                    max_delay=self.config.max_delay_ms / 1000, max_queue=self.config.max_queue,
                                    max_queue_bytes=self.config.max_queue_bytes, decode_workers=self.config.decode_workers or 0, on_batch=self._batched)
        self.accepting = False
        self.draining = False  # told to stop: not ready, still answering what it accepted
        self.served = 0
        self._counters: dict[tuple[str, int], Any] = {}
        self._latencies: dict[str, Any] = {}
        self.app = self._application()

    # -- the application ---------------------------------------------------------------------

    def _application(self) -> Callable[..., Awaitable[None]]:
        from starlette.applications import Starlette
        from starlette.routing import Route

        name = "{name}"
        routes = [  # matched in order: the busy ones first
            Route("/predict", self._endpoint("predict", self.predict), methods=["POST"]),
            Route(f"/v2/models/{name}/infer", self._endpoint("infer", self.infer), methods=["POST"]),
            Route(f"/v2/models/{name}/versions/{{version}}/infer", self._endpoint("infer", self.infer), methods=["POST"]),
            Route("/v2/health/live", self._endpoint("live", self.live), methods=["GET"]),
            Route("/v2/health/ready", self._endpoint("ready", self.ready), methods=["GET"]),
            Route("/v2", self._endpoint("server", self.server_metadata), methods=["GET"]),
            Route(f"/v2/models/{name}", self._endpoint("model", self.model_metadata), methods=["GET"]),
            Route(f"/v2/models/{name}/versions/{{version}}", self._endpoint("model", self.model_metadata), methods=["GET"]),
            Route(f"/v2/models/{name}/ready", self._endpoint("model_ready", self.model_ready), methods=["GET"]),
            Route(f"/v2/models/{name}/versions/{{version}}/ready", self._endpoint("model_ready", self.model_ready), methods=["GET"]),
            Route("/metrics", self._endpoint("metrics", self.render_metrics), methods=["GET"]),
        ]

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            await self.batcher.start()
            self.accepting = True
            try:
                yield
            finally:
                self.accepting = False
                await self.batcher.stop()  # every accepted request has its answer by now

        async def not_here(request: Any, exc: Any) -> Any:  # an unknown URL or method: the one error format too
            from starlette.responses import JSONResponse

            reason = (f"no endpoint {request.url.path} (see GET /v2/models/{self.config.name}; POST /predict)" if exc.status_code == 404
                      else f"{request.method} is not allowed on {request.url.path}")
            return JSONResponse({"error": reason}, exc.status_code, headers=getattr(exc, "headers", None))

        app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_here, 405: not_here})
        sha = self.sha256.encode()

        def send_with_hash(send: Any) -> Callable[[Any], Awaitable[None]]:
            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (b"x-model-sha256", sha)]
                await send(message)

            return sending

        fast = self._fast_predict

        async def with_model_hash(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            if scope["path"] == "/predict" and scope["method"] == "POST" and not any(
                    k == b"content-type" and v.lower().startswith(b"multipart/") for k, v in scope["headers"]):
                await fast(scope, receive, send_with_hash(send))
                return

            await app(scope, receive, send_with_hash(send))

        return with_model_hash

    def _endpoint(self, label: str, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """The handler with the one error format, the timeout and the metrics around it."""
        from starlette.responses import JSONResponse, Response

        async def endpoint(request: Any) -> Any:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure is answered in the one error format
                status, error, headers = _error_answer(exc)
                response = JSONResponse(error, status, headers=headers)
            if not isinstance(response, Response):
                response = JSONResponse(response)
            self._count(label, response.status_code, time.perf_counter() - started)
            return response

        return endpoint

    def _count(self, label: str, status: int, seconds: float) -> None:
        """An answer in the metrics (the labelled children are looked up once)."""
        key = (label, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(label, str(status))
        counter.inc()
        latency = self._latencies.get(label)
        if latency is None:
            latency = self._latencies[label] = self.metrics.latency.labels(label)
        latency.observe(seconds)
        self.served += 1

    def _batched(self, images: int, seconds: float) -> None:
        self.metrics.batch.observe(images)
        self.metrics.batch_seconds.observe(seconds)

    # -- reading requests --------------------------------------------------------------------

    async def _body(self, request: Any, deadline: float) -> bytes:
        """A Starlette request's body (`_read_body`)."""
        return await self._read_body(request.stream(), request.headers, deadline)

    async def _read_body(self, stream: AsyncIterator[bytes], headers: Any, deadline: float) -> bytes:
        """The body, at most ``max_body_bytes`` (413), arrived before the deadline (408). (Bodies
        being read are bounded by uvicorn's concurrency limit, `CONCURRENCY`, times this.)"""
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPFailure(413, f"the request body of {int(declared):,} bytes is larger than the server takes ({limit:,} bytes)")
        encoding = headers.get("content-encoding", "identity")
        if encoding.lower() != "identity":
            raise HTTPFailure(415, f"Content-Encoding {encoding} is not taken: send the body uncompressed")
        chunks, size = [], 0
        try:
            async with _deadline(deadline):
                async for chunk in stream:
                    size += len(chunk)
                    if size > limit:
                        raise HTTPFailure(413, f"the request body is larger than the server takes ({limit:,} bytes)")
                    chunks.append(chunk)
        except asyncio.TimeoutError:
            raise HTTPFailure(408, f"the request body did not arrive within {self.config.timeout_s:g} s") from None
        return b"".join(chunks)

    async def _classified(self, job: Job, deadline: float) -> JobResult:
        """``job`` through the batcher: 503 when the queue is full, 504 past the deadline."""
        if not self.accepting:
            raise HTTPFailure(503, "the server is shutting down", {"Retry-After": str(self.config.retry_after_s)})
        try:
            future = self.batcher.submit(job)
        except QueueFull as exc:
            raise HTTPFailure(503, f"the server is busy: {exc}; retry later", {"Retry-After": str(self.config.retry_after_s)}) from None
        try:
            async with _deadline(deadline):
                return await future  # cancelled at the deadline: not run if it has not started, its rows dropped otherwise
        except asyncio.TimeoutError:
            raise HTTPFailure(504, f"no answer within {self.config.timeout_s:g} s ({self.batcher.pending} images queued)") from None

    def _check_model(self, request: Any) -> None:
        name = request.path_params.get("name")
        if name != self.config.name:
            raise HTTPFailure(404, f"unknown model {name!r}: this server serves {self.config.name!r}")
        version = request.path_params.get("version")
        if version is not None and version != MODEL_VERSION:
            raise HTTPFailure(404, f"model {name!r} has no version {version!r} (it has {MODEL_VERSION})")

    # -- the endpoints -----------------------------------------------------------------------

    async def server_metadata(self, request: Any) -> dict[str, Any]:
        from osr_infer import __version__

        return {"name": "osr-serve", "version": __version__, "extensions": ["binary_tensor_data", "model_sha256"]}

    async def live(self, request: Any) -> dict[str, Any]:
        return {"live": True}

    async def ready(self, request: Any) -> dict[str, Any]:
        if not (self.accepting and self.batcher.running) or self.draining:
            raise HTTPFailure(503, "not ready: starting or shutting down")
        return {"ready": True}

    async def model_ready(self, request: Any) -> dict[str, Any]:
        self._check_model(request)
        return await self.ready(request)

    async def model_metadata(self, request: Any) -> dict[str, Any]:
        self._check_model(request)
        contract, n = self.model.contract, len(self.model.classes)
        metadata = self.model.metadata
        return {
            "name": self.config.name, "versions": [MODEL_VERSION], "platform": "onnxruntime_onnx",
            "inputs": [{"name": self.model.session.input_name, "datatype": "FP32", "shape": [-1, *contract.input_shape]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, n]}, {"name": "probs", "datatype": "FP32", "shape": [-1, n]},
                        {"name": "score", "datatype": "FP32", "shape": [-1]}, {"name": "class_index", "datatype": "INT64", "shape": [-1]},
                        {"name": "label", "datatype": "BYTES", "shape": [-1]}, {"name": "known", "datatype": "BOOL", "shape": [-1]}],
            "parameters": {**(metadata.to_props() if metadata is not None else {}), "osr.model_sha256": self.sha256,
                           "osr.decision_rule": self.model.decision_rule, "osr.classes": json.dumps(list(self.model.classes))},
        }

    async def infer(self, request: Any) -> Any:
        from starlette.responses import Response

        deadline = time.perf_counter() + self.config.timeout_s
        self._check_model(request)
        body = await self._body(request, deadline)
        parsed = parse_request(body, request.headers.get(HEADER_LENGTH))
        input_name, shape = self.model.session.input_name, self.model.contract.input_shape
        if set(parsed.inputs) != {input_name}:
            raise HTTPFailure(400, f"the model takes one input, {input_name!r}, not {sorted(parsed.inputs)}")
        x = parsed.inputs[input_name]
        if x.dtype != np.float32 or x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape) or not len(x):
            raise HTTPFailure(400, f"input {input_name!r} must be FP32 of shape [N, {', '.join(map(str, shape))}] (N >= 1; the "
                                   f"images normalised as the model's metadata says), not {x.dtype} {list(x.shape)}")
        if not np.isfinite(x).all():
            raise HTTPFailure(400, f"input {input_name!r} holds {int((~np.isfinite(x)).sum())} non-finite values")
        wanted = parsed.outputs if parsed.outputs is not None else [(name, parsed.binary_default) for name in OUTPUT_TYPES]
        unknown = [name for name, _ in wanted if name not in OUTPUT_TYPES]
        if unknown:
            raise HTTPFailure(400, f"unknown outputs {unknown}: the model has {', '.join(OUTPUT_TYPES)}")
        result = await self._classified(Job(len(x), tensor=np.ascontiguousarray(x)), deadline)
        assert result.outputs is not None
        self.metrics.images.labels("infer").inc(len(x))
        out, index = result.outputs, result.outputs.probs.argmax(axis=1).astype(np.int64)
        values = {"logits": out.logits, "probs": out.probs, "score": out.score.astype(np.float32), "class_index": index,
                  "label": open_set_labels(self.model.classes, index, result.known).astype(object), "known": result.known}
        header: dict[str, Any] = {"model_name": self.config.name, "model_version": MODEL_VERSION,
                                  "parameters": {"osr_model_sha256": self.sha256, "batch_images": result.batch_images}}
        if parsed.id is not None:
            header["id"] = parsed.id
        body_out, json_length = encode_response([(name, OUTPUT_TYPES[name], values[name], binary) for name, binary in wanted], header)
        if json_length is None:
            return Response(body_out, media_type=JSON)
        return Response(body_out, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(json_length)})

    async def predict(self, request: Any) -> Any:
        """Image files: the raw bytes of one (``application/octet-stream``, or any image type),
        or ``multipart/form-data`` files; one row per image, as ``osr-infer`` writes them.
        (A single image is answered by `_fast_predict`, without Starlette; multipart comes here.)"""
        from starlette.responses import Response

        deadline = time.perf_counter() + self.config.timeout_s
        body = await self._body(request, deadline)
        kind = _media_type(request.headers.get("content-type", ""))
        if kind == "multipart/form-data":
            names, images = await self._files(request, body)
        else:
            _check_image_type(kind)
            names, images = ["body"], [body]
        return Response(await self._rows(names, images, kind == "multipart/form-data", deadline), media_type=JSON)

    async def _rows(self, names: list[str], images: list[bytes], with_paths: bool, deadline: float) -> bytes:
        """``images`` classified: the JSON array of their rows."""
        empty = [name for name, data in zip(names, images, strict=True) if not data]
        if empty:
            raise HTTPFailure(400, f"{empty[0]}: the image is empty")
        result = await self._classified(Job(len(images), images=images, names=names), deadline)
        if result.failures:
            k, reason = result.failures[0]
            raise HTTPFailure(400, f"{reason}" if reason.startswith(names[k]) else f"{names[k]}: {reason}")
        assert result.outputs is not None
        self.metrics.images.labels("predict").inc(len(images))
        out = result.outputs
        index = out.probs.argmax(axis=1)
        labels = open_set_labels(self.model.classes, index, result.known).tolist()
        probability = out.probs.max(axis=1).tolist()
        score, known = out.score.tolist(), result.known.tolist()
        rows = []
        for k in range(len(images)):
            row: dict[str, Any] = {"path": names[k]} if with_paths else {}
            row.update(label=labels[k], class_index=int(index[k]), probability=probability[k], score=score[k], known=known[k])
            rows.append(row)
        return json.dumps(rows, separators=(",", ":")).encode()

    async def _fast_predict(self, scope: Any, receive: Any, send: Any) -> None:
        """``POST /predict`` of one image, as a bare ASGI handler: the same answers as `predict`
        with a fraction of the framework's cost per request (the event loop is this service's
        busiest thread)."""
        started = time.perf_counter()
        deadline = started + self.config.timeout_s
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        extra: dict[str, str] = {}

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise HTTPFailure(400, "the client went away before the body was sent")
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        try:
            _check_image_type(_media_type(headers.get("content-type", "")))
            body = await self._read_body(chunks(), headers, deadline)
            status, payload = 200, await self._rows(["body"], [body], False, deadline)
        except Exception as exc:  # noqa: BLE001 - every failure is answered in the one error format
            status, error, extra = _error_answer(exc)
            payload = json.dumps(error).encode()
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *((k.lower().encode(), v.encode()) for k, v in extra.items())]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
        self._count("predict", status, time.perf_counter() - started)

    async def _files(self, request: Any, body: bytes) -> tuple[list[str], list[bytes]]:
        """The files of a multipart body (read already, so its size was bounded)."""
        from starlette.datastructures import UploadFile
        from starlette.requests import Request

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=self.config.max_queue, max_fields=self.config.max_queue,
                                                             max_part_size=self.config.max_body_bytes)
        except Exception as exc:  # noqa: BLE001 - python-multipart's and Starlette's parse errors
            raise HTTPFailure(400, f"the multipart body cannot be read ({_one_line(str(exc)) or type(exc).__name__})") from None
        names, images = [], []
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                names.append(value.filename or field)
                images.append(await value.read())
        await form.close()
        if not images:
            raise HTTPFailure(400, "the multipart body holds no files (send each image as a file field)")
        return names, images

    async def render_metrics(self, request: Any) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST
        from starlette.responses import Response

        self.metrics.queued.set(self.batcher.pending)
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(model: "Model", config: ServeConfig | None = None) -> Service:
    """The service for ``model`` (`Model.load`): ``service.app`` is an ASGI application for
    uvicorn or any ASGI server.

    >>> from osr_infer import Model
    >>> from osr_infer.serve import ServeConfig, create_app
    >>> service = create_app(Model.load(), ServeConfig(max_batch=32))
    >>> service.config.name, len(service.sha256)
    ('osr', 64)
    """
    return Service(model, config)
