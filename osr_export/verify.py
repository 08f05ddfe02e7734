"""Export-then-validate: compare an exported model with PyTorch before it is written (Polygraphy style).

For every format and every probe source, at batch size 1 and at the large batch size, the
report gives max and mean ``|Δlogits|``, max ``|Δprobs|`` and ``|Δscore|``, argmax agreement and
threshold-decision agreement, and a PASS/FAIL line, judged by the one parity rule of
`osr_infer.parity_rule`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from osr_export.runners import Runner, run_batched
from osr_infer.outputs import ModelOutputs
from osr_infer.parity_rule import DEFAULT_ATOL, SCORE_RTOL, ParityRow, compare

SHAPE_CHECK_BATCHES = (1, 7, 1024)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class FormatReport:
    format: str
    atol: float
    threshold: float
    rows: list[ParityRow] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out = [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]
        for row in self.rows:
            out += [f"{r} ({row.source}, batch {row.batch})" for r in row.failures(self.atol)]
        return out

    @property
    def passed(self) -> bool:
        return not self.failures and bool(self.rows)

    def total(self, attr: str, batch: int | None = None) -> int:
        return sum(getattr(r, attr) for r in self.rows if batch is None or r.batch == batch)

    def summary(self) -> str:
        if not self.rows:
            return f"FAIL {self.format}: " + "; ".join(self.failures or ["nothing was compared"])
        worst = max(r.max_abs_logits for r in self.rows)
        batches = sorted({r.batch for r in self.rows})
        n = sum(r.n for r in self.rows if r.batch == batches[-1])
        argmax = sum(r.argmax_disagree + r.argmax_tie_disagree for r in self.rows)
        decisions = sum(r.decision_disagree + r.near_threshold_disagree for r in self.rows)
        near = self.total("near_threshold", batches[-1])
        text = (
            f"{self.format}: max |Δlogits| {worst:.2e} (atol {self.atol:g}); {argmax} argmax and {decisions} decision "
            f"disagreements over {n:,} images at batch {' and '.join(str(b) for b in batches)}; {near} near the threshold"
        )
        if self.passed:
            return "PASS " + text
        failures = self.failures
        more = f" (+{len(failures) - 2} more)" if len(failures) > 2 else ""
        return "FAIL " + text + " -- " + "; ".join(failures[:2]) + more

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "passed": self.passed,
            "atol": self.atol,
            "score_rtol": SCORE_RTOL,
            "threshold": self.threshold,
            "summary": self.summary(),
            "failures": self.failures,
            "checks": [asdict(c) for c in self.checks],
            "rows": [asdict(r) for r in self.rows],
        }


def verify_format(
    name: str,
    *,
    runner: Runner,
    runner_single: Runner,
    reference: ModelOutputs,
    x: np.ndarray,
    sources: list[tuple[str, slice]],
    threshold: float,
    atol: float = DEFAULT_ATOL,
    batch_size: int = 1024,
    n_classes: int = 10,
    advance: Callable[[int], None] | None = None,
    extra_checks: list[Check] | None = None,
) -> FormatReport:
    """Compare ``runner`` with ``reference`` on ``x`` at batch 1 (``runner_single``) and ``batch_size``.

    ``sources`` names the slices of ``x`` that come from each probe source; the report has
    one row per (batch size, source). ``advance`` is called with the number of images done.
    """
    report = FormatReport(name, atol, threshold, checks=list(extra_checks or []))
    try:
        report.checks.append(_shape_check(runner, reference, x, n_classes, atol))
        for batch, run in ((1, runner_single), (min(batch_size, len(x)), runner)):
            got = run_batched(run, x, batch, advance)
            for source, part in sources:
                ref_part = reference[part]
                got_part = got[part]
                report.rows.append(ParityRow(name, batch, source, **compare(ref_part, got_part, threshold, atol)))
    except Exception as exc:  # noqa: BLE001 - any runtime failure of the exported model is a FAIL
        report.checks.append(Check("runs", False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    return report


def _shape_check(runner: Runner, reference: ModelOutputs, x: np.ndarray, n_classes: int, atol: float) -> Check:
    """The dynamic batch axis: the model runs at batch 1, 7 and 1024 with the right output shapes."""
    problems = []
    for batch in SHAPE_CHECK_BATCHES:
        index = np.arange(batch) % len(x)
        out = runner(x[index])
        bad = out.check_shapes(batch, n_classes)
        if bad:
            problems.append(f"batch {batch}: {bad}")
            continue
        diff = float(np.abs(out.logits.astype(np.float64) - reference.logits[index]).max())
        if not diff <= atol:
            problems.append(f"batch {batch}: max |Δlogits| {diff:.3g}")
    batches = ", ".join(str(b) for b in SHAPE_CHECK_BATCHES)
    return Check(f"runs at batch {batches}", not problems, "; ".join(problems) or "output shapes (N,C), (N,C), (N,)")


def _fmt(value: float) -> str:
    return f"{value:.2e}" if value else "0"


def parity_table(reports: list[FormatReport], title: str) -> Table:
    """One row per format, batch size and probe source; disagreements are counts (0 is the goal)."""
    table = Table(title=title, header_style="bold", title_justify="left", box=box.SIMPLE_HEAD)
    for col, justify in (
        ("format", "left"), ("batch", "right"), ("probe", "left"), ("n", "right"), ("max\n|Δlogits|", "right"),
        ("mean\n|Δlogits|", "right"), ("max\n|Δprobs|", "right"), ("max\n|Δscore|", "right"),
        ("argmax\ndiffer", "right"), ("decisions\ndiffer", "right"), ("near thr.\n(flipped)", "right"), ("", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for report in reports:
        for row in report.rows:
            argmax = f"{row.argmax_disagree}" + (f" +{row.argmax_tie_disagree} tie" if row.argmax_tie_disagree else "")
            table.add_row(
                report.format, str(row.batch), row.source, f"{row.n:,}", _fmt(row.max_abs_logits),
                _fmt(row.mean_abs_logits), _fmt(row.max_abs_probs), _fmt(row.max_abs_score), argmax,
                str(row.decision_disagree), f"{row.near_threshold} ({row.near_threshold_disagree})",
                "[red]FAIL[/]" if row.failures(report.atol) else "[green]ok[/]",
            )
    return table


def print_reports(console: Console, reports: list[FormatReport], title: str) -> None:
    console.print(parity_table(reports, title))
    for report in reports:
        for check in report.checks:
            mark = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
            console.print(f"  {mark} {report.format}: {check.name}: {check.detail}", highlight=False, soft_wrap=True)
    for report in reports:
        style = "bold green" if report.passed else "bold red"
        console.print(f"[{style}]{report.summary()}[/]", highlight=False, soft_wrap=True)
