"""The acquisition planner: the cheapest per-class image counts that reach a target accuracy.

Given a fitted :class:`~mixscale.fit.ScalingLaw`, the counts one has (``current``), how many
images of each class one could have at most (``caps``), the cost of one more image of each
class (``costs``), a target accuracy and the epochs one will train for, :func:`plan_counts`
finds integer counts ``current <= x <= caps`` that minimise ``sum(costs * (x - current))``
subject to ``law.predict(x, epochs) >= target``:

1. a continuous relaxation, solved with SLSQP from a few starts (the current counts, the caps,
   their midpoint and a greedy fill of the classes with the best accuracy gain per cost);
2. rounding that keeps every bound and the target: round down, add the image with the best
   marginal gain per cost until the target holds, then drop the most expensive images whose
   removal keeps it, then try one-for-one swaps to a cheaper class.

No class is planned below a **floor**: by default the smallest per-class count of the design's
training rows (stored with the law), because the laws only know counts like those; a class the
law has never seen without images must not be left without them. The floor is a lower bound like
``current``, so a free class (cost 0) cannot push other classes below it either.

A law that **cannot tell classes apart** (one more image of any class changes its prediction
alike: the total-count predictors ``m2``/``m3``, or equal class weights) has no reason to prefer
one class, and the optimum above would be any split, e.g. everything in one class. Its plan
instead splits images in the design's mix (the training rows' mean class shares): the smallest
total whose split reaches the target; the plan carries a warning saying so.

**Planning with risk.** With ``confidence=C`` the constraint is on the *lower* bound of the
law's central ``C`` prediction interval (:meth:`mixscale.fit.base.LawBase.predict_interval`:
calibrated on the backtest when the law carries a calibration) instead of on the point
prediction: the cheapest counts that reach the target even in a bad case (at ``C = 0.9``, 95 %
of outcomes above it when the interval is calibrated). Such a plan buys more images than the
point plan, more the further it has to extrapolate. ``confidence=None`` (or 0) plans on the
point prediction, as before.

When even the best counts within the bounds miss the target the plan says so
(``reachable=False``) and carries those counts -- the caps, except that classes whose images
lower the prediction stay at their lower bound -- and the accuracy predicted there.

Pure numpy/scipy: nothing here logs or touches MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from mixscale.errors import MixscaleError
from mixscale.fit import ScalingLaw

__all__ = ["Plan", "plan_counts", "default_floor", "has_interval", "check_confidence",
           "confidence_from_text",
           "DEFAULT_CONFIDENCE",
           "INTERVAL_LEVEL", "MAX_CONFIDENCE"]

INTERVAL_LEVEL = 0.9  # coverage of the interval a point plan reports
DEFAULT_CONFIDENCE = 0.9  # `mixscale plan`'s --confidence for a law that has an interval
MAX_CONFIDENCE = 0.99  # above it the conformal sample of a backtest cannot vouch for a level
_MAX_STEPS = 100_000  # bound on the one-image rounding steps


@dataclass(frozen=True, kw_only=True, eq=False)
class Plan:
    """The planner's answer (all count arrays follow ``class_columns``)."""

    class_columns: list[str]  # the law's n_<class> columns, in order
    current: np.ndarray  # images of each class one has now
    caps: np.ndarray  # most images of each class one can have
    costs: np.ndarray  # cost of one more image of each class
    counts: np.ndarray  # planned images of each class (the best bound when unreachable)
    target: float  # accuracy asked for
    epochs: int  # epochs the law predicts for
    predicted: float  # law's predicted accuracy at ``counts`` (clipped to [0, 1], as served)
    interval: tuple[float, float] | None  # central interval at interval_level; None: no interval
    reachable: bool  # False: even the caps miss the target
    marginal_gain: np.ndarray  # d accuracy for one more image of each class, at ``counts``
    floor: np.ndarray  # fewest images of each class a plan may have
    warnings: tuple[str, ...] = ()  # what the user must know about this plan
    confidence: float | None = None  # None: planned on the point prediction; C: on the lower
    # bound of the central C interval
    interval_level: float = INTERVAL_LEVEL  # coverage of ``interval`` (= confidence if set)
    calibrated: bool = False  # ``interval`` is the backtest-calibrated one

    @property
    def added(self) -> np.ndarray:
        """Images to acquire per class, ``counts - current``."""
        return self.counts - self.current

    @property
    def cost(self) -> float:
        """Total cost of the added images."""
        return float(np.sum(self.costs * self.added))

    def to_frame(self) -> pd.DataFrame:
        """One row per class: current, plan, added, cost and marginal gain per image."""
        return pd.DataFrame({
            "class": [c.removeprefix("n_") for c in self.class_columns],
            "current": self.current.astype(int),
            "floor": self.floor.astype(int),
            "plan": self.counts.astype(int),
            "added": self.added.astype(int),
            "cap": self.caps.astype(int),
            "cost_per_image": self.costs,
            "cost": self.costs * self.added,
            "marginal_gain": self.marginal_gain,
        })

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (``plan.json``)."""
        return {
            "class_columns": list(self.class_columns),
            "current": [int(v) for v in self.current],
            "caps": [int(v) for v in self.caps],
            "floor": [int(v) for v in self.floor],
            "costs": [float(v) for v in self.costs],
            "counts": [int(v) for v in self.counts],
            "added": [int(v) for v in self.added],
            "target": self.target,
            "epochs": self.epochs,
            "predicted_accuracy": self.predicted,
            "interval": None if self.interval is None else list(self.interval),
            "interval_level": None if self.interval is None else self.interval_level,
            "interval_calibrated": self.calibrated if self.interval is not None else None,
            "confidence": self.confidence,
            "cost": self.cost,
            "reachable": self.reachable,
            "marginal_gain": [float(v) for v in self.marginal_gain],
            "warnings": list(self.warnings),
        }


def _vector(name: str, values: Any, n: int, columns: Sequence[str]) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size != n:
        raise MixscaleError(f"`{name}` must have one value per class column of the law ({n}: "
                            f"{', '.join(columns)}), but got {arr.size} value(s).")
    if not np.all(np.isfinite(arr)):
        raise MixscaleError(f"`{name}` must be finite, but got {arr.tolist()}.")
    return arr


def _check(law: ScalingLaw, current: Any, caps: Any, costs: Any, target: float,
           epochs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    columns = list(law.class_columns_)  # raises NotFittedError on an unfitted law
    n = len(columns)
    cur = _vector("current", current, n, columns)
    cap = _vector("caps", caps, n, columns)
    cost = _vector("costs", costs, n, columns)
    for name, arr in (("current", cur), ("caps", cap)):
        _integers(name, arr)
    bad = np.flatnonzero(cur > cap)
    if bad.size:
        pairs = ", ".join(f"{columns[i]}: current={cur[i]:g} > cap={cap[i]:g}" for i in bad)
        raise MixscaleError(f"`current <= caps` must hold for every class, but got {pairs}.")
    if np.any(cost < 0):
        raise MixscaleError(f"`costs` must be >= 0, but got costs={cost.tolist()}.")
    if not (isinstance(target, int | float) and 0.0 < float(target) < 1.0):
        raise MixscaleError(f"`target` must be in (0, 1), but got target={target!r}.")
    if not (isinstance(epochs, int | np.integer) and epochs >= 1):
        raise MixscaleError(f"`epochs` must be an integer >= 1, but got epochs={epochs!r}.")
    return cur, cap, cost


def _integers(name: str, arr: np.ndarray) -> None:
    if np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise MixscaleError(f"`{name}` must be non-negative integers, but got {arr.tolist()}.")


def default_floor(law: ScalingLaw) -> int:
    """The smallest per-class count of the law's training rows (0 for a law fitted before
    laws stored their design)."""
    design = getattr(law, "design_", None)
    return 0 if design is None else int(design["min_count"])


def _floor(law: ScalingLaw, floor: Any, cap: np.ndarray) -> np.ndarray:
    """``floor`` (None = :func:`default_floor`; one value or one per class) checked."""
    columns = list(law.class_columns_)
    values = np.asarray(default_floor(law) if floor is None else floor, dtype=float).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, len(columns))
    arr = _vector("floor", values, len(columns), columns)
    _integers("floor", arr)
    bad = np.flatnonzero(arr > cap)
    if bad.size:
        pairs = ", ".join(f"{columns[i]}: floor={arr[i]:g} > cap={cap[i]:g}" for i in bad)
        raise MixscaleError(f"`floor <= caps` must hold for every class, but got {pairs}; "
                            "raise the caps or lower the floor.")
    return arr


def has_interval(law: Any) -> bool:
    """Can ``law`` give a prediction interval (a calibration or kept bootstrap replicates)?"""
    return (getattr(law, "calibration_", None) is not None
            or getattr(law, "bootstrap_raw_", None) is not None)


def check_confidence(confidence: Any, law: Any) -> float | None:
    """``confidence`` checked: None or 0 -> None (point plan), else a level in (0, 0.99].

    Raises
    ------
    MixscaleError
        Naming the allowed range, or a law with no interval to take a lower bound of.
    """
    if confidence is None or (not isinstance(confidence, bool)
                              and isinstance(confidence, int | float) and confidence == 0):
        return None
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) \
            or not 0.0 < float(confidence) <= MAX_CONFIDENCE:
        raise MixscaleError(f"`confidence` must be 0 (plan on the point prediction) or in "
                            f"(0, {MAX_CONFIDENCE}], e.g. 0.9, but got {confidence!r}.")
    if not has_interval(law):
        raise MixscaleError("`confidence` needs a law with a prediction interval (a "
                            "calibration or kept bootstrap replicates), but this law has "
                            "neither; plan with confidence 0 (its point prediction) or a "
                            "calibrated law.")
    return float(confidence)


def confidence_from_text(text: str, law: Any) -> float | None:
    """``mixscale plan --confidence``: empty = :data:`DEFAULT_CONFIDENCE` for a law with an
    interval (:func:`has_interval`), else None (the point prediction); otherwise the number,
    checked by :func:`check_confidence`.

    Raises
    ------
    MixscaleError
        For text that is not a number, or a value :func:`check_confidence` refuses.
    """
    text = str(text).strip()
    if not text:
        return DEFAULT_CONFIDENCE if has_interval(law) else None
    try:
        value = float(text)
    except ValueError:
        raise MixscaleError(f"--confidence must be 0 (plan on the point prediction) or in "
                            f"(0, {MAX_CONFIDENCE}], e.g. 0.9, but got {text!r}.") from None
    return check_confidence(value, law)


class _Objective:
    """Batched predictions of one law at fixed epochs (rows of counts in, accuracy out): the
    point prediction, or with ``confidence`` the lower bound of the central interval."""

    def __init__(self, law: ScalingLaw, epochs: int, confidence: float | None = None) -> None:
        self.law, self.epochs, self.columns = law, int(epochs), list(law.class_columns_)
        self.confidence = confidence

    def frame(self, x: np.ndarray) -> pd.DataFrame:
        x = np.atleast_2d(np.maximum(x, 0.0))
        frame = pd.DataFrame(x, columns=self.columns)
        frame["epoch"] = float(self.epochs)
        return frame

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.confidence is None:
            return self.law.predict(self.frame(x))
        return self.law.predict_interval(self.frame(x), self.confidence)[0]

    def gains(self, x: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Accuracy change for ``step[c]`` images of each class c, one class at a time."""
        rows = np.vstack([x, x + np.diag(step)])
        acc = self(rows)
        return acc[1:] - acc[0]


