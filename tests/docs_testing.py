"""The code blocks of the README and of docs/: found by the marker before them.

Every ``python`` and ``bash`` block is run by ``tests/test_docs.py``, unless the comment line
before it says otherwise: ``<!-- illustrative: REASON -->`` (not run, for the reason given) or
``<!-- snippet: NAME -->`` (run by another test, which reads it with :func:`snippet`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_LANGUAGES = ("python", "bash")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>illustrative|snippet):\s*(?P<text>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # "illustrative" or "snippet"
    marker_text: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}"


def documents() -> list[Path]:
    """The README, the changelog and every page of the docs site."""
    return [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path``, with the marker line before each (blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, start = opening["indent"], i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{path.relative_to(REPO)}:{i + 1}: a code block that never closes")
        code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[start + 1 : end]) + "\n"
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = _MARKER.match(lines[before]) if before >= 0 else None
        found.append(Block(path, start + 1, opening["lang"], code, marker["kind"] if marker else None, marker["text"] if marker else ""))
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [b for path in documents() if path.is_file() for b in blocks(path)]


def snippet(name: str) -> Block:
    """The block marked ``<!-- snippet: NAME -->`` (exactly one in the README and docs)."""
    marked = [b for b in all_blocks() if b.marker == "snippet" and b.marker_text == name]
    assert len(marked) == 1, f"expected one block marked snippet: {name}, found {[b.where for b in marked]}"
    return marked[0]
