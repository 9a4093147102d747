"""How a fit reports on itself (private): law health, extrapolation in accuracy points, the
order of ``fit_summary.csv`` and the registry's descriptions. Used by :mod:`mixscale.stages.fit`.

Health. A parameter is *at a bound* when it lies within :data:`BOUND_TOL` of its box's width
from either end of the box the fit explored. Its standard error is *huge* when it is larger
than the whole width of that box (the data cannot place the parameter anywhere inside the
range it was allowed); the implied last count weight is measured against the width of the
count weights' box, and a parameter without a box against 10 x its absolute value. Infinite
standard errors (a rank-deficient Jacobian) are ``no_se``.

Extrapolation. ``extrap_rmse_points`` is the RMSE on the largest subset size, in accuracy
points (100 x the RMSE of fractions). ``extrap_r2`` is left empty when the held-out accuracies
barely vary (standard deviation below :data:`FLAT_STD`, one accuracy point): r^2 divides by
their variance, so it then measures noise, not the law; ``extrap_note`` says so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixscale.fit.laws import FAMILIES, PREDICTORS
from mixscale.fit.lsq import COUNT_WEIGHT_WIDTH

__all__: list[str] = []  # private module

BOUND_TOL = 1e-4  # share of the box width within which a parameter counts as at its bound
FLAT_STD = 0.01  # held-out accuracies with a smaller standard deviation get no extrap_r2
_MAX_NAMES = 8  # parameters named per kind in a health tag
_MAX_DESCRIPTION = 5000  # characters MLflow's SQL registry stores of a description


def law_key(family: str, predictor: str) -> str:
    """``<family>-<predictor>``, the alias and artifact name of a law (a law without a
    predictor, the ensemble: ``<family>``)."""
    return f"{family}-{predictor}" if isinstance(predictor, str) and predictor else family


def is_bounded(law: Any) -> bool:
    """``law.bounded``: predictions in [0, 1] below a fitted asymptote, 0 images -> 0 (or
    chance), epochs saturating (see :mod:`mixscale.fit.base`). Only bounded laws are
    registered and served; a law without the attribute counts as unbounded."""
    return bool(getattr(law, "bounded", False))


def _near_bound(value: float, end: float, lo: float, hi: float) -> bool:
    """Whether ``value`` is within :data:`BOUND_TOL` of the box end ``end``: of the box's width,
    or, for a positive box spanning more than three decades (a scale such as m4's ``beta`` in
    [1e-6, 1e3]), of its width in log units (else every ``beta < 1`` read as "at 1e-6")."""
    if lo > 0 and hi / lo > 1e3 and value > 0:
        return abs(np.log(value) - np.log(end)) <= BOUND_TOL * (np.log(hi) - np.log(lo))
    return abs(value - end) <= BOUND_TOL * (hi - lo)


def law_health(law: Any) -> tuple[str, list[str]]:
    """Parameters at a bound and huge standard errors of a fitted law.

    Parameters
    ----------
    law : ScalingLaw or ClassLaw
        A fitted law (``params_``, ``standard_errors()`` and, where it has one,
        ``parameter_bounds()``).

    Returns
    -------
    tag : str
        ``"ok"``, or kinds separated by ``;``, e.g. ``"at_bound:a;huge_se:a,b"``;
        ``unidentified`` when the law's ``identifiability_`` warns that the design cannot
        identify its per-class weights (that warning is the line).
    warnings : list of str
        One readable line per problem parameter.
    """
    boxed = hasattr(law, "parameter_bounds")
    bounds = law.parameter_bounds() if boxed else {}
    se = law.standard_errors()
    kinds, at_bound, huge, lines = [], [], [], []
    if not all(np.isfinite(v) for v in se.values()):
        kinds.append("no_se")
        lines.append("standard errors not estimable (rank-deficient Jacobian)")
    for name, value in law.params_.items():
        if name in bounds:
            lo, hi = bounds[name]
            for end, side in ((lo, "lower"), (hi, "upper")):
                if _near_bound(value, end, lo, hi):
                    at_bound.append(name)
                    lines.append(f"{name} = {value:.4g} at its {side} bound {end:g}")
        limit, what = _se_limit(name, value, bounds, boxed)
        if np.isfinite(se[name]) and se[name] > limit:
            huge.append(name)
            lines.append(f"{name}: standard error {se[name]:.3g} > {what}")
    for kind, names in (("at_bound", at_bound), ("huge_se", huge)):
        if names:
            shown = ",".join(names[:_MAX_NAMES])
            more = f",+{len(names) - _MAX_NAMES}" if len(names) > _MAX_NAMES else ""
            kinds.append(f"{kind}:{shown}{more}")
    unidentified = getattr(law, "identifiability_", None)  # the design cannot place weights
    if unidentified:
        kinds.append("unidentified")
        lines.append(str(unidentified))
    return (";".join(kinds) if kinds else "ok"), lines


def _se_limit(name: str, value: float, bounds: dict[str, tuple[float, float]],
              boxed: bool) -> tuple[float, str]:
    """The standard error above which ``name``'s is huge, and how to say it."""
    if name in bounds:
        width = bounds[name][1] - bounds[name][0]
        return width, f"its box width {width:g}"
    if boxed:  # a ScalingLaw's only parameter without a box: the implied last count weight
        return COUNT_WEIGHT_WIDTH, f"the count weights' box width {COUNT_WEIGHT_WIDTH:g}"
    return 10.0 * abs(value), "10 x |estimate|"


