"""Least-squares machinery behind :class:`mixscale.fit.ScalingLaw` (private).

Raw (internal) parameter vector, the identifiable parameterisation that is optimised::

    theta = [shape params of the family (k)] + [count weights w_1..w_{m-1}] + [epoch weights (q)]

with the last count weight implied, ``w_m = 1 - sum(w_1..w_{m-1})``, so the count weights sum
to 1 exactly. The *reported* vector is ``[shape] + [w_1..w_m] + [epoch weights]``; it is an
affine function of ``theta`` (:func:`report_matrix`), so covariances carry over exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeResult, least_squares

from mixscale.errors import FitError
from mixscale.fit.laws import Family

__all__: list[str] = []  # private module

_FD_STEP = float(np.sqrt(np.finfo(float).eps))
_COUNT_WEIGHT_BOUNDS = (-2.0, 3.0)  # each free normalised count weight (sum of all is 1)
_EPOCH_WEIGHT_BOUNDS = (-50.0, 50.0)  # epoch weights, in units of the count-weight sum
_DEFAULT_EPOCH_START = (0.3, 0.0)  # start for w_epoch, w_epoch2


@dataclass(frozen=True)
class Problem:
    """Scaled design blocks for one family; everything a residual needs."""

    family: Family
    count: np.ndarray  # (n, m) scaled count terms
    epoch: np.ndarray  # (n, q) scaled epoch terms

    @property
    def n_shape(self) -> int:
        return len(self.family.param_names)

    @property
    def n_free_counts(self) -> int:
        return self.count.shape[1] - 1

    @property
    def n_raw(self) -> int:
        return self.n_shape + self.n_free_counts + self.epoch.shape[1]

    def take(self, rows: np.ndarray) -> Problem:
        """The same problem restricted to (possibly repeated) ``rows``."""
        return Problem(self.family, self.count[rows], self.epoch[rows])

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shape params, all ``m`` count weights (summing to 1) and the epoch weights."""
        k, f = self.n_shape, self.n_free_counts
        free = theta[k : k + f]
        weights = np.append(free, 1.0 - free.sum())
        return theta[:k], weights, theta[k + f :]

    def linear_predictor(self, theta: np.ndarray) -> np.ndarray:
        _, weights, epoch_weights = self.split(theta)
        return self.count @ weights + self.epoch @ epoch_weights

    def predict(self, theta: np.ndarray) -> np.ndarray:
        return self.family(self.linear_predictor(theta), theta[: self.n_shape])

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d predict / d theta by the chain rule through ``z``.

        The linear predictor enters through ``z`` alone, so forward differences need ``k + 1``
        family evaluations instead of one per parameter; a family with an analytic ``grad``
        needs none.
        """
        k = self.n_shape
        shape = theta[:k]
        z = self.linear_predictor(theta)
        jac = np.empty((z.size, self.n_raw))
        if self.family.grad is not None:
            dydz, jac[:, :k] = self.family.grad(z, *shape)
        else:
            base = self.family(z, shape)
            for j in range(k):
                step = _FD_STEP * max(abs(shape[j]), 1.0)
                bumped = shape.copy()
                bumped[j] += step
                jac[:, j] = (self.family(z, bumped) - base) / step
            dz = _FD_STEP * np.maximum(np.abs(z), 0.1)
            dydz = (self.family(z + dz, shape) - base) / dz
        dz_dfree = self.count[:, :-1] - self.count[:, -1:]
        jac[:, k : k + self.n_free_counts] = dydz[:, None] * dz_dfree
        jac[:, k + self.n_free_counts :] = dydz[:, None] * self.epoch
        return jac


def report_matrix(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``reported = A @ theta + b`` (the implied last count weight)."""
    k, f, q = problem.n_shape, problem.n_free_counts, problem.epoch.shape[1]
    n_rep = k + f + 1 + q
    a = np.zeros((n_rep, problem.n_raw))
    a[: k + f, : k + f] = np.eye(k + f)
    a[k + f, k : k + f] = -1.0
    a[k + f + 1 :, k + f :] = np.eye(q)
    b = np.zeros(n_rep)
    b[k + f] = 1.0
    return a, b


