"""Letters of other scripts as outliers (osr_train/script_glyphs.py): the shipped bank, how it is
drawn, and that it stays apart from the near-OOD evaluation sets and from digits."""

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import missing
from osr_infer.preprocess import PREPROCESSING
from osr_train import script_glyphs
from osr_train.outliers import OutlierGenerator
from osr_train.config import TrainConfig

DIGITS = tuple(str(d) for d in range(10))
REPO = Path(__file__).resolve().parents[1]


def _near_ood_sets() -> dict[str, str]:
    """The evaluation generator's characters per set, as it prints them (run, never imported)."""
    command = [sys.executable, str(REPO / "tools" / "make_near_ood.py"), "--print-sets"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True, encoding="utf-8").stdout)


def test_the_bank_holds_letters_of_the_training_scripts_only_never_an_evaluation_script_or_a_digit():
    with np.load(script_glyphs.BANK_PATH) as bank:
        masks, codes = bank["masks"], bank["codepoints"]
        names = set(bank["script_names"])
    assert masks.dtype == np.uint8 and masks.shape[1:] == (script_glyphs.BANK_SIDE,) * 2 and len(masks) == len(codes) > 1000
    assert names <= set(script_glyphs.TRAINING_SCRIPTS) and len(names) >= 40
    evaluation = set("".join(_near_ood_sets().values()))
    assert len(evaluation) > 200
    for code in codes:
        char = chr(int(code))
        assert char not in evaluation and char not in script_glyphs.AUDITED_LOOKALIKES
        assert unicodedata.category(char).startswith("L")  # letters: no digit (Nd), no mark, no symbol
        assert any(unicodedata.name(char).startswith(script + " ") for script in script_glyphs.TRAINING_SCRIPTS)
    # none of the evaluation sets' scripts, nor a script that descends from one, is a training script
    kin = ("GREEK", "CYRILLIC", "HEBREW", "ARABIC", "DEVANAGARI", "BENGALI", "THAI", "GEORGIAN", "ARMENIAN", "ETHIOPIC",
           "COPTIC", "GLAGOLITIC", "SYRIAC", "SAMARITAN", "LAO", "GUJARATI", "GURMUKHI", "TAI ")
    assert not any(script.startswith(k) for script in script_glyphs.TRAINING_SCRIPTS for k in kin)
    ink = (masks > 128).mean(axis=(1, 2))
    assert (ink > 0.02).all()  # no empty mask
    assert len({m.tobytes() for m in masks}) > 0.95 * len(masks)


def test_drawn_letters_are_strokes_white_on_black_varied_and_reproducible():
    a = script_glyphs.render_scripts(64, 28, np.random.default_rng(4))
    assert a.shape == (64, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, script_glyphs.render_scripts(64, 28, np.random.default_rng(4)))
    ink = (a > 100).mean(axis=(1, 2))
    assert (ink > 0.02).all() and (ink < 0.7).all()
    border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
    assert border.mean() < 10  # white on black, the letter inside the frame
    assert len({x.tobytes() for x in a}) == len(a)
    assert script_glyphs.render_scripts(0, 28, np.random.default_rng(0)).shape == (0, 28, 28)
    assert script_glyphs.render_scripts(5, 40, np.random.default_rng(0)).shape == (5, 40, 40)


def test_the_lookalike_test_finds_digits_of_an_unseen_font_and_passes_letters_no_reader_takes_for_a_digit():
    from PIL import ImageFont

    if (not all((script_glyphs.FONT_DIR.parent / name).is_file() for name in script_glyphs.REFERENCE_FONTS)
            or not Path("/usr/share/fonts/truetype/dejavu/DejaVuSerifCondensed-Bold.ttf").is_file()):
        missing("needs fonts-noto-core and fonts-dejavu-extra (apt-get install)")

    unseen = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSerifCondensed-Bold.ttf", 96)
    digits = np.stack([script_glyphs.mnist_views(d, unseen) for d in "0123456789"])
    assert script_glyphs.font_lookalike(digits).mean() >= 0.8
    tamil = ImageFont.truetype(str(script_glyphs.FONT_DIR / "NotoSansTamil-Regular.ttf"), 96)
    letters = np.stack([script_glyphs.mnist_views(c, tamil) for c in "ஜஷஹஞ"])
    assert not script_glyphs.font_lookalike(letters).any()


def test_script_outliers_are_drawn_only_when_asked_and_never_for_a_reader_of_another_script(monkeypatch):
    monkeypatch.setattr("osr_train.outliers.GLYPH_POOL", 64)  # small pools: the kinds, not the drawing, are tested here
    zeros = torch.zeros(8, 28, 28, dtype=torch.uint8)
    plain = OutlierGenerator(zeros, PREPROCESSING, use_photos=False, seed=0, class_names=DIGITS)
    assert "scripts" not in plain.kinds and len(plain.script_pool) == 0
    asked = OutlierGenerator(zeros, PREPROCESSING, use_photos=False, seed=0, class_names=DIGITS, script_weight=3.0)
    assert "scripts" in asked.kinds and float(asked.weights[asked.kinds.index("scripts")]) == 3.0
    assert asked.scripts(16).shape == (16, 1, 28, 28) and len(asked.script_pool) == 64
    # the mix otherwise unchanged: the other kinds keep their weights and order
    assert [k for k in asked.kinds if k != "scripts"] == plain.kinds
    kana = OutlierGenerator(zeros, PREPROCESSING, use_photos=False, seed=0, class_names=("あ", "い"), script_weight=3.0)
    assert "scripts" not in kana.kinds


def test_script_outliers_option_is_validated_and_reaches_the_training_config():
    assert TrainConfig.from_recipe("best", script_outliers=2.5).script_outliers == 2.5
    assert TrainConfig.from_recipe("best").script_outliers == 3.0  # the default recipe's
    seed = TrainConfig.from_recipe("seed")
    assert seed.script_outliers == 0.0 and seed.outlier_weight == 0.0  # the notebook has no outliers
    with pytest.raises(ValueError, match="^script_outliers must be"):
        TrainConfig.from_recipe("best", script_outliers=-1)