def extrap_columns(mse: float, r2: float, held_out: np.ndarray) -> dict[str, object]:
    """``extrap_mse, extrap_r2, extrap_rmse_points, extrap_note`` of one extrapolation score.

    ``held_out`` are the accuracies it was scored on (epoch >= min_epoch).
    """
    note = None
    std = float(np.std(held_out)) if len(held_out) else float("nan")
    if not std >= FLAT_STD:
        note = (f"extrap_r2 left empty: the held-out accuracies vary by only {100 * std:.2g} "
                f"points (std < {100 * FLAT_STD:g}), so r2 would measure noise")
        r2 = float("nan")
    return {"extrap_mse": mse, "extrap_r2": r2,
            "extrap_rmse_points": 100.0 * float(np.sqrt(mse)), "extrap_note": note}


def order_summary(summary: pd.DataFrame, basis: str,
                  eligible: pd.Series | None = None) -> pd.DataFrame:
    """The deciding columns first: ``law``, ``rank`` (1 = champion by ``basis``, among the
    ``eligible`` laws: the registered ones; empty for the others), ``basis``, validation
    MSE/r^2, backtest RMSE at ratios up to 3, extrapolation RMSE in points, ``bounded``,
    ``health``; then the rest."""
    out = summary.copy()
    out.insert(0, "law", [law_key(f, p) for f, p in zip(out["family"], out["predictor"],
                                                        strict=True)])
    score = out[basis] if eligible is None else out[basis].where(eligible.to_numpy())
    out["rank"] = score.rank(method="first").astype("Int64")
    first = ["law", "rank", basis, "val_mse", "val_r2", "backtest_rmse_r3",
             "extrap_rmse_points", "bounded", "health"]
    first = [c for c in dict.fromkeys(first) if c in out]
    return out[first + [c for c in out.columns if c not in first]]


def _predictor_words(predictor: str) -> str:
    pred = PREDICTORS[predictor]
    counts = ("each class's image count (one weight per class, the weights sum to 1)"
              if pred.per_class else "the total image count")
    epochs = "the epoch and its square" if 2 in pred.epoch_powers else "the epoch"
    return (f"z a weighted sum of {counts} and {epochs}, each input scaled to [0, 1]: "
            f"z = {pred.description}")


def law_words(law: Any) -> str:
    """What a law is, in one sentence: family, formula and predictor."""
    family = FAMILIES.get(law.family)
    doc = sys.modules[type(law).__module__].__doc__ or type(law).__name__
    if family is None and hasattr(law, "members"):  # the ensemble: its module says what it is
        weights = ", ".join(f"{n} {w:.3g}" for n, w in law.weights.items())
        return f"{doc.strip().splitlines()[0]} Members and weights: {weights}."
    if family is None:  # the per-class law: its module's first line says what it is
        return (f"{doc.strip().splitlines()[0]} Each class's own test accuracy is modelled from "
                "its own count, the total count and the epoch; overall accuracy weights the "
                "classes by their test frequency.")
    return f"{family.about}: accuracy = {family.formula}, with {_predictor_words(law.predictor)}."


