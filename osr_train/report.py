"""``osr-train evaluate``: every score on every unknown set, plots, and a ``report.md``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from osr_infer.errors import DataError, ModelError, OutputError, ParameterError, TrainingError
from osr_infer.reporting import SILENT, Reporter

from osr_infer.params import NONE, Constraint, Interval, OneOf, validate
from osr_infer.scores import SCORES
from osr_infer.spec import ModelSpec
from osr_train.evaluation import SetOutputs


def plot_roc(known: SetOutputs, unknowns: list[SetOutputs], path: Path) -> Path:
    """ROC curves (known = positive) of every score against the pooled unknowns."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    from osr_train.plots import save_figure

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, known_scores in known.scores.items():
        pooled = np.concatenate([u.scores[name] for u in unknowns])
        y = np.r_[np.ones(len(known_scores)), np.zeros(len(pooled))]
        s = np.r_[known_scores, pooled]
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, s):.4%})")
    ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0.8, 1.001), xlabel="false-positive rate on unknowns (log)",
           ylabel="true-positive rate on knowns", title="ROC: test knowns vs pooled unknowns")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def plot_histograms(known: SetOutputs, unknowns: list[SetOutputs], score: str, threshold: float, path: Path) -> Path:
    """Score histograms, knowns vs each unknown set, with the stored score's threshold marked."""
    import matplotlib.pyplot as plt

    from osr_train.plots import save_figure

    names = list(known.scores)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        values = [known.scores[name]] + [u.scores[name] for u in unknowns]
        lo, hi = np.percentile(np.concatenate(values), [0.5, 100])
        bins = np.linspace(lo, hi, 60)
        ax.hist(np.clip(known.scores[name], lo, hi), bins=bins, alpha=0.6, density=True, label=f"known ({known.name})")
        for u in unknowns:
            ax.hist(np.clip(u.scores[name], lo, hi), bins=bins, alpha=0.5, density=True, label=f"unknown ({u.name})")
        if name == score:
            ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.4g}")
        ax.set(title=name + (" (stored score)" if name == score else ""), yscale="log", xlabel="score")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_tsne(known: SetOutputs, unknowns: list[SetOutputs], class_names: tuple[str, ...], path: Path, n_known: int = 1500,
              n_unknown: int = 500, seed: int = 0) -> Path:
    """t-SNE of the output embedding (the contrastive space of the Siamese model)."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from osr_train.plots import save_figure

    n_classes = len(class_names)
    rng = np.random.default_rng(seed)
    ki = rng.choice(len(known.labels), min(n_known, len(known.labels)), replace=False)
    parts, groups = [known.logits[ki]], [known.labels[ki]]
    for g, u in enumerate(unknowns):
        ui = rng.choice(len(u.labels), min(n_unknown, len(u.labels)), replace=False)
        parts.append(u.logits[ui])
        groups.append(np.full(len(ui), n_classes + g))
    emb = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(np.concatenate(parts))
    groups_all = np.concatenate(groups)
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if n_classes <= 10 else "tab20")
    for c, name in enumerate(class_names):
        m = groups_all == c
        ax.scatter(emb[m, 0], emb[m, 1], s=4, color=cmap(c % cmap.N), label=name)
    for g, u in enumerate(unknowns):
        m = groups_all == n_classes + g
        ax.scatter(emb[m, 0], emb[m, 1], s=6, marker="x", color=["k", "grey", "brown"][g % 3], label=f"unknown: {u.name}")
    ax.set(title="t-SNE of the output embedding (test knowns and unknowns)", xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=3, ncol=2)
    return save_figure(fig, path)


def metrics_table_md(metrics: dict[str, Any]) -> str:
    """Markdown tables: per score and unknown set, then the figures at the stored threshold."""
    lines = ["| score | unknown set | AUROC | AUPR-in | AUPR-out | FPR@95%TPR |", "|---|---|---|---|---|---|"]
    sets = [("pooled", metrics["ood_pooled"])] + [(k, v["ood"]) for k, v in metrics.get("per_unknown_set", {}).items()]
    for score in metrics["ood_pooled"]:
        for set_name, ood in sets:
            o = ood[score]
            star = " (stored)" if score == metrics["score"] else ""
            lines.append(f"| {score}{star} | {set_name} | {o['auroc']:.4%} | {o['aupr_in']:.4%} | {o['aupr_out']:.4%} | {o['fpr_at_95_tpr']:.2%} |")
    lines += ["", f"At the stored threshold ({metrics['score']} >= {metrics['threshold']:.6g}):", "",
              "| metric | value | measured on |", "|---|---|---|",
              f"| closed-set accuracy | {metrics['closed_set_accuracy']:.2%} | {metrics['n_known']:,} knowns |",
              f"| known acceptance | {metrics['known_acceptance']:.2%} | {metrics['n_known']:,} knowns |"]
    if metrics["unknown_rejection"] is not None:
        lines += [f"| unknown rejection | {metrics['unknown_rejection']:.2%} | {metrics['n_unknown']:,} unknowns |",
                  f"| open-set accuracy (classes + unknown) | {metrics['open_set_accuracy']:.2%} | {metrics['n_known'] + metrics['n_unknown']:,} images |"]
    for name, per in metrics.get("per_unknown_set", {}).items():
        at = per["at_threshold"]
        lines.append(f"| {name}: unknown rejection / open-set accuracy | {at['unknown_rejection']:.2%} / "
                     f"{at['open_set_accuracy']:.2%} | {at['n_unknown']:,} unknowns |")
    return "\n".join(lines)


def write_report(out_dir: Path, checkpoint: Path, spec: ModelSpec, config: dict[str, Any], metrics: dict[str, Any], figures: dict[str, str]) -> Path:
    from osr_infer.io import atomic_path

    text = [
        f"# Evaluation of `{checkpoint}`", "",
        f"Model: {spec.architecture} ({config.get('model', '?')}, recipe `{config.get('recipe', 'seed')}`), input "
        f"{spec.preprocessing.describe()}, {spec.n_classes} classes, trained on {spec.dataset.reference}. "
        f"Stored score: `{metrics['score']}`, threshold {metrics['threshold']:.6g} ({spec.calibration.get('method', 'fixed')}).", "",
        f"Knowns: {metrics['known_set']} ({metrics['n_known']:,}). Unknowns: "
        + ", ".join(f"{k} ({v:,})" for k, v in metrics["unknown_sets"].items()) + ".", "",
        "## Metrics", "", metrics_table_md(metrics), "", "## Figures", "",
    ]
    for title, file in figures.items():
        text += [f"### {title}", "", f"![{title}]({file})", ""]
    path = out_dir / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(text))
    return path


def evaluate_command(
    checkpoint: Path,
    *,
    data_dir: Path | None = None,
    ood_dirs: list[Path] | None = None,
    out: Path | None = None,
    tsne: bool = True,
    device: str = "auto",
    reporter: Reporter = SILENT,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on its data set's test knowns and every unknown set (held-out
    classes included), with the preprocessing and splits of its model spec."""
    from osr_infer.data import open_set_source
    from osr_infer.io import check_writable_dir, write_json
    from osr_train.evaluation import evaluate_outputs, run_model
    from osr_train.models import classifier_of
    from osr_train.pipeline import fit_scores, load_data
    from osr_train.plots import plot_confusion
    from osr_train.scoring import TORCH_SCORES
    from osr_train.training import Normalizer, resolve_device

    model, spec, config = _load(checkpoint, device)
    dev = resolve_device(device)
    out_dir = Path(out) if out is not None else Path(checkpoint).parent / "evaluation"
    try:
        check_writable_dir(out_dir)
    except PermissionError as exc:
        raise OutputError(str(exc)) from None
    data = load_data(open_set_source(spec.dataset, data_dir, ood_dirs), spec.preprocessing, False, reporter)
    if not data.unknown_test:
        raise DataError("no unknown set: give `ood_dirs`, or put CIFAR-10 in the data folder")
    classifier = classifier_of(model.to(dev))
    normalize = Normalizer(spec.preprocessing)
    # Older checkpoints: the statistics of scores registered since are fitted on the training knowns now.
    fitted = fit_scores(TORCH_SCORES, classifier, data.train, dev, normalize, config.get("fitted_scores") or {})
    t0 = time.perf_counter()
    # The msp at the model's softmax temperature, as the exported graph computes it and training reported it.
    known = run_model(classifier, data.test, normalize, dev, fitted, temperature=spec.temperature)
    unknowns = [run_model(classifier, u, normalize, dev, fitted, temperature=spec.temperature) for u in data.unknown_test]
    metrics = evaluate_outputs(known, unknowns, spec.score, spec.threshold, spec.n_classes)
    metrics.update(checkpoint=str(checkpoint), dataset=spec.dataset.reference, recipe=config.get("recipe", "seed"),
                   model=config.get("model"), architecture=spec.architecture,
                   epochs=config.get("hyperparameters", {}).get("epochs"))
    write_json(out_dir / "metrics.json", metrics)
    figures = {
        "ROC curves": plot_roc(known, unknowns, out_dir / "roc.png").name,
        "Score histograms": plot_histograms(known, unknowns, spec.score, spec.threshold, out_dir / "score_histograms.png").name,
        "Closed-set confusion matrix": plot_confusion(metrics["confusion_matrix"], list(spec.class_names),
                                                      out_dir / "confusion.png", "Closed-set confusion (test knowns)").name,
        "Open-set confusion matrix": plot_confusion(metrics["confusion_matrix_open_set"], spec.label_names(),
                                                      out_dir / "confusion_open_set.png", f"Open-set confusion ({spec.score} >= {spec.threshold:.4g})").name,
    }
    if tsne:
        with reporter.status("t-SNE of the embedding (subsample)..."):
            figures["t-SNE of the embedding"] = plot_tsne(known, unknowns, spec.class_names, out_dir / "tsne.png").name
    report = write_report(out_dir, Path(checkpoint), spec, config, metrics, figures)
    metrics["report"] = str(report)
    reporter.info(f"report:  {report}  ({time.perf_counter() - t0:.0f} s)\nmetrics: {out_dir / 'metrics.json'}")
    return metrics


