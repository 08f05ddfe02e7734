"""``osr-serve`` (#34, item 2) as a real process on 127.0.0.1, started and stopped by the tests:
Triton's own client and ``/predict`` get the rows ``osr-infer`` writes; bounded load; every
documented answer to bad input, slow clients, a full queue and SIGTERM during load."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osr_infer import Model
from osr_infer.serve.load import closed_loop
from conftest import shared_data_dir

BIN = Path(sys.executable).parent


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


def start_server(*args: str) -> Served:
    """``osr-serve --port 0 ARGS``; its stderr collected by a thread. No HTTP request is made
    to wait for it (the socket listens before it prints its URL): the tests count every answer."""
    process = subprocess.Popen([str(BIN / "osr-serve"), "--port", "0", *args], stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"serving \S+ at (http://\S+) ", line)
        if found:
            served = Served(process, found.group(1), lines)
            threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
            return served
    process.wait(timeout=30)
    raise AssertionError(f"osr-serve did not start (exit {process.returncode}): {''.join(lines)}")


def stop_server(served: Served) -> int:
    """SIGTERM, then the exit status (killed outright if it does not stop within a minute)."""
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        return served.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(served.process.pid, signal.SIGKILL)
        raise


@contextlib.contextmanager
def server(*args: str):
    served = start_server(*args)
    try:
        yield served
    finally:
        if served.process.poll() is None:
            stop_server(served)


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; 4xx and 5xx answers are returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def read_answer(sock: socket.socket) -> str:
    """One whole HTTP answer from a raw socket: the head, and the body its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1)) if b"content-length" in head.lower() else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "osr-test-boundary-7d1"
    body = io.BytesIO()
    for name, data in files:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n".encode())
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Digit-like PNGs, photo-like JPEGs and, where the shared data is, real CIFAR-10 JPEGs."""
    root = tmp_path_factory.mktemp("serve-images")
    rng = np.random.default_rng(3)
    paths = []
    for k in range(24):
        canvas = np.zeros((28, 28), dtype=np.uint8)
        canvas[4 + k % 5:24, 12 + k % 3:15 + k % 3] = 255  # a stroke: a one, more or less
        if k % 3:
            canvas[6:9, 6 + k % 7:22] = 255
        path = root / f"digit-{k:02d}.png"
        Image.fromarray(canvas).save(path)
        paths.append(path)
    y, x = np.mgrid[0:40, 0:56]
    for k in range(24):
        pixels = np.stack([(x * (k + 2) + y * 3) % 256, (y * (k + 1)) % 256, (x + y + 9 * k) % 256], axis=-1).astype(np.uint8)
        pixels += rng.integers(0, 40, pixels.shape, dtype=np.uint8)
        path = root / f"photo-{k:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    cifar = shared_data_dir() / "cifar10-test-jpeg"
    if cifar.is_dir():
        paths += sorted(cifar.rglob("*.jpg"))[:: 10_000 // 48][:48]
    return paths


@pytest.fixture(scope="module")
def expected(images, tmp_path_factory) -> dict[str, dict]:
    """What ``osr-infer`` writes for the images, by file name."""
    out = tmp_path_factory.mktemp("serve-expected") / "rows.csv"
    done = subprocess.run([str(BIN / "osr-infer"), *map(str, images), "--output", str(out), "--workers", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with out.open() as fh:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(line for line in fh if not line.startswith("#"))}
    assert len(rows) == len(images)
    return rows


@pytest.fixture(scope="module")
def served():
    with server() as running:
        yield running


def assert_same_rows(got: dict, want: dict) -> None:
    assert got["label"] == want["label"], (got, want)
    assert got["known"] == (want["label"] != "unknown")
    assert got["probability"] == pytest.approx(float(want["probability"]), rel=1e-5, abs=1e-6)
    assert got["score"] == pytest.approx(float(want["score"]), rel=1e-5, abs=1e-5)


def test_tritonclient_infers_and_gets_the_rows_osr_infer_writes(served, images, expected):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served.address)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("osr")
    metadata = client.get_model_metadata("osr")
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert {o["name"] for o in metadata["outputs"]} == {"logits", "probs", "score", "class_index", "label", "known"}
    model = Model.load()
    assert json.loads(metadata["parameters"]["osr.threshold"]) == pytest.approx(model.threshold)
    # The contract travels with the model: the client prepares the tensors from the metadata (here, with the library).
    x = model.contract.normalize(model.preprocess(images))
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # binary, as tritonclient sends by default
    result = client.infer("osr", [tensor])
    labels, known, score = result.as_numpy("label"), result.as_numpy("known"), result.as_numpy("score")
    probs = result.as_numpy("probs")
    assert probs.shape == (len(images), 10) and result.as_numpy("logits").shape == (len(images), 10)
    for k, path in enumerate(images):
        got = {"label": labels[k].decode(), "known": bool(known[k]), "probability": float(probs[k].max()), "score": float(score[k])}
        assert_same_rows(got, expected[path.name])
    # JSON tensors both ways give the same answers
    five = triton.InferInput("input", [5, 1, 28, 28], "FP32")
    five.set_data_from_numpy(x[:5], binary_data=False)
    as_json = client.infer("osr", [five], outputs=[triton.InferRequestedOutput("label", binary_data=False),
                                                     triton.InferRequestedOutput("score", binary_data=False)])
    assert [v.decode() if isinstance(v, bytes) else v for v in as_json.as_numpy("label")] == [v.decode() for v in labels[:5]]
    np.testing.assert_allclose(as_json.as_numpy("score"), score[:5], rtol=1e-6)


def test_predict_gives_the_rows_osr_infer_writes_with_the_model_hash(served, images, expected):
    sha = hashlib.sha256(Model.load().path.read_bytes()).hexdigest()
    for path in images[::3]:
        status, headers, body = request(f"{served.url}/predict", path.read_bytes(), {"Content-Type": "application/octet-stream"})
        assert status == 200, body
        assert headers["x-model-sha256"] == sha
        (row,) = json.loads(body)
        assert set(row) == {"label", "class_index", "probability", "score", "known"}
        assert_same_rows(row, expected[path.name])
    body, kind = multipart([(p.name, p.read_bytes()) for p in images])
    status, headers, answer = request(f"{served.url}/predict", body, {"Content-Type": kind})
    assert status == 200 and headers["x-model-sha256"] == sha
    rows = json.loads(answer)
    assert [r["path"] for r in rows] == [p.name for p in images]
    for row in rows:
        assert_same_rows(row, expected[row["path"]])


def test_bad_input_gets_a_4xx_with_one_line_and_the_server_keeps_serving(served, images):
    url = served.url
    octet = {"Content-Type": "application/octet-stream"}
    cases = {
        "broken image": (request(f"{url}/predict", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, octet), 400, "@upload"),
        "empty body": (request(f"{url}/predict", b"", octet), 400, None),
        "JSON to /predict": (request(f"{url}/predict", b"{}", {"Content-Type": "application/json"}), 415, None),
        "unknown model": (request(f"{url}/v2/models/nope/infer", b"{}", {"Content-Type": "application/json"}), 404, None),
        "not JSON": (request(f"{url}/v2/models/osr/infer", b"{oops", {"Content-Type": "application/json"}), 400, None),
        "wrong shape": (request(f"{url}/v2/models/osr/infer", json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 4, 4], "datatype": "FP32", "data": [0.0] * 16}]}).encode()), 400, None),
        "non-finite values": (request(f"{url}/v2/models/osr/infer", json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [float("nan")] * 784}]}).encode()), 400, None),
        "too few values": (request(f"{url}/v2/models/osr/infer", json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 7}]}).encode()), 400, None),
        "unknown output": (request(f"{url}/v2/models/osr/infer", json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}], "outputs": [{"name": "embedding"}]}).encode()),
            400, None),
        "wrong method": (request(f"{url}/predict", method="GET"), 405, None),
        "unknown URL": (request(f"{url}/v1/models/osr:predict", b"{}"), 404, None),
        "nested too deeply": (request(f"{url}/v2/models/osr/infer", b"[" * 200_000 + b"]" * 200_000), 400, None),
        "a number beyond float": (request(f"{url}/v2/models/osr/infer", json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [10**400] * 784}]}).encode()), 400, None),
        "ragged data": (request(f"{url}/v2/models/osr/infer", json.dumps({"inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [[0.0], [0.0, 1.0]]}]}).encode()), 400, None),
        "binary size beyond the body": (request(f"{url}/v2/models/osr/infer", b'{"inputs":[{"name":"input","shape":[1,1,28,28],'
                                                b'"datatype":"FP32","parameters":{"binary_data_size":3136}}]}',
                                                {"Inference-Header-Content-Length": "96"}), 400, None),
    }
    for name, ((status, _, body), want, fragment) in cases.items():
        assert status == want, (name, status, body)
        error = json.loads(body)["error"]
        assert "\n" not in error and error, name
        assert fragment is None or fragment not in error, (name, error)  # the client's name, not ours
    # Too large: answered from the declared length, before the body is read (a client that waits
    # for the answer, as with Expect: 100-continue, sees it; one that sends on gets the connection closed).
    host, port = served.address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 17000000\r\n\r\n")
        answer = read_answer(raw)
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "larger than the server takes (16,777,216 bytes)" in answer
    status, _, body = request(f"{url}/predict", images[0].read_bytes(), octet)
    assert status == 200 and json.loads(body)[0]["label"]
    assert request(f"{url}/v2/health/ready")[0] == 200


def _metric(url: str, name: str, **labels: str) -> float:
    text = request(f"{url}/metrics")[2].decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def test_bounded_load_has_no_errors_flat_memory_and_counted_metrics(served, images):
    bodies = [p.read_bytes() for p in images]
    url = f"{served.url}/predict"
    before = _metric(served.url, "osr_requests_total", code="200", endpoint="predict")
    warm = asyncio.run(closed_loop(url, bodies, clients=32, requests=640))
    rss_warm = _rss_mib(served.process.pid)
    report = asyncio.run(closed_loop(url, bodies, clients=32, requests=1600))
    rss_after = _rss_mib(served.process.pid)
    print(f"32 clients, 1,600 requests: {report.images_per_s:,.0f} images/s, p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, "
          f"RSS {rss_warm:.0f} -> {rss_after:.0f} MiB")
    assert warm.errors == 0 and report.errors == 0, report.statuses
    assert report.ok == 1600 and report.p50_ms <= report.p99_ms
    assert rss_after - rss_warm < 30, (rss_warm, rss_after)  # flat: no growth with the number of requests served
    after = _metric(served.url, "osr_requests_total", code="200", endpoint="predict")
    assert after - before == 640 + 1600
    assert _metric(served.url, "osr_batch_images_count") < _metric(served.url, "osr_batch_images_sum")  # batches of more than one


@pytest.fixture(scope="module")
def limited():
    with server("--max-queue", "8", "--timeout", "2", "--max-body-mb", "48") as running:
        yield running


def _infer_body(n: int) -> tuple[bytes, dict[str, str]]:
    x = np.zeros((n, 1, 28, 28), dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "known"}]}).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def test_a_full_queue_answers_503_with_retry_after_and_loses_no_accepted_request(limited, images):
    body, headers = _infer_body(14_000)  # larger than the queue: taken alone, and it fills the queue while it runs
    answers: list = []
    big = threading.Thread(target=lambda: answers.append(request(f"{limited.url}/v2/models/osr/infer", body, headers)))
    big.start()
    deadline = time.monotonic() + 30
    while _metric(limited.url, "osr_queue_images") < 14_000:
        assert time.monotonic() < deadline and big.is_alive(), "the large request never queued"
        time.sleep(0.002)
    status, reply_headers, reply = request(f"{limited.url}/predict", images[0].read_bytes(), {"Content-Type": "application/octet-stream"})
    big.join(timeout=60)
    assert status == 503, reply
    assert reply_headers["retry-after"] == "1" and "busy" in json.loads(reply)["error"]
    (big_status, _, big_reply), = answers
    assert big_status == 200
    assert json.loads(big_reply)["outputs"][0]["shape"] == [14_000]  # the accepted request's every row
    assert request(f"{limited.url}/predict", images[0].read_bytes(), {"Content-Type": "application/octet-stream"})[0] == 200


def test_a_slow_client_gets_408_and_others_are_served_meanwhile(limited, images):
    host, port = limited.address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 5000\r\n\r\n" + b"\xff\xd8\xff")
        started = time.monotonic()
        status, _, _ = request(f"{limited.url}/predict", images[1].read_bytes(), {"Content-Type": "application/octet-stream"})
        assert status == 200  # while the slow body trickles
        answer = read_answer(slow)
        waited = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "did not arrive within 2 s" in answer
    assert 1.5 < waited < 10


def test_sigterm_during_load_finishes_every_accepted_request_and_exits_0(images):
    bodies = [p.read_bytes() for p in images]
    served = start_server()
    try:
        reports: list = []
        load = threading.Thread(target=lambda: reports.append(asyncio.run(closed_loop(f"{served.url}/predict", bodies, clients=16, seconds=4))))
        load.start()
        time.sleep(1.5)
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(timeout=60)
        load.join(timeout=60)
    finally:
        if served.process.poll() is None:
            os.killpg(served.process.pid, signal.SIGKILL)
    (report,) = reports
    assert code == 0, "".join(served.lines)
    time.sleep(0.2)  # the stderr thread's last lines
    log = "".join(served.lines)
    assert "stopping: finishing the requests in flight" in log
    answered = int(re.search(r"stopped after \d+ s: ([\d,]+) requests answered", log).group(1).replace(",", ""))
    assert set(report.statuses) <= {200, 0}, report.statuses  # answered in full, or refused before it was read (0)
    assert report.ok > 100
    assert answered == report.ok  # every request the server answered reached its client: none lost


async def _asgi(app, method: str, path: str, body: bytes = b"", content_type: str = "application/octet-stream") -> tuple[int, dict, bytes]:
    """One request straight to the ASGI application (no socket): (status, headers, body)."""
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5),
             "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(m.get("body", b"") for m in sent[1:])


def test_a_request_past_its_timeout_gets_504_and_a_failing_model_500_and_serving_goes_on(images):
    """In-process (no decoding process): a model call slower than the timeout, then one that fails."""
    from osr_infer.errors import InferenceError
    from osr_infer.serve import ServeConfig, create_app

    service = create_app(Model.load(), ServeConfig(timeout_s=0.3, decode_workers=0))
    session, real_run = service.model.session, service.model.session.run
    image = images[0].read_bytes()

    async def scenario() -> list[tuple[int, dict, bytes]]:
        await service.batcher.start()
        service.accepting = True
        answers = []
        session.run = lambda x: (time.sleep(0.8), real_run(x))[1]  # a model slower than the timeout
        answers.append(await _asgi(service.app, "POST", "/predict", image))
        await asyncio.sleep(0.8)  # the slow batch ends
        session.run = lambda x: (_ for _ in ()).throw(InferenceError("model.onnx: the model failed to run on a batch of 1 (boom)"))
        answers.append(await _asgi(service.app, "POST", "/predict", image))
        session.run = real_run
        answers.append(await _asgi(service.app, "POST", "/predict", image))
        service.accepting = False
        await service.batcher.stop()
        return answers

    (late, failed, fine) = asyncio.run(scenario())
    assert late[0] == 504 and json.loads(late[2])["error"].startswith("no answer within 0.3 s")
    assert failed[0] == 500 and json.loads(failed[2])["error"] == "InferenceError: model.onnx: the model failed to run on a batch of 1 (boom)"
    assert fine[0] == 200 and json.loads(fine[2])[0]["label"]
    assert late[1]["x-model-sha256"] == failed[1]["x-model-sha256"] == service.sha256
    assert service.batcher.pending == 0  # the timed-out and failed requests left the queue


def test_openvino_behind_the_service_gives_the_same_rows_under_concurrent_batches(images, expected):
    """Two batches run at once in the service: OpenVINO's infer requests are per thread."""
    from osr_infer import providers

    if "openvino" not in providers.available():
        from conftest import missing

        missing("the openvino runtime is not installed (the [openvino] extra)")
    with server("--provider", "openvino") as served:
        assert any("provider: openvino with INFERENCE_PRECISION_HINT=f32" in line for line in served.lines)
        report = asyncio.run(closed_loop(f"{served.url}/predict", [p.read_bytes() for p in images], clients=32, requests=640))
        assert report.errors == 0, report.statuses
        body, kind = multipart([(p.name, p.read_bytes()) for p in images])
        status, _, answer = request(f"{served.url}/predict", body, {"Content-Type": kind})
    assert status == 200
    for row in json.loads(answer):
        assert row["label"] == expected[row["path"]]["label"]
        assert row["score"] == pytest.approx(float(expected[row["path"]]["score"]), rel=1e-4, abs=1e-4)
