"""osr-infer boots its decoding workers' forkserver before the heavy imports, and only for runs
that will use workers; the launcher that worker processes re-run imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from osr_infer import workers


@pytest.fixture
def boots(monkeypatch):
    calls: list[str | None] = []
    monkeypatch.setattr(workers, "prepare_workers", lambda method=None: calls.append(method))
    return calls


def test_a_folder_boots_the_forkserver_early(tmp_path, boots):
    workers.boot_early([str(tmp_path), "--model", "m.onnx", "--output", "r.csv"])
    assert boots == ["forkserver"]


@pytest.mark.parametrize("argv", [
    [],
    ["--help"],
    ["FOLDER", "--workers", "0"],
    ["FOLDER", "--workers=0"],
])
def test_no_boot_without_workers(tmp_path, boots, argv):
    workers.boot_early([str(tmp_path) if a == "FOLDER" else a for a in argv])
    assert boots == []


def test_a_handful_of_files_is_decoded_in_process_so_nothing_boots(tmp_path, boots):
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(b"x")
    workers.boot_early([*map(str, files), "--model", str(tmp_path / "model-file-that-is-a-value"), "-o", "out.csv"])
    assert boots == []
    workers.boot_early([*map(str, files), "--unknown", str(tmp_path)])  # a folder among the sources: workers
    assert boots == ["forkserver"]


def test_a_few_large_photos_are_worth_workers(tmp_path, boots):
    photos = []
    for i in range(3):
        photos.append(tmp_path / f"{i}.jpg")
        photos[-1].write_bytes(b"\xff" * (workers.SMALL_RUN_BYTES // 2))
    assert not workers.small_run([str(p) for p in photos]) and workers.small_run([str(photos[0])])
    workers.boot_early([str(p) for p in photos])
    assert boots == ["forkserver"]


def test_the_launcher_and_worker_module_import_nothing_heavy():
    """Each worker re-runs the console script, which imports osr_infer.launch: it must stay light."""
    code = ("import sys, osr_infer.launch, osr_infer.workers; "
            "heavy = [m for m in ('numpy', 'PIL', 'onnxruntime', 'typer', 'rich') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)

