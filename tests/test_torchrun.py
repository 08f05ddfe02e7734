"""osr-train under torchrun: two CPU ranks (gloo) train one model that exports and verifies like
a one-process model; a rank killed mid-run makes torchrun restart the group, which resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_testing import free_port, wait_for

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find a rank")


def _torchrun(out: Path, *args: str, restarts: int = 0) -> list[str]:
    return [str(BIN / "torchrun"), "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--max-restarts", str(restarts),
            "-m", "osr_train", "baseline", "--dataset", "digits", "--recipe", "seed", "--out", str(out), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run torchrun in a session of its own; its whole group (the ranks too) is killed if it
    outlives ``timeout`` or the test fails."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def test_two_ranks_train_one_model_that_exports_and_verifies(tmp_path):
    out = tmp_path / "run"
    done = _run(_torchrun(out, "--epochs", "3", "--batch-size", "64"))
    assert done.returncode == 0, done.stdout[-3000:]
    assert "x 2 ranks (torchrun; global batch 64)" in done.stdout
    assert done.stdout.count("training baseline") == 1 and done.stdout.count("model:   ") == 1  # rank 0 alone reports and writes
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "confusion_open_set.png", "curves.png", "history.json",
                                                       "metrics.json", "model.pt"]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["closed_set_accuracy"] > 0.5
    export = subprocess.run([str(BIN / "osr-export"), str(out / "model.pt"), "--format", "onnx"], capture_output=True, text=True)
    assert export.returncode == 0, export.stdout + export.stderr
    from osr_infer import Model

    model = Model.load(out / "model.onnx")
    assert model.spec is not None and model.threshold == model.spec.threshold


def _rank_process(launcher: int, rank: int) -> int | None:
    """The pid of the process of ``rank`` among ``launcher``'s descendants (from its environment)."""
    import psutil

    for child in psutil.Process(launcher).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "osr_train" in " ".join(child.cmdline()):
                return child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


@pytest.mark.slow
def test_a_killed_rank_restarts_the_group_which_resumes(tmp_path):
    out = tmp_path / "run"
    launcher = subprocess.Popen(_torchrun(out, "--epochs", "40", "--batch-size", "64", restarts=1), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True)
    try:
        wait_for(lambda: (out / "checkpoint.pt").is_file() or launcher.poll() is not None, 300, "the first epoch's checkpoint")
        assert launcher.poll() is None, "the run ended before a rank could be killed"
        time.sleep(0.5)
        victim = _rank_process(launcher.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        output, _ = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0, output[-3000:]
    assert "torchrun restarted the group (restart 1): resuming from" in output
    assert "resuming after train epoch" in output
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 41))  # every epoch once, across the restart
    assert (out / "model.pt").is_file() and not (out / "checkpoint.pt").exists()
    # Each rank continued its own random streams and the sampler's epochs: the run an uninterrupted one is.
    clean = tmp_path / "clean"
    done = _run(_torchrun(clean, "--epochs", "40", "--batch-size", "64"))
    assert done.returncode == 0, done.stdout[-3000:]
    uninterrupted = json.loads((clean / "history.json").read_text())
    assert [(h["train_loss"], h["val_loss"]) for h in history] == [(h["train_loss"], h["val_loss"]) for h in uninterrupted]
