"""The repository's own rules: the product's tests, the speed benchmarks, the quality experiments
and the generators of evaluation sets stand apart, and none imports another."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APART = ("benchmarks", "experiments", "tools")


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, wherever the import statement is, and
    the names given to ``importlib.import_module`` or loaded from a ``.py`` file by its path."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "spec_from_file_location", "run_path"):
            names.update(Path(c.value).stem for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return names


def _modules_of(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py")}


def test_tests_import_no_benchmark_experiment_or_tool():
    others = set().union(*(_modules_of(REPO / name) for name in APART))
    for path in (REPO / "tests").glob("*.py"):
        wrong = _imported_modules(path) & others
        assert not wrong, f"{path.name} imports {sorted(wrong)}: run the script as a command instead"


def test_benchmarks_experiments_and_tools_import_no_test_helper():
    helpers = _modules_of(REPO / "tests") | {"tests"}
    for name in APART:
        for path in (REPO / name).glob("*.py"):
            wrong = _imported_modules(path) & helpers
            assert not wrong, f"{name}/{path.name} imports {sorted(wrong)} from tests/"
            assert '/ "tests"' not in path.read_text(encoding="utf-8"), f"{name}/{path.name} puts tests/ on sys.path"


def test_each_folder_holds_its_own_kind():
    """Speed in benchmarks/ (results in benchmarks/results/), studies in experiments/ (results
    in experiments/results/), generators in tools/."""
    assert {p.stem for p in (REPO / "tools").glob("*.py")} == {"make_letters", "make_near_ood", "make_realistic"}
    speed = _modules_of(REPO / "benchmarks")
    results = {p.stem for p in (REPO / "benchmarks" / "results").glob("*.json")}
    orphans = {r for r in results if not any(r == s or r.startswith(s + "_") for s in speed)}
    assert not orphans, f"benchmarks/results/ holds results of no speed benchmark: {sorted(orphans)}"
    studies = {p.stem for p in (REPO / "experiments" / "results").glob("*.json")}
    assert not {r for r in studies if any(r == s or r.startswith(s + "_") for s in speed)}, "a speed result among the studies"
