"""Runs split over machines (``--shard I/N``) and results as Parquet: N shard runs classify every
file exactly once and give one run's rows; a Parquet file holds the rows a CSV does, and says
which model decided them."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export_testing import cifar_like_rgb
from infer_testing import digit_images, invoke
from osr_infer.errors import EXIT_ERROR, EXIT_OK
from osr_infer.model import shipped_model_path
from osr_infer.results import read_results


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Digits and photos in nested folders: 70 images."""
    root = tmp_path_factory.mktemp("tree") / "images"
    for k, image in enumerate(digit_images(40, seed=31)[0]):
        folder = root / "digits" / f"part{k % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k:03d}.png")
    (root / "photos").mkdir()
    for k, rgb in enumerate(cifar_like_rgb(30, seed=31)):
        Image.fromarray(rgb).save(root / "photos" / f"{k:03d}.jpg", quality=90)
    return root


def _run(*args: object) -> list[dict]:
    result = invoke([*args, "--model", shipped_model_path(), "--workers", "0", "--no-progress"])
    assert result.exit_code == EXIT_OK, result.output
    out = next(Path(a) for a in args if str(a).endswith((".csv", ".parquet", ".jsonl")))
    return read_results(out)


def test_the_shards_together_are_one_run(tree, tmp_path):
    whole = _run(tree, "-o", tmp_path / "all.csv")
    shards = [_run(tree, "--shard", f"{i}/3", "-o", tmp_path / f"s{i}.csv") for i in range(3)]
    paths = [row["path"] for rows in shards for row in rows]
    assert sorted(paths) == sorted(row["path"] for row in whole) and len(set(paths)) == len(whole) == 70
    assert all(len(rows) >= 10 for rows in shards)  # the hash spreads 70 files over three shards
    by_path = {row["path"]: row for row in whole}
    for rows in shards:
        assert [r["path"] for r in rows] == sorted((r["path"] for r in rows), key=[row["path"] for row in whole].index)  # input order
        for row in rows:
            assert row["label"] == by_path[row["path"]]["label"]
            assert row["score"] == pytest.approx(by_path[row["path"]]["score"], rel=1e-6, abs=1e-6)  # batches differ: last bits


