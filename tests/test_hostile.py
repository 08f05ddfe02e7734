"""Hostile input (issue #12): a corpus the tests write, run through osr-infer's command line.

Every case must end with exit 2 (a bad argument, model, data file or output: one line naming
it and the reason) or exit 3 (some inputs of a batch unreadable: each named, the rest
classified and written), never a traceback, never exit 1 (parity or verification only), and
never a half-written results file. Memory, signals and fuzzing are at the end.
"""

from __future__ import annotations

import gzip
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from infer_testing import cached_digits_onnx, digit_images, edit_onnx, invoke, png_bomb, write_pngs
from osr_infer.errors import EXIT_ERROR, EXIT_OK, EXIT_SOME_INPUTS_FAILED
from osr_infer.results import read_results

REPO = Path(__file__).resolve().parents[1]
GOOD = 4  # good digits beside each hostile file


@pytest.fixture(scope="module")
def model(tmp_path_factory, trained_digits) -> Path:
    return cached_digits_onnx(tmp_path_factory, trained_digits)


def _no_traceback(result) -> None:
    text = (result.stdout or "") + (result.stderr or "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


# --- a hostile file among good ones: reported, skipped, the rest classified (exit 3) -------------

def _truncated_jpeg(path: Path) -> None:
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(path.with_suffix(".tmp.jpg"), quality=90)
    data = path.with_suffix(".tmp.jpg").read_bytes()
    path.with_suffix(".tmp.jpg").unlink()
    path.write_bytes(data[: len(data) // 3])


def _tiff_bomb(path: Path) -> None:
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    # ImageWidth/ImageLength tags (256/257) rewritten to 60,000 x 60,000 in the first IFD.
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        entry = ifd + 2 + 12 * k
        if int.from_bytes(data[entry : entry + 2], "little") in (256, 257):
            data[entry + 2 : entry + 4] = (4).to_bytes(2, "little")  # LONG
            data[entry + 8 : entry + 12] = (60_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))


BAD_IMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "zero.png": (lambda p: p.write_bytes(b""), "empty file"),
    "text.png": (lambda p: p.write_text("not an image\n"), "not an image file"),
    "random.jpg": (lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()), "not an image file"),
    "half.jpg": (_truncated_jpeg, "truncated file"),
    "bomb.png": (lambda p: png_bomb(p), "too large"),
    "bomb.tif": (_tiff_bomb, "image too large"),
    "header-only.png": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"), "not an image file"),
    "html.gif": (lambda p: p.write_text("<html>not a gif</html>"), "not an image file"),
    "tiny-garbage.webp": (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 "), "corrupt or unsupported image data"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_a_hostile_image_is_named_skipped_and_the_rest_classified(model, tmp_path, name):
    folder = tmp_path / "in"
    write_pngs(folder, digit_images(GOOD, seed=3)[0], prefix="good")
    make, reason = BAD_IMAGES[name]
    make(folder / name)
    out = tmp_path / "r.csv"
    result = invoke([folder, "--model", model, "-o", out, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_SOME_INPUTS_FAILED, result.output
    assert reason, "every hostile case names the reason a user is given"
    line = next(line for line in result.stderr.splitlines() if line.startswith("skipped"))
    assert name in line and reason in line
    rows = read_results(out)
    assert len(rows) == GOOD and all(Path(r["path"]).name.startswith("good") for r in rows)


# --- odd names and odd entries: classified, said, never harmful --------------------------------

def test_a_file_name_that_is_not_utf8_is_classified_and_written_escaped(model, tmp_path):
    folder = tmp_path / "in"
    write_pngs(folder, digit_images(2, seed=4)[0])
    raw = os.fsencode(folder) + b"/caf\xe9-\xff.png"  # Latin-1 bytes from another file system
    Image.fromarray(digit_images(1, seed=5)[0][0]).save(raw.decode("utf-8", "surrogateescape"))
    out = tmp_path / "r.csv"
    result = invoke([folder, "--model", model, "-o", out, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_OK, result.output
    names = [Path(r["path"]).name for r in read_results(out)]
    assert "caf\\xe9-\\xff.png" in names and len(names) == 3


@pytest.mark.parametrize("name", ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(A1).png"])
def test_a_name_that_a_spreadsheet_would_run_is_quoted_in_the_csv(model, tmp_path, name, monkeypatch):
    folder = tmp_path / "in"
    write_pngs(folder, digit_images(1, seed=6)[0])
    Image.fromarray(digit_images(1, seed=7)[0][0]).save(folder / name)
    out = tmp_path / "r.csv"
    monkeypatch.chdir(folder)  # the path column holds the name as given: relative here
    result = invoke(["--model", model, "-o", out, "--workers", "0", "--", name])
    _no_traceback(result)
    assert result.exit_code == EXIT_OK, result.output
    cell = out.read_text().splitlines()[1].split(",")[0]
    assert cell == "'" + name  # OWASP: a leading ' makes it text


def test_escape_sequences_in_a_name_never_reach_the_terminal(model, tmp_path):
    folder = tmp_path / "in"
    write_pngs(folder, digit_images(1, seed=8)[0])
    (folder / "\x1b[2J\x1b[31mred.png").write_bytes(b"not an image")
    result = invoke([folder, "--model", model, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_SOME_INPUTS_FAILED
    assert "\x1b[2J" not in result.stderr and "\\x1b[2J" in result.stderr


def test_entries_that_are_no_images_are_counted_not_silently_dropped(model, tmp_path):
    folder = tmp_path / "in"
    write_pngs(folder, digit_images(2, seed=9)[0])
    (folder / "photo.heic").write_bytes(b"....")
    (folder / "notes.txt").write_text("x")
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "elsewhere").mkdir()
    (folder / "linked-folder").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    result = invoke([folder, "--model", model, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_OK, result.output
    note = " ".join(result.stderr.split())
    assert "left out 2 file(s) not named as an image (.heic 1, .txt 1)" in note
    assert "2 link(s) to folders (not followed)" in note and "2 entr(y/ies) that are no regular file" in note


# --- data files, models and metadata, outputs, arguments: one line, exit 2 ---------------------

def _idx(path: Path, header: bytes, payload: bytes, gz: bool = True) -> None:
    data = header + payload
    path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)


def _mnist_case(kind: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        from conftest import write_fake_mnist

        root = write_fake_mnist(tmp / "data")
        raw = root / "MNIST" / "raw"
        images = raw / "t10k-images-idx3-ubyte.gz"
        if kind == "bomb":
            _idx(images, bytes([0, 0, 8, 3]) + (4_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2, bytes(4 << 20))
        elif kind == "corrupt-gz":
            data = bytearray(images.read_bytes())
            data[len(data) // 2] ^= 0xFF
            images.write_bytes(bytes(data[: len(data) - 4]))
        elif kind == "trailing":
            images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes()) + b"extra"))
        elif kind == "bad-magic":
            images.write_bytes(gzip.compress(b"\x00\x00\x99\x03" + bytes(100)))
        elif kind == "labels-out-of-range":
            labels = raw / "t10k-labels-idx1-ubyte.gz"
            _idx(labels, bytes([0, 0, 8, 1]) + (40).to_bytes(4, "big"), bytes([200] * 40))
        return ["mnist:test", "--data-dir", str(root)]

    return build


def _cifar_case(batch: dict) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        folder = tmp / "data" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
        return ["cifar10:test", "--data-dir", str(tmp / "data")]

    return build


class _Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _model_case(props: dict | None = None, raw: bytes | None = None) -> Callable[[Path, Path], list[str]]:
    def build(tmp: Path, model: Path) -> list[str]:
        target = tmp / "hostile.onnx"
        if raw is not None:
            target.write_bytes(raw)
        else:
            edit_onnx(model, target, props=props)
        return ["--model", str(target)]

    return build


EXIT_2_CASES = {
    # data files
    "idx gzip bomb": (_mnist_case("bomb"), "announces 3,136,000,000 bytes"),
    "idx corrupt gzip": (_mnist_case("corrupt-gz"), "cannot read"),
    "idx trailing bytes": (_mnist_case("trailing"), "trailing bytes"),
    "idx bad magic": (_mnist_case("bad-magic"), "not an IDX file"),
    "idx labels out of range": (_mnist_case("labels-out-of-range"), "label"),
    "cifar pickle array bomb": (_cifar_case({b"data": _Call(np.ndarray, ((200_000, 3072), np.dtype("uint8"))), b"labels": [0]}), "would need"),
    "cifar pickle runs code": (_cifar_case({b"data": _Call(os.system, ("echo pwned",)), b"labels": [0]}), "forbidden global"),
    "cifar labels 2**100": (_cifar_case({b"data": np.zeros((2, 3072), np.uint8), b"labels": [2**100, 0]}), "'labels' must be"),
    "cifar data not an array": (_cifar_case({b"data": "text", b"labels": [0]}), "'data' must be"),
    # models and metadata
    "model is text": (_model_case(raw=b"hello"), "not a loadable ONNX model"),
    "model is empty": (_model_case(raw=b""), "not a loadable ONNX model"),
    "metadata std NaN": (_model_case({"osr.preprocessing": '{"size": 28, "channels": 1, "color": "L", "resize": "bilinear", '
                                                                         '"mean": [0.5], "std": [NaN], "version": 3}'}), "invalid osr.* metadata"),
    "metadata threshold Infinity": (_model_case({"osr.threshold": "Infinity"}), "invalid osr.* metadata"),
    "metadata class_names a number": (_model_case({"osr.class_names": "5"}), "class_names must be a list"),
    "metadata class count wrong": (_model_case({"osr.class_names": '["a", "b", "c"]'}), "metadata names 3 classes"),
    "metadata newer schema": (_model_case({"osr.schema_version": "99"}), "upgrade osr-toolkit"),
    "metadata not JSON": (_model_case({"osr.threshold": "{oops"}), "invalid osr.* metadata"),
}


@pytest.mark.parametrize("case", sorted(EXIT_2_CASES))
def test_hostile_data_files_and_models_get_one_line_and_exit_2(model, tmp_path, case):
    build, message = EXIT_2_CASES[case]
    images = tmp_path / "images"
    write_pngs(images, digit_images(2, seed=10)[0])
    args = build(tmp_path, model) if build.__code__.co_argcount == 2 else build(tmp_path)
    if args[0] == "--model":
        argv = [images, *args]
    else:
        argv = [*args, "--model", model]
    out = tmp_path / "r.csv"
    result = invoke([*argv, "-o", out, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_ERROR, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in " ".join(result.stderr.split()), result.stderr
    assert not out.exists() and not list(tmp_path.glob(".r.csv.*"))


OUTPUTS = {
    "symlink": (lambda p: p.symlink_to(p.parent / "elsewhere.csv"), "symbolic link"),
    "fifo": (lambda p: os.mkfifo(p), "not a regular file"),
    "folder": (lambda p: p.mkdir(), "is a folder"),
}


@pytest.mark.parametrize("kind", sorted(OUTPUTS))
def test_an_output_that_is_not_a_regular_file_is_refused(model, tmp_path, kind):
    images = tmp_path / "images"
    write_pngs(images, digit_images(2, seed=11)[0])
    (tmp_path / "elsewhere.csv").write_text("keep me\n")
    make, message = OUTPUTS[kind]
    target = tmp_path / "r.csv"
    make(target)
    result = invoke([images, "--model", model, "-o", target, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_ERROR and message in result.stderr
    assert (tmp_path / "elsewhere.csv").read_text() == "keep me\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "1.5"], "--threshold must be a number in (0, 1)"),
        (["--threshold", "nan"], "--threshold"),
        (["--threshold", "-inf"], "--threshold"),
        (["--score-threshold", "inf"], "--score-threshold must be a number"),
        (["--threshold", "0.9", "--score-threshold", "1"], "not both"),
        (["--workers", "300"], "--workers must be an integer in [0, 256]"),
        (["--batch-size", "0"], "--batch-size must be an integer in [1, 65536]"),
        (["--batch-size", "100000000"], "--batch-size must be an integer in [1, 65536]"),
        (["--output", "r.xlsx"], "unsupported format"),
    ],
)
def test_hostile_arguments_get_one_line_and_exit_2(model, tmp_path, args, message):
    images = tmp_path / "images"
    write_pngs(images, digit_images(2, seed=12)[0])
    result = invoke([images, "--model", model, "--workers", "0", *args])
    _no_traceback(result)
    assert result.exit_code == EXIT_ERROR and message in " ".join(result.stderr.split()), result.stderr


def test_a_full_disk_while_writing_results_is_one_line_and_leaves_no_file(model, tmp_path, monkeypatch):
    import errno

    from osr_infer import results

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(results.ResultsWriter, "write", full)
    images = tmp_path / "images"
    write_pngs(images, digit_images(3, seed=13)[0])
    out = tmp_path / "r.csv"
    result = invoke([images, "--model", model, "-o", out, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_ERROR and "No space left on device" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".r.csv.*"))


def test_an_onnx_runtime_failure_mid_run_is_one_line(model, tmp_path, monkeypatch):
    from osr_infer import session

    images = tmp_path / "images"
    write_pngs(images, digit_images(3, seed=14)[0])

    class Broken:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run(self, *args, **kwargs):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node")

    original = session.InferenceModel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._session = Broken(self._session)

    monkeypatch.setattr(session.InferenceModel, "__init__", init)
    result = invoke([images, "--model", model, "--workers", "0"])
    _no_traceback(result)
    assert result.exit_code == EXIT_ERROR and "the model failed to run on a batch of 3 (" in result.stderr


# --- memory: small files never cost gigabytes --------------------------------------------------

def _peak_rss_mb(code: str, *args: str) -> tuple[float, str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    return float(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def test_peak_memory_stays_bounded_for_bombs_under_10_mb(tmp_path):
    """The gzip, pickle and 16-bit cases of the issue, each in a fresh interpreter: < 1 GB peak RSS."""
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(gz, "wb", compresslevel=9) as f:  # 3 GiB announced, 9 MB of zeros inflated
        f.write(bytes([0, 0, 8, 3]) + (4_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        f.write(bytes(9 << 20))
    batch = tmp_path / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": _Call(np.ndarray, ((2 * 10**9, 3072), np.dtype("uint8"))), b"labels": [0]}, protocol=2))
    big = np.zeros((8000, 8000), np.uint16)
    big[3000:5000, 3500:3900] = 60000
    png16 = tmp_path / "big16.png"
    Image.fromarray(big).save(png16)
    for path in (gz, batch, png16):
        assert path.stat().st_size < 10 << 20
    code = (
        "import resource, sys\n"
        "from osr_infer.data.idx import read_idx, IdxFormatError\n"
        "from osr_infer.data.cifar import read_cifar_batch\n"
        "from osr_infer.data import DataError\n"
        "from osr_infer.preprocess import load_image, PREPROCESSING\n"
        "import dataclasses\n"
        "kind, path = sys.argv[1], sys.argv[2]\n"
        "try:\n"
        "    if kind == 'idx': read_idx(path)\n"
        "    elif kind == 'pickle': read_cifar_batch(path)\n"
        "    else: print(load_image(path, dataclasses.replace(PREPROCESSING, steps=('layout',))).max())\n"
        "except (IdxFormatError, DataError) as exc: print(exc)\n"
        # VmHWM: the peak of this address space (ru_maxrss can carry the forking parent's peak)
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)\n"
    )
    for kind, path in (("idx", gz), ("pickle", batch), ("png16", png16)):
        peak, output = _peak_rss_mb(code, kind, str(path))
        assert peak < 1024, (kind, peak, output)
        assert "Traceback" not in output


# --- signals: SIGKILL leaves no process and, after the next run, no temp file ------------------

def _start_and_kill_when(args: list[str], ready: Callable[[int], bool], cwd: Path, *, group: bool = False) -> int:
    """Start ``args`` in a session of its own, wait until ``ready(pgid)`` holds (it fails if the
    process ends or two minutes pass first), then SIGKILL the process (its group with ``group``)."""
    process = subprocess.Popen(args, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ready(process.pid):
        if process.poll() is not None or time.time() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{Path(args[0]).name} {'ended' if process.poll() is not None else 'ran two minutes'} before the moment to kill it came")
        time.sleep(0.02)
    (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
    process.wait()
    return process.pid


def _group_alive(pgid: int) -> list[str]:
    done = subprocess.run(["ps", "-e", "-o", "pgid=,stat=,args="], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if line.split()[0] == str(pgid) and not line.split()[1].startswith("Z")]


def test_sigkill_of_osr_infer_leaves_no_process_and_no_temp_file(model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(images / "00000.jpg", quality=90)
    for i in range(1, 3000):  # enough for the decoding workers to be busy for seconds when the kill comes
        os.link(images / "00000.jpg", images / f"{i:05d}.jpg")
    out = tmp_path / "out" / "r.csv"
    (tmp_path / "out").mkdir()
    out.write_text("previous run\n")
    exe = str(Path(sys.executable).with_name("osr-infer"))

    def working(pgid: int) -> bool:
        """The results' temp file exists and the two decoding workers run beside the main process."""
        return bool(list(out.parent.glob(".r.csv.*.tmp"))) and len(_group_alive(pgid)) >= 3

    pgid = _start_and_kill_when([exe, str(images), "--model", str(model), "-o", str(out), "--workers", "2"], working, tmp_path)
    deadline = time.time() + 2
    while _group_alive(pgid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _group_alive(pgid), _group_alive(pgid)
    assert out.read_text() == "previous run\n"  # the previous artefact is intact
    done = subprocess.run([exe, str(images / "00000.jpg"), "--model", str(model), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.csv"]  # the killed run's temp file is gone


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_osr_export_refuses_an_artefact_path_that_is_not_a_regular_file(trained_digits, tmp_path, kind):
    from typer.testing import CliRunner

    from osr_export.cli import app

    out = tmp_path / "export"
    out.mkdir()
    (tmp_path / "precious.onnx").write_bytes(b"keep")
    if kind == "symlink":
        (out / "model.onnx").symlink_to(tmp_path / "precious.onnx")
    else:
        os.mkfifo(out / "model.onnx")
    result = CliRunner().invoke(app, [str(trained_digits / "model.pt"), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == EXIT_ERROR, result.output
    assert "refusing to replace it" in result.output and "Traceback" not in result.output
    assert (tmp_path / "precious.onnx").read_bytes() == b"keep"


def test_osr_export_on_a_full_disk_is_one_line_and_leaves_nothing(trained_digits, tmp_path, monkeypatch):
    import errno

    from typer.testing import CliRunner

    from osr_export.cli import app
    from osr_infer import io

    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).endswith(".onnx"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(io.os, "replace", full)
    out = tmp_path / "export"
    result = CliRunner().invoke(app, [str(trained_digits / "model.pt"), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == EXIT_ERROR, result.output
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert not [p.name for p in out.iterdir()] if out.exists() else True


@pytest.mark.slow
def test_sigkill_of_osr_export_keeps_the_previous_model_and_the_next_run_cleans_up(trained_digits, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the previous export")
    exe = str(Path(sys.executable).with_name("osr-export"))
    args = [exe, str(trained_digits / "model.pt"), "--format", "all", "--out", str(out)]
    # killed while its artefacts are still temp files
    pgid = _start_and_kill_when(args, lambda _: bool(list(out.glob(".*.tmp"))), tmp_path, group=True)
    time.sleep(2)
    assert not _group_alive(pgid)
    assert (out / "model.onnx").read_bytes() == b"the previous export"
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
