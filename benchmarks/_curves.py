"""Extrapolation on the public vision learning curves: every method scored the same way.

Shared by ``bench_scaling_benchmark.py`` and part (a) of ``bench_extrapolation.py``.

Data: ``shared/data/scaling_benchmark/benchmark.vision.csv`` (Alabdulmohsin, Neyshabur and Zhai
2022; 72 image-classification curves). Protocol, per curve: fit on the ``Training == 1`` rows
(``z = seen examples / largest fitted seen examples``, error = ``Loss``), predict the
``Training == 0`` rows (``z`` up to about 2.1) and score the RMSE of ``log(predicted error) -
log(true error)`` (the *extrapolation loss*).

Methods (:data:`METHODS` names them):
- ``<family>``: a family of :mod:`mixscale.fit.laws` fitted as :class:`~mixscale.fit.ScalingLaw`
  does, least squares in accuracy, every row alike;
- ``backtest``: per curve, the family with the lowest in-curve backtest error (see below),
  refitted on all training rows;
- ``ensemble``: the families' predictions combined with stacking weights
  (:func:`mixscale.fit.ensemble.stacking_weights`) fitted on the in-curve backtest;
- ``m4-log``: M4 fitted by :func:`mixscale.fit.priors.fit_curve` (log-error residuals, rows
  weighted by ``z**2``);
- ``m4-log-prior``: the same with the empirical-Bayes prior
  (:class:`~mixscale.fit.priors.ShapePrior`) learned from the ``m4-log`` fits of the curves of
  the OTHER tasks (bird / c / cal / inet): leave-one-task-out, so no curve informs its own fit;
- ``default``: what the pipeline's served laws do by default (:class:`~mixscale.fit.ScalingLaw`
  with ``weighting="auto"`` and ``prior="auto"`` on a bounded m4 law):
  :data:`~mixscale.fit.priors.PIPELINE_RULE` (accuracy residuals, rows weighted ``z**2``) with
  the population prior, here re-learned leave-one-task-out from the ``default-no-prior`` fits
  (``eps_inf`` and ``beta`` free, as in the shipped :data:`~mixscale.fit.priors.M4_PRIOR`);
- ``default-no-prior``: the same rule without the prior.

In-curve backtest and intervals. Each method is also fitted on the training rows with
``z <= 1 / BACKTEST_RATIO`` and predicts the remaining training rows (extrapolation ratios up to
:data:`BACKTEST_RATIO`, like the test rows'). The 90 % interval of a test row at ratio ``r`` is
``log(predicted error) +- h(r)`` with ``h(r) = q_fit + max(q_bt - q_fit, 0) * (r - 1) /
(BACKTEST_RATIO - 1)``, where ``q_fit`` and ``q_bt`` are the 90 % quantiles of the absolute
log-error residuals of the full fit (its own rows) and of the backtest: it starts at the noise
level and widens with the ratio at the rate the backtest showed. Coverage is the share of a
curve's test rows inside it, averaged over curves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mixscale.errors import MixscaleError
from mixscale.fit.ensemble import stacking_weights
from mixscale.fit.laws import FAMILIES, get_family
from mixscale.fit.priors import PIPELINE_RULE, PRIOR_FREE, ShapePrior, fit_curve

DEFAULT_CSV = (Path(__file__).resolve().parents[2] / "shared" / "data" / "scaling_benchmark"
               / "benchmark.vision.csv")
PUBLISHED_M4 = (0.0415, 0.030)  # mean, median extrapolation loss (Alabdulmohsin et al. 2022)
BACKTEST_RATIO = 2.0
LEVEL = 0.9
PRIOR_STRENGTH = 1.0
FAMILY_METHODS = tuple(FAMILIES)
METHODS = (*FAMILY_METHODS, "backtest", "ensemble", "m4-log", "m4-log-prior", "default",
           "default-no-prior")
# priored method -> (the plain method whose fits its prior is learned from, coordinates left free)
_PRIORED = {"m4-log-prior": ("m4-log", ()), "default": ("default-no-prior", PRIOR_FREE)}


@dataclass(frozen=True)
class Curve:
    """One learning curve, sizes scaled by its largest fitted size."""

    task: str
    model: str
    z_train: np.ndarray
    e_train: np.ndarray
    z_test: np.ndarray
    e_test: np.ndarray

    @property
    def group(self) -> str:
        """The task family (``bird``, ``c``, ``cal``, ``inet``): the leave-out unit."""
        return self.task.split("_")[0]


def load_curves(csv: Path = DEFAULT_CSV, *, quick: bool = False) -> list[Curve]:
    """The image-classification curves of ``csv`` (``quick``: every sixth, 12 curves)."""
    data = pd.read_csv(csv)
    data = data[data["Domain"] == "IC"]
    curves = []
    for (task, model), c in data.groupby(["Task", "Model"], sort=True):
        train, test = c[c["Training"] == 1], c[c["Training"] == 0]
        scale = float(train["Seen Examples"].max())
        curves.append(Curve(str(task), str(model),
                            train["Seen Examples"].to_numpy() / scale, train["Loss"].to_numpy(),
                            test["Seen Examples"].to_numpy() / scale, test["Loss"].to_numpy()))
    return curves[::6] if quick else curves


@dataclass
class _Fitted:
    """What one method gives on one curve: test predictions and the interval's pieces."""

    test: np.ndarray  # predicted error on the test rows
    q_fit: float
    backtest_log_res: np.ndarray  # log residuals of the in-curve backtest (may be empty)
    backtest_acc: np.ndarray  # backtest predicted accuracy (for stacking)
    params: tuple[float, ...] = ()  # the full fit's shape parameters


