"""Calibrated prediction intervals: how far off a law is, learned from its backtest.

A law's run bootstrap (:meth:`~mixscale.fit.base.LawBase.keep_bootstrap`) measures only how its
parameters move when the runs are resampled. Out beyond the design's largest size the law is
mostly wrong for another reason -- its form -- and a realised run also differs from the law by
the noise between seeds and evaluations. :class:`Calibration` learns the first from the
backtest residuals (:mod:`mixscale.fit.backtest`: fit on the sizes up to ``s``, predict the
larger sizes at ratio ``r = subset_size / s``; residual = observed - predicted) and carries
the second (:func:`noise_sd`).

**The rule (normalised split-conformal, widening with r).**

1. Scale: ``s(r) = s1 * r**gamma``, fitted by least squares of ``log(|residual| + eps)`` on
   ``log r`` and ``log(fit_size / largest fit_size)`` (``eps`` = 1e-4, one hundredth of an
   accuracy point, so an exact hit does not dominate), with ``gamma`` in ``[0, GAMMA_MAX]``
   (the width never shrinks as one asks further out) and the fit-size slope ``delta`` in
   ``[-DELTA_MAX, 0]`` (a fold fitted on fewer sizes errs more, never less). In a backtest the
   large ratios come from the small folds, so without the fit-size term their extra error
   (fitted on one or two sizes) would be read as widening with ``r``. The final law is
   scored as the largest fold (fit-size factor 1), not extrapolated to its own size: it has
   more data, but the backtest cannot show how much better that makes it. The fit-size term
   needs residuals from at least :data:`MIN_FOLDS_FOR_DELTA` folds (distinct fit sizes): with
   two, one fold holds nearly every large ratio and the other the small ones, so "errs more
   further out" and "errs more on fewer sizes" fit the residuals alike, and the second
   explanation narrows the interval exactly where it is needed. On the 10-class synthetic
   truth (design sizes 100-400, so the fit stage keeps the folds 200 and 300), the fitted
   ``delta`` took the widening to ``gamma = 0`` in one design of three and its 90 % interval
   covered 41 % of held-out runs at 2 S; without the term, 88 %. With fewer folds
   ``delta`` is therefore 0 and every extra error of the larger ratios counts as widening
   (the conservative reading).
2. Scores: ``z_i = |residual_i| / (s(r_i) * (fit_size_i / largest fit_size)**delta)`` for the
   ``n`` residuals.
3. Conformal quantile at ``level``: the ``k``-th smallest score, ``k = ceil((n + 1) * level)``
   (the finite-sample correction of split conformal); when ``k > n`` the sample cannot vouch
   for that level and the largest score is used (so ask for levels below ``n / (n + 1)``).
4. ``half_width(r, level) = max(q_level * s(r), z_level * noise_sd)`` with ``z_level`` the
   normal quantile ``Phi^-1((1 + level) / 2)`` and ``r`` floored at 1 (inside the design the
   law's error is taken as at its edge). The residuals already hold the seed/evaluation noise
   of the rows they were measured on, so the noise enters as a floor, not as a second term:
   a law with no backtest error still gets the interval a new seed needs.

:meth:`~mixscale.fit.base.LawBase.predict_interval` then adds the run-bootstrap spread of the
final law in quadrature around the point prediction (see there) and clips to [0, 1].

Residual rows are not independent (the epochs of one run, the runs of one fold), so the
conformal guarantee is approximate; the coverage test in ``tests/fit/test_calibration.py``
checks it on a seeded synthetic truth.

Pure numpy/scipy/pandas: nothing here logs or touches MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear
from scipy.stats import norm

from mixscale.errors import MixscaleError

__all__ = ["Calibration", "noise_sd", "DELTA_MAX", "GAMMA_MAX", "MIN_FOLDS_FOR_DELTA",
           "MIN_RESIDUALS"]

GAMMA_MAX = 3.0  # steepest widening allowed: s(r) grows at most like r**3
DELTA_MAX = 3.0  # fastest shrinking with the fit size allowed: (fit_size / S)**-3
MIN_FOLDS_FOR_DELTA = 3  # fewer fit sizes cannot tell shrinking with fit size from widening
MIN_RESIDUALS = 5  # fewer backtest residuals cannot calibrate anything
_EPS = 1e-4  # added to |residual| before the log fit (1/100 of an accuracy point)
_FORMAT = "mixscale.Calibration"
_VERSION = 1


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, int | float | np.floating) \
            or not 0.0 < float(level) < 1.0:
        raise MixscaleError(f"`level` must be in (0, 1), e.g. 0.9, but got level={level!r}.")
    return float(level)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Backtest error of one law against the extrapolation ratio, plus the noise floor.

    Attributes
    ----------
    s1 : float
        Scale of ``|residual|`` at ratio 1 (accuracy fraction).
    gamma : float
        Widening exponent: ``s(r) = s1 * r**gamma``, in ``[0, GAMMA_MAX]``.
    scores : numpy.ndarray
        Sorted normalised scores ``|residual| / s(r)`` (the conformal sample).
    noise_sd : float
        Between-seed/evaluation standard deviation of a realised accuracy (>= 0).
    max_ratio : float
        Largest ratio in the backtest (beyond it ``s(r)`` is extrapolated).
    delta : float
        How the backtest error shrank with the fold's fit size, in ``[-DELTA_MAX, 0]``
        (only used to normalise the scores; the final law is scored as the largest fold,
        where the factor is 1).
    """

    s1: float
    gamma: float
    scores: np.ndarray
    noise_sd: float = 0.0
    max_ratio: float = 1.0
    delta: float = 0.0

    @classmethod
    def from_residuals(cls, residuals: pd.DataFrame, *, noise_sd: float = 0.0) -> Calibration:
        """Calibrate one law from its backtest residuals (module docstring: the rule).

        Parameters
        ----------
        residuals : pandas.DataFrame
            One law's rows of :func:`mixscale.fit.backtest.backtest`: columns ``ratio``
            (>= 1) and ``residual`` (observed - predicted); other columns are ignored.
        noise_sd : float
            Between-seed/evaluation standard deviation (:func:`noise_sd`), >= 0.

        Returns
        -------
        Calibration

        Raises
        ------
        MixscaleError
            Missing columns, non-finite values, a ratio below 1, fewer than
            :data:`MIN_RESIDUALS` rows, or a negative or non-finite ``noise_sd``.
        """
        missing = [c for c in ("ratio", "residual") if c not in getattr(residuals, "columns", [])]
        if missing:
            raise MixscaleError(f"backtest residuals need the column(s) {missing}, but got "
                                f"{list(getattr(residuals, 'columns', []))}.")
        ratio = np.asarray(residuals["ratio"], dtype=float)
        res = np.asarray(residuals["residual"], dtype=float)
        if ratio.size < MIN_RESIDUALS:
            raise MixscaleError(f"calibration needs >= {MIN_RESIDUALS} backtest residuals, but "
                                f"got {ratio.size}; backtest on a design with more sizes.")
        if not (np.all(np.isfinite(ratio)) and np.all(np.isfinite(res))):
            raise MixscaleError("backtest `ratio` and `residual` must be finite.")
        if np.any(ratio < 1.0 - 1e-9):
            raise MixscaleError(f"backtest `ratio` must be >= 1, but got min {ratio.min():g}.")
        noise = _check_noise(noise_sd)
        log_r, v = np.log(np.maximum(ratio, 1.0)), np.log(np.abs(res) + _EPS)
        log_f = np.zeros_like(log_r)  # log(fit_size / largest): 0 = as the final law is scored
        if "fit_size" in residuals.columns:
            fit_size = np.asarray(residuals["fit_size"], dtype=float)
            final = float(fit_size.max())
            if (np.all(np.isfinite(fit_size)) and np.all(fit_size > 0)
                    and np.unique(fit_size).size >= MIN_FOLDS_FOR_DELTA):
                log_f = np.log(fit_size / final)
        columns = [np.ones_like(v), log_r, log_f]
        lo, hi = [-np.inf, 0.0, -DELTA_MAX], [np.inf, GAMMA_MAX, 0.0]
        keep = [0] + [j for j in (1, 2) if np.ptp(columns[j]) > 1e-12]  # what varies
        fitted = lsq_linear(np.column_stack([columns[j] for j in keep]), v,
                            bounds=([lo[j] for j in keep], [hi[j] for j in keep])).x
        coef = np.zeros(3)
        coef[keep] = fitted
        for j in (1, 2):  # the solver stops a hair inside a bound: put it on the bound
            coef[j] = lo[j] if abs(coef[j] - lo[j]) < 1e-9 else coef[j]
            coef[j] = hi[j] if abs(coef[j] - hi[j]) < 1e-9 else coef[j]
        s1, gamma, delta = float(np.exp(coef[0])), float(coef[1]), float(coef[2])
        scores = np.sort(np.abs(res) / (s1 * np.exp(gamma * log_r + delta * log_f)))
        return cls(s1=s1, gamma=gamma, scores=scores, noise_sd=noise,
                   max_ratio=float(ratio.max()), delta=delta)

    @property
    def n(self) -> int:
        """Number of backtest residuals behind the calibration."""
        return int(self.scores.size)

    def scale(self, ratio: Any) -> np.ndarray:
        """``s(r) = s1 * max(r, 1)**gamma`` per ratio (NaN stays NaN)."""
        r = np.asarray(ratio, dtype=float)
        return self.s1 * np.maximum(r, 1.0) ** self.gamma

    def quantile(self, level: float) -> float:
        """Conformal quantile of the scores: the ``ceil((n + 1) * level)``-th smallest."""
        level = _check_level(level)
        k = min(math.ceil((self.n + 1) * level), self.n)
        return float(self.scores[k - 1])

    def half_width(self, ratio: Any, level: float) -> np.ndarray:
        """Half width of the central ``level`` interval of a realised accuracy at ``ratio``.

        Parameters
        ----------
        ratio : array_like
            Extrapolation ratio per row (:meth:`~mixscale.fit.base.LawBase.extrapolation_ratio`;
            values below 1 count as 1; NaN, a law without a design, gives NaN).
        level : float
            Coverage in (0, 1).

        Returns
        -------
        numpy.ndarray
            ``max(q_level * s(r), z_level * noise_sd)``: non-decreasing in ``ratio``.
        """
        level = _check_level(level)
        law = self.quantile(level) * self.scale(ratio)
        floor = float(norm.ppf((1.0 + level) / 2.0)) * self.noise_sd
        return np.where(np.isnan(law), np.nan, np.maximum(law, floor))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (stored under a law's ``"calibration"`` key)."""
        return {"format": _FORMAT, "version": _VERSION, "s1": self.s1, "gamma": self.gamma,
                "delta": self.delta, "noise_sd": self.noise_sd, "max_ratio": self.max_ratio,
                "scores": [float(v) for v in self.scores]}

    @classmethod
    def from_dict(cls, d: Any) -> Calibration:
        """Rebuild from :meth:`to_dict` output, checking every field."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise MixscaleError(f"not a {_FORMAT} dict: `format` is {got!r}.")
        if d.get("version") != _VERSION:
            raise MixscaleError(f"{_FORMAT} version must be {_VERSION}, but got "
                                f"{d.get('version')!r}.")
        try:
            s1, gamma, delta = float(d["s1"]), float(d["gamma"]), float(d.get("delta", 0.0))
            scores = np.sort(np.asarray(d["scores"], dtype=float).reshape(-1))
            max_ratio = float(d["max_ratio"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MixscaleError(f"{_FORMAT} dict is malformed ({exc!r}).") from None
        ok = (np.isfinite(s1) and s1 > 0 and 0.0 <= gamma <= GAMMA_MAX and max_ratio >= 1.0
              and -DELTA_MAX <= delta <= 0.0
              and scores.size >= MIN_RESIDUALS and np.all(np.isfinite(scores))
              and np.all(scores >= 0))
        if not ok:
            raise MixscaleError(f"{_FORMAT} dict has out-of-range values: s1={s1!r} (> 0), "
                                f"gamma={gamma!r} (in [0, {GAMMA_MAX}]), delta={delta!r} (in "
                                f"[-{DELTA_MAX}, 0]), max_ratio={max_ratio!r}"
                                f" (>= 1), {scores.size} finite scores >= 0 (>= "
                                f"{MIN_RESIDUALS}).")
        return cls(s1=s1, gamma=gamma, scores=scores, noise_sd=_check_noise(d.get("noise_sd")),
                   max_ratio=max_ratio, delta=delta)


def _check_noise(value: Any) -> float:
    try:
        noise = float(value)
    except (TypeError, ValueError):
        noise = float("nan")
    if not (np.isfinite(noise) and noise >= 0.0):
        raise MixscaleError(f"`noise_sd` must be a finite number >= 0, but got {value!r}.")
    return noise


def noise_sd(table: pd.DataFrame, *, min_epoch: int = 0) -> float:
    """Between-seed and evaluation noise of one realised accuracy, from a fit table.

    Each run's last evaluation (with ``epoch >= min_epoch``) is what a realised accuracy is:
    the end of training, where a served prediction is compared with a new run. The evaluations
    before it are left out: under a cosine schedule they are taken at a high learning rate and
    swing by several points (on a Fashion-MNIST design whose vertex rows repeat, the pooled
    spread over every epoch was 8.9 points, which made every 90 % interval 29 points wide).
    These rows are grouped by their count vector (every ``n_<class>``)
    and epoch: runs in one group differ only by their seed, so the pooled within-group
    variance (each group's ``ddof=1`` variance weighted by its degrees of freedom) is the
    between-seed variance. Only the groups of the largest total that has replicates are
    pooled: seeds disagree far more at small sizes and extreme mixes (the digits demo's
    corner rows of 60 images differ by 14 points, those of 240 by 0.3), and an interval is
    asked for at the design's largest size and beyond. When the table has ``eval_images``
    (the test images each row was scored on), the binomial variance
    ``p (1 - p) / eval_images`` of an accuracy measured on that many images is a floor: the
    result is ``sqrt(max(seed variance, mean binomial variance))``. Without replicate groups
    and without ``eval_images`` there is nothing to measure and the result is 0.0.

    Parameters
    ----------
    table : pandas.DataFrame
        A fit table (:func:`mixscale.track.assemble_table`): ``accuracy``, ``epoch``,
        ``n_<class>...`` and ``run_id`` [, ``eval_images``].
    min_epoch : int
        Ignore earlier epochs (as the fit does).

    Returns
    -------
    float
        Standard deviation in accuracy fractions (>= 0).

    Raises
    ------
    MixscaleError
        If a required column is missing or no row has ``epoch >= min_epoch``.
    """
    counts = [c for c in table.columns if c.startswith("n_")]
    missing = [c for c in ("accuracy", "epoch", "run_id") if c not in table.columns]
    if missing or not counts:
        raise MixscaleError(f"a fit table needs `accuracy`, `epoch`, `run_id` and n_<class> "
                            f"columns, but is missing {missing or ['n_<class>']}.")
    rows = table[table["epoch"] >= min_epoch]
    if rows.empty:
        raise MixscaleError(f"no fit-table row has epoch >= min_epoch={min_epoch}.")
    rows = rows[rows["epoch"] == rows.groupby("run_id")["epoch"].transform("max")]
    total = rows[counts].sum(axis=1)
    grouped = rows.groupby([total.rename("_total"), *counts, "epoch"])["accuracy"]
    var, dof = grouped.var(ddof=1), grouped.count() - 1
    keep = dof > 0
    seed_var = 0.0
    if keep.any():  # the largest total with replicates: seed noise shrinks as data grows
        at = var.index.get_level_values("_total") == var.index.get_level_values("_total")[
            keep.to_numpy()].max()
        keep = keep & at
        seed_var = float((var[keep] * dof[keep]).sum() / dof[keep].sum())
    binom_var = 0.0
    if "eval_images" in rows.columns:
        m = pd.to_numeric(rows["eval_images"], errors="coerce").to_numpy(dtype=float)
        p = rows["accuracy"].to_numpy(dtype=float)
        ok = np.isfinite(m) & (m > 0)
        if ok.any():
            binom_var = float(np.mean(p[ok] * (1 - p[ok]) / m[ok]))
    return float(np.sqrt(max(seed_var, binom_var, 0.0)))
