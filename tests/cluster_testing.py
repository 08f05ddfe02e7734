"""Real clusters on 127.0.0.1 for the engine tests: started by the test, always torn down."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)


@contextlib.contextmanager
def dask_cluster(workers: int = 2) -> Iterator[DaskCluster]:
    """``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes without a
    nanny (a killed worker stays dead), as a user starts them; killed on the way out."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    cluster = DaskCluster(address, _start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                           "--dashboard-address", ":0"]))
    try:
        cluster.workers = [_start([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                                   "--dashboard-address", ":0"]) for _ in range(workers)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield cluster
    finally:
        for process in [*cluster.workers, cluster.scheduler]:
            _stop(process)


def image_folder(root: Path, distinct: int = 100, copies: int = 30, size: int = 48) -> Path:
    """``distinct x copies`` images (PNGs and JPEGs, each a hard link of one of ``distinct``
    different images, photo-like: each goes through the layout step, about 1 ms a file) and one unreadable file."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    originals = []
    for k in range(distinct):
        gradient = (x * (k + 1) + y * (distinct - k)) % 256
        pixels = np.stack([gradient, np.roll(gradient, k, axis=0), (gradient + k * 7) % 256], axis=-1).astype(np.uint8)
        pixels[rng.integers(0, size, 50), rng.integers(0, size, 50)] = 255
        path = root / "originals" / f"{k:03d}.{'png' if k % 2 else 'jpg'}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        originals.append(path)
    for c in range(copies):
        folder = root / f"batch-{c:02d}"
        folder.mkdir()
        for original in originals:
            os.link(original, folder / original.name)
    (root / "batch-00" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def wait_for(condition, seconds: float = 120, what: str = "the condition") -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"{what} did not hold within {seconds:.0f} s")
        time.sleep(0.02)


@contextlib.contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3-compatible server on 127.0.0.1 (a real HTTP server, in its own process); yields
    the environment that points the AWS SDKs at it, with throwaway credentials."""
    port = free_port()
    server = _start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    try:
        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 60, "moto's server listening")
        yield {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "s3cr3t-never-printed",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    finally:
        _stop(server)


@dataclass
class RayCluster:
    address: str
    second_node_port: int

    def raylet_of_second_node(self) -> int | None:
        """The pid of the second node's raylet (found by its node-manager port)."""
        import psutil

        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            if "raylet" in line and f"--node_manager_port={self.second_node_port}" in line:
                return int(process.pid)
        return None


@contextlib.contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    """A Ray head node and a second node (``ray start``), one CPU each, on 127.0.0.1, as a user
    starts them; ``ray stop --force`` on the way out."""
    port, node_port = free_port(), free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
           "RAY_OBJECT_STORE_ALLOW_SLOW_STORAGE": "1",  # a container's small /dev/shm: /tmp instead, slower but working
           "RAY_AUTH_MODE": "disabled"}  # as a fresh machine: not the token a local ray.init() left in ~/.ray
    common = ["--num-cpus", "1", "--object-store-memory", str(200 << 20), "--disable-usage-stats"]
    def ray_start(*args: str) -> None:
        done = subprocess.run([str(BIN / "ray"), "start", *args, *common], capture_output=True, text=True, env=env, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")

    try:
        ray_start("--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard", "false")
        ray_start("--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", "--node-manager-port", str(node_port))
        yield RayCluster(f"127.0.0.1:{port}", node_port)
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)
