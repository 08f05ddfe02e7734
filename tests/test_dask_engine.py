"""osr-infer on a real Dask cluster (scheduler and two workers on 127.0.0.1): the same rows as
a local run, in the same order, with a worker SIGKILLed mid-run; the Python API's DataFrame."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cluster_testing import dask_cluster, image_folder, wait_for

from osr_infer.results import read_results

OSR_INFER = str(Path(sys.executable).with_name("osr-infer"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("dask") / "images")


@pytest.fixture(scope="module")
def local_rows(images, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "local.csv"
    done = subprocess.run([OSR_INFER, str(images), "--output", str(out), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr  # the broken file: reported, skipped
    return read_results(out)


def _same_rows(rows: list[dict], reference: list[dict]) -> None:
    assert [r["path"] for r in rows] == [r["path"] for r in reference]  # every file once, in input order
    assert [r["label"] for r in rows] == [r["label"] for r in reference]
    for column in ("probability", "score"):
        assert np.allclose([r[column] for r in rows], [r[column] for r in reference], rtol=0, atol=1e-6)


def test_a_cluster_run_survives_a_killed_worker_and_equals_a_local_run(images, local_rows, tmp_path):
    out = tmp_path / "cluster.csv"
    with dask_cluster(workers=2) as cluster:
        run = subprocess.Popen([OSR_INFER, str(images), "--cluster", f"dask:{cluster.address}", "--partition-size", "40",
                                "--output", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            temp = lambda: [p for p in tmp_path.glob(".cluster.csv.*.tmp") if p.stat().st_size > 10_000]  # noqa: E731
            wait_for(lambda: temp() or run.poll() is not None, what="the first partitions' rows")
            assert run.poll() is None, "the run ended before a worker could be killed"
            os.kill(cluster.workers[0].pid, signal.SIGKILL)
            stdout, stderr = run.communicate(timeout=300)
        finally:
            run.kill()  # nothing of the run outlives a failed test
            run.wait()
    assert run.returncode == 3, stderr
    assert "cluster: dask at tcp://127.0.0.1" in stderr and "(2 workers, 2 threads)" in stderr
    assert "broken.png" in stderr and "Traceback" not in stderr
    rows = read_results(out)
    assert len(rows) == len(local_rows) == 3100
    _same_rows(rows, local_rows)


def test_the_python_api_gives_a_dask_frame_of_the_same_rows(images, local_rows, tmp_path):
    from distributed import Client

    import osr_infer.dask
    from osr_infer import Model

    with dask_cluster(workers=2) as cluster, Client(cluster.address) as client:
        frame = osr_infer.dask.predict(images, Model.load(), client, partition_size=500)
        assert frame.npartitions == 7  # 3,101 files
        frame.to_parquet(tmp_path / "parts")
        rows = frame.compute()
    assert len(list((tmp_path / "parts").glob("*.parquet"))) == 7  # one file a partition, written by the workers
    broken = rows[rows.error != ""]
    assert list(broken.path) == [str(images / "batch-00" / "broken.png")] and broken.label.isna().all()
    classified = rows[rows.error == ""].to_dict("records")
    _same_rows(classified, local_rows)
    assert all(isinstance(r["known"], bool) for r in classified)


def test_cluster_errors_are_one_line(images, tmp_path):
    done = subprocess.run([OSR_INFER, str(images), "--cluster", "spark:x"], capture_output=True, text=True)
    assert done.returncode == 2 and "--cluster" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([OSR_INFER, str(images), "--cluster", "dask:tcp://127.0.0.1:9", "--workers", "2"], capture_output=True, text=True)
    assert done.returncode == 2 and "--workers" in done.stderr
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    done = subprocess.run([OSR_INFER, str(images), "--cluster", "dask:tcp://127.0.0.1:9"], capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