def _rule(method: str) -> dict:
    if method in FAMILY_METHODS:
        return {"family": method, "space": "accuracy", "size_power": 0.0}
    if method.startswith("default"):
        return {"family": "m4", **PIPELINE_RULE}
    return {"family": "m4", "space": "log", "size_power": 2.0}


def _fit_one(method: str, curve: Curve, prior: ShapePrior | None, seed: int,
             random_starts: int) -> _Fitted:
    rule = _rule(method)
    n_shape = len(get_family(rule["family"]).param_names)
    full = fit_curve(z=curve.z_train, error=curve.e_train, prior=prior, seed=seed,
                     random_starts=random_starts, **rule)
    q_fit = float(np.quantile(np.abs(np.log(full.error(curve.z_train)) - np.log(curve.e_train)),
                              LEVEL))
    early = curve.z_train <= 1.0 / BACKTEST_RATIO
    late = ~early
    if early.sum() > n_shape and late.sum() >= 1:
        part = fit_curve(z=curve.z_train[early], error=curve.e_train[early], prior=prior,
                         seed=seed, random_starts=random_starts, **rule)
        bt_err = part.error(curve.z_train[late])
        bt_res = np.log(bt_err) - np.log(curve.e_train[late])
        bt_acc = 1.0 - bt_err
    else:
        bt_res, bt_acc = np.empty(0), np.empty(0)
    return _Fitted(full.error(curve.z_test), q_fit, bt_res, bt_acc, full.params)


def _half_width(fitted: _Fitted, ratio: np.ndarray) -> np.ndarray:
    q_fit = fitted.q_fit
    if fitted.backtest_log_res.size:
        q_bt = float(np.quantile(np.abs(fitted.backtest_log_res), LEVEL))
    else:
        q_bt = 2.0 * q_fit  # no backtest possible: twice the noise level
    return q_fit + max(q_bt - q_fit, 0.0) * (ratio - 1.0) / (BACKTEST_RATIO - 1.0)


def _score(pred: np.ndarray, half: np.ndarray, curve: Curve) -> tuple[float, float]:
    res = np.log(np.clip(pred, 1e-6, 1.0)) - np.log(curve.e_test)
    return float(np.sqrt(np.mean(res**2))), float(np.mean(np.abs(res) <= half))


