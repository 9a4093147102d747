"""Group (run) bootstrap for scaling laws (private; used by ``ScalingLaw.bootstrap``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixscale.errors import FitError, MixscaleError
from mixscale.fit import lsq as _lsq

__all__ = ["BootstrapResult", "bootstrap_law"]


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap of a fitted law, resampling groups (runs), not rows.

    Attributes
    ----------
    samples : pandas.DataFrame
        One row per successful replicate, one column per reported parameter.
    intervals : pandas.DataFrame
        Index: parameter names; columns ``estimate`` (the original fit), ``lower``, ``upper``.
    predictions : numpy.ndarray or None
        ``(n_ok, len(X_pred))`` predictions of every replicate, if ``X_pred`` was given.
    prediction_intervals : pandas.DataFrame or None
        One row per ``X_pred`` row: ``lower``, ``upper``.
    level : float
        Coverage of the intervals.
    n_boot : int
        Replicates requested.
    n_failed : int
        Replicates left out of everything above: the refit failed, or the resampled runs had
        too few distinct count vectors to identify every weight (a design with few runs per
        class weight; increase the number of runs if this is large).
    """

    samples: pd.DataFrame
    intervals: pd.DataFrame
    predictions: np.ndarray | None
    prediction_intervals: pd.DataFrame | None
    level: float
    n_boot: int
    n_failed: int
    raw_samples: np.ndarray | None = None  # (n_ok, n_raw) optimised vectors, for predictions


def bootstrap_law(
    problem: _lsq.Problem,
    y: np.ndarray,
    groups: np.ndarray,
    theta: np.ndarray,
    *,
    names: list[str],
    estimate: np.ndarray,
    loss: str,
    f_scale: float,
    n_boot: int,
    seed: int | None,
    pred_problem: _lsq.Problem | None,
    level: float,
) -> BootstrapResult:
    """Refit ``problem`` on ``n_boot`` group resamples, warm-started at ``theta``."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise MixscaleError(f"`n_boot` must be an int >= 2, but got {n_boot!r}.")
    if not 0.0 < level < 1.0:
        raise MixscaleError(f"`level` must be in (0, 1), but got {level!r}.")
    if groups.shape != y.shape:
        raise MixscaleError(
            f"`groups` must have one label per row of X, but got shape {groups.shape}."
        )
    labels, inverse = np.unique(groups, return_inverse=True)
    if labels.size < 2:
        raise MixscaleError(
            f"bootstrap needs at least 2 groups (runs) with epoch >= min_epoch, "
            f"but got {labels.size}."
        )
    members = [np.flatnonzero(inverse == g) for g in range(labels.size)]
    rng = np.random.default_rng(seed)
    a, b = _lsq.report_matrix(problem)
    samples, raws, preds, n_failed = [], [], [], 0
    n_terms = problem.count.shape[1] + problem.epoch.shape[1]
    for _ in range(n_boot):
        rows = np.concatenate([members[g] for g in rng.integers(0, labels.size, labels.size)])
        sample = problem.take(rows)
        if np.linalg.matrix_rank(np.hstack([sample.count, sample.epoch])) < n_terms:
            n_failed += 1  # too few distinct runs drawn to identify every weight
            continue
        try:
            res = _lsq.solve(sample, y[rows], [theta], loss=loss, f_scale=f_scale)
        except FitError:
            n_failed += 1
            continue
        samples.append(a @ res.x + b)
        raws.append(res.x)
        if pred_problem is not None:
            preds.append(pred_problem.predict(res.x))
    if not samples:
        raise FitError(
            f"every one of the {n_boot} bootstrap replicates failed or could not identify every "
            f"weight ({labels.size} groups for {n_terms} linear-predictor terms)."
        )
    if n_failed > n_boot // 2:
        warnings.warn(
            f"{n_failed} of {n_boot} bootstrap replicates were left out (failed refit or too few "
            f"distinct runs for {n_terms} linear-predictor terms); intervals are unreliable.",
            RuntimeWarning,
            stacklevel=3,
        )
    draws = np.array(samples)
    tail = 100.0 * (1.0 - level) / 2.0
    lower, upper = np.percentile(draws, [tail, 100.0 - tail], axis=0)
    intervals = pd.DataFrame(
        {"estimate": estimate, "lower": lower, "upper": upper}, index=pd.Index(names, name="name")
    )
    predictions = prediction_intervals = None
    if pred_problem is not None:
        predictions = np.array(preds)
        p_lo, p_hi = np.percentile(predictions, [tail, 100.0 - tail], axis=0)
        prediction_intervals = pd.DataFrame({"lower": p_lo, "upper": p_hi})
    return BootstrapResult(
        samples=pd.DataFrame(draws, columns=names),
        intervals=intervals,
        predictions=predictions,
        prediction_intervals=prediction_intervals,
        level=level,
        n_boot=n_boot,
        n_failed=n_failed,
        raw_samples=np.array(raws),
    )
