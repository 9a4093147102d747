"""Matplotlib figures (Agg backend) of designs, learning curves and fitted laws.

Each function takes plain tables and returns a :class:`matplotlib.figure.Figure`; the caller
logs it and closes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["design_heatmap", "accuracy_vs_epoch", "accuracy_vs_size", "predicted_vs_observed",
           "class_coefficients", "class_curves", "close"]


def design_heatmap(design: pd.DataFrame, count_columns: Sequence[str]) -> Figure:
    """Rows x classes heat map of the design's share of each class, one panel per size."""
    sizes = sorted(design["subset_size"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 4), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        part = design[design["subset_size"] == size]
        shares = part[list(count_columns)].to_numpy() / size
        im = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0)
        ax.set_title(f"subset size {size}")
        ax.set_xticks(range(len(count_columns)),
                      [c.removeprefix("n_") for c in count_columns], rotation=90)
        ax.set_yticks(range(len(part)), [f"{r} {o[0]}" for r, o in zip(part["row"], part["role"],
                                                                      strict=True)])
        fig.colorbar(im, ax=ax, label="share of subset")
    fig.tight_layout()
    return fig


def accuracy_vs_epoch(table: pd.DataFrame) -> Figure:
    """Test accuracy against epoch for every run, one panel per subset size (paper Fig. 2)."""
    sizes = sorted(table["subset_size"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.2), squeeze=False,
                             sharey=True)
    for ax, size in zip(axes[0], sizes, strict=True):
        for _, run in table[table["subset_size"] == size].groupby("run_id"):
            style = "-" if run["role"].iloc[0] == "train" else "--"
            ax.plot(run["epoch"], run["accuracy"], style, lw=1, alpha=0.8)
        ax.set_title(f"{size} images")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("test accuracy")
    fig.tight_layout()
    return fig


def accuracy_vs_size(table: pd.DataFrame) -> Figure:
    """Final-epoch test accuracy against subset size (paper Fig. 1b)."""
    last = table.loc[table.groupby("run_id")["epoch"].idxmax()]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for role, part in last.groupby("role"):
        ax.scatter(part["total_n"], part["accuracy"], label=role, s=18)
    ax.set_xlabel("training images")
    ax.set_ylabel("final test accuracy")
    ax.legend()
    fig.tight_layout()
    return fig


def predicted_vs_observed(observed: np.ndarray, predicted: np.ndarray, roles: np.ndarray,
                          title: str) -> Figure:
    """Predicted against observed accuracy, training and validation rows side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.6), sharex=True, sharey=True)
    lo = float(min(np.min(observed), np.min(predicted)))
    for ax, role in zip(axes, ("train", "validation"), strict=True):
        mask = roles == role
        ax.scatter(observed[mask], predicted[mask], s=8, alpha=0.6)
        ax.plot([lo, 1], [lo, 1], "k--", lw=0.8)
        ax.set_title(f"{title} — {role}")
        ax.set_xlabel("observed accuracy")
    axes[0].set_ylabel("predicted accuracy")
    fig.tight_layout()
    return fig


def class_coefficients(intervals: pd.DataFrame, title: str) -> Figure:
    """Per-class weights of a law with their bootstrap intervals (rows named ``w_n_<class>``).

    ``intervals`` has the parameter names as index and columns ``estimate``, ``lower``,
    ``upper``; the weights are in the law's reporting convention (they sum to 1).
    """
    part = intervals[intervals.index.str.startswith("w_n_")]
    names = [n.removeprefix("w_n_") for n in part.index]
    est = part["estimate"].to_numpy()
    err = np.vstack([est - part["lower"].to_numpy(), part["upper"].to_numpy() - est])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3.4))
    ax.bar(range(len(names)), est, yerr=np.clip(err, 0, None), capsize=3, color="#4c72b0")
    ax.axhline(1 / max(len(names), 1), color="k", ls="--", lw=0.8, label="equal weights")
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 12 else 0)
    ax.set_ylabel("weight of one image (sums to 1)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def class_curves(law, *, per_class: int, epochs: int) -> Figure:
    """A per-class law's curve for each class: its accuracy as its own count grows.

    Every other class stays at ``per_class`` images and training lasts ``epochs``; the dot
    marks the balanced point. Steep curves are classes that still gain from more images.
    """
    columns = list(law.class_columns_)
    grid = np.unique(np.linspace(0, 2 * per_class, 41).round().astype(int))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for c, col in enumerate(columns):
        counts = np.full((grid.size, len(columns)), per_class)
        counts[:, c] = grid
        frame = pd.DataFrame(counts, columns=columns).assign(epoch=epochs)
        acc = law.predict_classes(frame).iloc[:, c].to_numpy()
        line, = ax.plot(grid, acc, label=col.removeprefix("n_"))
        ax.plot([per_class], [np.interp(per_class, grid, acc)], "o", color=line.get_color())
    ax.set_xlabel("images of the class (others fixed)")
    ax.set_ylabel("predicted test accuracy of the class")
    ax.set_title(f"per-class law: others at {per_class} images, {epochs} epochs")
    ax.legend(fontsize=7, ncol=2, title="class")
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)