def test_a_file_keeps_its_shard_wherever_the_tree_is_and_whatever_pythons_hash_seed(tree, tmp_path):
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tree, moved)
    code = ("import sys, json; from osr_infer import Model\n"
            "run = Model.load().predict_files(sys.argv[1], workers=0, shard=(1, 3))\n"
            "print(json.dumps([p.split(sys.argv[1])[1] for b in run for p in b.paths]))")
    members = []
    for root, seed in ((tree, "1"), (moved, "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        members.append(done.stdout.strip().splitlines()[-1])
    assert members[0] == members[1] and len(members[0]) > 10


def test_an_in_memory_data_set_is_sharded_by_position_and_keeps_its_ids():
    from osr_infer import Model

    model = Model.load()
    whole = [p for batch in model.predict_files("digits", workers=0) for p in batch.paths]
    parts = [[p for batch in model.predict_files("digits", workers=0, shard=(i, 2)) for p in batch.paths] for i in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(whole) and not set(parts[0]) & set(parts[1])
    assert all(p.startswith("digits") and p.split(":")[-1].isdigit() for p in parts[1])


@pytest.mark.parametrize("shard", ["3/3", "-1/3", "1", "a/b", "0/0"])
def test_a_bad_shard_is_one_line_naming_the_option(tree, shard):
    result = invoke([tree, "--model", shipped_model_path(), "--shard", shard])
    assert result.exit_code == EXIT_ERROR, result.output
    assert "--shard" in result.stderr and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_an_empty_shard_writes_the_header_and_succeeds(tree, tmp_path):
    one = tree / "photos" / "000.jpg"
    empty = next(i for i in range(4) if not _run(one, "--shard", f"{i}/4", "-o", tmp_path / f"x{i}.csv"))
    assert (tmp_path / f"x{empty}.csv").read_text() == "path,label,probability,score\n"


def test_parquet_holds_the_csv_rows_and_names_the_model_and_its_threshold(tree, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    csv_rows = _run(tree, "-o", tmp_path / "r.csv")
    parquet_rows = _run(tree, "-o", tmp_path / "r.parquet")
    assert parquet_rows == csv_rows  # the same float32 values, the same order
    meta = {k.decode(): v.decode() for k, v in pq.read_schema(tmp_path / "r.parquet").metadata.items()}
    from osr_infer import Model

    model = Model.load()
    assert meta["osr.model_sha256"] == hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
    assert float(meta["osr.threshold"]) == np.float64(model.threshold) and meta["osr.decision"] == model.decision_rule
    assert pq.read_table(tmp_path / "r.parquet").schema.field("score").type == "float"


def test_parquet_row_groups_bound_memory_and_keep_every_row(tree, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    from osr_infer import results

    monkeypatch.setattr(results, "PARQUET_ROWS", 16)  # a row group every 16 rows: at most that many held
    rows = _run(tree, "-o", tmp_path / "r.parquet", "--batch-size", "8")
    assert len(rows) == 70 and pq.ParquetFile(tmp_path / "r.parquet").metadata.num_row_groups == 5


def test_parquet_without_pyarrow_says_which_extra_before_any_work(tree, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    result = invoke([tree, "--model", shipped_model_path(), "-o", tmp_path / "r.parquet"])
    assert result.exit_code == EXIT_ERROR and "osr-toolkit[parquet]" in result.stderr, result.output
    assert not list(tmp_path.iterdir())


# --- --resume: a killed run continues where its output stops --------------------------------------

@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """2,400 images (hard links of a few): enough for a run to be killed half-way."""
    root = tmp_path_factory.mktemp("many") / "imgs"
    root.mkdir()
    seeds = [root / "seed-digit.png", root / "seed-photo.jpg"]
    Image.fromarray(digit_images(1, seed=41)[0][0]).save(seeds[0])
    Image.fromarray(cifar_like_rgb(1, seed=41)[0]).resize((160, 120)).save(seeds[1], quality=90)
    for i in range(2400):
        os.link(seeds[i % 2], root / f"{i:05d}{seeds[i % 2].suffix}")
    for seed in seeds:
        seed.unlink()
    return root


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_killed_run_resumed_equals_an_uninterrupted_run_byte_for_byte(many, tmp_path, suffix):
    import signal
    import time

    exe = str(Path(sys.executable).with_name("osr-infer"))
    common = ["--model", str(shipped_model_path()), "--batch-size", "64", "--workers", "1", "--no-progress"]
    whole, part = tmp_path / f"whole{suffix}", tmp_path / f"part{suffix}"
    assert subprocess.run([exe, str(many), "-o", str(whole), *common], capture_output=True, timeout=300).returncode == EXIT_OK
    process = subprocess.Popen([exe, str(many), "-o", str(part), *common], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, written = time.time() + 120, 0
    while time.time() < deadline and process.poll() is None:  # kill it once a few batches are on disk, with a row cut in two maybe
        temps = list(tmp_path.glob(f".{part.name}.*.tmp"))
        written = temps[0].read_bytes().count(b"\n") if temps else 0
        if written > 200:
            break
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 200 < written < 2400 and not part.exists(), f"the run was not killed half-way ({written} lines written)"
    resumed = subprocess.run([exe, str(many), "-o", str(part), *common, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    note = next(line for line in resumed.stderr.splitlines() if "resuming" in line)  # note: resuming F: N rows kept ...
    kept = int(note.split(f"{part}: ")[1].split()[0].replace(",", ""))
    assert kept % 64 == 0 and 0 < kept < 2400  # whole batches kept; the rest classified again, in the same batches
    assert part.read_bytes() == whole.read_bytes()  # nothing lost, nothing twice, the same scores to the last bit
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_needs_a_resumable_output(tree, tmp_path):
    for extra, message in (([], "--resume continues the results file"), (["-o", tmp_path / "r.parquet"], "Parquet file cannot be read")):
        result = invoke([tree, "--model", shipped_model_path(), "--resume", *extra])
        assert result.exit_code == EXIT_ERROR and message in result.stderr and "--resume" in result.stderr, result.output
    fresh = invoke([tree, "--model", shipped_model_path(), "--resume", "-o", tmp_path / "r.csv", "--workers", "0", "--no-progress"])
    assert fresh.exit_code == EXIT_OK and "nothing to resume" in fresh.stderr and len(read_results(tmp_path / "r.csv")) == 70


def test_the_interrupted_rows_are_cut_to_whole_batches_and_quoted_paths_survive(tmp_path):
    from osr_infer.results import read_interrupted

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that has ended: its temp file is an interrupted run's
    rows = [f'"a,{k}\nb.png",3,0.5,1.25\n' if k == 2 else f"img{k}.png,unknown,0.25,0.125\n" for k in range(7)]
    (tmp_path / f".r.csv.{pid}.x1.tmp").write_text("path,label,probability,score\n" + "".join(rows) + "img7.png,3,0.")
    found = read_interrupted(tmp_path / "r.csv", batch_size=3)
    assert found is not None and found.rows == 6 and found.text == "".join(rows[:6]) and found.last_id == "img5.png"
    assert read_interrupted(tmp_path / "r.csv", batch_size=8) is None  # not one whole batch: start again
    assert read_interrupted(tmp_path / "other.csv", batch_size=1) is None
