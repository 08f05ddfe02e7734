"""osr-infer on a real Ray cluster (a head and a second node on 127.0.0.1): the rows of a local
run, in order, with the second node killed mid-run; the Python API's Dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cluster_testing import image_folder, ray_cluster, wait_for

from osr_infer.results import read_results

OSR_INFER = str(Path(sys.executable).with_name("osr-infer"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("ray") / "images")


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def local_rows(images, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("local") / "local.csv"
    done = subprocess.run([OSR_INFER, str(images), "--output", str(out), "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    return read_results(out)


def _same_rows(rows: list[dict], reference: list[dict]) -> None:
    assert [r["path"] for r in rows] == [r["path"] for r in reference]
    assert [r["label"] for r in rows] == [r["label"] for r in reference]
    for column in ("probability", "score"):
        assert np.allclose([r[column] for r in rows], [r[column] for r in reference], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_the_python_api_gives_a_ray_dataset_of_the_same_rows(cluster, images, local_rows, tmp_path):
    import ray

    import osr_infer.ray
    from osr_infer import Model

    ray.init(address=cluster.address, log_to_driver=False)
    try:
        dataset = osr_infer.ray.predict(images, Model.load(), concurrency=2, partition_size=500)
        dataset.write_parquet(str(tmp_path / "parts"))
        rows = dataset.to_pandas()
    finally:
        ray.shutdown()
    assert list((tmp_path / "parts").glob("*.parquet"))
    assert list(rows[rows.error != ""].path) == [str(images / "batch-00" / "broken.png")]
    _same_rows(rows[rows.error == ""].to_dict("records"), local_rows)


@pytest.mark.slow
def test_ray_rows_equal_a_local_run_with_a_node_lost_mid_run(cluster, images, local_rows, tmp_path):
    """After the API's test: this one kills the second node."""
    out = tmp_path / "ray.csv"
    run = subprocess.Popen([OSR_INFER, str(images), "--cluster", f"ray:{cluster.address}", "--partition-size", "100",
                            "--output", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        temp = lambda: [p for p in tmp_path.glob(".ray.csv.*.tmp") if p.stat().st_size > 10_000]  # noqa: E731
        wait_for(lambda: temp() or run.poll() is not None, 300, "the first rows")
        assert run.poll() is None, "the run ended before a node could be stopped"
        raylet = cluster.raylet_of_second_node()
        assert raylet is not None
        os.kill(raylet, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=600)
    finally:
        run.kill()  # nothing of the run outlives a failed test
        run.wait()
    assert run.returncode == 3, stderr
    assert "cluster: ray (2 nodes, 2 CPUs)" in stderr and "Traceback" not in stderr
    assert "skipped" in stderr and "broken.png: not an image file" in stderr
    _same_rows(read_results(out), local_rows)


def test_an_unreachable_ray_cluster_is_one_line(images):
    done = subprocess.run([OSR_INFER, str(images), "--cluster", "ray:127.0.0.1:9"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Ray cluster at 127.0.0.1:9")
