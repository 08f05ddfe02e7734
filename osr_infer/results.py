"""The results file: one row per classified image, CSV or JSON Lines, written atomically.

Fields: ``path`` (the file, or ``<source>:<index>`` for an in-memory data set), ``label``
(the class name, or ``unknown``), ``probability`` (top softmax probability) and ``score``
(the model's own known-vs-unknown score, its ``score`` output). ``label`` is the class where
the run's decision accepts: ``probability >= P`` with ``--threshold P``, else
``score >= T`` (the model's threshold, or ``--score-threshold T``); the run's report and its
first line on stderr say which rule it used. Rows are
streamed to a temporary file beside the target, which replaces the target only when the
run completes: an interrupted or failed run never leaves a truncated results file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Sequence

import numpy as np

from osr_infer.errors import OutputError, ParameterError
from osr_infer.io import OutputPathError, atomic_path, check_output_target, check_writable_dir, escape_undecodable, stale_temps

FIELDS = ("path", "label", "probability", "score")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
#: Rows a Parquet row group holds (the writer keeps at most this many in memory).
PARQUET_ROWS = 65_536


def check_output(path: str | Path) -> Path:
    """Validate ``output`` before any work: a known suffix in a writable folder."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ParameterError("output", f"output {path}: unsupported format {path.suffix or '(no suffix)'!r}; use .csv, .jsonl or .parquet")
    if path.is_dir():
        raise ParameterError("output", f"output {path} is a folder; give a file name ending in .csv, .jsonl or .parquet")
    if FORMATS[path.suffix.lower()] == "parquet":
        _pyarrow()  # a missing extra is said before any work
    try:
        check_output_target(path)
    except OutputPathError as exc:
        raise OutputError(f"`output` {exc}") from None
    try:
        check_writable_dir(path.parent if str(path.parent) else Path("."))
    except PermissionError as exc:
        raise OutputError(f"`output`: {exc}") from None
    return path


