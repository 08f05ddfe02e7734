"""The three commands' --help: one plain layout, and every option with a default shows it.

Rich help (boxes) once ate the ``[default: ...]`` texts of osr-infer's options, because rich
markup reads square brackets as tags; all three Typer apps now print plain help
(``rich_markup_mode=None``), where the brackets survive.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

#: Options that take a value but have no default at all: leaving them out means "not asked for".
NO_DEFAULT = {"--unknown", "--parity", "--report"}
BOX_CHARACTERS = "╭╮╰╯│─┃━"


def _apps():
    from osr_export.cli import app as export_app
    from osr_infer.cli import app as infer_app
    from osr_infer.serve.cli import app as serve_app
    from osr_train.cli import app as train_app

    return {"osr-infer": infer_app, "osr-export": export_app, "osr-train": train_app, "osr-serve": serve_app}


def _help(command: str, *args: str) -> str:
    result = CliRunner().invoke(_apps()[command], [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


ALL_HELP = [
    ("osr-infer",), ("osr-export",), ("osr-train",), ("osr-serve",),
    ("osr-train", "baseline"), ("osr-train", "siamese"), ("osr-train", "evaluate"), ("osr-train", "sample-images"),
]


def option_blocks(text: str) -> dict[str, tuple[str, str]]:
    """``{--option: (its names and metavar, its whole help entry)}`` from the Options section of a plain help text."""
    section = text.split("\nOptions:\n", 1)[1]
    blocks: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        if line.startswith("  -"):
            head = re.split(r"\s{2,}", line.strip())[0]
            current = next(t for t in head.replace(",", " ").split() if t.startswith("--"))
            blocks[current] = [head, line]
        elif line.startswith("   ") and current is not None:
            blocks[current][1] += "\n" + line
        else:
            current = None  # the epilog
    return {name: (head, " ".join(block.split())) for name, (head, block) in blocks.items()}


def _takes_a_value_or_pair(head: str) -> bool:
    """``--batch-size <int>``, ``--unknown SOURCE``, ``--progress / --no-progress``; not a bare ``--download``."""
    return any(not t.startswith("-") for t in head.replace(",", " ").split())


@pytest.mark.parametrize("argv", ALL_HELP, ids=" ".join)
def test_help_is_plain_and_every_default_is_shown(argv):
    text = _help(*argv)
    assert text.startswith("Usage: "), text[:200]
    assert "\nOptions:\n" in text
    assert not set(BOX_CHARACTERS) & set(text), "rich boxed help: use rich_markup_mode=None like the other commands"
    blocks = option_blocks(text)
    assert "--help" in blocks and (len(blocks) > 1 or argv == ("osr-train",))  # osr-train alone lists its commands
    for name, (head, block) in blocks.items():
        if name in NO_DEFAULT or not _takes_a_value_or_pair(head):
            continue
        assert "[default:" in block, f"{' '.join(argv)} {name} does not show its default: {block}"


def test_the_defaults_that_matter_are_shown():
    infer = {name: block for name, (_, block) in option_blocks(_help("osr-infer")).items()}
    assert "[default: 256]" in infer["--batch-size"]
    assert "[default: 0.0001]" in infer["--atol"]
    assert "[default: artifacts/siamese/model.onnx where it exists" in infer["--model"] and "shipped" in infer["--model"]
    assert "[default: CPU count]" in infer["--workers"]
    assert "[default: $OSR_DATA_DIR or ./data]" in infer["--data-dir"]
    # --threshold is explained as the top softmax probability, --score-threshold as the model's own score.
    assert "top softmax probability" in infer["--threshold"] and "(0, 1)" in infer["--threshold"]
    assert "model's own score" in infer["--score-threshold"] and "not with --threshold" in infer["--score-threshold"]
    export = {name: block for name, (_, block) in option_blocks(_help("osr-export")).items()}
    assert "[default: 0.0001]" in export["--atol"] and "[default: 1024]" in export["--probe-size"]
    assert "[default: the checkpoint's folder]" in export["--out"]
    train = {name: block for name, (_, block) in option_blocks(_help("osr-train", "siamese")).items()}
    assert "[default: 0]" in train["--seed"] and "[default: the recipe's" in train["--batch-size"]
    # The recipes' values are quoted from the recipes themselves, and one word names each threshold.
    from osr_train.config import TrainConfig

    best, seed = TrainConfig.from_recipe("best"), TrainConfig.from_recipe("seed")
    assert f"seed: {seed.epochs}; best: {best.epochs}" in re.sub(r"\s+", " ", train["--epochs"])
    assert "--score-threshold" in train and "--threshold" not in train and "--score-threshold" in export


def test_the_three_commands_share_one_layout():
    """Same sections, same indentation: Usage line, two-space description, an Options list of entries."""
    texts = {argv: _help(*argv) for argv in [("osr-infer",), ("osr-export",), ("osr-train", "siamese")]}
    shapes = set()
    for text in texts.values():
        lines = text.splitlines()
        assert lines[0].startswith("Usage: ") and lines[1] == "" and lines[2].startswith("  ") and not lines[2].startswith("   ")
        sections = [line for line in lines if re.fullmatch(r"[A-Z]\w+:", line)]
        shapes.add(tuple(s for s in sections if s != "Arguments:"))
    assert shapes == {("Options:",)}
