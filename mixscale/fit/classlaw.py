"""Per-class scaling laws: bounded, data and epochs as separate saturating resources, per-class
shapes shrunk toward shared ones, 0 without own images, averaged by test share.

The laws of :mod:`mixscale.fit` feed the class counts into a link function through one linear
combination, so to a planner every image of a class is worth the same however many there are.
:class:`ClassLaw` instead models each class's own test accuracy (the ``test_accuracy_<class>``
metrics every row logs) with the structure of Rolf et al. (2021), where a group's error is a sum
of a power law in its own count and one in the total count, plus a floor:

    acc_c = A_c * g_c * (1 - m_c * (1 + w_own_c * x_c) ** (-p_c)
                           - (1 - m_c) * (1 + w_total_c * t) ** (-q_c)) * h(v),
    g_c = x_c / (x_c + k_c),   h(v) = 1 - (1 + rate * v / kappa) ** (-kappa),   v = u * t ** steps

with ``x_c = n_c / S`` (own count, ``S`` the largest class count seen in training), ``t = N /
S_N`` (total count ``N``, ``S_N`` its largest value) and ``u = epoch / E`` (``E`` the largest
epoch). ``A_c`` in (0, 1) is the class's accuracy ceiling (``1 - A_c`` Rolf's floor), ``m_c`` in
(0, 1) the share of its reducible error that only its own images remove (the rest any image
removes), ``w_own_c, w_total_c > 0`` the scales and ``p_c, q_c > 0`` the exponents of the two
power laws (``1 + w x`` keeps each term finite at 0 images), and ``k_c > 0`` (in units of
``S``) the own count at which the gate ``g_c`` is one half. Every factor lies in [0, 1) and
none decreases in any count, so **every prediction is in [0, 1) by the form itself (no clip),
more images of any class never lower any class's accuracy, and a class without images of its
own is predicted exactly 0** however many images of other classes there are.

Data and training length are separate saturating resources: ``h`` (shared by the classes,
``rate, kappa > 0``: its slope at 0 and its shape, the exponential ``1 - exp(-rate v)`` as
``kappa`` grows) rises from 0 to 1 in the training length ``v``, so at fixed data more epochs
approach the data curve, a ceiling below the data asymptote ``A_c``: epochs cannot stand in
for data (version 2 of this law added epochs to the counts inside one power law, so enough
epochs replaced any amount of data). ``steps`` in (0, 1] says what one epoch is worth at a
size: near 0 an epoch is an epoch at every size (one epoch curve for all), at 1 training
length is optimiser steps at a fixed batch size, so an epoch over twice the images is twice
the steps and a larger subset reaches its ceiling in fewer epochs. mixscale trains with a
fixed batch size, and on the digits demo (batch 32) the 60-image rows are still 38 points
below their ceiling at epoch 12 while the 480-image rows are flat: with one epoch curve for
all sizes (version 4 before ``steps``) the law could fit neither, was 23 points high at 60
images and epoch 12, and missed the 960- and 1,347-image runs by 2.1 points RMSE; with
``steps`` fitted (to 1.0) by 0.7 and 0.85. On the synthetic truth, whose epoch curve is the
same at every size, ``steps`` goes to its lower bound. ``h`` is shared because neither the
digits demo nor the synthetic truth (one epoch curve for every class) can tell one class's
epoch curve from another's.

Version 3 of this law had one power law in the sum ``z_c = w_own_c x_c + w_total_c t`` (``A_c
g_c (1 - (1 + z_c)^-p_c) h``). Its single exponent must serve both the fast own-count gain and
the slow gain from the total, so beyond the design it bent toward the ceiling too early:
fitted to all 24 runs of the synthetic design of ``tests/support/synthetic.py`` (10 classes,
sizes up to S = 400), RMSE against the truth at 2 S over 10 noise draws was 3.09 accuracy
points for version 3 and 2.41 for this form, where the truth's own form refitted to the same
rows (``synthetic.oracle_fit``, the best any law can do there) misses by 1.80.
``benchmarks/bench_extrapolation.py`` part (b) prints the pipeline's figures beside that
oracle.

**Shrinkage.** With seven free shape parameters per class a design of a few dozen runs cannot
pin every class down (version 2, fitted class by class, put ``k`` at its bound with huge
standard errors on the digits demo). The seven are fitted jointly, in transformed units ``phi_c
= (logit A_c, logit m_c, log w_own_c, log p_c, log w_total_c, log q_c, log k_c)``, with the
penalty ``lambda * n * ||phi_c - mu||^2`` per class toward a shared ``mu`` (fitted too: the
across-class mean), ``n`` the rows per class, so ``lambda`` is in units of a per-row squared
error. ``lambda = inf`` is the class-blind law (every class the same curve of its own count and
the total); ``lambda`` is chosen from :data:`STRENGTHS` by K-fold cross-validation over runs
(``groups``; rows with the same counts otherwise) with the one-standard-error rule toward more
shrinkage: the law moves away from "all classes alike" only as far as held-out runs justify.
``effective_params_`` is the trace of the fit's hat matrix (between 10 for the class-blind law
and ``7 * classes + 3``); ``shrinkage_`` holds the strength, the cross-validation errors and
the share of per-class freedom removed; ``identifiability_`` names the per-class parameters the
rows cannot identify (and which rows would) or is None.

The overall accuracy is ``sum_c w_c * acc_c`` with ``w_c`` the test split's class frequencies.
They are not a parameter of the fit: overall test accuracy *is* the frequency weighted mean of
per-class test accuracies, so ``w`` is recovered exactly from the logged metrics by
non-negative least squares (or passed as ``class_weights``).

A run bootstrap (resampling runs, refitting at the chosen strength) gives intervals for every
parameter and for predictions. The estimator mirrors :class:`mixscale.fit.ScalingLaw` (``fit``,
``predict``, ``score``, ``bootstrap``, ``keep_bootstrap``, ``predict_interval``, JSON round
trip), so fitting, registration, serving and planning treat both alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from scipy.special import expit, logit

from mixscale.errors import FitError, MixscaleError, NotFittedError
from mixscale.fit.base import LawBase, check_design
from mixscale.fit.bootstrap import BootstrapResult
from mixscale.fit.inputs import check_options, read_features, read_target
from mixscale.fit.lawjson import get_key
from mixscale.fit.laws import length_saturation, training_length
from mixscale.fit.metrics import mse, r2

__all__ = ["ClassLaw", "FAMILY", "PREDICTOR", "N_SHAPE", "N_SHARED", "STRENGTHS",
           "CLASS_FORMAT", "class_accuracy_column", "given_weights", "class_law_to_dict",
           "class_law_from_dict"]

FAMILY, PREDICTOR = "perclass", "own-total"  # how the fit summary and the registry name it
_SHAPE = ("A", "m", "w_own", "p", "w_total", "q", "k")  # per-class parameters, raw order
_LOGIT = (0, 1)  # A and m are shares in (0, 1): logit units; the others are positive: log units
_K = _SHAPE.index("k")
_EPOCH = ("rate", "kappa", "steps")  # the shared training-length saturation
N_SHAPE, N_SHARED = len(_SHAPE), len(_EPOCH)
# bounds in transformed units: logit A, logit m, log of the others
_LO = np.array([-9.0, -6.0, np.log(1e-6), np.log(0.02), np.log(1e-6), np.log(0.02),
                np.log(1e-4)])
_HI = np.array([9.0, 6.0, np.log(1e4), np.log(5.0), np.log(1e4), np.log(5.0), np.log(10.0)])
_E_LO, _E_HI = np.log([1e-2, 0.05, 1e-3]), np.log([1e3, 50.0, 1.0])
# (A, m, w_own, p, w_total, q, k, rate, kappa, steps): starts of the class-blind fit, then
# seeded random ones
_GRID = ((0.95, 0.5, 10.0, 0.7, 2.0, 1.0, 0.02, 5.0, 1.0, 0.5),
         (0.98, 0.7, 30.0, 1.0, 1.0, 0.5, 0.05, 20.0, 2.0, 1.0),
         (0.9, 0.3, 3.0, 0.5, 5.0, 1.5, 0.005, 1.0, 0.5, 0.1))
_RANDOM_LO = (0.6, 0.1, 0.3, 0.1, 0.1, 0.1, 1e-3, 0.02, 0.3, 0.05)  # range of random starts
_RANDOM_HI = (1.0, 0.9, 100.0, 2.0, 30.0, 2.0, 0.3, 2.0, 5.0, 1.0)
# shrinkage strengths tried, strongest first (inf: the class-blind law)
STRENGTHS = (np.inf, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
_N_FOLDS = 5
_MAX_ITER = 100  # Levenberg-Marquardt iterations per fit
_START_ITER = 25  # iterations from each start of the class-blind fit before the best goes on
_FOLD_ITER = 30  # ... and in a cross-validation fold, which starts from the full fit
_BOOT_ITER = 40  # ... and in a bootstrap replicate, which starts from the fit
_TOL = 1e-6  # ... and it stops when an iteration lowers the cost by less than this share
_SE_UNIDENTIFIED = 1.0  # a standard error above this (log units) is "not identified"
_SE_A = 0.1  # ... and for the ceiling A (accuracy units: 10 points)
_SIGMA2_FLOOR = 1e-6  # residual variance floor (0.1 point): noise-free rows still have SEs
_WEIGHT_TOL = 1e-3  # largest residual of "overall = weighted mean of per-class accuracies"
_HELP = {
    "A": "rows at larger subset sizes, where the class's curve bends toward its ceiling",
    "p": "rows at larger subset sizes, where the class's curve bends toward its ceiling",
    "q": "rows at larger subset sizes, where the class's curve bends toward its ceiling",
    "m": "runs whose class shares differ at the same total (the class's own count varied "
         "with the total fixed)",
    "w_own": "runs whose class shares differ at the same total (the class's own count varied "
             "with the total fixed)",
    "w_total": "runs whose class shares differ at the same total (the class's own count "
               "varied with the total fixed)",
    "k": "runs with only a few images of the class (near the gate's half point)",
    "rate": "evaluations at earlier epochs, before the curves flatten (lower --min-epoch or "
           "evaluate more often)",
    "kappa": "evaluations at earlier epochs, before the curves flatten (lower --min-epoch or "
             "evaluate more often)",
    "steps": "evaluations at earlier epochs at several subset sizes (an epoch of a larger "
             "subset is more optimiser steps; lower --min-epoch or evaluate more often)",
}


def class_accuracy_column(class_column: str) -> str:
    """``n_<class>`` -> ``accuracy_<class>``, the column of that class's test accuracy."""
    return "accuracy_" + class_column.removeprefix("n_")


