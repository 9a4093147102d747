"""Backtests: how well a law extrapolates, fitted on the small sizes and scored on larger ones.

Every useful prediction of a scaling law lies beyond the largest subset it was trained on, so
a law is judged here the way it is used. For every distinct subset size ``s`` of a fit table
but the largest, the law is fitted on the training rows with ``subset_size <= s`` and predicts
every row (training and validation designs) with ``subset_size > s`` and ``epoch >=
min_epoch``; the *extrapolation ratio* of a predicted row is ``subset_size / s`` (> 1). A fold
with fewer than 2 training runs to fit on, or whose fit raises a
:class:`~mixscale.errors.MixscaleError`, is skipped.

The fold ``s`` = the second largest size is today's single extrapolation split (fitted without
the largest size, scored on it): :func:`fold_scores` gives its MSE, which the fit stage reports
as ``extrap_mse``.

:func:`backtest_summary` condenses one law's residuals to RMSEs in accuracy *fractions*:
``backtest_rmse`` (every predicted row), ``backtest_rmse_r1.5`` (ratio in (1, 1.75]),
``backtest_rmse_r2`` (ratio in (1.75, 3]) and ``backtest_rmse_r3`` (ratio in (1, 3]: the
1.5x-2x range a team plans in, the champion's selection score, see :data:`SELECT_SCORE`),
the last over the folds fitted on at least :data:`MIN_FIT_SIZES` sizes (:func:`informative`).
numpy/pandas only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixscale.errors import MixscaleError
from mixscale.fit.metrics import mse, r2

__all__ = ["BACKTEST_COLUMNS", "MIN_FIT_SIZES", "RATIO_BINS", "SELECTS", "SELECT_SCORE",
           "backtest", "backtest_folds", "backtest_summary", "fold_scores", "informative"]

BACKTEST_COLUMNS = ["fit_size", "fit_sizes", "subset_size", "ratio", "role", "run_id", "epoch",
                    "observed", "predicted", "residual"]
MIN_FIT_SIZES = 2  # folds fitted on fewer distinct sizes do not choose the champion (below)
#: summary column -> (lowest ratio excluded, highest ratio included)
RATIO_BINS: dict[str, tuple[float, float]] = {
    "backtest_rmse": (1.0, np.inf),
    "backtest_rmse_r1.5": (1.0, 1.75),
    "backtest_rmse_r2": (1.75, 3.0),
    "backtest_rmse_r3": (1.0, 3.0),
}
SELECT_SCORE = "backtest_rmse_r3"  # what ``--select backtest`` ranks laws by (then the rest)
SELECTS = ("backtest", "validation")  # the champion rules (mixscale.stages.fit.choose_champion)


def backtest_folds(table: pd.DataFrame) -> list[int]:
    """The fit sizes ``s`` of a table's backtest: every subset size but the largest with at
    least 2 training runs at sizes ``<= s``, ascending."""
    sizes = sorted(int(s) for s in table["subset_size"].unique())
    train = table[table["role"] == "train"]
    return [s for s in sizes[:-1] if train.loc[train["subset_size"] <= s, "run_id"].nunique() >= 2]


def backtest(table: pd.DataFrame, fit_law: Callable[[pd.DataFrame], Any], *,
             features: Sequence[str], min_epoch: int,
             fit_sizes: Sequence[int] | None = None) -> pd.DataFrame:
    """Fit on the rows up to each subset size but the largest; predict every larger size.

    Parameters
    ----------
    table : pandas.DataFrame
        A fit table as :func:`mixscale.track.assemble_table` returns it (``run_id, role,
        subset_size, epoch, accuracy`` and the ``features``).
    fit_law : callable
        ``fit_law(train_rows) -> fitted law`` (anything with ``predict(X)``); it may raise
        :class:`~mixscale.errors.MixscaleError`, and that fold is skipped.
    features : sequence of str
        The columns a fitted law predicts from (``n_<class>...``, ``epoch``).
    min_epoch : int
        Rows with ``epoch < min_epoch`` are not predicted (the fit drops them too).
    fit_sizes : sequence of int, optional
        Only these folds (of :func:`backtest_folds`); default every fold.

    Returns
    -------
    pandas.DataFrame
        :data:`BACKTEST_COLUMNS`, one row per predicted row: ``fit_size`` (= s),
        ``fit_sizes`` (how many distinct subset sizes that fold's fit saw), ``subset_size``,
        ``ratio`` (= subset_size / s), ``role``, ``run_id``, ``epoch``, ``observed``,
        ``predicted`` (clipped to [0, 1], as served and scored) and ``residual`` (= observed -
        predicted). Empty (those columns) when no fold could be fitted.
    """
    train = table[table["role"] == "train"]
    sizes = sorted(int(v) for v in table["subset_size"].unique())
    frames = []
    for s in backtest_folds(table):
        if fit_sizes is not None and s not in fit_sizes:
            continue
        target = table[(table["subset_size"] > s) & (table["epoch"] >= min_epoch)]
        if not len(target):
            continue
        try:
            law = fit_law(train[train["subset_size"] <= s])
            predicted = np.clip(np.asarray(law.predict(target[list(features)]), float), 0, 1)
        except MixscaleError:
            continue  # too few rows, or every start failed: no score for this fold
        observed = target["accuracy"].to_numpy(dtype=float)
        frames.append(pd.DataFrame({
            "fit_size": s, "fit_sizes": sum(size <= s for size in sizes),
            "subset_size": target["subset_size"].to_numpy(dtype=int),
            "ratio": target["subset_size"].to_numpy(dtype=float) / s,
            "role": target["role"].to_numpy(), "run_id": target["run_id"].to_numpy(),
            "epoch": target["epoch"].to_numpy(), "observed": observed, "predicted": predicted,
            "residual": observed - predicted}))
    if not frames:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    return pd.concat(frames, ignore_index=True)[BACKTEST_COLUMNS]


def _rmse(residual: pd.Series) -> float:
    return float(np.sqrt(np.mean(np.square(residual)))) if len(residual) else float("nan")


def informative(residuals: pd.DataFrame) -> pd.Series:
    """The rows of folds fitted on at least :data:`MIN_FIT_SIZES` distinct sizes (every row
    when there are none): what chooses the champion and the ensemble's weights.

    A fit on one size cannot place a law's size exponent or asymptote at all, while the final
    law is always fitted on several sizes; scoring laws on such folds measures an
    extrapolation no registered law makes.
    """
    keep = residuals["fit_sizes"] >= MIN_FIT_SIZES
    return keep if keep.any() else pd.Series(True, index=residuals.index)


def backtest_summary(residuals: pd.DataFrame) -> dict[str, float]:
    """One law's backtest as RMSEs in accuracy fractions, per ratio bin (:data:`RATIO_BINS`).

    Returns
    -------
    dict
        ``backtest_rmse``, ``backtest_rmse_r1.5``, ``backtest_rmse_r2`` over every residual;
        :data:`SELECT_SCORE` (``backtest_rmse_r3``, ratios in (1, 3]) over the
        :func:`informative` folds only (NaN where no residual falls in a bin);
        ``backtest_n`` (residuals in all) and ``backtest_folds`` (fit sizes scored).
    """
    ratio = residuals["ratio"].to_numpy(dtype=float)
    chosen = informative(residuals).to_numpy()
    out = {}
    for name, (lo, hi) in RATIO_BINS.items():
        rows = (ratio > lo) & (ratio <= hi) & (chosen if name == SELECT_SCORE else True)
        out[name] = _rmse(residuals["residual"][rows])
    out["backtest_n"] = int(len(residuals))
    out["backtest_folds"] = int(residuals["fit_size"].nunique())
    return out


def fold_scores(residuals: pd.DataFrame, fit_size: int
                ) -> tuple[float, float, np.ndarray] | None:
    """(MSE, r^2, observed accuracies) of the fold fitted on the sizes ``<= fit_size``, or
    None when that fold has no residuals.

    With ``fit_size`` the second-largest size this is the single "drop the largest size"
    split: the score of a law fitted without the largest size, on the largest size.
    """
    part = residuals[residuals["fit_size"] == fit_size]
    if not len(part):
        return None
    observed = part["observed"].to_numpy(dtype=float)
    predicted = part["predicted"].to_numpy(dtype=float)
    return mse(observed, predicted), r2(observed, predicted), observed
