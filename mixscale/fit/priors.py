"""Fitting one learning curve for extrapolation: the residual space, size weights and a prior.

A learning curve here is error ``e`` against a scaled size ``z = size / largest fitted size``
(so every fitted size has ``z <= 1`` and an extrapolation asks for ``z > 1``). The families of
:data:`mixscale.fit.laws.FAMILIES` give accuracy ``1 - e = f(z; shape)``. Plain least squares in
accuracy (what :class:`mixscale.fit.ScalingLaw` does) weighs every fitted size alike and scores
a miss of 0.01 the same at 90 % and at 10 % error; extrapolation is judged at the large sizes and
in relative (log) error. :func:`fit_curve` fits in the space the extrapolation loss is scored in
and weights each row by ``z**size_power``, so the largest fitted sizes, which are nearest to the
sizes asked for, steer the shape. Measured on the 72 public vision curves
(``benchmarks/bench_scaling_benchmark.py``): see ``benchmarks/_curves.py`` and the table in
:data:`MEASURED`.

Optionally a Gaussian prior (:class:`ShapePrior`) on transformed shape parameters pulls a fit
toward the population of other curves (maximum a posteriori). Its residuals are scaled by the
fit's own residual size, so ``strength`` counts in units of "one data residual": a curve with
many points overrides it, a curve with three points is held near the population shape.
:data:`M4_PRIOR` holds fixed constants for M4 derived once from the public benchmark (median and
robust spread of the per-curve fits by :data:`PIPELINE_RULE`, ``eps_inf`` and ``beta`` left
free); it is
what :class:`mixscale.fit.ScalingLaw` fits a served (bounded m4) law under by default. The
benchmark scores the rule with the prior re-learned leave-one-task-out (method ``default``),
which is the honest figure.

Everything here is numpy/scipy only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from mixscale.errors import MixscaleError
from mixscale.fit.laws import get_family

__all__ = [
    "ERROR_FLOOR",
    "M4_PRIOR",
    "MEASURED",
    "PIPELINE_RULE",
    "PRIOR_FREE",
    "SIGMA_DEFAULT",
    "SIZE_POWER",
    "SPACES",
    "CurveFit",
    "ShapePrior",
    "fit_curve",
    "residual_size",
]

ERROR_FLOOR = 1e-6
"""Predicted errors are clipped here before a logarithm."""

SIZE_POWER = 2.0
"""Default row weight exponent: row ``i`` weighs ``z_i**SIZE_POWER`` (normalised to mean 1)."""

PIPELINE_RULE = {"space": "accuracy", "size_power": SIZE_POWER}
"""The residual space and size weights of a served law's fit (``ScalingLaw``'s
``weighting="extrapolation"``), in :func:`fit_curve`'s terms (the benchmark's ``default``)."""

PRIOR_FREE = (0, 3)
"""Coordinates :data:`M4_PRIOR` leaves free, so it holds only the curve's shape (``delta``,
``alpha``, ``c``): ``eps_inf``, the irreducible error, belongs to the dataset (0.01 on digits,
0.2 on a typical public curve), and ``beta``, the scale, absorbs the size of the linear
predictor, which in a law with an epoch factor ``h(epoch) < 1`` is not the size ratio the
public curves measure (a prior on it pushed ``h`` to its bound instead)."""

SIGMA_DEFAULT = 0.02
"""Residual size a prior is scaled by when a curve has no more rows than shape parameters."""

SPACES = ("log", "accuracy")
"""Residual spaces: ``log`` = ``log(predicted error) - log(error)``; ``accuracy`` = difference."""

MEASURED = {
    # mean / median extrapolation loss on the 72 public vision curves, M4 (family grid + seeded
    # random starts); python benchmarks/bench_scaling_benchmark.py prints the first, fifth and
    # last (random_starts=2), the others come from exploration runs with 4-8 random starts
    "accuracy, unweighted (ScalingLaw today)": (0.0452, 0.0297),
    "log error, unweighted": (0.0421, 0.0245),
    "accuracy, z**2": (0.0377, 0.0235),
    "accuracy, z**3": (0.0358, 0.0238),
    "log error, z**2 (the default rule)": (0.0360, 0.0247),
    "log error, z**4": (0.0370, 0.0223),
    "log error, z**2, prior learned leave-one-task-out": (0.0290, 0.0244),
    "accuracy, z**2, shape prior (delta, alpha, c) leave-one-task-out (the pipeline's default)":
        (0.0305, 0.0240),
}
"""What each fitting rule scored on the public curves (mean, median); see ``_curves.py``."""


def _m4_transform(theta: np.ndarray) -> np.ndarray:
    """M4 shape ``(eps_inf, delta, alpha, beta, c)`` to the unbounded-ish prior coordinates."""
    eps_inf, delta, alpha, beta, c = (float(v) for v in theta)
    return np.array([eps_inf, np.log(delta), np.log(alpha + 0.1), np.log(beta), np.log(c)])


def _m4_transform_gradient(theta: np.ndarray) -> np.ndarray:
    """d :func:`_m4_transform` / d theta: the diagonal of its Jacobian."""
    _, delta, alpha, beta, c = (float(v) for v in theta)
    return np.array([1.0, 1.0 / delta, 1.0 / (alpha + 0.1), 1.0 / beta, 1.0 / c])


_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"m4": _m4_transform}
_TRANSFORM_GRADIENTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "m4": _m4_transform_gradient}


@dataclass(frozen=True)
class ShapePrior:
    """Independent Gaussian prior on a family's transformed shape parameters.

    Attributes
    ----------
    family : str
        Registered family the prior is for (it must have a transform, today ``m4``).
    center, scale : tuple of float
        Mean and standard deviation of each transformed coordinate; a scale of ``inf`` leaves
        that coordinate free (no pull).
    strength : float
        Weight of the prior in units of one data residual (0 switches it off).
    """

    family: str
    center: tuple[float, ...]
    scale: tuple[float, ...]
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.family not in _TRANSFORMS:
            raise MixscaleError(
                f"a shape prior exists only for families {sorted(_TRANSFORMS)}, "
                f"but got {self.family!r}."
            )
        n = len(get_family(self.family).param_names)
        if len(self.center) != n or len(self.scale) != n:
            raise MixscaleError(
                f"a prior for {self.family!r} needs {n} centers and scales, but got "
                f"{len(self.center)} and {len(self.scale)}."
            )
        if not all(s > 0 for s in self.scale) or not self.strength >= 0:
            raise MixscaleError(
                f"prior scales must be > 0 and strength >= 0, but got scale={self.scale} "
                f"and strength={self.strength}."
            )

    def transform(self, theta: np.ndarray) -> np.ndarray:
        """Prior coordinates of the shape vector ``theta``."""
        return _TRANSFORMS[self.family](np.asarray(theta, dtype=float))

    def residuals(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        """``sigma * sqrt(strength) * (g(theta) - center) / scale`` (appended to a fit's rows)."""
        z = (self.transform(theta) - np.asarray(self.center)) / np.asarray(self.scale)
        return sigma * np.sqrt(self.strength) * z

    def jacobian(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        """d :meth:`residuals` / d theta, a square diagonal matrix."""
        grad = _TRANSFORM_GRADIENTS[self.family](np.asarray(theta, dtype=float))
        return np.diag(sigma * np.sqrt(self.strength) * grad / np.asarray(self.scale))

    def center_shape(self, theta: np.ndarray) -> np.ndarray:
        """``theta`` with every coordinate the prior pulls moved to its center (a start).

        Parameters
        ----------
        theta : numpy.ndarray
            A shape vector; its free coordinates (scale ``inf``) are kept.

        Returns
        -------
        numpy.ndarray
        """
        out = np.array(theta, dtype=float)
        center = _prior_start(self, np.full(out.size, -np.inf), np.full(out.size, np.inf))
        if center is None:
            return out
        pulled = np.isfinite(np.asarray(self.scale))
        out[pulled] = center[pulled]
        return out

    @classmethod
    def from_fits(cls, family: str, shapes: np.ndarray, *, strength: float = 1.0,
                  free: tuple[int, ...] = ()) -> ShapePrior:
        """Empirical-Bayes prior from other curves' fitted shapes: median and 1.4826 * MAD.

        Parameters
        ----------
        family : str
            Family the shapes belong to.
        shapes : numpy.ndarray
            ``(n_curves, n_shape)`` fitted shape vectors (of curves OTHER than the one the
            prior will be used on).
        strength : float
            Weight of the prior (see the class).
        free : tuple of int
            Coordinates left free (scale ``inf``), e.g. ``(0,)`` for M4's ``eps_inf``.

        Returns
        -------
        ShapePrior
        """
        g = np.array([_TRANSFORMS[family](np.asarray(s, dtype=float)) for s in shapes])
        center = np.median(g, axis=0)
        scale = 1.4826 * np.median(np.abs(g - center), axis=0) + 1e-3
        scale[list(free)] = np.inf
        return cls(family, tuple(center.tolist()), tuple(scale.tolist()), strength)


M4_PRIOR = ShapePrior(
    family="m4",
    # benchmarks/_curves.derive_prior (python benchmarks/bench_scaling_benchmark.py
    # --derive-prior): M4 fitted to each of the 72 public vision curves by PIPELINE_RULE (grid
    # + 4 random starts), median and 1.4826 * MAD of (eps_inf, log delta, log(alpha + 0.1),
    # log beta, log c); eps_inf and beta free (PRIOR_FREE)
    center=(0.2153, -0.3761, -1.6223, -2.4013, -0.553),
    scale=(math.inf, 0.1587, 1.0095, math.inf, 0.5292),
    strength=1.0,
)
"""Population prior for M4 from the 72 public vision curves (fixed constants; see module)."""


@dataclass(frozen=True)
class CurveFit:
    """One fitted curve: the family and its shape parameters.

    Attributes
    ----------
    family : str
        Registered family.
    params : tuple of float
        Shape parameters in the family's order.
    cost : float
        Final objective (half the sum of squared weighted residuals, prior included).
    """

    family: str
    params: tuple[float, ...]
    cost: float

    def accuracy(self, z: np.ndarray) -> np.ndarray:
        """Predicted accuracy at scaled sizes ``z``, clipped to [0, 1]."""
        y = get_family(self.family).func(np.asarray(z, dtype=float), *self.params)
        return np.clip(y, 0.0, 1.0)

    def error(self, z: np.ndarray) -> np.ndarray:
        """Predicted error ``1 - accuracy`` at ``z``, at least :data:`ERROR_FLOOR`."""
        return np.clip(1.0 - self.accuracy(z), ERROR_FLOOR, 1.0)


def _check(z: np.ndarray, error: np.ndarray, space: str, size_power: float) -> None:
    if z.shape != error.shape or z.ndim != 1 or z.size < 2:
        raise MixscaleError(
            f"z and error must be 1-D arrays of one length >= 2, but got shapes {z.shape} and "
            f"{error.shape}."
        )
    if not (np.all(np.isfinite(z)) and np.all(z > 0)):
        raise MixscaleError(f"every scaled size z must be finite and > 0, but got min {z.min()}.")
    if not np.all((error > 0) & (error <= 1)):
        raise MixscaleError(
            f"every error must be in (0, 1], but got values in [{error.min()}, {error.max()}]."
        )
    if space not in SPACES:
        raise MixscaleError(f"`space` must be one of {SPACES}, but got {space!r}.")
    if not (np.isfinite(size_power) and size_power >= 0):
        raise MixscaleError(f"`size_power` must be >= 0, but got {size_power}.")


def fit_curve(
    family: str,
    z: np.ndarray,
    error: np.ndarray,
    *,
    space: str = "log",
    size_power: float = SIZE_POWER,
    prior: ShapePrior | None = None,
    random_starts: int = 4,
    seed: int | None = 0,
) -> CurveFit:
    """Fit one family to one learning curve for extrapolation.

    Parameters
    ----------
    family : str
        Registered family (:data:`mixscale.fit.laws.FAMILIES`).
    z : numpy.ndarray
        Scaled sizes (> 0; 1 = the largest fitted size by convention).
    error : numpy.ndarray
        Observed error ``1 - accuracy`` per row, in (0, 1].
    space : {"log", "accuracy"}
        Residual space (see :data:`SPACES`).
    size_power : float
        Row weights ``z**size_power`` normalised to mean 1 (0 = unweighted).
    prior : ShapePrior or None
        Gaussian prior on the shape (for ``prior.family == family``); ``None`` = plain fit.
    random_starts : int
        Seeded random starts in the family's box, after its grid of starts.
    seed : int or None
        Seed of the random starts.

    Returns
    -------
    CurveFit
        The lowest-cost fit over all starts.
    """
    fam = get_family(family)
    z = np.asarray(z, dtype=float)
    error = np.asarray(error, dtype=float)
    _check(z, error, space, size_power)
    if prior is not None and prior.family != family:
        raise MixscaleError(f"the prior is for {prior.family!r}, but the family is {family!r}.")
    lower, upper = np.array(fam.lower, dtype=float), np.array(fam.upper, dtype=float)
    weight = z**size_power
    weight = np.sqrt(weight / weight.mean())
    log_error = np.log(error)

    def data_residuals(theta: np.ndarray) -> np.ndarray:
        acc = fam.func(z, *theta)
        if space == "log":
            r = np.log(np.clip(1.0 - acc, ERROR_FLOOR, None)) - log_error
        else:
            r = acc - (1.0 - error)
        return weight * r

    data_jacobian = None
    if fam.grad is not None:
        def data_jacobian(theta: np.ndarray) -> np.ndarray:  # noqa: E306 - analytic if the law has one
            d_acc = fam.grad(z, *theta)[1]
            if space == "log":
                err = 1.0 - fam.func(z, *theta)
                live = (err > ERROR_FLOOR)[:, None]
                d_acc = np.where(live, -d_acc / np.maximum(err, ERROR_FLOOR)[:, None], 0.0)
            return weight[:, None] * d_acc

    rng = np.random.default_rng(seed)
    starts = [np.asarray(s, dtype=float) for s in fam.starts]
    starts += [rng.uniform(lower, upper) for _ in range(random_starts)]
    best = _best_of(data_residuals, data_jacobian, starts, lower, upper)
    if best is None:
        raise MixscaleError(f"every start failed fitting {family!r} to a curve of {z.size} rows.")
    if prior is not None and prior.strength > 0:
        # the prior is measured in units of this curve's own residual size
        sigma = residual_size(data_residuals(best.x), lower.size)

        def posterior(theta: np.ndarray) -> np.ndarray:
            return np.concatenate([data_residuals(theta), prior.residuals(theta, sigma)])

        center = _prior_start(prior, lower, upper)
        starts = [best.x] + ([center] if center is not None else [])
        best = _best_of(posterior, "2-point", starts, lower, upper) or best
    return CurveFit(family, tuple(float(v) for v in best.x), float(best.cost))


def residual_size(residuals: np.ndarray, n_params: int) -> float:
    """The residual size a :class:`ShapePrior` is measured in: ``sqrt(SSR / (n - p))`` of the
    fit without the prior, at least 1e-3; :data:`SIGMA_DEFAULT` when there are no more rows
    than parameters (no residual size of its own).

    Parameters
    ----------
    residuals : numpy.ndarray
        The (weighted) data residuals of the unpenalised fit.
    n_params : int
        Its fitted parameters.

    Returns
    -------
    float
    """
    dof = residuals.size - n_params
    if dof <= 0:
        return SIGMA_DEFAULT
    return max(float(np.sqrt(np.sum(residuals**2) / dof)), 1e-3)


def _prior_start(prior: ShapePrior, lower: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
    """The prior's center mapped back to a shape vector (M4 only), or None."""
    if prior.family != "m4":
        return None
    g = np.asarray(prior.center)
    theta = np.array([g[0], np.exp(g[1]), np.exp(g[2]) - 0.1, np.exp(g[3]), np.exp(g[4])])
    return np.clip(theta, lower, upper)


def _best_of(
    residuals: Callable[[np.ndarray], np.ndarray],
    jacobian: Callable[[np.ndarray], np.ndarray] | str | None,
    starts: list[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
):
    """Bounded trust-region least squares from every start; the lowest finite cost wins."""
    eps = 1e-9 * (upper - lower)
    best = None
    for start in starts:
        x0 = np.clip(start, lower + eps, upper - eps)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                res = least_squares(residuals, x0, jac=jacobian or "2-point",
                                    bounds=(lower, upper), method="trf", max_nfev=2000)
        except (ValueError, FloatingPointError):
            continue
        if np.isfinite(res.cost) and (best is None or res.cost < best.cost):
            best = res
    return best


OBSERVED_ERROR_FLOOR = 1e-3
"""Observed (and predicted) errors are clipped here before the logarithm when a fit table's row
can score a perfect 1.0 (0.5 / eval_images is the same idea; a flat 1e-3 keeps it finite)."""


def size_weights(z: np.ndarray, size_power: float = SIZE_POWER) -> np.ndarray:
    """This module's row weights ``z**size_power`` normalised to mean 1 (squared-residual
    weights; :func:`fit_curve` multiplies residuals by their square roots).

    Parameters
    ----------
    z : numpy.ndarray
        Scaled sizes (> 0 somewhere; 1 = the largest fitted size).
    size_power : float
        Exponent (0 = every row weighs 1).

    Returns
    -------
    numpy.ndarray
        One weight per row, mean 1.
    """
    z = np.asarray(z, dtype=float)
    if not (np.all(np.isfinite(z)) and np.all(z >= 0) and np.any(z > 0)):
        raise MixscaleError(f"scaled sizes must be finite, >= 0 and not all 0, but got {z}.")
    if not (np.isfinite(size_power) and size_power >= 0):
        raise MixscaleError(f"`size_power` must be >= 0, but got {size_power}.")
    weight = z**size_power
    return weight / weight.mean()
