"""The ensemble law: a stacked average of bounded laws, weighted by how well each extrapolates.

``EnsembleLaw(members, weights)`` predicts ``sum_m w_m * clip(member_m.predict(X), 0, 1)``
with weights ``w_m >= 0`` summing to 1. :func:`stacking_weights` sets them from the members'
backtest predictions (:mod:`mixscale.fit.backtest`): non-negative least squares of the observed
accuracies on the members' predictions (``scipy.optimize.nnls``), normalised to sum 1; equal
weights when no backtest row exists or NNLS gives every member 0. Because every member is
bounded (predictions in [0, 1], a fitted asymptote, 0 images -> 0), so is a convex mix of them.

Its own backtest (:func:`ensemble_backtest`) never scores the ensemble on the rows that set its
weights: the weights of fold ``s`` (fitted on the sizes ``<= s``) come from the members' folds
``s' < s`` restricted to rows of sizes ``<= s``, i.e. only from rows that fold ``s`` trains on
(a nested backtest that reuses the members' fits: the fit of fold ``s'`` is the same whether the
outer table stops at ``s`` or not), and, as for the final weights, only from folds fitted on
at least :data:`~mixscale.fit.backtest.MIN_FIT_SIZES` sizes. A fold without such rows uses
equal weights.

JSON: ``{"format": "mixscale.EnsembleLaw", "version": 1, "members": {name: member JSON dict},
"weights": {name: w}}`` (and ``"calibration"`` when one is set).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from mixscale.errors import MixscaleError, NotFittedError
from mixscale.fit.backtest import BACKTEST_COLUMNS, MIN_FIT_SIZES, informative
from mixscale.fit.calibration import Calibration
from mixscale.fit.metrics import mse, r2

__all__ = ["ENSEMBLE", "ENSEMBLE_FORMAT", "EnsembleLaw", "ensemble_backtest", "fit_ensemble",
           "stacking_weights"]

ENSEMBLE = "ensemble"  # the law's family, alias and artifact name
ENSEMBLE_FORMAT = "mixscale.EnsembleLaw"
_KEY = ["fit_size", "run_id", "epoch"]  # one backtest row of a member


def stacking_weights(predictions: pd.DataFrame, observed: np.ndarray) -> dict[str, float]:
    """Non-negative stacking weights summing to 1 (one per column of ``predictions``).

    Parameters
    ----------
    predictions : pandas.DataFrame
        One column per member, one row per backtest row (no missing values).
    observed : numpy.ndarray
        The observed accuracy of each row.

    Returns
    -------
    dict
        ``member -> weight``; equal weights when there are no rows or NNLS returns all zeros.
    """
    names = list(predictions.columns)
    if not names:
        raise MixscaleError("stacking needs at least one member law, but got none.")
    equal = {n: 1.0 / len(names) for n in names}
    if not len(predictions):
        return equal
    w, _ = nnls(predictions.to_numpy(dtype=float), np.asarray(observed, dtype=float))
    if not w.sum() > 0:
        return equal
    return dict(zip(names, (w / w.sum()).tolist(), strict=True))


def _aligned(residuals: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows every member predicted, with observed/ratio/...; their predictions, wide)."""
    frames = [r.set_index(_KEY) for r in residuals.values()]
    wide = pd.concat([f["predicted"].rename(n) for n, f in zip(residuals, frames, strict=True)],
                     axis=1, join="inner")
    first = frames[0].loc[wide.index]
    return first.reset_index(), wide.reset_index(drop=True)


