"""What a run prints: per-image rows for small runs, a summary for large ones, and metrics.

Metrics come from `osr_infer.metrics`, the same code that scored the model in
training: for labelled sources (knowns from MNIST/digits, unknowns from CIFAR-10 or any
``--unknown`` source) closed-set accuracy, known acceptance, unknown rejection and the
11-class open-set accuracy, per source and over everything labelled. They are measured on the
quantity the run decided on (the top softmax probability with ``--threshold``, else the
model's score) at the run's threshold, so that they describe the labels the run gave.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from osr_infer.cli_support import THRESHOLD_FLAGS as FLAGS, printable
from osr_infer.pipeline import InferenceRun
from osr_infer.metrics import ood_report, open_set_report
from osr_infer.spec import UNKNOWN, UNKNOWN_NAME

#: Runs up to this many images get one table row per image.


def labelled_metrics(labels: np.ndarray, pred: np.ndarray, score: np.ndarray, threshold: float, n_classes: int) -> dict[str, Any] | None:
    """Open-set metrics over the labelled rows (a class index, or UNKNOWN); None if there are none."""
    known, unknown = labels >= 0, labels == UNKNOWN
    if not known.any() and not unknown.any():
        return None
    if known.any():
        report = open_set_report(labels[known], pred[known], score[known], pred[unknown], score[unknown], threshold, n_classes)
        report.pop("confusion_matrix"), report.pop("confusion_matrix_open_set")
        if unknown.any():
            report["ood"] = ood_report(score[known], score[unknown])
        return report
    rejection = float(np.mean(score[unknown] < threshold))  # unknowns only: rejecting is the right answer
    return {
        "threshold": float(threshold), "n_known": 0, "n_unknown": int(unknown.sum()), "closed_set_accuracy": None,
        "known_acceptance": None, "unknown_rejection": rejection, "open_set_accuracy": rejection,
    }


def run_metrics(run: InferenceRun) -> dict[str, dict[str, Any]]:
    """``{source name: metrics}`` for each labelled source, plus ``"all labelled"`` when several.

    Measured on the run's decision (`InferenceRun.decision_values` at ``model.threshold``),
    AUROC included; each entry names it as ``decision`` (e.g. ``msp >= 0.999``).
    """
    labels, p, thr = run.true_labels(), run.predictions, run.model.threshold
    values = run.decision_values()
    out: dict[str, dict[str, Any]] = {}
    for s, source in enumerate(run.sources):
        mask = p.source == s
        metrics = labelled_metrics(labels[mask], p.pred[mask], values[mask], thr, len(run.model.class_names))
        if metrics is not None:
            out[source.name] = metrics
    if len(out) > 1:
        overall = labelled_metrics(labels, p.pred, values, thr, len(run.model.class_names))
        assert overall is not None  # two labelled sources or more
        out["all labelled"] = overall
    for metrics in out.values():
        metrics["decision"] = run.model.decision_rule
    return out


def label_counts(run: InferenceRun) -> dict[str, dict[str, int]]:
    """``{source name: {label: count}}`` over the class names and ``unknown``."""
    names = [*run.model.class_names, UNKNOWN_NAME]
    p = run.predictions
    open_pred = np.where(p.known, p.pred, len(run.model.class_names))
    return {
        source.name: dict(zip(names, np.bincount(open_pred[p.source == s], minlength=len(names)).tolist(), strict=True))
        for s, source in enumerate(run.sources)
    }


def _images(n: int) -> str:
    return f"{n:,} image{'' if n == 1 else 's'}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def decision_text(run: InferenceRun) -> str:
    """``known when msp >= 0.999 (--threshold)``: the rule behind every label of the run."""
    return f"known when {run.model.decision_rule} ({run.model.origin_label(FLAGS)})"


def print_report(run: InferenceRun, console: Console, *, list_up_to: int, output: str | None = None) -> None:
    """The run as a person reads it: one row a file for up to ``list_up_to`` files, else the
    counts per label; the metrics of labelled sources; the speed; where the rows were written."""
    p = run.predictions
    rule = decision_text(run)
    if 0 < len(p) <= list_up_to:
        # One row a file, as a person reads it: what it is, how sure, and the decision.
        quantity = "probability" if run.model.decides_on_probs else run.model.decision_score
        values = p.probability if run.model.decides_on_probs else p.score
        table = Table(title=_images(len(p)), caption=escape(rule), show_header=True, header_style="bold")
        for name, justify in (("file", "left"), ("label", "left"), (quantity, "right"), ("decision", "left")):
            table.add_column(escape(name), justify=justify, overflow="fold")  # type: ignore[arg-type]  # rich wants a Literal
        labels = run.open_set_labels()
        names = run.model.class_names
        for k in range(len(p)):
            source = run.sources[int(p.source[k])]
            decision = "known" if p.known[k] else f"unknown (nearest: {names[int(p.pred[k])]})"
            table.add_row(escape(printable(source.item_id(int(p.index[k])))), escape(printable(labels[k])), f"{values[k]:.4g}",
                          escape(printable(decision)))
        console.print(table)
    else:
        counts = label_counts(run)
        table = Table(title="predicted labels", caption=escape(rule), show_header=True, header_style="bold")
        table.add_column("label")
        for name in counts:
            table.add_column(escape(name), justify="right", overflow="fold")
        if len(counts) > 1:
            table.add_column("total", justify="right")
        for label in [*run.model.class_names, UNKNOWN_NAME]:
            row = [counts[name][label] for name in counts]
            table.add_row(escape(label), *(f"{c:,}" for c in row), *([f"{sum(row):,}"] if len(counts) > 1 else []))
        classified = [int(np.sum(p.source == s)) for s in range(len(run.sources))]
        table.add_section()
        table.add_row("classified", *(f"{c:,}" for c in classified), *([f"{sum(classified):,}"] if len(counts) > 1 else []))
        if any(run.failed_per_source):
            f = run.failed_per_source
            table.add_row("[red]unreadable", *(f"{c:,}" for c in f), *([f"{sum(f):,}"] if len(counts) > 1 else []))
        console.print(table)

    metrics = run_metrics(run)
    if metrics:
        table = Table(title=f"open-set metrics, {escape(rule)}", show_header=True, header_style="bold")
        table.add_column("metric")
        for name in metrics:
            table.add_column(escape(name), justify="right", overflow="fold")
        rows: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
            ("knowns", lambda m: f"{m['n_known']:,}"),
            ("unknowns", lambda m: f"{m['n_unknown']:,}"),
            ("closed-set accuracy", lambda m: _pct(m["closed_set_accuracy"])),
            ("known acceptance", lambda m: _pct(m["known_acceptance"])),
            ("unknown rejection", lambda m: _pct(m["unknown_rejection"])),
            ("open-set accuracy (classes + unknown)", lambda m: _pct(m["open_set_accuracy"])),
            (f"AUROC of {run.model.decision_score} (threshold-free)", lambda m: _pct(m["ood"]["auroc"]) if "ood" in m else "-"),
        )
        for label, cell in rows:
            table.add_row(label, *(cell(m) for m in metrics.values()))
        console.print(table)

    failed = len(run.failures)
    line = (
        f"{_images(len(p))} classified in {run.seconds:.2f} s ({run.images_per_second:,.0f} images/s)"
        f"{f'; {failed:,} unreadable, skipped' if failed else ''}"
    )
    console.print(line, highlight=False, markup=False)
    if output is not None:
        column = "probability" if run.model.decides_on_probs else "score"
        console.print(
            f"results: {output} ({run.output_rows:,} rows); label = the class where {column} >= {run.model.threshold:g} "
            f"({run.model.decision_score}, {run.model.origin_label(FLAGS)}), else unknown",
            highlight=False, markup=False,
        )