#: A CSV cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A file name or label as a CSV cell: bytes that are not UTF-8 as ``\\xNN`` (a name from a
    foreign file system cannot abort the run), and a leading ``= + - @`` (a formula when the
    file is opened in a spreadsheet) quoted with ``'``, as OWASP recommends."""
    text = escape_undecodable(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _number(value: float) -> str:
    return f"{value:.9g}"  # 9 significant digits round-trip a float32 exactly


class ResultsWriter:
    """Context manager: ``write`` batches of rows, committed on a clean exit."""

    def __init__(self, path: str | Path, metadata: dict[str, str] | None = None, prefix: Interrupted | None = None) -> None:
        """``metadata``: key-value pairs a Parquet file carries (the model's SHA-256, its
        threshold); CSV and JSON lines have no place for them. ``prefix``: the rows of an
        interrupted run (`read_interrupted`), written first, as they were."""
        self.path = check_output(path)
        self.format = FORMATS[self.path.suffix.lower()]
        self.metadata = dict(metadata or {})
        self.prefix = prefix
        self.rows = 0
        self._stack = ExitStack()
        self._pending: list[tuple[Sequence[str], Sequence[str], np.ndarray, np.ndarray]] = []

    def __enter__(self) -> "ResultsWriter":
        tmp = self._stack.enter_context(atomic_path(self.path))
        if self.format == "parquet":
            pa, pq = _pyarrow()
            schema = pa.schema([("path", pa.string()), ("label", pa.string()), ("probability", pa.float32()), ("score", pa.float32())],
                               metadata={k.encode(): v.encode() for k, v in self.metadata.items()})
            self._parquet = self._stack.enter_context(pq.ParquetWriter(tmp, schema))
            self._stack.callback(self._flush_parquet)  # runs before the writer closes (callbacks unwind last-in first-out)
            return self
        self._fh = self._stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
        if self.format == "csv":
            self._csv = csv.writer(self._fh, lineterminator="\n")
            self._csv.writerow(FIELDS)
        if self.prefix is not None:
            self._fh.write(self.prefix.text)
            self.rows = self.prefix.rows
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        return bool(self._stack.__exit__(exc_type, exc, tb))

    def write(self, paths: Sequence[str], labels: Sequence[str], probability: np.ndarray, score: np.ndarray) -> None:
        if self.format == "parquet":
            self._pending.append((paths, labels, probability, score))
            self.rows += len(paths)
            if sum(len(p[0]) for p in self._pending) >= PARQUET_ROWS:
                self._flush_parquet()
            return
        probability_values = [_number(v) for v in np.asarray(probability, dtype=np.float64).tolist()]
        score_values = np.asarray(score, dtype=np.float64).tolist()
        if self.format == "csv":
            self._csv.writerows(zip(map(csv_cell, paths), map(csv_cell, labels), probability_values, [_number(v) for v in score_values], strict=True))
        else:
            scores = [_number(v) if math.isfinite(v) else "null" for v in score_values]
            probs = [p if p not in ("nan", "inf", "-inf") else "null" for p in probability_values]
            self._fh.write(
                "".join(
                    f'{{"path": {json.dumps(p)}, "label": {json.dumps(lab)}, "probability": {pr}, "score": {sc}}}\n'
                    for p, lab, pr, sc in zip(paths, labels, probs, scores, strict=True)
                )
            )
        self._fh.flush()  # whole batches reach the file: what a killed run leaves is resumable
        self.rows += len(paths)


    def _flush_parquet(self) -> None:
        """The rows held so far as one row group."""
        if not self._pending:
            return
        pa, _ = _pyarrow()
        table = pa.table({
            "path": [escape_undecodable(p) for part in self._pending for p in part[0]],
            "label": [label for part in self._pending for label in part[1]],
            "probability": np.concatenate([np.asarray(part[2], dtype=np.float32) for part in self._pending]),
            "score": np.concatenate([np.asarray(part[3], dtype=np.float32) for part in self._pending]),
        }, schema=self._parquet.schema)
        self._parquet.write_table(table)
        self._pending = []


@dataclass(frozen=True)
class Interrupted:
    """What a killed run wrote before it died: ``rows`` rows (a whole number of batches) as
    ``text``, the last of them for the item ``last_id`` (as the file writes ids)."""

    text: str
    rows: int
    last_id: str


def read_interrupted(path: str | Path, batch_size: int) -> Interrupted | None:
    """The rows of the largest temp file that a killed run (its process gone) left for
    ``path``, cut to whole batches of ``batch_size`` (the rest is classified again, in the same
    batches as an uninterrupted run, so its scores are the same to the last bit); None when
    no such file holds a row. A complete ``path`` from a finished run is not resumed."""
    path = Path(path)
    if FORMATS.get(path.suffix.lower()) == "parquet":
        raise ParameterError("resume", "`resume` continues .csv and .jsonl results: a Parquet file cannot be read before it is complete")
    temps = sorted(stale_temps(path), key=lambda p: p.stat().st_size, reverse=True)
    if not temps:
        return None
    text = temps[0].read_text(encoding="utf-8", errors="surrogateescape")
    text = text[: text.rfind("\n") + 1]  # a line cut by the kill is dropped
    if FORMATS[path.suffix.lower()] == "csv":
        header, _, body = text.partition("\n")
        if header != ",".join(FIELDS):
            return None
        rows = _csv_records(body)
        records = [record for record, _ in rows]
        keep = len(records) // batch_size * batch_size
        if not keep:
            return None
        return Interrupted("".join(line for _, line in rows[:keep]), keep, records[keep - 1][0])
    lines = []
    for line in text.splitlines(keepends=True):
        try:
            lines.append((json.loads(line)["path"], line))
        except (ValueError, KeyError, TypeError):
            break
    keep = len(lines) // batch_size * batch_size
    if not keep:
        return None
    return Interrupted("".join(line for _, line in lines[:keep]), keep, lines[keep - 1][0])


def _csv_records(body: str) -> list[tuple[list[str], str]]:
    """Each CSV record of ``body`` (whole lines) with its own text: a line with an odd number of
    quotes opens a quoted field (a path holding a newline) that the next lines close."""
    out: list[tuple[list[str], str]] = []
    chunk = ""
    for line in body.split("\n")[:-1]:
        chunk += line + "\n"
        if chunk.count('"') % 2:
            continue
        try:
            records = list(csv.reader(io.StringIO(chunk)))
        except csv.Error:
            break
        if len(records) != 1 or len(records[0]) != len(FIELDS):
            break  # not a row this writer wrote: keep what came before
        out.append((records[0], chunk))
        chunk = ""
    return out


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, or an OutputError saying which extra installs them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise OutputError("Parquet output needs pyarrow: pip install 'osr-toolkit[parquet]' (or give a .csv or .jsonl `output`)") from None
    return pyarrow, pyarrow.parquet


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a results file back (tests, and anyone post-processing a run)."""
    path = Path(path)
    if FORMATS.get(path.suffix.lower()) == "parquet":
        _, pq = _pyarrow()
        return [{**row, "probability": float(row["probability"]), "score": float(row["score"])}
                for row in pq.read_table(path).to_pylist()]
    with open(path, newline="", encoding="utf-8") as fh:
        if FORMATS.get(path.suffix.lower()) == "jsonl":
            return [json.loads(line) for line in fh if line.strip()]
        rows = list(csv.DictReader(fh))
    for row in rows:  # written with 9 significant digits: exactly the float32 values the model gave
        row["probability"], row["score"] = float(np.float32(row["probability"])), float(np.float32(row["score"]))
    return rows