def ensemble_backtest(residuals: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The ensemble's own backtest from its members', nested so no fold sees its own rows.

    Parameters
    ----------
    residuals : mapping
        ``member -> backtest residuals`` (:func:`mixscale.fit.backtest.backtest`).

    Returns
    -------
    pandas.DataFrame
        :data:`~mixscale.fit.backtest.BACKTEST_COLUMNS` over the rows every member predicted;
        fold ``s`` predicts with weights stacked on the members' folds ``s' < s`` at sizes
        ``<= s`` (equal weights where there are none).
    """
    rows, wide = _aligned(residuals)
    out = []
    for s in sorted(rows["fit_size"].unique()):
        inner = ((rows["fit_size"] < s) & (rows["subset_size"] <= s)
                 & (rows["fit_sizes"] >= MIN_FIT_SIZES)).to_numpy()
        weights = stacking_weights(wide[inner], rows.loc[inner, "observed"].to_numpy())
        fold = (rows["fit_size"] == s).to_numpy()
        pred = wide[fold].to_numpy() @ np.array([weights[n] for n in wide.columns])
        part = rows[fold].copy()
        part["predicted"] = pred
        part["residual"] = part["observed"] - pred
        out.append(part)
    if not out:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    return pd.concat(out, ignore_index=True)[BACKTEST_COLUMNS]


def fit_ensemble(members: Mapping[str, Any], residuals: Mapping[str, pd.DataFrame]
                 ) -> tuple[EnsembleLaw | None, pd.DataFrame]:
    """The stacked ensemble of fitted laws and its own (nested) backtest.

    Parameters
    ----------
    members : mapping
        ``name -> fitted bounded law`` (fitted on all training rows).
    residuals : mapping
        ``name -> that law's backtest residuals``.

    Returns
    -------
    ensemble : EnsembleLaw or None
        Weights stacked on the backtest rows that all members predicted, of the folds that
        choose the champion (:func:`mixscale.fit.backtest.informative`); members with weight
        0 are left out. None when fewer than 2 laws have a complete backtest (the laws whose
        backtest covers the most rows take part: a law that failed on some fold would be
        weighted on easier rows).
    residuals : pandas.DataFrame
        :func:`ensemble_backtest` of the same members (empty with ``ensemble`` None).
    """
    have = {n: r for n, r in residuals.items() if n in members and len(r)}
    full = max((len(r) for r in have.values()), default=0)
    have = {n: r for n, r in have.items() if len(r) == full}
    if len(have) < 2:
        return None, pd.DataFrame(columns=BACKTEST_COLUMNS)
    rows, wide = _aligned(have)
    chosen = informative(rows).to_numpy()
    weights = stacking_weights(wide[chosen], rows.loc[chosen, "observed"].to_numpy())
    kept = {n: w for n, w in weights.items() if w > 0}
    total = sum(kept.values())
    law = EnsembleLaw({n: members[n] for n in kept}, {n: w / total for n, w in kept.items()})
    return law, ensemble_backtest(have)


class EnsembleLaw:
    """A convex mix of fitted bounded laws (same classes), weights from their backtests.

    Parameters
    ----------
    members : mapping
        ``name -> fitted law`` (ScalingLaw or ClassLaw), on the same class columns.
    weights : mapping
        ``name -> weight``, >= 0 and summing to 1, for the same names.

    Attributes
    ----------
    family : str
        ``"ensemble"``; ``predictor`` is ``""``, so its alias is ``ensemble``.
    params_ : dict
        ``weight_<member>`` for every member.
    calibration_ : object or None
        A calibration (see :meth:`calibrate`), None by default.
    """

    family = ENSEMBLE
    predictor = ""

    def __init__(self, members: Mapping[str, Any], weights: Mapping[str, float]) -> None:
        if not members:
            raise MixscaleError("an ensemble needs at least one member law, but got none.")
        if set(members) != set(weights):
            raise MixscaleError(f"ensemble weights must name exactly the members "
                                f"{sorted(members)}, but got {sorted(weights)}.")
        w = np.array([float(weights[n]) for n in members])
        if not (np.all(np.isfinite(w)) and np.all(w >= 0) and abs(w.sum() - 1) < 1e-9):
            raise MixscaleError(f"ensemble weights must be >= 0 and sum to 1, but got "
                                f"{dict(weights)}.")
        columns = {tuple(m.class_columns_) for m in members.values()}
        if len(columns) != 1:
            raise MixscaleError(f"ensemble members must share their class columns, but got "
                                f"{sorted(columns)}.")
        self.members = dict(members)
        self.weights = {n: float(weights[n]) for n in members}
        self.calibration_: Calibration | None = None

    def __repr__(self) -> str:
        return f"EnsembleLaw({', '.join(f'{n}: {w:.3g}' for n, w in self.weights.items())})"

    # ------------------------------------------------------------- the law protocol
    @property
    def bounded(self) -> bool:
        """True: a convex mix of bounded laws is bounded (when every member is)."""
        return all(bool(getattr(m, "bounded", False)) for m in self.members.values())

    @property
    def class_columns_(self) -> list[str]:
        return list(next(iter(self.members.values())).class_columns_)

    @property
    def design_(self) -> dict[str, Any] | None:
        return getattr(next(iter(self.members.values())), "design_", None)

    @property
    def min_epoch(self) -> int:
        return max(int(m.min_epoch) for m in self.members.values())

    @property
    def count_scale_(self) -> float:  # the served input check's limits: the widest member's
        return max(float(getattr(m, "count_scale_", 0.0) or 0.0) for m in self.members.values())

    @property
    def epoch_scale_(self) -> float:
        return max(float(m.epoch_scale_) for m in self.members.values())

    @property
    def params_(self) -> dict[str, float]:
        return {f"weight_{n}": w for n, w in self.weights.items()}

    def standard_errors(self) -> dict[str, float]:
        """0 for every weight: the weights are taken as given (set by the backtest)."""
        return dict.fromkeys(self.params_, 0.0)

    def outside_design(self, counts: np.ndarray) -> np.ndarray:
        """As the first member's (every member saw the same training rows)."""
        return next(iter(self.members.values())).outside_design(counts)

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None) -> Self:
        """Refit every member on ``X, y``; the weights stay as given."""
        for member in self.members.values():
            member.fit(X, y, groups=groups)
        return self

    def _member_predictions(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.clip(m.predict(X), 0.0, 1.0) for m in self.members.values()])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """``sum_m w_m * clip(member_m.predict(X), 0, 1)``."""
        return self._member_predictions(X) @ np.array(list(self.weights.values()))

    def score(self, X: pd.DataFrame, y: Any) -> dict[str, float]:
        """MSE, r^2 and row count on the rows of ``X`` with ``epoch >= min_epoch``."""
        keep = X["epoch"].to_numpy(dtype=float) >= self.min_epoch
        if not keep.any():
            raise MixscaleError(f"score needs rows with epoch >= min_epoch={self.min_epoch}, "
                                "but got none.")
        y = np.asarray(y, dtype=float)[keep]
        pred = self.predict(X[keep])
        return {"mse": mse(y, pred), "r2": r2(y, pred), "n": int(keep.sum())}

    def bootstrap(self, *args: Any, **kwargs: Any) -> Any:
        """Not available: an ensemble's interval comes from its members' (see
        :meth:`predict_interval`)."""
        raise MixscaleError("the ensemble has no run bootstrap of its own: its interval is the "
                            "weighted mix of its members' intervals (needs their bootstrap "
                            "replicates, see predict_interval).")

    def keep_bootstrap(self, result: Any) -> Self:
        """Not available (see :meth:`bootstrap`)."""
        return self.bootstrap()

    def calibrate(self, calibration: Calibration) -> Self:
        """Serve ``calibration``'s interval (as :meth:`mixscale.fit.base.LawBase.calibrate`)."""
        self.calibration_ = calibration
        return self

    def extrapolation_ratio(self, counts: np.ndarray) -> np.ndarray:
        """Per row of raw counts: total / the design's largest total (NaN without a design)."""
        counts = np.atleast_2d(np.asarray(counts, dtype=float))
        d = self.design_
        if d is None:
            return np.full(len(counts), np.nan)
        return counts.sum(axis=1) / d["total_max"]

    def predict_interval(self, X: pd.DataFrame, level: float = 0.9
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The interval at ``level``: the calibrated one when a calibration is set (centred
        on the ensemble's prediction), else the weighted mix of the members' intervals.

        Raises
        ------
        MixscaleError
            If ``level`` is outside (0, 1), or (without calibration) a member with weight > 0
            kept no bootstrap replicates.
        """
        if not 0.0 < level < 1.0:
            raise MixscaleError(f"`level` must be in (0, 1), but got level={level!r}.")
        if self.calibration_ is not None:
            centre = self.predict(X)
            ratio = np.maximum(self.extrapolation_ratio(X[self.class_columns_].to_numpy()), 1.0)
            half = np.asarray(self.calibration_.half_width(np.nan_to_num(ratio, nan=1.0), level))
            return centre - half, centre + half
        lower = np.zeros(len(X))
        upper = np.zeros(len(X))
        for name, member in self.members.items():
            w = self.weights[name]
            if w > 0:
                lo, hi = member.predict_interval(X, level)
                lower += w * np.asarray(lo)
                upper += w * np.asarray(hi)
        return lower, upper

    # ------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the members' own dicts and the weights."""
        cal = self.calibration_
        return {"format": ENSEMBLE_FORMAT, "version": 1,
                "members": {n: m.to_dict() for n, m in self.members.items()},
                "weights": dict(self.weights),
                "calibration": None if cal is None else cal.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnsembleLaw:
        """Rebuild from :meth:`to_dict` output, checking it."""
        if not isinstance(d, dict) or d.get("format") != ENSEMBLE_FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise MixscaleError(f"not a {ENSEMBLE_FORMAT} dict: `format` is {got!r}.")
        if d.get("version") != 1:
            raise MixscaleError(f"{ENSEMBLE_FORMAT} version must be 1, but got "
                                f"{d.get('version')!r}.")
        if not isinstance(d.get("members"), dict) or not isinstance(d.get("weights"), dict):
            raise MixscaleError(f"a {ENSEMBLE_FORMAT} dict needs `members` and `weights` "
                                "dicts.")
        # imported here: the reader dispatches every law kind, this one included
        from mixscale.fit.reader import law_from_dict

        law = cls({n: law_from_dict(m) for n, m in d["members"].items()}, d["weights"])
        if d.get("calibration") is not None:
            law.calibration_ = Calibration.from_dict(d["calibration"])
        return law

    def to_json(self) -> str:
        """``to_dict()`` as a JSON string."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> EnsembleLaw:
        """Rebuild from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def _check_fitted(self) -> None:
        for member in self.members.values():
            if getattr(member, "raw_params_", None) is None:
                raise NotFittedError("an ensemble member is not fitted.")
