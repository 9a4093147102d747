"""Least-squares machinery behind :class:`mixscale.fit.ScalingLaw` (private).

Raw (internal) parameter vector, the identifiable parameterisation that is optimised::

    theta = [shape params of the family (k)] + [count weights w_1..w_{m-1}] + [epoch weights (q)]

with the last count weight implied, ``w_m = 1 - sum(w_1..w_{m-1})``, so the count weights sum
to 1 exactly. The *reported* vector is ``[shape] + [w_1..w_m] + [epoch weights]``; it is an
affine function of ``theta`` (:func:`report_matrix`), so covariances carry over exactly. A
saturating predictor's "epoch weights" are ``tau, kappa`` of
:func:`~mixscale.fit.laws.epoch_saturation`.

Shrinkage. A problem with ``penalty = lam > 0`` adds the residuals ``sqrt(lam) * (w_c - 1/m)``
(one per count weight) to the data residuals: ridge towards equal weights, i.e. towards the
total-count twin of a per-class law. :func:`choose_penalty` picks ``lam`` by K-fold
cross-validation over groups (runs).

Prior. A problem with a ``prior`` (:class:`~mixscale.fit.priors.ShapePrior`) adds its residuals
``prior_sigma * sqrt(strength) * (g(shape) - center) / scale`` on the family's shape: maximum a
posteriori, in units of the unpenalised fit's own residual size ``prior_sigma``.

Residuals. :meth:`Problem.residuals` is ``pred - y`` (or, with ``log_error``, the log-error
difference) times a per-row ``row_weight`` (the square root of the squared-residual weight;
:class:`~mixscale.fit.ScalingLaw` builds it from its ``weighting`` and ``sample_weight``).
Every solve, the covariance, the effective parameters, the shrinkage's residual variance and
the bootstrap refits (:meth:`Problem.take` keeps each row's weight) use them. A saturating
per-class predictor's count weights are kept >= 0: a box [0, 1] on the free ones and a hinge
residual plus :meth:`Problem.project` on the implied last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import OptimizeResult, least_squares

from mixscale.errors import FitError
from mixscale.fit.laws import (
    EPOCH_FACTOR_LOWER,
    EPOCH_FACTOR_START,
    EPOCH_FACTOR_UPPER,
    Family,
    length_saturation,
    length_saturation_gradient,
)
from mixscale.fit.priors import ShapePrior

__all__: list[str] = []  # private module

_FD_STEP = float(np.sqrt(np.finfo(float).eps))
_COUNT_WEIGHT_BOUNDS = (-2.0, 3.0)  # each free normalised count weight (sum of all is 1)
_EPOCH_WEIGHT_BOUNDS = (-50.0, 50.0)  # epoch weights, in units of the count-weight sum
_DEFAULT_EPOCH_START = (0.3, 0.0)  # start for w_epoch, w_epoch2
_NONNEG_COUNT_BOUNDS = (0.0, 1.0)  # a saturating predictor's free count weights (never < 0)
SIGN_WEIGHT = 1e4
"""Weight of the hinge residual that keeps a saturating predictor's implied last count weight
>= 0 (box bounds cannot express ``sum(free) <= 1``); :meth:`Problem.project` removes what is
left of a violation after the solve."""


@dataclass(frozen=True)
class Problem:
    """Scaled design blocks for one family; everything a residual needs.

    ``saturating``: epochs enter as the factor ``h`` of ``z = z_data * h`` instead of adding
    to ``z`` (``epoch`` is then the one column of scaled epochs, ``size`` each row's scaled
    total, and ``h`` is :func:`~mixscale.fit.laws.length_saturation`), and the prediction is
    clipped to [0, 1]. ``penalty``: the shrinkage strength
    ``lam`` of the count weights towards equal weights (0: none).
    """

    family: Family
    count: np.ndarray  # (n, m) scaled count terms
    epoch: np.ndarray  # (n, q) scaled epoch terms
    saturating: bool = False
    size: np.ndarray | None = None  # (n,) scaled total count (saturating: training length)
    penalty: float = 0.0
    row_weight: np.ndarray | None = None  # (n,) multipliers of the data residuals (sqrt weights)
    log_error: bool = False  # residuals log(1 - pred) - log(1 - y) instead of pred - y
    error_floor: float = 1e-3  # errors are clipped here before the logarithm
    prior: ShapePrior | None = None  # Gaussian prior on the shape (module docstring)
    prior_sigma: float = 0.0  # the residual size the prior is measured in

    @property
    def n_shape(self) -> int:
        return len(self.family.param_names)

    @property
    def n_free_counts(self) -> int:
        return self.count.shape[1] - 1

    @property
    def n_epoch_params(self) -> int:
        return len(EPOCH_FACTOR_START) if self.saturating else self.epoch.shape[1]

    @property
    def n_raw(self) -> int:
        return self.n_shape + self.n_free_counts + self.n_epoch_params

    @property
    def shrinks(self) -> bool:
        """Whether the penalty residuals are on (a positive penalty and >= 2 count weights)."""
        return self.penalty > 0 and self.n_free_counts > 0

    @property
    def has_prior(self) -> bool:
        """Whether the prior's residuals are on (a prior with a positive weight)."""
        return self.prior is not None and self.prior.strength > 0 and self.prior_sigma > 0

    def with_prior(self, prior: ShapePrior | None, sigma: float) -> Problem:
        """The same rows with a shape ``prior`` measured in residual size ``sigma``."""
        return replace(self, prior=prior, prior_sigma=float(sigma))

    def prior_residuals(self, theta: np.ndarray) -> np.ndarray:
        """The prior's residuals on the shape (empty without a prior)."""
        if not self.has_prior:
            return np.empty(0)
        return self.prior.residuals(theta[: self.n_shape], self.prior_sigma)

    def prior_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d prior_residuals / d theta, shape ``(k, n_raw)`` (``(0, n_raw)`` without)."""
        if not self.has_prior:
            return np.empty((0, self.n_raw))
        jac = np.zeros((self.n_shape, self.n_raw))
        jac[:, : self.n_shape] = self.prior.jacobian(theta[: self.n_shape], self.prior_sigma)
        return jac

    def take(self, rows: np.ndarray) -> Problem:
        """The same problem restricted to (possibly repeated) ``rows``."""
        weight = None if self.row_weight is None else self.row_weight[rows]
        size = None if self.size is None else self.size[rows]
        return replace(self, count=self.count[rows], epoch=self.epoch[rows], row_weight=weight,
                       size=size)

    def with_penalty(self, penalty: float) -> Problem:
        """The same rows with shrinkage strength ``penalty``."""
        return replace(self, penalty=float(penalty))

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shape params, all ``m`` count weights (summing to 1) and the epoch weights."""
        k, f = self.n_shape, self.n_free_counts
        free = theta[k : k + f]
        weights = np.append(free, 1.0 - free.sum())
        return theta[:k], weights, theta[k + f :]

    def linear_predictor(self, theta: np.ndarray) -> np.ndarray:
        """``z``: the paper's sum of count and epoch terms, or (saturating) the data's
        ``z_data = count @ w`` times the epoch factor ``h(epoch)``."""
        _, weights, epoch_weights = self.split(theta)
        if self.saturating:
            return (self.count @ weights) * length_saturation(self.epoch[:, 0], self._size(),
                                                              *epoch_weights)
        return self.count @ weights + self.epoch @ epoch_weights

    def _size(self) -> np.ndarray:
        if self.size is None:
            raise ValueError("a saturating Problem needs `size` (the rows' scaled totals)")
        return self.size

    def predict(self, theta: np.ndarray) -> np.ndarray:
        y = self.family(self.linear_predictor(theta), theta[: self.n_shape])
        return np.clip(y, 0.0, 1.0) if self.saturating else y

    def residuals(self, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The fitted data residuals: ``pred - y`` or, with ``log_error``, ``log(max(1 - pred,
        floor)) - log(max(1 - y, floor))``, each times its row weight."""
        pred = self.predict(theta)
        if self.log_error:
            floor = self.error_floor
            r = np.log(np.maximum(1.0 - pred, floor)) - np.log(np.maximum(1.0 - y, floor))
        else:
            r = pred - y
        return r if self.row_weight is None else r * self.row_weight

    def residual_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d residuals / d theta (it does not depend on ``y``)."""
        jac = self.jacobian(theta)
        if self.log_error:
            err = 1.0 - self.predict(theta)
            live = err > self.error_floor
            jac = np.where(live[:, None], -jac / np.maximum(err, self.error_floor)[:, None], 0.0)
        return jac if self.row_weight is None else jac * self.row_weight[:, None]

    @property
    def nonnegative(self) -> bool:
        """Whether every count weight must be >= 0 (saturating per-class predictors: more
        images of a class never lower ``z_data``)."""
        return self.saturating and self.n_free_counts > 0

    def sign_residuals(self, theta: np.ndarray) -> np.ndarray:
        """``SIGN_WEIGHT * min(0, w_m)`` for the implied last count weight of a
        :attr:`nonnegative` problem (the free ones have a box at 0); empty otherwise."""
        if not self.nonnegative:
            return np.empty(0)
        _, weights, _ = self.split(theta)
        return np.array([SIGN_WEIGHT * min(0.0, float(weights[-1]))])

    def sign_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d sign_residuals / d theta."""
        if not self.nonnegative:
            return np.empty((0, self.n_raw))
        _, weights, _ = self.split(theta)
        jac = np.zeros((1, self.n_raw))
        if weights[-1] < 0:
            k, f = self.n_shape, self.n_free_counts
            jac[0, k : k + f] = -SIGN_WEIGHT
        return jac

    def project(self, theta: np.ndarray) -> np.ndarray:
        """``theta`` with a :attr:`nonnegative` problem's implied last weight put back to >= 0
        (the free weights rescaled to sum to at most 1); other problems unchanged."""
        if not self.nonnegative:
            return theta
        k, f = self.n_shape, self.n_free_counts
        free = np.clip(theta[k : k + f], 0.0, None)
        total = free.sum()
        out = np.array(theta, dtype=float)
        out[k : k + f] = free / total if total > 1.0 else free
        return out

    def penalty_residuals(self, theta: np.ndarray) -> np.ndarray:
        """``sqrt(lam) * (w_c - 1/m)`` for every count weight (empty without shrinkage)."""
        if not self.shrinks:
            return np.empty(0)
        _, weights, _ = self.split(theta)
        return np.sqrt(self.penalty) * (weights - 1.0 / weights.size)

    def penalty_jacobian(self) -> np.ndarray:
        """d penalty_residuals / d theta, shape ``(m, n_raw)`` (``(0, n_raw)`` without)."""
        if not self.shrinks:
            return np.empty((0, self.n_raw))
        k, f = self.n_shape, self.n_free_counts
        jac = np.zeros((f + 1, self.n_raw))
        jac[:f, k : k + f] = np.eye(f)
        jac[f, k : k + f] = -1.0
        return np.sqrt(self.penalty) * jac

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
        if not self.saturating:
            jac[:, k : k + self.n_free_counts] = dydz[:, None] * dz_dfree
            jac[:, k + self.n_free_counts :] = dydz[:, None] * self.epoch
            return jac
        # y = clip(f(z_data * h(epoch)), 0, 1): zero derivatives where the clip is active
        f = self.n_free_counts
        _, weights, epoch_weights = self.split(theta)
        h, dh = length_saturation_gradient(self.epoch[:, 0], self._size(), *epoch_weights)
        jac[:, k : k + f] = dydz[:, None] * dz_dfree * h[:, None]
        jac[:, k + f :] = dydz[:, None] * (self.count @ weights)[:, None] * dh
        y = self.family(z, shape)
        jac *= ((y >= 0.0) & (y <= 1.0)).astype(float)[:, None]
        return jac


def report_matrix(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` with ``reported = A @ theta + b`` (the implied last count weight)."""
    k, f, q = problem.n_shape, problem.n_free_counts, problem.n_epoch_params
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
    return raw_bounds(problem.family, problem.n_free_counts, problem.n_epoch_params,
                      saturating=problem.saturating)


def raw_bounds(family: Family, n_free_counts: int, n_epoch: int, *, saturating: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of a raw vector: ``family``'s box, then ``n_free_counts`` count
    weights and ``n_epoch`` epoch weights (``tau, kappa, steps`` of ``h`` when ``saturating``,
    whose count weights are also kept in [0, 1]: more images of a class never lower
    ``z_data``)."""
    f, q = n_free_counts, n_epoch
    epoch_lo = list(EPOCH_FACTOR_LOWER) if saturating else [_EPOCH_WEIGHT_BOUNDS[0]] * q
    epoch_hi = list(EPOCH_FACTOR_UPPER) if saturating else [_EPOCH_WEIGHT_BOUNDS[1]] * q
    count_lo, count_hi = _NONNEG_COUNT_BOUNDS if saturating else _COUNT_WEIGHT_BOUNDS
    lower = np.concatenate([family.lower, [count_lo] * f, epoch_lo])
    upper = np.concatenate([family.upper, [count_hi] * f, epoch_hi])
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
        if problem.saturating:  # tau, kappa, steps of h
            v = np.array([np.exp(rng.uniform(np.log(0.02), np.log(1.0))), rng.uniform(0.3, 3.0),
                          rng.uniform(0.0, 1.0)])
        else:
            v = np.array([rng.uniform(0.0, 1.5), rng.uniform(-1.0, 0.3)][:q])
        starts.append(np.concatenate([shape, w[:-1], v]))
    return [np.clip(s, lower, upper) for s in starts[:n_starts]]


def _linear_start(problem: Problem, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m, q = problem.count.shape[1], problem.epoch.shape[1]
    design = np.hstack([np.ones((y.size, 1)), problem.count, problem.epoch])
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    total = coef[1 : 1 + m].sum()
    if problem.saturating:  # the count weights from the regression, h from its default start
        ok = np.all(np.isfinite(coef)) and total > 1e-8
        weights = coef[1 : 1 + m] / total if ok else np.full(m, 1.0 / m)
        if not np.all(np.abs(weights) < 3.0):
            weights = np.full(m, 1.0 / m)
        return weights, np.asarray(EPOCH_FACTOR_START, dtype=float)
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
    tol: float = 1e-10,
    nfev_per_param: int = 200,
) -> OptimizeResult:
    """Run bounded least squares from every start and keep the lowest cost.

    ``tol`` is ``ftol = xtol = gtol``; ``nfev_per_param`` caps the evaluations per raw
    parameter (the shrinkage's warm-started cross-validation fits use looser values).

    Raises
    ------
    FitError
        If every start fails (non-finite residuals, solver error).
    """
    lower, upper = bounds(problem)
    penalty_jac = problem.penalty_jacobian()

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.concatenate([problem.residuals(theta, y), problem.penalty_residuals(theta),
                               problem.prior_residuals(theta), problem.sign_residuals(theta)])

    def jacobian(theta: np.ndarray) -> np.ndarray:
        return np.vstack([problem.residual_jacobian(theta), penalty_jac,
                          problem.prior_jacobian(theta), problem.sign_jacobian(theta)])

    best: OptimizeResult | None = None
    errors: list[str] = []
    with np.errstate(all="ignore"):
        for x0 in starts:
            try:
                res = least_squares(
                    residuals,
                    x0,
                    jac=jacobian,
                    bounds=(lower, upper),
                    method="trf",
                    tr_solver="exact",
                    loss=loss,
                    f_scale=f_scale,
                    x_scale="jac",
                    ftol=tol,
                    xtol=tol,
                    gtol=tol,
                    max_nfev=nfev_per_param * problem.n_raw,
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
    best.x = problem.project(best.x)
    return best


def covariance(
    problem: Problem, theta: np.ndarray, y: np.ndarray, *, loss: str, f_scale: float
) -> np.ndarray:
    """``sigma^2 (J^T W J + P)^-1`` of the raw parameters (``inf`` if it is singular).

    ``W`` is the identity for the linear loss; for the Huber loss it holds the IRLS weights
    ``min(1, f_scale / |r|)``, so rows the fit treated as outliers count as little in the
    covariance as they did in the fit. ``P`` is the shrinkage penalty's ``lam * D^T D``
    plus the shape prior's ``J_p^T J_p`` (zero without either: the usual ``(J^T W J)^-1``),
    so a shrunk or priored law's covariance is the posterior one. ``sigma^2`` is the
    weighted residual variance with ``n - df`` degrees of freedom, ``df`` the effective
    number of parameters (:func:`effective_params`).
    """
    n, p = y.size, theta.size
    with np.errstate(all="ignore"):
        r = problem.residuals(theta, y)
        jac = problem.residual_jacobian(theta)
    if loss == "huber":
        w = np.minimum(1.0, f_scale / np.maximum(np.abs(r), 1e-300))
    else:
        w = np.ones(n)
    jw = jac * np.sqrt(w)[:, None]
    aug = np.vstack([jw, problem.penalty_jacobian(), problem.prior_jacobian(theta)])
    penalised = problem.shrinks or problem.has_prior
    df = effective_params(problem, theta, w=w) if penalised else float(p)
    dof = n - df
    if dof <= 0 or not np.all(np.isfinite(aug)):
        return np.full((p, p), np.inf)
    _, sv, vt = np.linalg.svd(aug, full_matrices=False)
    if sv[-1] <= np.finfo(float).eps * max(aug.shape) * sv[0]:
        return np.full((p, p), np.inf)
    sigma2 = float(np.sum(w * r**2) / dof)
    return sigma2 * (vt.T / sv**2) @ vt


def effective_params(problem: Problem, theta: np.ndarray, *, w: np.ndarray | None = None
                     ) -> float:
    """Effective number of parameters: the trace of the (linearised) hat matrix,
    ``tr(J (J^T W J + P)^-1 J^T W)``.

    Without shrinkage this is the rank of ``J`` (the number of raw parameters when they are
    identified); as ``lam -> inf`` the ``m - 1`` free count weights drop out and it tends to
    the total-count twin's count.
    """
    with np.errstate(all="ignore"):
        jac = problem.residual_jacobian(theta)
    if w is not None:
        jac = jac * np.sqrt(w)[:, None]
    if not np.all(np.isfinite(jac)):
        return float("nan")
    pj = np.vstack([problem.penalty_jacobian(), problem.prior_jacobian(theta)])
    gram = jac.T @ jac + pj.T @ pj
    sol = np.linalg.pinv(gram, hermitian=True)  # pinv: an unidentified direction counts 0
    return float(np.trace(sol @ (jac.T @ jac)))


SHRINK_GRID = (1.0, 0.25, 0.0625, 0.015625)
"""Prior spreads ``t`` of the shrinkage grid: ``lam = sigma^2 / (t/m)^2`` says the count weights
differ from the equal weight ``1/m`` by about ``t/m`` (``sigma^2``: the unshrunk fit's residual
variance). ``lam = 0`` (no shrinkage) is always a candidate too; ``t = 1/64`` is the top."""


_CV_SOLVE = {"tol": 1e-6, "nfev_per_param": 20}  # held-out fits only rank the lam values


@dataclass(frozen=True)
class PenaltyChoice:
    """The outcome of :func:`choose_penalty`: the grid, the CV errors and the chosen fit."""

    grid: np.ndarray  # lam values, 0 first, increasing
    cv_mse: np.ndarray  # mean held-out loss per lam (squared or Huber; inf: a fold failed)
    index: int  # position of the chosen lam in grid
    result: OptimizeResult  # the full-data fit at the chosen lam
    n_folds: int  # 0: too few groups for cross-validation (the top of the grid is used)

    @property
    def penalty(self) -> float:
        return float(self.grid[self.index])

    @property
    def at_top(self) -> bool:
        return self.index == len(self.grid) - 1


def choose_penalty(
    problem: Problem,
    y: np.ndarray,
    unshrunk: OptimizeResult,
    groups: np.ndarray,
    *,
    loss: str,
    f_scale: float,
    n_folds: int = 3,
    seed: int | None = 0,
    n_se: float = 1.0,
) -> PenaltyChoice:
    """Choose the shrinkage ``lam`` of the count weights by K-fold cross-validation over groups.

    Every ``lam`` of the grid (0, then :data:`SHRINK_GRID`) is fitted on all rows, warm-started
    from the previous ``lam`` and from equal weights; each fold's fit starts from that. The
    chosen ``lam`` is the largest whose mean held-out squared error (predictions clipped to
    [0, 1]) exceeds the best one's by at most ``n_se`` standard errors of the paired per-run
    difference (the one-standard-error rule): among laws that predict as well as the held-out
    runs can tell, the one nearest the total-count twin. With the Huber loss the held-out
    error is the Huber loss too (a crashed evaluation in a fold must not decide the
    shrinkage). With fewer than 3 groups there is no cross-validation and the top of the grid
    is used.

    Parameters
    ----------
    problem : Problem
        The unpenalised problem (all training rows).
    y : numpy.ndarray
        Observed accuracies.
    unshrunk : OptimizeResult
        The multi-start fit at ``lam = 0``.
    groups : numpy.ndarray
        Group (run) label per row.
    loss, f_scale : str, float
        As for :func:`solve`.
    n_folds : int
        Folds (at most the number of groups).
    seed : int or None
        Seeds the assignment of groups to folds.
    n_se : float
        Slack of the "as good as the best" rule, in standard errors.

    Returns
    -------
    PenaltyChoice
    """
    theta0 = np.asarray(unshrunk.x, dtype=float)
    m = problem.count.shape[1]
    resid = problem.residuals(theta0, y)
    dof = max(y.size - theta0.size, 1)
    sigma2 = max(float(resid @ resid) / dof, 1e-8)
    grid = np.array([0.0, *(sigma2 / (t / m) ** 2 for t in SHRINK_GRID)])
    equal = theta0.copy()
    k, f = problem.n_shape, problem.n_free_counts
    equal[k : k + f] = 1.0 / m
    lower, upper = bounds(problem)
    equal = np.clip(equal, lower, upper)
    fits = [unshrunk]
    for i, lam in enumerate(grid[1:], start=1):  # the top also tries equal weights
        starts = [fits[-1].x, equal] if i == len(grid) - 1 else [fits[-1].x]
        fits.append(solve(problem.with_penalty(lam), y, starts, loss=loss, f_scale=f_scale))
    labels, inverse = np.unique(groups, return_inverse=True)
    n_folds = min(n_folds, labels.size)
    if n_folds < 3:
        top = len(grid) - 1
        return PenaltyChoice(grid, np.full(len(grid), np.nan), top, fits[top], 0)
    order = np.random.default_rng(seed).permutation(labels.size)
    fold_of_group = np.empty(labels.size, dtype=int)
    fold_of_group[order] = np.arange(labels.size) % n_folds
    fold = fold_of_group[inverse]
    row_loss = np.full((len(grid), y.size), np.inf)  # held-out loss of every row per lam
    for j in range(n_folds):
        train, test = np.flatnonzero(fold != j), np.flatnonzero(fold == j)
        part, held = problem.take(train), problem.take(test)
        for i, lam in enumerate(grid):
            try:
                res = solve(part.with_penalty(lam), y[train], [fits[i].x], loss=loss,
                            f_scale=f_scale, **_CV_SOLVE)
            except FitError:
                continue
            with np.errstate(all="ignore"):
                pred = np.clip(held.predict(res.x), 0.0, 1.0)
            row_loss[i, test] = _held_out_loss(pred - y[test], loss=loss, f_scale=f_scale)
    row_loss[~np.isfinite(row_loss)] = np.inf
    cv_mse = row_loss.mean(axis=1)
    best = int(np.argmin(cv_mse))
    if not np.isfinite(cv_mse[best]):
        return PenaltyChoice(grid, cv_mse, 0, fits[0], n_folds)
    # one standard error of the paired per-run difference to the best lam
    per_group = np.stack([np.bincount(inverse, weights=r, minlength=labels.size)
                          if np.all(np.isfinite(r)) else np.full(labels.size, np.inf)
                          for r in row_loss]) / y.size * labels.size
    diff = per_group - per_group[best]
    with np.errstate(invalid="ignore"):
        se = diff.std(axis=1, ddof=1) / np.sqrt(labels.size)
        ok = np.flatnonzero(diff.mean(axis=1) <= n_se * se + 1e-15)
    index = int(ok.max()) if ok.size else best
    return PenaltyChoice(grid, cv_mse, index, fits[index], n_folds)


def _held_out_loss(r: np.ndarray, *, loss: str, f_scale: float) -> np.ndarray:
    """Squared residuals, or the Huber loss ``2 f |r| - f^2`` beyond ``f_scale``."""
    a = np.abs(r)
    if loss != "huber":
        return a**2
    return np.where(a <= f_scale, a**2, 2.0 * f_scale * a - f_scale**2)
