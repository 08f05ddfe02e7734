"""Every Python and shell block of the README and of docs/ runs, or says why not.

A block runs here in a folder holding what the docs name (``digit.png``, ``photo.jpg``,
``images/``, ``photos/``, ``model.onnx``: the shipped model), with the installed commands on the
PATH; it must exit 0 without a traceback. A block marked ``<!-- illustrative: REASON -->`` is not
run (it trains for minutes, or needs the real data sets) and must say why; one marked
``<!-- snippet: NAME -->`` is run by the test that names it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from docs_testing import REPO, RUN_LANGUAGES, Block, all_blocks

BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.language in RUN_LANGUAGES and b.marker is None]
#: The first word of a command line: a block of them must say it is shell, or it escapes this test.
COMMANDS = re.compile(r"^\s*(\$ )?(osr-train|osr-export|osr-infer|python3?|pip|make|export|apt-get|npm)\b", re.M)


def test_the_docs_have_code_to_check():
    assert len(RUNNABLE) >= 6 and any(b.file.name == "README.md" for b in BLOCKS)
    assert {b.file.name for b in RUNNABLE} >= {"api.md", "getting-started.md"}


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "illustrative"], ids=lambda b: b.where)
def test_an_illustrative_block_says_why_it_is_not_run(block: Block):
    assert len(block.marker_text.split()) >= 4, f"{block.where}: give the reason the block is not run"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "snippet"], ids=lambda b: b.where)
def test_a_snippet_is_run_by_the_test_that_names_it(block: Block):
    users = [p for p in (REPO / "tests").glob("test_*.py") if f'snippet("{block.marker_text}")' in p.read_text(encoding="utf-8")]
    users += [p for p in (REPO / "tests").glob("*_testing.py") if f'snippet("{block.marker_text}")' in p.read_text(encoding="utf-8")]
    assert users, f"{block.where}: no test runs the block marked snippet: {block.marker_text}"
    assert block.language in RUN_LANGUAGES


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language not in RUN_LANGUAGES], ids=lambda b: b.where)
def test_commands_are_in_blocks_that_say_they_are_shell(block: Block):
    """A block of commands fenced as ``text`` (or nothing) would never run: only examples of
    output and synopses may be."""
    lines = [line for line in block.code.splitlines() if COMMANDS.match(line)]
    synopsis = block.code.lstrip().startswith(("osr-infer SOURCE", "osr-export [")) or block.code.lstrip().startswith("$ ")
    assert not lines or synopsis, f"{block.where}: commands in a {block.language or 'plain'} block: {lines[:2]}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A folder with the files the docs' examples name."""
    from export_testing import cifar_like_rgb
    from infer_testing import digit_images
    from osr_infer.model import shipped_model_path

    root = tmp_path_factory.mktemp("docs")
    digits, _ = digit_images(6, seed=21)
    Image.fromarray(digits[0]).save(root / "digit.png")
    photo = Image.fromarray(cifar_like_rgb(1, seed=21)[0]).resize((320, 240))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the reader turns it upright
    photo.save(root / "photo.jpg", quality=90, exif=exif)
    (root / "images").mkdir()
    for k, image in enumerate(digits[:5]):
        Image.fromarray(image).save(root / "images" / f"{k}.png")
    (root / "photos").mkdir()
    for k, rgb in enumerate(cifar_like_rgb(4, seed=22)):
        Image.fromarray(rgb).save(root / "photos" / f"photo-{k}.jpg", quality=90)
    (root / "photos" / "notes.png").write_text("not an image\n")  # reported and skipped
    shutil.copyfile(shipped_model_path(), root / "model.onnx")
    return root


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.where)
def test_the_block_runs_as_written(block: Block, sandbox: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("OSR_DATA_DIR", None)  # the examples say where their data is
    command = [sys.executable, "-c", block.code] if block.language == "python" else ["bash", "-euo", "pipefail", "-c", block.code]
    done = subprocess.run(command, cwd=sandbox, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, f"{block.where} failed ({done.returncode}):\n{output[-3000:]}"
    assert done.stdout.strip(), f"{block.where} printed nothing: an example should show its result"
