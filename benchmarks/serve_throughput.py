"""``osr-serve`` against the straightforward service a user would write, under the same client load.

The same 32 concurrent clients (closed loop: each sends its next single CIFAR-10 test JPEG as
soon as its answer arrived) against

* ``osr-serve`` (micro-batching, decoding in a process of its own, the model's contract), and
* ``benchmarks/straightforward_service.py`` (FastAPI on uvicorn, the integration guide's PIL
  preprocessing and ONNX Runtime session, one image per request),

in alternating rounds of ``--seconds`` each, so that machine noise hits both; the medians are
kept. Then each at half its own throughput (open loop: requests at a fixed rate) for the
latency a service has when it is not saturated, and ``Model.predict_files`` on the same files
(what the same machine classifies without HTTP) for osr-serve's share of it. The client runs in
this process (HTTP/1.1 keep-alive on asyncio streams, `osr_infer.serve.load`).

    python benchmarks/serve_throughput.py [--folder DIR] [--rounds 3] [--seconds 10]

Writes ``benchmarks/results/serve_throughput.json``. Goal (issue #34): osr-serve >= 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from osr_infer.io import write_json
from osr_infer.serve.load import closed_loop, open_loop

HERE = Path(__file__).resolve().parent
OSR_SERVE = str(Path(sys.executable).with_name("osr-serve"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s")


def start_osr_serve(model: Path | None) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([OSR_SERVE, "--port", "0", *(["--model", str(model)] if model else [])],
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"serving \S+ at (http://\S+) ", line)
        if found:
            url = found.group(1)
            wait_ready(f"{url}/v2/health/ready", process)
            return process, url
    raise SystemExit(f"osr-serve did not start: exit {process.wait()}")


def start_straightforward(model: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(HERE / "straightforward_service.py"), str(model), str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # FastAPI has no readiness route of its own here: wait for the port
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the straightforward service did not start") from None
            time.sleep(0.2)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("OSR_DATA_DIR", HERE.parent.parent / "shared" / "datasets"))
    parser.add_argument("--folder", type=Path, default=default_data / "cifar10-test-jpeg")
    parser.add_argument("--model", type=Path, default=None, help="an ONNX model [default: the shipped one]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "serve_throughput.json")
    args = parser.parse_args()
    from osr_infer import Model

    files = sorted(str(p) for p in args.folder.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEGs under {args.folder}")
    bodies = [Path(f).read_bytes() for f in files]
    model_path = args.model or Model.load().path
    served, served_url = start_osr_serve(args.model)
    plain, plain_url = start_straightforward(model_path)
    targets = {"osr-serve": f"{served_url}/predict", "straightforward": f"{plain_url}/predict"}
    rounds: dict[str, list[dict]] = {name: [] for name in targets}
    memory = {"osr-serve_rss_mib_start": rss_mib(served.pid)}
    try:
        for url in targets.values():  # warm-up: sessions, first batches, the decoding process
            asyncio.run(closed_loop(url, bodies[:256], clients=args.clients, seconds=2))
        memory["osr-serve_rss_mib_after_warmup"] = rss_mib(served.pid)
        for k in range(args.rounds):
            for name, url in (targets.items() if k % 2 == 0 else reversed(targets.items())):
                report = asyncio.run(closed_loop(url, bodies, clients=args.clients, seconds=args.seconds))
                rounds[name].append(report.to_dict())
                print(f"round {k + 1} {name}: {report.images_per_s:,.0f} images/s, p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, "
                      f"errors {report.errors}", flush=True)
        memory["osr-serve_rss_mib_after_load"] = rss_mib(served.pid)
        full = {name: statistics.median(r["images_per_s"] for r in runs) for name, runs in rounds.items()}
        half = {}
        for name, url in targets.items():
            report = asyncio.run(open_loop(url, bodies, rate=full[name] / 2, seconds=args.seconds))
            half[name] = {"rate": round(full[name] / 2, 1), **report.to_dict()}
            print(f"half load {name} ({full[name] / 2:,.0f} requests/s): p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms, "
                  f"errors {report.errors}", flush=True)
    finally:
        for process in (served, plain):
            process.terminate()
            process.wait(timeout=60)
    model = Model.load(args.model)
    t0 = time.perf_counter()
    rows = sum(len(batch) for batch in model.predict_files(args.folder))
    local = rows / (time.perf_counter() - t0)
    result = {
        "benchmark": "serve_throughput", "command": "python benchmarks/serve_throughput.py",
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "files": len(files), "clients": args.clients, "seconds_per_round": args.seconds, "rounds": rounds,
        "images_per_s": {k: round(v, 1) for k, v in full.items()},
        "speedup_vs_straightforward": round(full["osr-serve"] / full["straightforward"], 2),
        "predict_files_images_per_s": round(local, 1),
        "osr-serve_share_of_predict_files": round(full["osr-serve"] / local, 3),
        "half_load": half, "memory": {k: round(v, 1) for k, v in memory.items()},
    }
    print(f"osr-serve {full['osr-serve']:,.0f} images/s, straightforward {full['straightforward']:,.0f}: "
          f"{result['speedup_vs_straightforward']}x; Model.predict_files {local:,.0f} images/s "
          f"(osr-serve is {100 * result['osr-serve_share_of_predict_files']:.0f}% of it)")
    write_json(args.output, result)


if __name__ == "__main__":
    main()