def _best(f: _Objective, cur: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The caps, except classes whose images lower the prediction stay at ``current``.

    Exact for the per-class laws (a monotone function of a linear predictor); a few sweeps of
    one-class-at-a-time choices between ``current`` and ``cap`` otherwise.
    """
    x = cap.astype(float).copy()
    for _ in range(len(x) + 1):
        changed = False
        for c in range(len(x)):
            trial = np.vstack([x, x])
            trial[0, c], trial[1, c] = cur[c], cap[c]
            acc = f(trial)
            pick = cur[c] if acc[0] > acc[1] else cap[c]
            changed |= bool(pick != x[c])
            x[c] = pick
        if not changed:
            break
    return x


def _continuous(f: _Objective, cur: np.ndarray, cap: np.ndarray, cost: np.ndarray,
                target: float, best: np.ndarray) -> np.ndarray | None:
    """Cheapest real-valued counts reaching ``target`` (SLSQP, a few starts), or None."""
    scale = max(float(f.law.count_scale_), 1.0)  # optimise in units of the law's count scale
    lo, hi = cur / scale, cap / scale
    weight = cost / max(float(cost.max()), 1e-12)
    eps = 1e-4

    def acc(u: np.ndarray) -> float:
        return float(f(u * scale)[0])

    def acc_jac(u: np.ndarray) -> np.ndarray:
        rows = np.vstack([u, u + eps * np.eye(u.size)]) * scale
        values = f(rows)
        return (values[1:] - values[0]) / eps

    starts = [best / scale, (lo + hi) / 2, lo.copy(),
              _greedy_fill(f, cur, cap, cost, target) / scale]
    found, found_cost = None, np.inf
    for u0 in starts:
        try:
            res = minimize(lambda u: float(weight @ (u - lo)), u0, jac=lambda u: weight,
                           method="SLSQP", bounds=list(zip(lo, hi, strict=True)),
                           constraints=[{"type": "ineq", "fun": lambda u: acc(u) - target,
                                         "jac": acc_jac}],
                           options={"maxiter": 200, "ftol": 1e-10})
        except (ValueError, FloatingPointError):
            continue
        u = np.clip(res.x, lo, hi)
        c = float(weight @ (u - lo))
        if acc(u) >= target - 1e-6 and c < found_cost:
            found, found_cost = u * scale, c
    return found


def _greedy_fill(f: _Objective, cur: np.ndarray, cap: np.ndarray, cost: np.ndarray,
                 target: float) -> np.ndarray:
    """Fill classes in order of gain per cost (measured at ``cur``) until the target holds."""
    room = cap - cur
    gain = f.gains(cur, np.maximum(room, 1e-9)) / np.maximum(room, 1e-9)
    order = np.argsort(-np.where(gain > 0, gain / np.maximum(cost, 1e-12), -np.inf))
    x = cur.astype(float).copy()
    for c in order:
        if gain[c] <= 0 or f(x)[0] >= target:
            break
        lo_t, hi_t = 0.0, 1.0
        full = x.copy()
        full[c] = cap[c]
        if f(full)[0] < target:
            x = full
            continue
        for _ in range(40):  # bisect the share of the class's room that reaches the target
            mid = (lo_t + hi_t) / 2
            trial = x.copy()
            trial[c] = cur[c] + mid * room[c]
            lo_t, hi_t = (mid, hi_t) if f(trial)[0] < target else (lo_t, mid)
        x[c] = cur[c] + hi_t * room[c]
    return x


def _ratio(gain: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Gain per cost; a free image with positive gain is worth the most."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(cost > 0, gain / np.where(cost > 0, cost, 1.0), np.inf)
    return np.where(gain > 0, r, -np.inf)


def _round(f: _Objective, x: np.ndarray, cur: np.ndarray, cap: np.ndarray, cost: np.ndarray,
           target: float) -> np.ndarray:
    """Integer counts within the bounds that keep the target, from real-valued ``x``."""
    x = np.clip(np.floor(x + 1e-9), cur, cap)
    one = np.ones_like(x)
    for _ in range(_MAX_STEPS):  # add the best image per cost until the target holds
        if f(x)[0] >= target:
            break
        r = np.where(x < cap, _ratio(f.gains(x, one), cost), -np.inf)
        c = int(np.argmax(r))
        if r[c] == -np.inf:
            break
        x[c] += 1
    for _ in range(_MAX_STEPS):  # drop the most expensive image whose removal keeps the target
        ok = (x > cur) & (f(x - np.diag(one)) >= target)
        if not ok.any():
            break
        x[int(np.argmax(np.where(ok, cost, -np.inf)))] -= 1
    for _ in range(_MAX_STEPS):  # swap one image of a dear class for one of a cheaper class
        swapped = False
        for i in np.argsort(-cost):
            if x[i] <= cur[i]:
                continue
            for j in np.argsort(cost):
                if cost[j] >= cost[i] or x[j] >= cap[j]:
                    continue
                trial = x.copy()
                trial[i] -= 1
                trial[j] += 1
                if f(trial)[0] >= target:
                    x, swapped = trial, True
                    break
            if swapped:
                break
        if not swapped:
            break
    return x


def _class_blind(f: _Objective, at: np.ndarray) -> bool:
    """True when one more image of any class changes the prediction alike, both at ``at`` and
    at unequal counts (classes that merely look alike at equal counts are not blind)."""
    step = max(float(f.law.count_scale_) / len(at), 1.0)
    for x in (at, at + step * np.arange(1, len(at) + 1)):
        gains = f.gains(x, np.ones_like(x))
        if np.ptp(gains) > 1e-6 * max(float(np.abs(gains).max()), 1e-12):
            return False
    return True


def _mix(law: ScalingLaw) -> np.ndarray:
    """The design's mean class shares (uniform for a law that did not store them)."""
    n = len(law.class_columns_)
    design = getattr(law, "design_", None)
    mix = np.full(n, 1.0 / n) if design is None else np.asarray(design["mix"], dtype=float)
    return mix / mix.sum() if mix.sum() > 0 else np.full(n, 1.0 / n)


def _proportional(f: _Objective, lo: np.ndarray, cap: np.ndarray, mix: np.ndarray,
                  target: float) -> tuple[np.ndarray, bool]:
    """The smallest total whose split in ``mix`` (within the bounds) reaches ``target``.

    Returns the counts and whether they reach it (else the largest such split).
    """
    def split(total: int) -> np.ndarray:
        return np.clip(np.floor(total * mix + 1e-9), lo, cap)

    share = mix > 0
    top = int(np.ceil(np.max(cap[share] / mix[share]))) if share.any() else 0
    if f(split(top))[0] < target:
        return split(top), False
    low, high = 0, top  # f(split(high)) >= target; find the smallest such total
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if f(split(mid))[0] >= target else (mid, high)
    return split(low if f(split(low))[0] >= target else high), True


def plan_counts(law: ScalingLaw, *, current: Sequence[float] | np.ndarray,
                caps: Sequence[float] | np.ndarray, costs: Sequence[float] | np.ndarray,
                target: float, epochs: int, interval: bool | None = None,
                floor: int | Sequence[int] | None = None,
                confidence: float | None = None) -> Plan:
    """Cheapest integer counts ``max(current, floor) <= x <= caps`` with predicted accuracy
    (or, with ``confidence``, the lower bound of its central interval) >= ``target``.

    Parameters
    ----------
    law : ScalingLaw or ClassLaw
        A fitted law (its ``class_columns_`` fix the order of every vector).
    current, caps : array_like of int
        Images of each class one has now, and the most one can have (``current <= caps``).
    costs : array_like of float
        Cost of one more image of each class (>= 0; 0 = free).
    target : float
        Accuracy to reach, in (0, 1).
    epochs : int
        Epochs of training the prediction is for (>= 1).
    interval : bool or None
        Add the law's 90 % interval at the plan (calibrated when the law carries a
        calibration, else its run bootstrap's); None = when the law has one. A plan with
        ``confidence`` always reports its interval at that level.
    floor : int, array_like of int or None
        Fewest images of each class the plan may have (one value for every class, or one per
        class; ``floor <= caps``). None = :func:`default_floor`, the smallest per-class count
        of the law's training rows.
    confidence : float or None
        None or 0: plan on the point prediction. ``C`` in (0, :data:`MAX_CONFIDENCE`]: the
        cheapest counts whose lower bound of the central ``C`` interval reaches ``target``
        (needs a law with an interval: :func:`has_interval`).

    Returns
    -------
    Plan
        ``reachable=False`` when even the best counts in the bounds (the caps, with classes
        whose images lower the prediction left at their lower bound) miss the target;
        ``counts`` and ``predicted`` are then those counts and their accuracy. A law that
        cannot tell classes apart splits images in the design's mix, with a warning.

    Raises
    ------
    MixscaleError
        A vector whose length is not the number of classes, ``current > caps``,
        ``floor > caps``, negative costs, counts or floors, ``target`` outside (0, 1),
        ``epochs < 1``, ``confidence`` outside 0 or (0, 0.99] or on a law without interval.
    """
    cur, cap, cost = _check(law, current, caps, costs, target, epochs)
    level = check_confidence(confidence, law)
    low = _floor(law, floor, cap)
    lo = np.maximum(cur, low)  # a plan's lower bound: what one has, and never below the floor
    target = float(target)
    f = _Objective(law, int(epochs), level)
    notes: list[str] = []
    if _class_blind(f, np.maximum(lo, 1.0)):
        mix = _mix(law)
        shares = ", ".join(f"{c.removeprefix('n_')}: {m:.3f}"
                           for c, m in zip(law.class_columns_, mix, strict=True))
        notes.append(f"the law {law.family}-{law.predictor} cannot tell the classes apart (one "
                     "more image of any class changes its prediction alike), so this plan "
                     f"splits images in the design's mix ({shares}) instead of by their worth; "
                     "plan with a per-class law to choose classes.")
        if f(lo)[0] >= target:
            counts, reachable = lo.copy(), True
        else:
            counts, reachable = _proportional(f, lo, cap, mix, target)
    else:
        best = _best(f, lo, cap)
        if f(lo)[0] >= target:
            counts, reachable = lo.copy(), True
        elif f(best)[0] < target:
            counts, reachable = best, False
        else:
            x = _continuous(f, lo, cap, cost, target, best)
            if x is None:  # the solver failed from every start: round up from the greedy fill
                x = _greedy_fill(f, lo, cap, cost, target)
            counts, reachable = _round(f, x, lo, cap, cost, target), True
    if hasattr(law, "outside_design") and bool(law.outside_design(counts)[0]):
        notes.append("the plan lies outside the design's range of class shares and totals: "
                     "its prediction is an extrapolation.")
    predicted = float(np.clip(law.predict(f.frame(counts))[0], 0.0, 1.0))  # as served
    if interval is None or level is not None:
        interval = has_interval(law)
    bounds = None
    at = INTERVAL_LEVEL if level is None else level
    if interval:
        lower, upper = law.predict_interval(f.frame(counts), at)
        bounds = (float(np.clip(lower[0], 0, 1)), float(np.clip(upper[0], 0, 1)))
    return Plan(class_columns=list(law.class_columns_), current=cur, caps=cap, costs=cost,
                counts=counts, target=target, epochs=int(epochs), predicted=predicted,
                interval=bounds, reachable=reachable,
                marginal_gain=_Objective(law, int(epochs)).gains(counts, np.ones_like(counts)),
                floor=low,
                warnings=tuple(notes), confidence=level, interval_level=at,
                calibrated=getattr(law, "calibration_", None) is not None)