def bounds(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the raw parameter vector."""
    return raw_bounds(problem.family, problem.n_free_counts, problem.epoch.shape[1])


def raw_bounds(family: Family, n_free_counts: int, n_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of a raw vector: ``family``'s box, then ``n_free_counts`` count
    weights and ``n_epoch`` epoch weights."""
    f, q = n_free_counts, n_epoch
    lower = np.concatenate(
        [family.lower, [_COUNT_WEIGHT_BOUNDS[0]] * f, [_EPOCH_WEIGHT_BOUNDS[0]] * q]
    )
    upper = np.concatenate(
        [family.upper, [_COUNT_WEIGHT_BOUNDS[1]] * f, [_EPOCH_WEIGHT_BOUNDS[1]] * q]
    )
    return lower, upper


COUNT_WEIGHT_WIDTH = _COUNT_WEIGHT_BOUNDS[1] - _COUNT_WEIGHT_BOUNDS[0]
"""Width of one count weight's box; also the yardstick of the implied last weight's error."""


def starting_points(
    problem: Problem, y: np.ndarray, *, n_starts: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The family's grid of starts, then random ones, ``n_starts`` in all.

    Grid starts take their linear-predictor weights from an ordinary linear regression of
    ``y`` on the scaled terms (a first-order picture of any monotone law), normalised to the
    sum-to-one convention. Random starts draw shape parameters uniformly in the box the grid
    spans, count weights from a flat Dirichlet and epoch weights uniformly.
    """
    lower, upper = bounds(problem)
    m, q = problem.count.shape[1], problem.epoch.shape[1]
    weights, epoch_weights = _linear_start(problem, y)
    grid = np.asarray(problem.family.starts, dtype=float)
    starts = [np.concatenate([shape, weights[:-1], epoch_weights]) for shape in grid]
    lo, hi = grid.min(axis=0), grid.max(axis=0)
    while len(starts) < n_starts:
        shape = rng.uniform(lo, hi)
        w = rng.dirichlet(np.ones(m))
        v = np.array([rng.uniform(0.0, 1.5), rng.uniform(-1.0, 0.3)][:q])
        starts.append(np.concatenate([shape, w[:-1], v]))
    return [np.clip(s, lower, upper) for s in starts[:n_starts]]


def _linear_start(problem: Problem, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, q = problem.count.shape[1], problem.epoch.shape[1]
    design = np.hstack([np.ones((y.size, 1)), problem.count, problem.epoch])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    total = coef[1 : 1 + m].sum()
    if np.all(np.isfinite(coef)) and total > 1e-8:
        weights = coef[1 : 1 + m] / total
        epoch_weights = coef[1 + m :] / total
        if np.all(np.abs(weights) < 3.0) and np.all(np.abs(epoch_weights) < 20.0):
            return weights, epoch_weights
    return np.full(m, 1.0 / m), np.asarray(_DEFAULT_EPOCH_START[:q])


def solve(
    problem: Problem,
    y: np.ndarray,
    starts: Sequence[np.ndarray],
    *,
    loss: str,
    f_scale: float,
) -> OptimizeResult:
    """Run bounded least squares from every start and keep the lowest cost.

    Raises
    ------
    FitError
        If every start fails (non-finite residuals, solver error).
    """
    lower, upper = bounds(problem)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return problem.predict(theta) - y

    best: OptimizeResult | None = None
    errors: list[str] = []
    with np.errstate(all="ignore"):
        for x0 in starts:
            try:
                res = least_squares(
                    residuals,
                    x0,
                    jac=lambda t: problem.jacobian(t),
                    bounds=(lower, upper),
                    method="trf",
                    tr_solver="exact",
                    loss=loss,
                    f_scale=f_scale,
                    x_scale="jac",
                    ftol=1e-10,
                    xtol=1e-10,
                    gtol=1e-10,
                    max_nfev=200 * problem.n_raw,
                )
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                errors.append(str(exc))
                continue
            if not np.isfinite(res.cost) or res.status < 0:
                errors.append(f"status {res.status}: {res.message}")
                continue
            if best is None or res.cost < best.cost:
                best = res
    if best is None:
        raise FitError(
            f"every start of the {problem.family.name!r} fit failed ({len(errors)} starts); "
            f"first error: {errors[0] if errors else 'none'}."
        )
    return best


def covariance(
    problem: Problem, theta: np.ndarray, y: np.ndarray, *, loss: str, f_scale: float
) -> np.ndarray:
    """``sigma^2 (J^T W J)^-1`` of the raw parameters (``inf`` if ``J`` is rank deficient).

    ``W`` is the identity for the linear loss; for the Huber loss it holds the IRLS weights
    ``min(1, f_scale / |r|)``, so rows the fit treated as outliers count as little in the
    covariance as they did in the fit. ``sigma^2`` is the weighted residual variance with
    ``n - p`` degrees of freedom.
    """
    n, p = y.size, theta.size
    with np.errstate(all="ignore"):
        r = problem.predict(theta) - y
        jac = problem.jacobian(theta)
    if loss == "huber":
        w = np.minimum(1.0, f_scale / np.maximum(np.abs(r), 1e-300))
    else:
        w = np.ones(n)
    jw = jac * np.sqrt(w)[:, None]
    dof = n - p
    if dof <= 0 or not np.all(np.isfinite(jw)):
        return np.full((p, p), np.inf)
    _, sv, vt = np.linalg.svd(jw, full_matrices=False)
    if sv[-1] <= np.finfo(float).eps * max(jw.shape) * sv[0]:
        return np.full((p, p), np.inf)
    sigma2 = float(np.sum(w * r**2) / dof)
    return sigma2 * (vt.T / sv**2) @ vt
