"""Matplotlib figures (Agg backend) of designs, learning curves, fitted laws and plans.

Each function takes plain tables and returns a :class:`matplotlib.figure.Figure`; the caller
logs it and closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

if TYPE_CHECKING:
    from mixscale.plan import Plan

__all__ = ["design_heatmap", "accuracy_vs_epoch", "accuracy_vs_size", "predicted_vs_observed",
           "class_coefficients", "class_curves", "backtest_error", "plan_figure", "close"]


_ROLE_NAMES = {"train": "training rows", "validation": "validation rows"}


def design_heatmap(design: pd.DataFrame, count_columns: Sequence[str]) -> Figure:
    """Design rows x classes heat map of each class's share of the subset.

    One panel per subset size (columns) and role (rows of panels: training rows, then
    validation rows), all on one colour scale with one colorbar, so panels compare directly.
    """
    sizes = sorted(design["subset_size"].unique())
    roles = [r for r in _ROLE_NAMES if (design["role"] == r).any()]
    roles += sorted(set(design["role"]) - set(roles))
    heights = [max(1, int((design["role"] == r).groupby(design["subset_size"]).sum().max()))
               for r in roles]
    shares = design[list(count_columns)].to_numpy() / design["subset_size"].to_numpy()[:, None]
    vmax = float(shares.max()) if shares.size else 1.0
    size = (2.8 * len(sizes) + 1.2, 0.28 * sum(heights) + 1.4 * len(roles))
    fig, axes = plt.subplots(len(roles), len(sizes), squeeze=False, sharex=True, figsize=size,
                             gridspec_kw={"height_ratios": heights})
    im = None
    for i, role in enumerate(roles):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            mask = ((design["subset_size"] == size) & (design["role"] == role)).to_numpy()
            part = design[mask]
            im = ax.imshow(shares[mask], aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
            ax.set_title(f"size {size}: {_ROLE_NAMES.get(role, role)}", fontsize=9)
            ax.set_yticks(range(len(part)), [str(r) for r in part["row"]], fontsize=7)
            ax.set_xticks(range(len(count_columns)),
                          [c.removeprefix("n_") for c in count_columns], rotation=90, fontsize=7)
            if j == 0:
                ax.set_ylabel("design row")
            if i == len(roles) - 1:
                ax.set_xlabel("class")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="share of the subset (one scale)")
    return fig


def accuracy_vs_epoch(table: pd.DataFrame, *, law=None, law_name: str = "fitted law",
                      min_epoch: int | None = None) -> Figure:
    """Test accuracy against epoch for every run, one panel per subset size (paper Fig. 2).

    Parameters
    ----------
    table : pandas.DataFrame
        The fit table (``accuracy``, ``epoch``, ``subset_size``, ``role``, ``run_id`` and
        the ``n_<class>`` counts).
    law : ScalingLaw or ClassLaw, optional
        A fitted law whose curve is drawn over every run (dotted, in the run's colour),
        clipped to [0, 1] as served.
    law_name : str
        The law's name in the legend.
    min_epoch : int, optional
        The fit's ``min_epoch``: curves start there and a grey line marks it.

    Returns
    -------
    matplotlib.figure.Figure
        With one legend for all panels (``fig.legends[0]``).
    """
    sizes = sorted(table["subset_size"].unique())
    counts = [c for c in table.columns if c.startswith("n_")]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3.6), squeeze=False,
                             sharey=True)
    for ax, size in zip(axes[0], sizes, strict=True):
        for i, (_, run) in enumerate(table[table["subset_size"] == size].groupby("run_id")):
            colour = f"C{i % 10}"
            style = "-" if run["role"].iloc[0] == "train" else "--"
            ax.plot(run["epoch"], run["accuracy"], style, lw=1, alpha=0.8, color=colour)
            if law is not None:
                lo = min_epoch if min_epoch is not None else run["epoch"].min()
                grid = np.linspace(max(lo, 1), run["epoch"].max(), 40)
                frame = pd.DataFrame(np.repeat(run[counts].to_numpy()[:1], grid.size, axis=0),
                                     columns=counts).assign(epoch=grid)
                ax.plot(grid, np.clip(law.predict(frame), 0, 1), ":", lw=1.4, color=colour)
        if min_epoch is not None:
            ax.axvline(min_epoch, color="0.6", lw=0.8)
        ax.set_title(f"{size} images")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("test accuracy")
    handles = [Line2D([], [], color="k", ls="-", lw=1, label="training row (observed)"),
               Line2D([], [], color="k", ls="--", lw=1, label="validation row (observed)")]
    if law is not None:
        handles.append(Line2D([], [], color="k", ls=":", lw=1.4, label=f"{law_name} (fitted)"))
    if min_epoch is not None:
        handles.append(Line2D([], [], color="0.6", lw=0.8, label=f"min_epoch {min_epoch}"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               title="one colour per run", title_fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.0, 0.14, 1.0, 1.0))
    return fig


def accuracy_vs_size(table: pd.DataFrame) -> Figure:
    """Final-epoch test accuracy against subset size, on a log axis (paper Fig. 1b)."""
    last = table.loc[table.groupby("run_id")["epoch"].idxmax()]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for role, part in last.groupby("role"):
        ax.scatter(part["total_n"], part["accuracy"], label=_ROLE_NAMES.get(role, role), s=18)
    ax.set_xscale("log")
    sizes = sorted(last["total_n"].unique())
    if len(sizes) <= 8:
        ax.set_xticks(sizes, [str(int(s)) for s in sizes])
        ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
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


def backtest_error(backtest: pd.DataFrame) -> Figure:
    """Backtest RMSE (accuracy points) against the extrapolation ratio, one line per law.

    ``backtest`` is the fit's ``backtest.csv`` (:func:`mixscale.stages.fit.backtest_table`):
    ``law``, ``ratio`` and ``residual`` per predicted row. Each point is the RMSE of one law's
    residuals at one ratio (rounded to 2 decimals); the ratio axis is logarithmic.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = backtest.assign(ratio=backtest["ratio"].astype(float).round(2),
                           sq=backtest["residual"].astype(float) ** 2)
    for law, part in rows.groupby("law", sort=False):
        rmse = 100.0 * np.sqrt(part.groupby("ratio")["sq"].mean())
        ax.plot(rmse.index, rmse.to_numpy(), "o-", ms=3, lw=1.2, label=str(law))
    if len(rows):
        ax.set_xscale("log")
        ratios = sorted(rows["ratio"].unique())
        if len(ratios) <= 8:
            ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
            ax.minorticks_off()
        ax.legend(fontsize=7, ncol=2, title="law")
    ax.set_xlabel("extrapolation ratio (predicted size / largest fitted size)")
    ax.set_ylabel("backtest RMSE (accuracy points)")
    ax.set_title("backtest: fitted on the sizes up to s, scored on larger ones")
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)


def plan_figure(plan: Plan) -> Figure:
    """Bar chart of current vs planned images per class (a matplotlib figure; caller closes)."""
    labels = [c.removeprefix("n_") for c in plan.class_columns]
    pos = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.6))
    ax.bar(pos - 0.2, plan.current, width=0.4, label="current")
    ax.bar(pos + 0.2, plan.counts, width=0.4, label="plan" if plan.reachable else "caps")
    ax.set_xticks(pos, labels)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    state = "" if plan.reachable else " (target out of reach)"
    ax.set_title(f"target {plan.target:.3f} at {plan.epochs} epochs: predicted "
                 f"{plan.predicted:.3f}, cost {plan.cost:g}{state}")
    ax.legend()
    fig.tight_layout()
    return fig