def _population_priors(curves: Sequence[Curve], shapes: dict[int, np.ndarray],
                       free: tuple[int, ...] = ()) -> dict[int, ShapePrior]:
    """Per curve, the prior from the OTHER task groups' shapes."""
    priors = {}
    for i, curve in enumerate(curves):
        other = [shapes[j] for j, c in enumerate(curves) if c.group != curve.group]
        if not other:
            raise MixscaleError(f"no curves outside task group {curve.group!r} to learn from.")
        priors[i] = ShapePrior.from_fits("m4", np.array(other), strength=PRIOR_STRENGTH,
                                         free=free)
    return priors


def derive_prior(csv: Path = DEFAULT_CSV, *, random_starts: int = 4) -> ShapePrior:
    """The population prior the pipeline ships (:data:`mixscale.fit.priors.M4_PRIOR`): M4 fitted
    to every curve by :data:`~mixscale.fit.priors.PIPELINE_RULE`, median and robust spread of
    the shapes, ``eps_inf`` and ``beta`` free. Run ``python benchmarks/bench_scaling_benchmark.py
    --derive-prior`` to print it."""
    curves = load_curves(csv)
    shapes = np.array([fit_curve(z=c.z_train, error=c.e_train, seed=i,
                                 random_starts=random_starts, **_rule("default")).params
                       for i, c in enumerate(curves)])
    return ShapePrior.from_fits("m4", shapes, strength=PRIOR_STRENGTH, free=PRIOR_FREE)


def evaluate_curves(csv: Path = DEFAULT_CSV, methods: Sequence[str] = METHODS, *,
                    quick: bool = False, random_starts: int = 4) -> pd.DataFrame:
    """Score every method on every curve.

    Parameters
    ----------
    csv : pathlib.Path
        The benchmark file.
    methods : sequence of str
        Names from :data:`METHODS`.
    quick : bool
        Every sixth curve only (12 curves).
    random_starts : int
        Seeded random starts per fit, after each family's grid.

    Returns
    -------
    pandas.DataFrame
        One row per (curve, method): ``task, model, method, loss, coverage, seconds``
        (``seconds``: CPU time of that method's fits; for ``backtest``/``ensemble`` the time of
        fitting every family is in the family rows).
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise MixscaleError(f"unknown methods {unknown}; choose from {list(METHODS)}.")
    curves = load_curves(csv, quick=quick)
    needs_families = any(m in ("backtest", "ensemble") for m in methods)
    base = [m for m in FAMILY_METHODS if m in methods or needs_families]
    for priored, (plain, _) in _PRIORED.items():
        if (priored in methods or plain in methods) and plain not in base:
            base.append(plain)
    fitted: dict[tuple[int, str], _Fitted] = {}
    seconds: dict[tuple[int, str], float] = {}
    for i, curve in enumerate(curves):
        for method in base:
            t0 = time.process_time()
            fitted[i, method] = _fit_one(method, curve, None, i, random_starts)
            seconds[i, method] = time.process_time() - t0
    for priored, (plain, free) in _PRIORED.items():
        if priored not in methods:
            continue
        shapes = {i: np.array(fitted[i, plain].params) for i in range(len(curves))}
        priors = _population_priors(curves, shapes, free)
        for i, curve in enumerate(curves):
            t0 = time.process_time()
            fitted[i, priored] = _fit_one(priored, curve, priors[i], i, random_starts)
            seconds[i, priored] = time.process_time() - t0
    rows = []
    for i, curve in enumerate(curves):
        ratio = curve.z_test
        for method in methods:
            if method == "backtest":
                pred, half = _select(curve, {f: fitted[i, f] for f in FAMILY_METHODS}, ratio)
            elif method == "ensemble":
                pred, half = _stack(curve, {f: fitted[i, f] for f in FAMILY_METHODS}, ratio)
            else:
                pred, half = fitted[i, method].test, _half_width(fitted[i, method], ratio)
            loss, coverage = _score(pred, half, curve)
            rows.append({"task": curve.task, "model": curve.model, "method": method,
                         "loss": loss, "coverage": coverage,
                         "seconds": seconds.get((i, method), 0.0)})
    return pd.DataFrame(rows)


def _backtest_rmse(f: _Fitted) -> float:
    return float(np.sqrt(np.mean(f.backtest_log_res**2))) if f.backtest_log_res.size else np.inf


def _select(curve: Curve, fits: dict[str, _Fitted], ratio: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """The family with the lowest backtest RMSE (log error); m4 when none could backtest."""
    scores = {name: _backtest_rmse(f) for name, f in fits.items()}
    name = min(scores, key=scores.get) if np.isfinite(min(scores.values())) else "m4"
    return fits[name].test, _half_width(fits[name], ratio)


def _stack(curve: Curve, fits: dict[str, _Fitted], ratio: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Stacked accuracy of the families, weights from the in-curve backtest."""
    names = [n for n, f in fits.items() if f.backtest_acc.size]
    if not names:
        return fits["m4"].test, _half_width(fits["m4"], ratio)
    late = curve.z_train > 1.0 / BACKTEST_RATIO
    preds = pd.DataFrame({n: fits[n].backtest_acc for n in names})
    weights = stacking_weights(preds, 1.0 - curve.e_train[late])
    acc = sum(w * (1.0 - fits[n].test) for n, w in weights.items())
    bt_acc = sum(w * fits[n].backtest_acc for n, w in weights.items())
    q_fit = float(np.average([fits[n].q_fit for n in names], weights=[weights[n] + 1e-12
                                                                     for n in names]))
    bt_res = np.log(np.clip(1.0 - bt_acc, 1e-6, 1.0)) - np.log(curve.e_train[late])
    stacked = _Fitted(np.clip(1.0 - acc, 1e-6, 1.0), q_fit, bt_res, bt_acc)
    return stacked.test, _half_width(stacked, ratio)


