"""Sources and models in an object store (fsspec), against moto's S3-compatible server on
127.0.0.1: the rows of the same files read from a local folder; errors without credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cluster_testing import image_folder, s3_server

from osr_infer.results import read_results

OSR_INFER = str(Path(sys.executable).with_name("osr-infer"))
MODEL = Path(__file__).resolve().parents[1] / "osr_infer" / "models" / "mnist-default.onnx"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The server's environment, with ``s3://photos/set/`` holding a folder the test keeps locally too."""
    images = image_folder(tmp_path_factory.mktemp("store") / "images", distinct=20, copies=3)
    with s3_server() as env:
        previous = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            fs.mkdir("photos")
            fs.put(str(images) + "/", "photos/set/", recursive=True)
            fs.put(str(MODEL), "photos/models/model.onnx")
            yield env, images
        finally:
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([OSR_INFER, *args, "--no-progress"], capture_output=True, text=True, env={**os.environ, **env})


def _relative(rows: list[dict], prefix: str) -> list[tuple]:
    return [(r["path"][len(prefix):], r["label"], r["probability"], r["score"]) for r in rows]


def test_a_bucket_prefix_gives_the_local_folders_rows(store, tmp_path):
    env, images = store
    local = _run(str(images), "-o", str(tmp_path / "local.csv"), env=env)
    remote = _run("s3://photos/set/", "--model", "s3://photos/models/model.onnx", "-o", str(tmp_path / "s3.csv"), env=env)
    assert local.returncode == remote.returncode == 3, remote.stderr  # the broken file, in both
    assert "skipped s3://photos/set/batch-00/broken.png: not an image file" in remote.stderr
    local_rows, remote_rows = read_results(tmp_path / "local.csv"), read_results(tmp_path / "s3.csv")
    assert len(remote_rows) == 80
    assert _relative(remote_rows, "s3://photos/set/") == _relative(local_rows, str(images) + "/")
    assert env["AWS_SECRET_ACCESS_KEY"] not in remote.stderr + remote.stdout


def test_shards_of_a_bucket_are_the_shards_of_the_same_local_folder(store, tmp_path):
    env, images = store
    for index in range(2):
        local = _run(str(images), "--shard", f"{index}/2", "-o", str(tmp_path / f"l{index}.csv"), env=env)
        remote = _run("s3://photos/set", "--shard", f"{index}/2", "-o", str(tmp_path / f"r{index}.csv"), env=env)
        assert local.returncode in (0, 3) and remote.returncode == local.returncode, remote.stderr
        assert ([r["path"].removeprefix("s3://photos/set/") for r in read_results(tmp_path / f"r{index}.csv")]
                == [r["path"].removeprefix(str(images) + "/") for r in read_results(tmp_path / f"l{index}.csv")])


def test_the_python_api_reads_urls_and_file_urls(store):
    env, images = store
    from osr_infer import Model

    model = Model.load("s3://photos/models/model.onnx")
    remote = model.predict(["s3://photos/set/batch-01/003.png", "s3://photos/set/batch-02/004.jpg"])
    local = model.predict([images / "batch-01" / "003.png", images / "batch-02" / "004.jpg"])
    assert np.array_equal(remote.labels, local.labels) and np.array_equal(remote.score, local.score)
    rows = [r for p in model.predict_files(f"file://{images}/batch-01/") for r in p.to_rows()]
    assert [r["path"] for r in rows] == [f"file://{images}/batch-01/{k:03d}.{'png' if k % 2 else 'jpg'}" for k in range(20)]


def test_store_errors_are_one_line_without_credentials(store, tmp_path):
    env, _ = store
    for source, expected in (("s3://photos/nothing-here/", "error: no image files under s3://photos/nothing-here/"),
                             ("s3://no-such-bucket/x/", "error: cannot list s3://no-such-bucket/x/"),
                             ("gs://bucket/x/", "error: gs://bucket/x/:")):  # gcsfs is not installed
        done = _run(source, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr
        assert "Traceback" not in done.stderr and env["AWS_SECRET_ACCESS_KEY"] not in done.stderr
    done = _run(str(MODEL), "--model", "s3://photos/models/missing.onnx", env=env)
    assert done.returncode == 2 and "cannot read the model s3://photos/models/missing.onnx" in done.stderr
    done = _run("https://user:hunter2@127.0.0.1:9/a.png", env=env)
    assert done.returncode == 2 and "hunter2" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: https://127.0.0.1:9/a.png: the URL carries credentials")
