"""PNG figures (matplotlib, headless): training curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from osr_infer.io import atomic_path


def save_figure(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_history(history: Sequence[dict], path: Path) -> Path:
    """Loss and validation accuracy per epoch, one colour per stage."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for stage in dict.fromkeys(h["stage"] for h in history):
        rows = [h for h in history if h["stage"] == stage]
        x = np.arange(offset + 1, offset + len(rows) + 1)
        ax_loss.plot(x, [h["train_loss"] for h in rows], label=f"{stage} train")
        ax_loss.plot(x, [h["val_loss"] for h in rows], "--", label=f"{stage} val")
        label = "val pair accuracy" if stage == "pretrain" else "val accuracy"
        ax_acc.plot(x, [100 * h["val_accuracy"] for h in rows], label=f"{stage}: {label}")
        offset += len(rows)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="%", title="Validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(0.6 * len(labels) + 3, 0.6 * len(labels) + 2))
    ConfusionMatrixDisplay(matrix, display_labels=list(labels)).plot(ax=ax, colorbar=False, values_format="d", cmap="Blues")
    ax.set_title(title)
    return save_figure(fig, path)