def summary_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean and median loss, 90 % coverage, share of wins and CPU s per curve."""
    wide = scores.pivot_table(index=["task", "model"], columns="method", values="loss")
    wins = wide.idxmin(axis=1).value_counts() / len(wide)
    g = scores.groupby("method", sort=False)
    table = pd.DataFrame({"mean": g["loss"].mean(), "median": g["loss"].median(),
                          "coverage90": g["coverage"].mean(), "seconds": g["seconds"].mean()})
    table["wins"] = wins.reindex(table.index).fillna(0.0)
    return table


def format_table(scores: pd.DataFrame) -> str:
    """The printed table, with the published M4 beside it."""
    table = summary_table(scores)
    n = scores.groupby(["task", "model"]).ngroups
    lines = [f"(a) public vision curves: {n} curves, extrapolation loss = RMSE of log error on "
             "the Training==0 rows (lower is better); coverage of the 90 % interval",
             f"{'method':<14} {'mean':>7} {'median':>7} {'cover90':>8} {'wins':>6} "
             f"{'CPU s/curve':>12}"]
    for method, row in table.iterrows():
        lines.append(f"{method:<14} {row['mean']:7.4f} {row['median']:7.4f} "
                     f"{row['coverage90']:8.0%} {row['wins']:6.0%} {row['seconds']:12.2f}")
    lines.append(f"{'published M4':<14} {PUBLISHED_M4[0]:7.4f} {PUBLISHED_M4[1]:7.4f} "
                 f"{'n/a':>8}")
    return "\n".join(lines)


def part_a(args) -> str:
    """Part (a) of ``bench_extrapolation.py``: the table as text.

    ``args`` may carry ``csv`` (path), ``quick`` (bool) and ``random_starts`` (int); missing
    attributes take the defaults.
    """
    scores = evaluate_curves(Path(getattr(args, "csv", None) or DEFAULT_CSV),
                             quick=bool(getattr(args, "quick", False)),
                             random_starts=int(getattr(args, "random_starts", 4) or 4))
    return format_table(scores)