def _load(checkpoint: Path, device: str):  # noqa: ANN202 - (model, spec, config)
    from osr_train.checkpoint import load_checkpoint
    from osr_train.training import resolve_device

    resolve_device(device)  # a device that is not there fails before the checkpoint loads
    try:
        return load_checkpoint(checkpoint)
    except (RuntimeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(str(exc)) from None


@dataclass(frozen=True)
class RescoreOptions:
    """``osr-train rescore``'s choices, validated once where they enter."""

    score: str
    target_tpr: float | None = None

    constraints: ClassVar[dict[str, list[Constraint]]] = {
        "score": [OneOf(tuple(SCORES))],
        "target_tpr": [Interval(float, 0, 1, closed="neither"), NONE],
    }

    def __post_init__(self) -> None:
        validate(self, self.constraints)


def rescore_command(
    checkpoint: Path,
    options: RescoreOptions,
    *,
    data_dir: Path | None = None,
    out: Path | None = None,
    device: str = "auto",
    reporter: Reporter = SILENT,
) -> Path:
    """Store another score in a trained model, without training again: the score's statistics
    (if it has any) are fitted on the training knowns of the model's own split, its threshold
    calibrated on the validation knowns at ``options.target_tpr`` (default: the one the model was
    calibrated at), and the checkpoint written to ``out``. Training does not depend on the
    stored score, so this is the model ``osr-train ... --score SCORE`` makes, except that the
    statistics are fitted without the drawn glyph digits that training adds to its knowns."""
    from osr_infer.data import open_set_source
    from osr_train.checkpoint import save_checkpoint
    from osr_train.models import classifier_of
    from osr_train.pipeline import calibrate_threshold, fit_scores, load_data
    from osr_train.training import Normalizer, resolve_device

    score = options.score
    model, spec, config = _load(checkpoint, device)
    dev = resolve_device(device)
    tpr = options.target_tpr if options.target_tpr is not None else spec.calibration.get("target_tpr")
    if tpr is None:
        raise ParameterError("target_tpr", f"{checkpoint} has a fixed threshold: give `target_tpr`, a number in (0, 1)")
    out = Path(out) if out is not None else Path(checkpoint).with_name(f"model-{score}.pt")
    if out.resolve() == Path(checkpoint).resolve():
        raise ParameterError("out", f"`out` is the checkpoint itself ({checkpoint}); write the re-scored model beside it")
    data = load_data(open_set_source(spec.dataset, data_dir, []), spec.preprocessing, False, reporter)
    classifier = classifier_of(model.to(dev))
    normalize = Normalizer(spec.preprocessing)
    fitted = fit_scores([score], classifier, data.train, dev, normalize, config.get("fitted_scores") or {})
    threshold, calibration = calibrate_threshold(classifier, data.val, normalize, dev, fitted, spec.temperature, score, tpr)
    calibration = {**spec.calibration, **calibration, "rescored_from": spec.score}
    try:
        new_spec = spec.replace(score=score, score_params=fitted.get(score, {}), threshold=threshold, calibration=calibration)
    except ValueError as exc:
        raise TrainingError(f"the re-scored model cannot be described: {exc}") from None
    path = save_checkpoint(out, model.cpu(), new_spec, dict(config, fitted_scores=fitted))
    reporter.info(f"{score} stored (was {spec.score}): threshold {threshold:.6g} accepts {calibration['val_known_acceptance']:.2%} "
                  f"of {calibration['n']:,} validation knowns\nmodel: {path}")
    return path