def _natural(phi: np.ndarray) -> np.ndarray:
    """Per-class ``(A, m, w_own, p, w_total, q, k)`` from transformed ``phi`` (..., 7)."""
    out = np.exp(phi)
    out[..., _LOGIT] = expit(phi[..., _LOGIT])
    return out


def _transformed(theta: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_natural`, clipped into the bounds."""
    theta = np.asarray(theta, dtype=float)
    phi = np.log(np.clip(theta, 1e-300, None))
    phi[..., _LOGIT] = logit(np.clip(theta[..., _LOGIT], 1e-12, 1 - 1e-12))
    return np.clip(phi, _LO, _HI)


def _natural_scale(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """d natural / d transformed of every raw parameter: ``v (1 - v)`` for the shares, ``v``
    for the others (``raw``: :meth:`_Solution.raw` order)."""
    scale = np.asarray(raw, dtype=float).copy()
    idx = (np.arange(n_classes)[:, None] * N_SHAPE + np.array(_LOGIT)).ravel()
    scale[idx] = raw[idx] * (1.0 - raw[idx])
    return scale


def _epoch_factor(epoch_params: np.ndarray, u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``h = 1 - (1 + rate v / kappa)^-kappa`` at the training length ``v = u t^steps``: the
    saturating predictors' :func:`~mixscale.fit.laws.length_saturation` with ``tau = kappa /
    rate`` (this law keeps ``rate``, the slope at 0, which its start grid is written in)."""
    rate, kappa, steps = epoch_params
    return length_saturation(u, t, kappa / rate, kappa, steps)


def _curve(theta: np.ndarray, epoch_params: np.ndarray, x: np.ndarray, t: np.ndarray,
           u: np.ndarray) -> np.ndarray:
    """Per-class accuracies ``(n, C)`` for natural ``theta`` ``(C, 7)`` and ``(rate, kappa,
    steps)``."""
    a_max, m, w_own, p, w_total, q, k = theta.T
    own = np.exp(-p * np.log1p(w_own * x))
    total = np.exp(-q * np.log1p(w_total * t[:, None]))
    h = _epoch_factor(epoch_params, u, t)
    return a_max * (x / (x + k)) * (1.0 - m * own - (1.0 - m) * total) * h[:, None] + 0.0


def _gradients(phi: np.ndarray, eps: np.ndarray, x: np.ndarray, t: np.ndarray,
               u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracies ``(n, C)`` and their derivatives in transformed units: ``(n, C, 7)`` by each
    class's ``phi_c`` and ``(n, C, 3)`` by ``(log rate, log kappa, log steps)``."""
    a_max, m, w_own, p, w_total, q, k = _natural(phi).T
    rate, kappa, steps = np.exp(eps)
    v = training_length(u, t, steps)
    log_n = np.log(np.where(t > 0, t, 1.0))  # v is 0 where t is 0: its term vanishes
    zo, zt = w_own * x, w_total * t[:, None]
    log_o, log_t = np.log1p(zo), np.log1p(zt)
    own, total = np.exp(-p * log_o), np.exp(-q * log_t)
    f = 1.0 - m * own - (1.0 - m) * total
    gate = x / (x + k)
    r = 1.0 + rate * v / kappa
    log_r = np.log(r)
    s = np.exp(-kappa * log_r)
    h = (1.0 - s)[:, None]
    acc = a_max * gate * f * h
    agh = a_max * gate * h
    mo, mt = agh * m * own, agh * (1.0 - m) * total
    dphi = np.stack([acc * (1.0 - a_max), agh * (total - own) * m * (1.0 - m),
                     mo * p * zo / (1.0 + zo), mo * log_o * p,
                     mt * q * zt / (1.0 + zt), mt * log_t * q,
                     -acc * k / (x + k)], axis=-1)
    agf = a_max * gate * f
    dh_rate = s / r * rate * v
    dh_kappa = s * (kappa * log_r - rate * v / r)
    dh_steps = dh_rate * log_n * steps
    deps = np.stack([agf * dh_rate[:, None], agf * dh_kappa[:, None],
                     agf * dh_steps[:, None]], axis=-1)
    return acc + 0.0, dphi, deps


def _lm(evaluate: Any, v0: np.ndarray, lo: np.ndarray, hi: np.ndarray,
        max_iter: int = _MAX_ITER) -> tuple[np.ndarray, float] | None:
    """Levenberg-Marquardt on the normal equations, steps projected into ``[lo, hi]``.

    ``evaluate(v) -> (cost, gradient, Gauss-Newton Hessian)``. The Hessians here are small
    (``7 * classes + 10`` square) and built from per-class blocks, so an iteration costs one
    pass over the rows and no large matrix product (scipy's ``least_squares`` spent 20 ms per
    SVD of the 3150 x 57 Jacobian on the digits-sized table).
    """
    v = np.clip(v0, lo, hi)
    with np.errstate(all="ignore"):
        cost, grad, hess = evaluate(v)
        if not np.isfinite(cost):
            return None
        damp, grow = 1e-3, 2.0
        for _ in range(max_iter):
            diag = np.maximum(np.diag(hess), 1e-12 * max(float(np.max(np.diag(hess))), 1e-300))
            while True:
                try:
                    step = np.linalg.solve(hess + damp * np.diag(diag), -grad)
                except np.linalg.LinAlgError:
                    step = None
                if step is not None and np.all(np.isfinite(step)):
                    new = np.clip(v + step, lo, hi)
                    moved = new - v
                    result = evaluate(new)
                    predicted = -(grad @ moved + 0.5 * moved @ hess @ moved)
                    if np.isfinite(result[0]) and result[0] < cost:
                        break
                damp *= grow  # Nielsen's rule: grow the damping faster after each refusal
                grow *= 2.0
                if damp > 1e12:
                    return v, float(cost)
            gain = cost - result[0]
            ratio = gain / predicted if predicted > 0 else 0.0
            damp = max(damp * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3), 1e-12)
            grow = 2.0
            v, (cost, grad, hess) = new, result
            if gain <= _TOL * cost + 1e-16:
                break
    return v, float(cost)


def _penalty_hessian(n_classes: int, s2: float) -> np.ndarray:
    """Hessian of ``s2 / 2 * sum_c ||phi_c - mu||^2`` in ``v = (phi, eps, mu)``."""
    m = n_classes * N_SHAPE
    pen = np.zeros((m + N_SHARED + N_SHAPE,) * 2)
    pen[:m, :m] = s2 * np.eye(m)
    cross = -s2 * np.tile(np.eye(N_SHAPE), (n_classes, 1))
    pen[:m, m + N_SHARED:] = cross
    pen[m + N_SHARED:, :m] = cross.T
    pen[m + N_SHARED:, m + N_SHARED:] = n_classes * s2 * np.eye(N_SHAPE)
    return pen


class _Fitter:
    """Least squares of one table of rows (x ``(n, C)``, t, u ``(n,)``, per-class targets y)
    at a shrinkage strength: the class-blind law (``inf``) or the joint penalised fit."""

    def __init__(self, x: np.ndarray, t: np.ndarray, u: np.ndarray, y: np.ndarray, *,
                 loss: str, f_scale: float) -> None:
        self.x, self.t, self.u, self.y = x, t, u, y
        self.n, self.n_classes = x.shape
        self.loss, self.f_scale = loss, f_scale

    def subset(self, rows: np.ndarray) -> _Fitter:
        return _Fitter(self.x[rows], self.t[rows], self.u[rows], self.y[rows], loss=self.loss,
                       f_scale=self.f_scale)

    def data_normal(self, phi: np.ndarray, eps: np.ndarray) -> tuple[float, Any, Any]:
        """Data cost and its Gauss-Newton pieces: per-class blocks ``G (C, 7, 7)``, cross terms
        ``X (C, 7, 3)``, ``E (3, 3)`` and gradients ``(C, 7)``, ``(3,)``; and the raw parts."""
        acc, dphi, deps = _gradients(phi, eps, self.x, self.t, self.u)
        r = acc - self.y
        if self.loss == "huber":
            a = np.abs(r)
            inside = a <= self.f_scale
            w = np.where(inside, 1.0, self.f_scale / np.maximum(a, 1e-300))
            rho = np.where(inside, r ** 2, 2.0 * self.f_scale * a - self.f_scale ** 2)
        else:
            w, rho = np.ones_like(r), r ** 2
        # one batched product gives every block: columns (phi_c, eps, r), rows weighted
        cols = np.concatenate([dphi, deps, r[..., None]], axis=2) * np.sqrt(w)[..., None]
        cols = np.ascontiguousarray(cols.transpose(1, 0, 2))
        gram = cols.transpose(0, 2, 1) @ cols  # (C, 11, 11)
        a, b = N_SHAPE, N_SHAPE + N_SHARED
        pieces = (gram[:, :a, :a], gram[:, :a, a:b], gram[:, a:b, a:b].sum(axis=0),
                  gram[:, :a, b], gram[:, a:b, b].sum(axis=0))
        return 0.5 * float(rho.sum()), pieces, (acc, dphi, deps)

    def joint_normal(self, pieces: Any, strength: float) -> tuple[np.ndarray, np.ndarray]:
        """Hessian and gradient of the data part in the joint ``v = (phi, eps, mu)`` (without
        the penalty), from :meth:`data_normal`'s pieces."""
        g_blocks, x_blocks, e_block, g_phi, g_eps = pieces
        c = self.n_classes
        m = c * N_SHAPE
        hess = np.zeros((m + N_SHARED + N_SHAPE,) * 2)
        for k in range(c):
            sl = slice(k * N_SHAPE, (k + 1) * N_SHAPE)
            hess[sl, sl] = g_blocks[k]
            hess[sl, m:m + N_SHARED] = x_blocks[k]
            hess[m:m + N_SHARED, sl] = x_blocks[k].T
        hess[m:m + N_SHARED, m:m + N_SHARED] = e_block
        grad = np.concatenate([g_phi.ravel(), g_eps, np.zeros(N_SHAPE)])
        return hess, grad

    # class-blind: v = (mu (7), log rate, log kappa, log steps), every class phi_c = mu
    def shared(self, v0: np.ndarray, max_iter: int = _MAX_ITER) -> _Solution | None:
        c = self.n_classes

        def evaluate(v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            cost, (g_blocks, x_blocks, e_block, g_phi, g_eps), _ = self.data_normal(
                np.tile(v[:N_SHAPE], (c, 1)), v[N_SHAPE:])
            x_sum = x_blocks.sum(axis=0)
            hess = np.block([[g_blocks.sum(axis=0), x_sum], [x_sum.T, e_block]])
            return cost, np.concatenate([g_phi.sum(axis=0), g_eps]), hess

        out = _lm(evaluate, v0, np.r_[_LO, _E_LO], np.r_[_HI, _E_HI], max_iter)
        if out is None:
            return None
        v, cost = out
        mu = v[:N_SHAPE].copy()
        return _Solution(np.tile(mu, (c, 1)), v[N_SHAPE:].copy(), mu, np.inf, cost)

    # penalised: v = (phi (C x 7), log rate, log kappa, log steps, mu (7))
    def joint(self, strength: float, start: _Solution,
              max_iter: int = _MAX_ITER) -> _Solution | None:
        c, n = self.n_classes, self.n
        m = c * N_SHAPE
        s2 = strength * n
        pen = _penalty_hessian(c, s2)

        def evaluate(v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            phi, eps, mu = v[:m].reshape(c, N_SHAPE), v[m:m + N_SHARED], v[m + N_SHARED:]
            cost, pieces, _ = self.data_normal(phi, eps)
            hess, grad = self.joint_normal(pieces, strength)
            dev = phi - mu
            grad[:m] += s2 * dev.ravel()
            grad[m + N_SHARED:] -= s2 * dev.sum(axis=0)
            return cost + 0.5 * s2 * float(np.sum(dev ** 2)), grad, hess + pen

        v0 = np.concatenate([start.phi.ravel(), start.eps, start.mu])
        out = _lm(evaluate, v0, np.r_[np.tile(_LO, c), _E_LO, _LO],
                  np.r_[np.tile(_HI, c), _E_HI, _HI], max_iter)
        if out is None:
            return None
        v, cost = out
        return _Solution(v[:m].reshape(c, N_SHAPE).copy(), v[m:m + N_SHARED].copy(),
                         v[m + N_SHARED:].copy(), strength, cost)

    def fit(self, strength: float, start: _Solution,
            max_iter: int = _MAX_ITER) -> _Solution | None:
        """The fit at ``strength`` from ``start`` (inf: the class-blind law)."""
        if np.isinf(strength):
            return self.shared(np.concatenate([start.mu, start.eps]), max_iter)
        return self.joint(strength, start, max_iter)

    def squared_errors(self, sol: _Solution) -> np.ndarray:
        """Per row: mean over classes of the squared error."""
        acc = _curve(_natural(sol.phi), np.exp(sol.eps), self.x, self.t, self.u)
        return np.mean((acc - self.y) ** 2, axis=1)


class _Solution:
    """One fit: ``phi`` ``(C, 7)``, ``eps`` (log rate, log kappa, log steps), ``mu``, strength,
    cost."""

    def __init__(self, phi: np.ndarray, eps: np.ndarray, mu: np.ndarray, strength: float,
                 cost: float) -> None:
        self.phi, self.eps, self.mu, self.strength, self.cost = phi, eps, mu, strength, cost

    def raw(self) -> np.ndarray:
        """Natural parameters: every class's ``(A, m, w_own, p, w_total, q, k)``, then rate,
        kappa, steps."""
        return np.concatenate([_natural(self.phi).ravel(), np.exp(self.eps)])

    @classmethod
    def from_raw(cls, raw: np.ndarray, strength: float) -> _Solution:
        theta = np.asarray(raw[:-N_SHARED], dtype=float).reshape(-1, N_SHAPE)
        phi = _transformed(theta)
        eps = np.clip(np.log(raw[-N_SHARED:]), _E_LO, _E_HI)
        return cls(phi, eps, phi.mean(axis=0), strength, np.nan)


class ClassLaw(LawBase):
    """Bounded per-class accuracy laws with shrunk shapes, combined by test-class frequency.

    Parameters
    ----------
    min_epoch : int
        ``fit`` and ``score`` drop rows with ``epoch < min_epoch``.
    loss : {"linear", "huber"}
        Least-squares loss of the fit (with "huber" the shrinkage penalty turns linear too).
    f_scale : float
        Residual size where the Huber loss turns linear.
    n_starts : int
        Starts of the class-blind fit: a fixed grid first, then seeded random starts (every
        weaker shrinkage strength starts from the fit at the next stronger one).
    seed : int or None
        Seed of the random starts and of the cross-validation folds.

    Attributes
    ----------
    class_columns_ : list of str
        The ``n_<class>`` columns seen in ``fit``.
    count_scale_, total_scale_, epoch_scale_ : float
        ``S``, ``S_N`` and ``E`` of the module docstring.
    class_weights_ : numpy.ndarray
        Test-split class frequencies (sum to 1).
    raw_params_ : numpy.ndarray
        ``(A, m, w_own, p, w_total, q, k)`` of every class, concatenated in class order, then
        ``rate, kappa, steps``.
    params_ : dict of str to float
        ``<name>_<class>`` for every per-class parameter, ``rate``, ``kappa``, ``steps``, then
        ``weight_<class>``.
    pcov_ : numpy.ndarray
        Covariance of ``raw_params_`` (delta method from the penalised fit).
    strength_ : float
        The shrinkage strength chosen (``inf``: the class-blind law).
    effective_params_ : float
        Effective number of parameters (trace of the hat matrix).
    shrinkage_ : dict
        ``strength`` (None for inf), ``fraction`` (share of the per-class freedom removed: 1 =
        class-blind, 0 = free), ``strengths`` and ``cv_mse`` (held-out per-class MSE at each,
        None where not cross-validated), ``folds`` and ``rule``.
    identifiability_ : str or None
        Which per-class parameters the rows cannot identify and which rows would help.
    bootstrap_raw_ : numpy.ndarray or None
        Replicates of ``raw_params_`` kept by :meth:`keep_bootstrap`.
    """

    family = FAMILY
    predictor = PREDICTOR
    bounded = True  # [0, 1) by the form, 0 without own images, epochs saturate below data

    def __init__(self, *, min_epoch: int = 10, loss: Literal["linear", "huber"] = "linear",
                 f_scale: float = 0.01, n_starts: int = 8, seed: int | None = 0) -> None:
        self.min_epoch = min_epoch
        self.loss = loss
        self.f_scale = f_scale
        self.n_starts = n_starts
        self.seed = seed

    def __repr__(self) -> str:
        return f"ClassLaw(min_epoch={self.min_epoch!r})"

    # ------------------------------------------------------------------ fitting
    def _check_options(self) -> None:
        check_options(family="power", predictor="m0", min_epoch=self.min_epoch, loss=self.loss,
                      f_scale=self.f_scale, n_starts=self.n_starts, seed=self.seed)

    def _inputs(self, counts: np.ndarray, epoch: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``x``, ``t`` and ``u`` of the module docstring."""
        return (counts / self.count_scale_, counts.sum(axis=1) / self.total_scale_,
                epoch / self.epoch_scale_)

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None,
            class_weights: Sequence[float] | None = None) -> ClassLaw:
        """Fit the per-class laws to the per-class accuracies in ``X``, shrinkage chosen by
        cross-validation over runs.

        Parameters
        ----------
        X : pandas.DataFrame
            ``n_<class>`` counts, ``epoch`` and, for every class column ``n_<class>``, its test
            accuracy ``accuracy_<class>`` (other columns are ignored).
        y : array_like
            Overall test accuracy per row (for the class weights and :meth:`score`).
        groups : array_like, optional
            Run label per row: the cross-validation folds and :meth:`bootstrap` resample
            runs. Default: rows with the same class counts form one group.
        class_weights : sequence of float, optional
            Test-split class frequencies; default: recovered from ``y`` and the per-class
            accuracies by non-negative least squares.

        Returns
        -------
        ClassLaw
            ``self``, fitted.

        Raises
        ------
        FitError
            Missing or non-finite per-class accuracies, too few rows, overall accuracy that is
            not a weighted mean of the per-class ones, or a class-blind fit whose every start
            failed.
        """
        self._check_options()
        counts, epoch, columns = read_features(X, class_columns=None)
        y_all = read_target(y, n_rows=len(X))
        targets = _class_targets(X, columns)
        keep = epoch >= self.min_epoch
        n_min = N_SHAPE + N_SHARED + 1
        if keep.sum() < n_min:
            raise FitError(f"fitting the per-class law needs at least {n_min} rows "
                           f"with epoch >= min_epoch={self.min_epoch}, but got "
                           f"{int(keep.sum())} of {len(X)} rows.")
        weights = (_recover_weights(targets, y_all) if class_weights is None
                   else given_weights(class_weights, len(columns)))
        labels = _group_labels(groups, counts, len(X))[keep]
        counts, epoch, targets_fit = counts[keep], epoch[keep], targets[keep]
        scales = (counts.max(), counts.sum(axis=1).max(), epoch.max())
        if not min(scales) > 0:
            raise FitError(f"the largest class count, total and epoch of the training rows must "
                           f"be > 0, but got {scales}.")
        self.count_scale_, self.total_scale_, self.epoch_scale_ = (float(s) for s in scales)
        fitter = _Fitter(*self._inputs(counts, epoch), targets_fit, loss=self.loss,
                         f_scale=self.f_scale)
        rng = np.random.default_rng(self.seed)
        path = self._path(fitter, rng)
        chosen, cv = _choose(fitter, path, labels, rng)
        sol = path[chosen]
        self.class_columns_ = columns
        self.class_weights_ = weights
        pcov, df, unidentified = _statistics(fitter, sol)
        self._set(sol.raw(), pcov, cost=sol.cost, n_train=int(keep.sum()))
        self.strength_ = float(sol.strength)
        self.effective_params_ = df
        n_classes = len(columns)
        free = N_SHAPE * (n_classes - 1)
        fraction = 1.0 if free == 0 else float(np.clip(
            (N_SHAPE * n_classes + N_SHARED - df) / free, 0.0, 1.0))
        self.shrinkage_ = {"strength": _finite_or_none(sol.strength),
                           "fraction": fraction,
                           "strengths": [_finite_or_none(p.strength) for p in path], **cv}
        self.identifiability_ = self._identifiability_message(unidentified, sol)
        self._set_design(counts)
        self.groups_ = None if groups is None else np.asarray(groups)
        return self

    def _path(self, fitter: _Fitter, rng: np.random.Generator) -> list[_Solution]:
        """The class-blind fit (best of ``n_starts``), then every finite strength of
        :data:`STRENGTHS`, each from the one before (strengths whose fit failed are left out)."""
        starts = [np.array(s) for s in _GRID][: self.n_starts]
        while len(starts) < self.n_starts:
            starts.append(np.exp(rng.uniform(np.log(_RANDOM_LO), np.log(_RANDOM_HI))))
        best = None
        for s in starts:  # a short run from every start, then the best one to convergence
            sol = fitter.shared(np.concatenate([_transformed(s[:N_SHAPE]), np.log(s[N_SHAPE:])]),
                                max_iter=_START_ITER)
            if sol is not None and (best is None or sol.cost < best.cost):
                best = sol
        best = None if best is None else fitter.fit(np.inf, best)
        if best is None:
            raise FitError(f"the class-blind per-class law failed from all {len(starts)} "
                           "starts.")
        path = [best]
        for strength in STRENGTHS[1:]:
            sol = fitter.joint(strength, path[-1])
            if sol is not None:
                path.append(sol)
        return path

    def _identifiability_message(self, unidentified: dict[str, list[int]],
                                 sol: _Solution) -> str | None:
        if not unidentified:
            return None
        keys = [c.removeprefix("n_") for c in self.class_columns_]
        what = [name if name in _EPOCH else f"{name} ({_which(cls, keys)})"
                for name, cls in unidentified.items()]
        helps: list[str] = []
        for name in unidentified:
            text = _HELP[name]
            if name == "k":
                half = float(np.exp(sol.mu[_K]) * self.count_scale_)
                text += (f", about {half:.0f} images" if half >= 2 else
                         ": its half point is below 2 images, so only runs with 1 or 2 "
                         "images of a class show it")
            if text not in helps:
                helps.append(text)
        return ("the rows cannot identify " + "; ".join(what) + " on their own (standard "
                f"error > {_SE_UNIDENTIFIED:g} in log units, > {_SE_A:g} for A): shrinkage holds "
                "them near the values shared by the classes. Rows that would help: "
                + "; ".join(helps) + ".")

    def _set(self, raw: np.ndarray, pcov: np.ndarray, *, cost: float, n_train: int) -> None:
        keys = [c.removeprefix("n_") for c in self.class_columns_]
        raw = np.asarray(raw, dtype=float)
        theta = raw[:-N_SHARED].reshape(len(keys), N_SHAPE)
        self.raw_params_ = raw
        self.params_ = {f"{name}_{k}": float(theta[c, j])
                        for c, k in enumerate(keys) for j, name in enumerate(_SHAPE)}
        self.params_.update({name: float(v) for name, v in zip(_EPOCH, raw[-N_SHARED:],
                                                              strict=True)})
        self.params_.update({f"weight_{k}": float(w)
                             for k, w in zip(keys, self.class_weights_, strict=True)})
        self.pcov_ = pcov
        self.cost_ = cost
        self.n_train_ = n_train
        self.bootstrap_raw_: np.ndarray | None = None

    def _check_fitted(self) -> None:
        if not hasattr(self, "raw_params_"):
            raise NotFittedError("This ClassLaw instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # --------------------------------------------------------------- prediction
    def _class_matrix(self, counts: np.ndarray, epoch: np.ndarray,
                      raw: np.ndarray | None = None) -> np.ndarray:
        raw = self.raw_params_ if raw is None else np.asarray(raw, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _curve(raw[:-N_SHARED].reshape(-1, N_SHAPE), raw[-N_SHARED:],
                          *self._inputs(counts, epoch))

    def predict_classes(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each class's predicted test accuracy (in [0, 1) by the form), one
        ``accuracy_<class>`` column per class."""
        self._check_fitted()
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        return pd.DataFrame(self._class_matrix(counts, epoch),
                            columns=[class_accuracy_column(c) for c in self.class_columns_],
                            index=X.index)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Overall accuracy: per-class predictions weighted by the test class frequencies."""
        self._check_fitted()
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        return self._class_matrix(counts, epoch) @ self.class_weights_

    def score(self, X: pd.DataFrame, y: Any) -> dict[str, float]:
        """MSE, r^2 and row count of the overall prediction on rows with ``epoch >= min_epoch``."""
        self._check_fitted()
        _, epoch, _ = read_features(X, class_columns=self.class_columns_)
        y = read_target(y, n_rows=len(X))
        keep = epoch >= self.min_epoch
        if not keep.any():
            raise MixscaleError(f"score needs rows with epoch >= min_epoch={self.min_epoch}, "
                                "but got none.")
        pred = self.predict(X[keep])
        return {"mse": mse(y[keep], pred), "r2": r2(y[keep], pred), "n": int(keep.sum())}

    # -------------------------------------------------------------- uncertainty
    def standard_errors(self) -> dict[str, float]:
        """Standard errors of :attr:`params_` (the class weights are exact: 0)."""
        self._check_fitted()
        se = np.sqrt(np.clip(np.diag(self.pcov_), 0.0, None))
        names = list(self.params_)
        out = {n: float(v) for n, v in zip(names, se, strict=False)}
        out.update({n: 0.0 for n in names[len(se):]})
        return out

    def bootstrap(self, X: pd.DataFrame, y: Any, *, groups: Any = None, n_boot: int = 200,
                  seed: int | None = 0, level: float = 0.95) -> BootstrapResult:
        """Run bootstrap: resample runs, refit at the chosen shrinkage strength from the fitted
        values, same scales.

        ``X`` and ``y`` are as for :meth:`fit`; ``groups`` defaults to the ones given to it.
        """
        self._check_fitted()
        if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
            raise MixscaleError(f"`n_boot` must be an int >= 2, but got {n_boot!r}.")
        if not 0.0 < level < 1.0:
            raise MixscaleError(f"`level` must be in (0, 1), but got {level!r}.")
        groups = self.groups_ if groups is None else np.asarray(groups)
        if groups is None or len(groups) != len(X):
            raise MixscaleError("bootstrap resamples runs and needs `groups` with one label per "
                                "row of X; pass groups=... here or to fit().")
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        targets = _class_targets(X, self.class_columns_)
        keep = epoch >= self.min_epoch
        fitter = _Fitter(*self._inputs(counts[keep], epoch[keep]), targets[keep],
                         loss=self.loss, f_scale=self.f_scale)
        labels, inverse = np.unique(np.asarray(groups)[keep], return_inverse=True)
        if labels.size < 2:
            raise MixscaleError(f"bootstrap needs at least 2 runs with epoch >= min_epoch, "
                                f"but got {labels.size}.")
        members = [np.flatnonzero(inverse == g) for g in range(labels.size)]
        start = _Solution.from_raw(self.raw_params_, self.strength_)
        rng = np.random.default_rng(seed)
        raws, n_failed = [], 0
        for _ in range(n_boot):
            rows = np.concatenate([members[g] for g in rng.integers(0, labels.size, labels.size)])
            sol = fitter.subset(rows).fit(self.strength_, start, _BOOT_ITER)
            if sol is None:
                n_failed += 1
            else:
                raws.append(sol.raw())
        if not raws:
            raise FitError(f"every one of the {n_boot} bootstrap replicates failed.")
        raw = np.array(raws)
        names = list(self.params_)[: raw.shape[1]]
        tail = 100.0 * (1.0 - level) / 2.0
        lower, upper = np.percentile(raw, [tail, 100.0 - tail], axis=0)
        intervals = pd.DataFrame({"estimate": self.raw_params_, "lower": lower, "upper": upper},
                                 index=pd.Index(names, name="name"))
        return BootstrapResult(samples=pd.DataFrame(raw, columns=names), intervals=intervals,
                               predictions=None, prediction_intervals=None, level=level,
                               n_boot=n_boot, n_failed=n_failed, raw_samples=raw)

    def _no_replicates(self) -> str:
        return ("this per-class law carries no bootstrap replicates, so it has no prediction "
                "intervals (fit keeps them when --n-boot > 0).")

    def _replicate_predictions(self, X: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        return np.array([self._class_matrix(counts, epoch, theta) @ self.class_weights_
                         for theta in raw])

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted law (plain JSON types)."""
        self._check_fitted()
        return class_law_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassLaw:
        """Rebuild a fitted law from :meth:`to_dict` output, checking it."""
        return class_law_from_dict(cls, d)


def _which(classes: list[int], keys: list[str]) -> str:
    return ("all classes" if len(classes) == len(keys)
            else "classes " + ", ".join(keys[c] for c in classes))


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _group_labels(groups: Any, counts: np.ndarray, n_rows: int) -> np.ndarray:
    """Run label per row: ``groups``, or one label per distinct row of class counts."""
    if groups is None:
        return np.unique(counts, axis=0, return_inverse=True)[1].reshape(-1)
    labels = np.asarray(groups)
    if labels.shape != (n_rows,):
        raise MixscaleError(f"`groups` must have one label per row of X ({n_rows}), but got "
                            f"shape {labels.shape}.")
    return labels


def _choose(fitter: _Fitter, path: list[_Solution], labels: np.ndarray,
            rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """Index into ``path`` chosen by K-fold cross-validation over runs, one-SE rule toward the
    strongest shrinkage, and what the choice rests on."""
    uniq, inverse = np.unique(labels, return_inverse=True)
    n_groups = uniq.size
    if n_groups < 3 or len(path) == 1:
        return 0, {"cv_mse": None, "folds": 0,
                   "rule": f"class-blind: {n_groups} runs are too few to cross-validate"}
    k = min(_N_FOLDS, n_groups)
    fold_of = np.empty(n_groups, dtype=int)
    fold_of[rng.permutation(n_groups)] = np.arange(n_groups) % k
    fold = fold_of[inverse]
    err = np.full((n_groups, len(path)), np.inf)
    sizes = np.bincount(inverse, minlength=n_groups)
    for f in range(k):
        test = fold == f
        train_fit, held = fitter.subset(~test), fitter.subset(test)
        in_fold = fold_of == f
        for j, sol in enumerate(path):
            part = train_fit.fit(sol.strength, sol, _FOLD_ITER)
            if part is None:
                continue
            sums = np.bincount(inverse[test], weights=held.squared_errors(part),
                               minlength=n_groups)
            err[in_fold, j] = sums[in_fold] / sizes[in_fold]
    mean = err.mean(axis=0)
    best = int(np.argmin(mean))
    chosen = best
    for j in range(best):  # the strongest shrinkage within one standard error of the best
        diff = err[:, j] - err[:, best]
        if np.all(np.isfinite(diff)) and diff.mean() <= diff.std(ddof=1) / np.sqrt(n_groups):
            chosen = j
            break
    return chosen, {"cv_mse": [float(m) if np.isfinite(m) else None for m in mean],
                    "folds": k, "rule": "one standard error toward stronger shrinkage"}


def _statistics(fitter: _Fitter, sol: _Solution
                ) -> tuple[np.ndarray, float, dict[str, list[int]]]:
    """Covariance of the natural parameters, effective number of parameters, and which
    parameters the rows cannot identify on their own (name -> class indices)."""
    c, n = fitter.n_classes, fitter.n
    m = c * N_SHAPE + N_SHARED
    _, pieces, (acc, dphi, deps) = fitter.data_normal(sol.phi, sol.eps)
    rss = float(np.sum((acc - fitter.y) ** 2))
    info, _ = fitter.joint_normal(pieces, sol.strength)
    if np.isinf(sol.strength):  # every class is mu: the 7 parameters of the class-blind law
        lift = np.zeros((m + N_SHAPE, N_SHAPE + N_SHARED))
        lift[:c * N_SHAPE, :N_SHAPE] = np.tile(np.eye(N_SHAPE), (c, 1))
        lift[c * N_SHAPE:m, N_SHAPE:] = np.eye(N_SHARED)
        small = lift.T @ info @ lift
        df = float(np.linalg.matrix_rank(small))
        inv = (lift @ np.linalg.pinv(small) @ lift.T)[:m, :m]
    else:
        full = np.linalg.pinv(info + _penalty_hessian(c, sol.strength * n))
        df = float(np.trace(full @ info))
        inv = full[:m, :m]
    sigma2 = max(rss / max(c * n - df, 1.0), _SIGMA2_FLOOR)
    raw = sol.raw()
    scale_nat = _natural_scale(raw, c)
    pcov = sigma2 * inv * np.outer(scale_nat, scale_nat)
    unidentified: dict[str, list[int]] = {}
    limit = np.full(N_SHAPE, _SE_UNIDENTIFIED)
    limit[0] = _SE_A
    for k in range(c):  # each class by itself: its own rows, its parameters (A natural)
        jac = dphi[:, k, :].copy()
        jac[:, 0] /= max(scale_nat[k * N_SHAPE], 1e-300)
        se = _alone_se(jac, sigma2)
        for j in np.flatnonzero(se > limit):
            unidentified.setdefault(_SHAPE[j], []).append(k)
    se = _alone_se(deps.reshape(-1, N_SHARED), sigma2)
    for j in np.flatnonzero(se > _SE_UNIDENTIFIED):
        unidentified[_EPOCH[j]] = []
    return pcov, df, unidentified


def _alone_se(jac: np.ndarray, sigma2: float) -> np.ndarray:
    """Standard errors from ``jac`` alone (a tiny ridge: huge along directions it lacks)."""
    info = jac.T @ jac
    ridge = 1e-12 * max(float(np.trace(info)), 1e-300) * np.eye(len(info))
    return np.sqrt(sigma2 * np.clip(np.diag(np.linalg.inv(info + ridge)), 0.0, None))


def _class_targets(X: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The ``accuracy_<class>`` columns as floats, checked to be present and finite."""
    names = [class_accuracy_column(c) for c in columns]
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise FitError(f"the per-class law needs each class's test accuracy (the rows' "
                       f"test_accuracy_<class> metrics) as columns {names}, but {missing} are "
                       "missing.")
    values = X[names].to_numpy(dtype=float)
    bad = [n for n, b in zip(names, ~np.isfinite(values).all(axis=0), strict=True) if b]
    if bad:
        raise FitError(f"per-class accuracy columns {bad} must be finite, but contain NaN "
                       "(a row without that class's test_accuracy_<class> metric).")
    return values


def _recover_weights(targets: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Test class frequencies from ``overall = targets @ w`` by non-negative least squares."""
    w, _ = nnls(targets, y)
    if not w.sum() > 0:
        raise FitError("cannot recover the test class frequencies: the per-class accuracies "
                       "are all zero; pass class_weights.")
    w = w / w.sum()
    worst = float(np.max(np.abs(targets @ w - y)))
    if worst > _WEIGHT_TOL:
        raise FitError(f"overall accuracy is not a weighted mean of the per-class accuracies "
                       f"(largest residual {worst:.3g} > {_WEIGHT_TOL}); pass class_weights.")
    return w


def given_weights(weights: Sequence[float], n: int) -> np.ndarray:
    """``weights`` checked (n non-negative finite values, positive sum) and normalised."""
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != n or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise MixscaleError(f"`class_weights` must be {n} non-negative finite values with a "
                            f"positive sum, but got {w.tolist()}.")
    return w / w.sum()


def _block_cov(res: Any, n_rows: int) -> np.ndarray:
    """``sigma^2 (J^T J)^-1`` of one class fit (``inf`` when ``J`` is rank deficient)."""
    k = res.x.size
    jac = np.asarray(res.jac, dtype=float)
    dof = max(n_rows - k, 1)
    sigma2 = float(np.sum(res.fun ** 2)) / dof
    if np.linalg.matrix_rank(jac) < k:
        return np.full((k, k), np.inf)
    return sigma2 * np.linalg.pinv(jac.T @ jac)


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    k = sum(b.shape[0] for b in blocks)
    out = np.zeros((k, k))
    i = 0
    for b in blocks:
        out[i:i + b.shape[0], i:i + b.shape[0]] = b
        i += b.shape[0]
    return out


# 2: the own-count gate (0 accuracy without images of its own; parameter k) and `design`
# 3: bounded form with a separate epoch saturation h (rate, kappa), shrinkage toward shared shapes
# 4: own and total counts as two power laws (Rolf et al.) instead of one in their sum; training
#    length in epochs or optimiser steps (steps)
CLASS_FORMAT, CLASS_FORMAT_VERSION = "mixscale.ClassLaw", 4
_CLASS_KEYS = ("options", "class_columns", "count_scale", "total_scale", "epoch_scale",
               "class_weights", "raw_params", "pcov", "cost", "n_train", "shrinkage",
               "effective_params")
_REFIT = {1: "the per-class form without the own-count gate (it predicts high accuracy for a "
             "class with no images)",
          2: "the per-class form with epochs inside z (enough epochs replace any amount of "
             "data, and its predictions need a clip to stay in [0, 1])",
          3: "the per-class form with one power law in w_own x + w_total t (it bends toward "
             "its ceiling too early beyond the design)"}


def class_law_to_dict(law: Any) -> dict[str, Any]:
    """A fitted :class:`~mixscale.fit.classlaw.ClassLaw` as plain JSON types."""
    return {
        "format": CLASS_FORMAT, "version": CLASS_FORMAT_VERSION, "family": law.family,
        "predictor": law.predictor,
        "options": {"min_epoch": int(law.min_epoch), "loss": law.loss,
                    "f_scale": float(law.f_scale), "n_starts": int(law.n_starts),
                    "seed": None if law.seed is None else int(law.seed)},
        "class_columns": list(law.class_columns_),
        "count_scale": law.count_scale_, "total_scale": law.total_scale_,
        "epoch_scale": law.epoch_scale_,
        "class_weights": [float(w) for w in law.class_weights_],
        "params": dict(law.params_),
        "raw_params": [float(v) for v in law.raw_params_],
        "pcov": [[float(v) if np.isfinite(v) else None for v in row] for row in law.pcov_],
        "cost": law.cost_, "n_train": law.n_train_,
        "shrinkage": dict(law.shrinkage_), "effective_params": float(law.effective_params_),
        "identifiability": law.identifiability_,
        "bootstrap_raw": (None if law.bootstrap_raw_ is None else law.bootstrap_raw_.tolist()),
        "design": law.design_,
    }


def class_law_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a fitted per-class law of class ``cls`` from :func:`class_law_to_dict` output.

    Versions 1 to 3 are other forms: they are refused with a message to refit."""
    if not isinstance(d, dict) or d.get("format") != CLASS_FORMAT:
        raise MixscaleError(f"not a {CLASS_FORMAT} dict: `format` is {get_key(d, 'format')!r}.")
    old = d.get("version")
    if old in _REFIT:
        raise MixscaleError(f"{CLASS_FORMAT} version {old} is {_REFIT[old]}; refit it with "
                            f"`mixscale fit` to get version {CLASS_FORMAT_VERSION}.")
    if old != CLASS_FORMAT_VERSION:
        raise MixscaleError(f"{CLASS_FORMAT} version must be {CLASS_FORMAT_VERSION}, but got "
                            f"{old!r}.")
    missing = [k for k in _CLASS_KEYS if k not in d]
    if missing:
        raise MixscaleError(f"{CLASS_FORMAT} dict is missing key(s) {missing}.")
    law = cls(**d["options"])
    law._check_options()
    law.class_columns_ = list(d["class_columns"])
    law.count_scale_, law.total_scale_, law.epoch_scale_ = (
        float(d[k]) for k in ("count_scale", "total_scale", "epoch_scale"))
    weights = given_weights(d["class_weights"], len(law.class_columns_))
    stored = np.asarray(d["class_weights"], dtype=float)
    # stored weights already sum to 1: keep them bit for bit (renormalising moves an ulp)
    law.class_weights_ = stored if abs(stored.sum() - 1.0) < 1e-12 else weights
    raw = np.asarray(d["raw_params"], dtype=float)
    n_raw = len(law.class_columns_) * N_SHAPE + N_SHARED
    if raw.shape != (n_raw,) or not np.all(np.isfinite(raw)) or np.any(raw <= 0):
        raise MixscaleError(f"`raw_params` of a per-class law on {len(law.class_columns_)} "
                            f"classes must be {n_raw} positive values, but got {raw.size}.")
    pcov = np.array([[np.inf if v is None else v for v in row] for row in d["pcov"]])
    law._set(raw, pcov, cost=float(d["cost"]), n_train=int(d["n_train"]))
    shrinkage = d["shrinkage"]
    if not isinstance(shrinkage, dict) or "strength" not in shrinkage:
        raise MixscaleError(f"`shrinkage` must be a dict with a `strength`, but got "
                            f"{shrinkage!r}.")
    law.shrinkage_ = dict(shrinkage)
    law.strength_ = np.inf if shrinkage["strength"] is None else float(shrinkage["strength"])
    law.effective_params_ = float(d["effective_params"])
    law.identifiability_ = d.get("identifiability")
    law.groups_ = None
    if d.get("bootstrap_raw") is not None:
        law.bootstrap_raw_ = np.asarray(d["bootstrap_raw"], dtype=float)
    law.design_ = check_design(d.get("design"), len(law.class_columns_))
    return law