def fitted_on(table: pd.DataFrame, design_ids: Sequence[str], dataset: str,
              min_epoch: int) -> str:
    """What a fit saw: designs, dataset, runs, evaluations, sizes and epochs."""
    roles = table.groupby("role")["run_id"].nunique()
    kept = table[table["epoch"] >= min_epoch]
    sizes = ", ".join(str(int(s)) for s in sorted(table["subset_size"].unique()))
    return (f"design(s) {', '.join(design_ids)} of dataset {dataset}: "
            f"{int(roles.get('train', 0))} training runs and "
            f"{int(roles.get('validation', 0))} validation runs, {len(kept)} evaluations at "
            f"epochs {int(kept['epoch'].min())}-{int(kept['epoch'].max())} "
            f"(min_epoch {min_epoch}); subset sizes {sizes}")


def version_description(law: Any, rec: dict[str, Any], *, fit_run_id: str, seen: str,
                        basis: str, n_laws: int, champion: str, champion_score: float,
                        health_lines: Sequence[str] = ()) -> str:
    """The model version's description: what the law is, what it saw, how it was chosen."""
    key = law_key(rec["family"], rec["predictor"])
    if key == champion:
        chosen = (f"**Champion** (alias `champion`): lowest {basis} of the {n_laws} laws ranked "
                  f"({rec[basis]:.4g}).")
    elif pd.isna(rec["rank"]):
        chosen = f"Not ranked: no {basis} (the champion {champion} has {champion_score:.4g})."
    else:
        chosen = (f"Rank {int(rec['rank'])} of {n_laws} by {basis} ({rec[basis]:.4g}; the "
                  f"champion {champion} has {champion_score:.4g}).")
    quality = [f"{name} {rec[col]:.4g}" for col, name in
               (("val_mse", "validation MSE"), ("val_r2", "validation r²"),
                ("backtest_rmse_r3", "backtest RMSE at 1-3x the fitted size (fraction)"),
                ("extrap_rmse_points", "extrapolation RMSE in accuracy points (fitted without "
                                       "the largest subset size, scored on it)"))
               if col in rec and rec[col] is not None and np.isfinite(rec[col])]
    health = rec.get("health") or "ok"
    return "\n\n".join([
        f"**{key}** — {law_words(law)}",
        f"Fitted on {seen}. Fit run `{fit_run_id}`.",
        chosen + (" " + "; ".join(quality) + "." if quality else ""),
        "Health: `ok` (no parameter at a bound of its box, no huge standard error)."
        if health == "ok" else
        f"Health warning `{health}`: " + "; ".join(health_lines[:_MAX_NAMES])
        + (f"; and {len(health_lines) - _MAX_NAMES} more" if len(health_lines) > _MAX_NAMES
           else "") + ". The data do not pin these parameters down; trust predictions near "
        "the design only.",
    ])[:_MAX_DESCRIPTION]


def model_description(dataset: str, *, fit_run_id: str, seen: str, basis: str,
                      champion: str, champion_version: str, champion_score: float) -> str:
    """The registered model's description (refreshed by every fit)."""
    return "\n\n".join([
        f"Scaling laws of test accuracy on **{dataset}**, fitted by mixscale: predicted test "
        "accuracy from per-class training image counts `n_<class>` and `epoch`. Each version is "
        "one law (alias `<family>-<predictor>`); `champion` points at the law with the lowest "
        f"{basis} of the latest fit; `perclass-own-total` is the law `mixscale plan` uses.",
        f"Latest fit: run `{fit_run_id}` on {seen}. Champion: {champion} "
        f"(version {champion_version}, {basis} {champion_score:.4g}).",
    ])[:_MAX_DESCRIPTION]


def row_health(table: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    """How many of the fit table's rows measured their data, from the ``row_check`` column.

    Returns
    -------
    metrics : dict
        ``rows_checked`` (rows trained with the checks), ``rows_still_rising`` and
        ``rows_below_baseline`` (logged on the fit run).
    lines : list of str
        One line per flagged row (its run id, size and what is wrong); empty when all are ok.
    """
    if "row_check" not in table.columns:
        return {}, []
    per_run = table.groupby("run_id", sort=False).agg(
        check=("row_check", "first"), size=("total_n", "first"))
    checked = per_run[per_run["check"].map(lambda c: isinstance(c, str) and bool(c))]
    if checked.empty:
        return {}, []
    metrics = {"rows_checked": float(len(checked)),
               "rows_still_rising": float(checked["check"].str.contains("still rising").sum()),
               "rows_below_baseline": float(
                   checked["check"].str.contains("below baseline").sum())}
    lines = [f"{run_id[:8]} ({int(rec['size'])} images): {rec['check']}"
             for run_id, rec in checked.iterrows() if rec["check"] != "ok"]
    return metrics, lines
