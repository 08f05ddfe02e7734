"""The helpers all three command-line tools share."""

from __future__ import annotations

import io
import os

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from osr_infer.cli_support import fail, interruptible, require_training_install


def _app(console: Console) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    @interruptible(console, "nothing was written")
    def work(count: int = typer.Option(1, "--count", help="How many."), stop: bool = False) -> None:
        if stop:
            raise KeyboardInterrupt
        if count < 0:
            fail(console, f"--count must not be negative, not [{count}]")
        console.print(f"did {count}")

    return app


def test_ctrl_c_prints_what_was_left_and_exits_130():
    buffer = io.StringIO()
    app = _app(Console(file=buffer, width=200))
    assert CliRunner().invoke(app, ["--count", "3"]).exit_code == 0  # options survive the decorator
    assert "did 3" in buffer.getvalue()
    result = CliRunner().invoke(app, ["--stop"])
    assert result.exit_code == 130 and "interrupted: nothing was written" in buffer.getvalue()


def test_fail_prints_the_message_literally_and_exits_with_the_code():
    buffer = io.StringIO()
    result = CliRunner().invoke(_app(Console(file=buffer, width=200)), ["--count", "-2"])
    assert result.exit_code == 2
    assert "error: --count must not be negative, not [-2]" in buffer.getvalue()  # brackets are not eaten as markup


def test_fail_prints_colon_words_literally_not_as_emoji():
    buffer = io.StringIO()
    with pytest.raises(typer.Exit):
        fail(Console(file=buffer, width=200), "mnist:train: MNIST not found; cifar10:test:cat: too")
    assert "error: mnist:train: MNIST not found; cifar10:test:cat: too" in buffer.getvalue()


def test_the_training_commands_refuse_the_edge_install_in_one_line(monkeypatch):
    """osr-train and osr-export on an install without torch & co: one error line and exit 2, no ImportError."""
    import importlib.util

    real = importlib.util.find_spec
    buffer = io.StringIO()
    console = Console(file=buffer, width=300)
    assert require_training_install(console, "osr-train") is None and buffer.getvalue() == ""  # this install has them
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "sklearn") else real(name, *a))
    with pytest.raises(SystemExit) as info:
        require_training_install(console, "osr-export")
    assert info.value.code == 2
    (line,) = buffer.getvalue().strip().splitlines()
    assert line.startswith("error: osr-export needs the training install") and "missing here: torch, sklearn" in line
    assert "pip install 'osr-toolkit[train]'" in line


def test_artefacts_follow_the_umask_new_or_replaced(tmp_path):
    """mkstemp's 0600 would keep a serving account from reading model.onnx: atomic writes get
    0666 less the umask, like open(), also when they replace a file."""
    import os

    from osr_infer.io import atomic_path

    old = os.umask(0o022)
    try:
        target = tmp_path / "model.onnx"
        for _ in range(2):  # new, then replaced
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"x")
            assert target.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"y")
        assert target.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from osr_infer.io import atomic_path

    target = tmp_path / "metrics.json"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stale = tmp_path / f".metrics.json.{child.pid}.abc123.tmp"
    stale.write_text("half")
    alive_stale = tmp_path / f".metrics.json.{os.getppid()}.def456.tmp"  # a live process's: kept
    alive_stale.write_text("busy")
    child.kill()
    child.wait()
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    assert not stale.exists() and alive_stale.exists() and target.read_text() == "{}"


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_an_output_that_is_not_a_regular_file_is_refused_not_replaced(tmp_path, kind):
    from osr_infer.io import OutputPathError, atomic_path

    target = tmp_path / "r.csv"
    real = tmp_path / "real.csv"
    real.write_text("keep")
    if kind == "symlink":
        target.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    with pytest.raises(OutputPathError, match="refusing to replace it"):
        with atomic_path(target):
            pass
    assert real.read_text() == "keep"
    assert target.is_symlink() if kind == "symlink" else (target.is_fifo() if kind == "fifo" else target.is_dir())
