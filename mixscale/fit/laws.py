"""Pure scaling-law functions and the registries of families and linear predictors.

A scaling law predicts accuracy ``y = f(z; shape)`` from a *linear predictor* ``z`` of scaled
inputs (paper section 5). The linear predictors are the paper's models 0-3 (:data:`PREDICTORS`),
where epochs add inside ``z``, so enough epochs stand in for any amount of data; and the
*saturating* predictors ``s0`` (per class) and ``s2`` (total count), where epochs enter as a
separate factor, ``y = f(z_data) * h(epoch)`` with ``h(e) = 1 - (1 + e/tau)**-kappa``
(:func:`epoch_saturation`: ``h(0) = 0``, ``h -> 1``), so more epochs approach the data's
accuracy ``f(z_data)`` and never pass it. The outer functions ``f`` are the families of
:data:`FAMILIES`; :attr:`Family.bounded` says which keep accuracy in [0, 1] below a fitted
asymptote.

Identifiability convention (used everywhere in :mod:`mixscale`): the count weights of ``z`` (one
weight per class column for ``m0``/``m1``, the single ``total_n`` weight for ``m2``/``m3``) sum to
exactly 1. Every family has a *scale* parameter (for example ``b`` of the power law) that absorbs
the overall size of the linear predictor, so fixing the sum of the count weights loses nothing
and makes every parameter identifiable. The epoch weights are in the same normalised units.

Everything here is numpy only: array in, array out, no state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mixscale.errors import MixscaleError
from mixscale.fit.m4 import Z_MIN, m4_fraction, m4_gradient

__all__ = [
    "bounded_law",
    "n_raw_params",
    "FAMILIES",
    "PREDICTORS",
    "Z_MIN",
    "Family",
    "Predictor",
    "algebraic_root",
    "arctan_law",
    "epoch_saturation",
    "get_family",
    "get_predictor",
    "log_law",
    "logistic_law",
    "m4_law",
    "power_law",
]



def _positive(z: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(z, dtype=float), Z_MIN)


def power_law(z: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """Power law ``y = a + b * z**c`` (paper section 5; Tables 2-5 list ``a, b, c`` this way).

    Parameters
    ----------
    z : array_like
        Linear predictor; clipped at :data:`Z_MIN` because ``z**c`` needs ``z > 0``.
    a : float
        Offset (accuracy as ``z -> 0`` for ``c > 0``).
    b : float
        Scale; absorbs the size of the linear predictor.
    c : float
        Exponent.

    Returns
    -------
    numpy.ndarray
        Predicted accuracy, same shape as ``z``.
    """
    return a + b * _positive(z) ** c


def arctan_law(z: np.ndarray, a: float, b: float, a2: float) -> np.ndarray:
    """Arctan law ``y = (2/pi) * arctan(b * (pi/2) * z + a2) + a``.

    Mahmood et al. (2022) and the paper write ``200/pi`` because they model accuracy in percent:
    ``200/pi * arctan`` spans (-100, 100). Accuracy here is a fraction in [0, 1], so the factor
    is ``2/pi`` and the law saturates at ``1 + a`` as ``z -> inf``.

    Parameters
    ----------
    z : array_like
        Linear predictor (any sign).
    a : float
        Offset; the upper asymptote is ``1 + a``.
    b : float
        Scale (slope at the inflection is ``b``).
    a2 : float
        Shift inside the arctan.

    Returns
    -------
    numpy.ndarray
        Predicted accuracy.
    """
    z = np.asarray(z, dtype=float)
    return (2.0 / np.pi) * np.arctan(b * (np.pi / 2.0) * z + a2) + a


def log_law(z: np.ndarray, a: float, b: float, d: float) -> np.ndarray:
    """Logarithmic law ``y = b * log(z + d) + a`` (unbounded, slowly growing).

    Parameters
    ----------
    z : array_like
        Linear predictor; clipped at :data:`Z_MIN`.
    a : float
        Offset.
    b : float
        Scale (gain per e-fold of ``z + d``).
    d : float
        Shift, ``d > 0`` keeps the logarithm finite at ``z = 0``.

    Returns
    -------
    numpy.ndarray
        Predicted accuracy.
    """
    return b * np.log(_positive(z) + d) + a


def algebraic_root(z: np.ndarray, a: float, p: float, q: float, r: float) -> np.ndarray:
    """Algebraic-root law ``y = a + p * u / (1 + u**r)**(1/r)`` with ``u = q * z``.

    The paper prints ``100 n / (1 + |w1 n|^(1/w2)) + w3``: without an outer root this is not an
    accuracy law (for ``1/w2 > 1`` it rises, then falls back to ``w3``; for ``1/w2 < 1`` it grows
    without bound). Mahmood et al. (2022) mean the algebraic sigmoid
    ``100 n / (1 + |w1 n|^w2)^(1/w2) + w3``, which rises like ``100 n`` and saturates at
    ``100/w1 + w3``. Its fixed slope 100 only makes sense for raw counts in percent; with a
    normalised linear predictor the amplitude must be free, so we use ``p`` (amplitude, the
    range above ``a``), ``q`` (rate, the scale parameter) and ``r`` (sharpness of the knee;
    ``r -> inf`` gives ``a + p * min(q z, 1)``). It is monotone and saturates at ``a + p``.

    Parameters
    ----------
    z : array_like
        Linear predictor; clipped at :data:`Z_MIN`.
    a : float
        Offset (accuracy at ``z = 0``).
    p : float
        Amplitude; the upper asymptote is ``a + p``.
    q : float
        Rate; absorbs the size of the linear predictor.
    r : float
        Sharpness of the transition, ``r > 0``.

    Returns
    -------
    numpy.ndarray
        Predicted accuracy.
    """
    u = q * _positive(z)
    # u / (1 + u^r)^(1/r) == exp(log u - log1p(u^r)/r), written in logs to avoid overflow
    log_u = np.log(np.maximum(u, Z_MIN * Z_MIN))
    return a + p * np.exp(log_u - np.logaddexp(0.0, r * log_u) / r)


def logistic_law(z: np.ndarray, a: float, b: float, s: float, k: float) -> np.ndarray:
    """Logistic law ``y = a + b / (1 + exp(-(s * z + k)))``.

    The paper's logistic regression extended with a floor ``a`` and a range ``b`` (accuracy
    starts near chance, not 0, and may saturate below 1). ``k`` is the intercept of the linear
    predictor and ``s`` its scale, so ``s * z + k`` is an ordinary free linear predictor.

    Parameters
    ----------
    z : array_like
        Linear predictor (any sign).
    a : float
        Lower asymptote.
    b : float
        Range; the upper asymptote is ``a + b``.
    s : float
        Scale (slope of the logit in ``z``).
    k : float
        Intercept of the logit.

    Returns
    -------
    numpy.ndarray
        Predicted accuracy.
    """
    t = s * np.asarray(z, dtype=float) + k
    return a + b * np.exp(-np.logaddexp(0.0, -t))


def m4_law(
    z: np.ndarray, eps_inf: float, delta: float, alpha: float, beta: float, c: float
) -> np.ndarray:
    """Alabdulmohsin et al. (2022) M4 law, returned as accuracy ``y = 1 - eps``.

    The error ``eps`` solves ``(eps - eps_inf) / (eps0 - eps)**alpha = beta * z**(-c)`` with
    ``eps0 = eps_inf + delta`` (error with no data) and ``eps_inf`` (irreducible error); ``c > 0``
    here (the paper writes ``x**c`` with ``c < 0``). With ``t = (eps - eps_inf) / delta`` in
    (0, 1) the equation is ``log t - alpha * log(1 - t) = log K``, ``K = beta * z**-c *
    delta**(alpha - 1)``, monotone in ``t``; it is solved in ``s = logit(t)`` by a vectorised
    safeguarded Newton iteration. At ``alpha = 0`` the solution is the limit ``t = min(K, 1)``.

    Parameters
    ----------
    z : array_like
        Linear predictor; clipped at :data:`Z_MIN`.
    eps_inf : float
        Irreducible error; the upper asymptote of accuracy is ``1 - eps_inf``.
    delta : float
        ``eps0 - eps_inf`` > 0; accuracy tends to ``1 - eps_inf - delta`` as ``z -> 0``.
    alpha : float
        Sigmoid-shape exponent, ``alpha >= 0`` (``alpha = 0`` is a power law in the error, M3).
    beta : float
        Scale; absorbs the size of the linear predictor.
    c : float
        Decay exponent, ``c > 0``.

    Returns
    -------
    numpy.ndarray
        Predicted accuracy.
    """
    log_k = np.log(beta) - c * np.log(_positive(z)) + (alpha - 1.0) * np.log(delta)
    return 1.0 - eps_inf - delta * m4_fraction(log_k, alpha)[0]


EPOCH_FACTOR_NAMES = ("epoch_tau", "epoch_kappa", "epoch_steps")
"""Parameters of :func:`length_saturation`, as the saturating predictors report them."""
EPOCH_FACTOR_LOWER = (1e-3, 0.05, 0.0)
EPOCH_FACTOR_UPPER = (20.0, 20.0, 1.0)
EPOCH_FACTOR_START = (0.2, 1.0, 0.5)


def epoch_saturation(e: np.ndarray, tau: float, kappa: float) -> np.ndarray:
    """Epoch factor ``h(e) = 1 - (1 + e/tau)**-kappa`` of the saturating predictors.

    ``h(0) = 0``, ``h`` rises monotonically and tends to 1 as ``e -> inf``; ``kappa = 1`` is
    ``e / (e + tau)``. Epochs are scaled by the training rows' largest epoch.

    Parameters
    ----------
    e : array_like
        Scaled epoch, ``>= 0``.
    tau : float
        Epoch scale (``> 0``), in units of the largest training epoch.
    kappa : float
        Shape (``> 0``): how fast the last gains come.

    Returns
    -------
    numpy.ndarray
        ``h(e)`` in [0, 1).
    """
    e = np.maximum(np.asarray(e, dtype=float), 0.0)
    return -np.expm1(-kappa * np.log1p(e / tau))


def epoch_saturation_gradient(e: np.ndarray, tau: float, kappa: float
                              ) -> tuple[np.ndarray, np.ndarray]:
    """``(h, dh/d(tau, kappa))`` of :func:`epoch_saturation`, analytically."""
    e = np.maximum(np.asarray(e, dtype=float), 0.0)
    log1p = np.log1p(e / tau)
    rest = np.exp(-kappa * log1p)  # (1 + e/tau)^-kappa
    d_tau = -kappa * rest * e / (tau * (tau + e))
    d_kappa = log1p * rest
    return 1.0 - rest, np.stack([d_tau, d_kappa], axis=-1)


def training_length(e: np.ndarray, size: np.ndarray, steps: float) -> np.ndarray:
    """``e * size**steps``: scaled epochs counted at ``steps`` in [0, 1] as optimiser steps.

    mixscale trains at a fixed batch size, so one epoch over a subset twice as large is twice
    the optimiser steps. ``steps = 0`` measures training in epochs (one epoch curve at every
    size), ``steps = 1`` in steps (a larger subset reaches its ceiling in fewer epochs);
    ``size`` is the row's total count over the training rows' largest (0 gives length 0)."""
    e = np.maximum(np.asarray(e, dtype=float), 0.0)
    size = np.asarray(size, dtype=float)
    return e * np.where(size > 0, np.power(np.where(size > 0, size, 1.0), steps), 0.0)


def length_saturation(e: np.ndarray, size: np.ndarray, tau: float, kappa: float,
                      steps: float) -> np.ndarray:
    """Training-length factor of the saturating predictors: :func:`epoch_saturation` at
    :func:`training_length` ``(e, size, steps)``, in [0, 1), rising in epochs and in size,
    tending to 1 with epochs at every size (so epochs never replace data)."""
    return epoch_saturation(training_length(e, size, steps), tau, kappa)


def length_saturation_gradient(e: np.ndarray, size: np.ndarray, tau: float, kappa: float,
                               steps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(h, dh/d(tau, kappa, steps))`` of :func:`length_saturation`, analytically."""
    v = training_length(e, size, steps)
    h, dh = epoch_saturation_gradient(v, tau, kappa)
    dh_dv = kappa / tau * np.exp(-(kappa + 1.0) * np.log1p(v / tau))
    size = np.asarray(size, dtype=float)
    log_size = np.log(np.where(size > 0, size, 1.0))
    return h, np.column_stack([dh, dh_dv * v * log_size])


@dataclass(frozen=True)
class Family:
    """One outer function ``y = f(z; shape)`` with what a fit needs to start and bound it.

    Attributes
    ----------
    name : str
        Registry key.
    formula : str
        The law, for reports.
    param_names : tuple of str
        Names of the shape parameters, in the order ``func`` takes them.
    lower, upper : tuple of float
        Box bounds used by the fit.
    starts : tuple of tuple of float
        Grid of starting values; random starts are drawn in the box they span.
    scale_param : str
        The parameter that absorbs the size of the linear predictor (what makes normalising
        the count weights free of loss).
    func : callable
        ``func(z, *shape) -> y``, pure and vectorised.
    grad : callable or None
        ``grad(z, *shape) -> (dy/dz, dy/dshape)`` where a fit would otherwise spend most of
        its time in finite differences (M4); ``None`` means finite differences.
    about : str
        The law in words, for model descriptions.
    bounded : bool
        True iff, for every shape in the box, accuracy stays at or below an upper asymptote
        ``<= 1`` that the fit estimates, and the family saturates (M4: ``1 - eps_inf``).
        Families that saturate but whose box lets the asymptote pass 1 (arctan ``1 + a``,
        root ``a + p``, logistic ``a + b``) and the unbounded ones (power, log) are False.
        A saturating predictor clips such a family's value to [0, 1] from below as well (a
        floor ``1 - eps_inf - delta`` under 0 reads 0), so its laws stay in [0, 1].
    """

    name: str
    formula: str
    param_names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    starts: tuple[tuple[float, ...], ...]
    scale_param: str
    func: Callable[..., np.ndarray]
    grad: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None
    about: str = ""
    bounded: bool = False

    def __call__(self, z: np.ndarray, shape: Sequence[float]) -> np.ndarray:
        """Evaluate the law at linear predictor ``z`` with shape parameters ``shape``."""
        if len(shape) != len(self.param_names):
            raise MixscaleError(
                f"family {self.name!r} takes {len(self.param_names)} shape parameters "
                f"{self.param_names}, but got {len(shape)}."
            )
        return self.func(z, *(float(v) for v in shape))


@dataclass(frozen=True)
class Predictor:
    """One linear predictor: count terms (per class or total) plus epoch terms.

    The paper's models: ``z = sum_j w_j * count_j + sum_k v_k * epoch**k`` on scaled inputs;
    the count weights ``w`` sum to 1 (see the module docstring), the epoch weights ``v`` are
    free. A *saturating* predictor keeps epochs out of ``z``: ``z = sum_j w_j * count_j`` and
    accuracy is ``f(z) * h(epoch)`` (:func:`epoch_saturation`, parameters ``epoch_tau``,
    ``epoch_kappa``).

    Attributes
    ----------
    name : str
        Registry key (``m0`` ... ``m3``, the paper's models 0-3; ``s0``, ``s2`` saturating).
    description : str
        The linear combination, as in the paper's Table 1.
    per_class : bool
        True: one term per class column; False: one ``total_n`` term.
    epoch_powers : tuple of int
        Powers of the scaled epoch that enter ``z`` (``(1,)`` or ``(1, 2)``; ``()`` when
        saturating).
    saturating : bool
        True: epochs enter as the separate factor ``h(epoch)``.
    """

    name: str
    description: str
    per_class: bool
    epoch_powers: tuple[int, ...]
    saturating: bool = False

    @property
    def n_epoch_params(self) -> int:
        """Number of epoch parameters (weights in ``z``, or ``tau, kappa, steps`` of ``h``)."""
        return len(EPOCH_FACTOR_NAMES) if self.saturating else len(self.epoch_powers)

    def epoch_param_names(self) -> list[str]:
        """Reported names of the epoch parameters (``w_epoch``, ... or ``epoch_tau``, ...)."""
        if self.saturating:
            return list(EPOCH_FACTOR_NAMES)
        return [f"w_{e}" for e in self.epoch_names()]

    def count_names(self, class_columns: Sequence[str]) -> list[str]:
        """Names of the count terms: the class columns, or ``["total_n"]``."""
        return list(class_columns) if self.per_class else ["total_n"]

    def epoch_names(self) -> list[str]:
        """Names of the epoch terms (``epoch``, ``epoch2``)."""
        return ["epoch" if k == 1 else f"epoch{k}" for k in self.epoch_powers]

    def count_block(self, counts: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Count terms, shape ``(n_rows, n_count_terms)``, from scaled counts and total."""
        if self.per_class:
            return np.asarray(counts, dtype=float)
        return np.asarray(total, dtype=float).reshape(-1, 1)

    def epoch_block(self, epoch: np.ndarray) -> np.ndarray:
        """Epoch terms, shape ``(n_rows, len(epoch_powers))``, from the scaled epoch (a
        saturating predictor: the scaled epoch itself, one column, the input of ``h``)."""
        e = np.asarray(epoch, dtype=float).reshape(-1, 1)
        if self.saturating:
            return e
        return np.hstack([e**k for k in self.epoch_powers])


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="power",
            about="power law (the paper's): unbounded, grows like z**c from the offset a",
            formula="a + b * z**c",
            param_names=("a", "b", "c"),
            lower=(-2.0, 0.0, 0.01),
            upper=(1.0, 20.0, 3.0),
            starts=((0.0, 0.8, 0.5), (-0.2, 1.0, 0.3), (0.1, 0.6, 1.0), (-0.5, 1.3, 0.2)),
            scale_param="b",
            func=power_law,
        ),
        Family(
            name="arctan",
            about="arctan law (Mahmood et al.): S-shaped, saturates at 1 + a",
            formula="(2/pi) * arctan(b * (pi/2) * z + a2) + a",
            param_names=("a", "b", "a2"),
            lower=(-1.0, 0.0, -20.0),
            upper=(1.0, 100.0, 20.0),
            starts=((0.0, 1.0, 0.0), (-0.1, 2.0, -0.5), (-0.3, 0.5, 0.5), (0.0, 4.0, -1.5)),
            scale_param="b",
            func=arctan_law,
        ),
        Family(
            name="log",
            about="logarithmic law: grows by b per e-fold of z + d, unbounded",
            formula="b * log(z + d) + a",
            param_names=("a", "b", "d"),
            lower=(-5.0, 0.0, 1e-6),
            upper=(5.0, 5.0, 10.0),
            starts=((0.8, 0.2, 0.1), (0.6, 0.1, 0.01), (0.9, 0.4, 1.0), (0.7, 0.15, 0.3)),
            scale_param="b",
            func=log_law,
        ),
        Family(
            name="root",
            about="algebraic-root law: rises like a + p*q*z, saturates at a + p",
            formula="a + p * q*z / (1 + (q*z)**r)**(1/r)",
            param_names=("a", "p", "q", "r"),
            lower=(-1.0, 0.0, 1e-3, 0.1),
            upper=(1.0, 2.0, 1e3, 10.0),
            starts=(
                (0.1, 0.8, 2.0, 1.0),
                (0.0, 0.9, 5.0, 0.5),
                (0.2, 0.7, 1.0, 2.0),
                (0.1, 0.8, 10.0, 0.3),
            ),
            scale_param="q",
            func=algebraic_root,
        ),
        Family(
            name="logistic",
            about="logistic law: S-shaped from a to a + b",
            formula="a + b / (1 + exp(-(s*z + k)))",
            param_names=("a", "b", "s", "k"),
            lower=(-1.0, 0.0, 0.0, -50.0),
            upper=(1.0, 2.0, 100.0, 50.0),
            starts=(
                (0.1, 0.8, 4.0, -1.0),
                (0.0, 1.0, 8.0, -3.0),
                (0.1, 0.8, 2.0, 0.0),
                (0.1, 0.9, 15.0, -5.0),
            ),
            scale_param="s",
            func=logistic_law,
        ),
        Family(
            name="m4",
            about="M4 law (Alabdulmohsin et al. 2022): error falls towards eps_inf",
            formula="1 - eps, (eps - eps_inf) / (eps_inf + delta - eps)**alpha = beta * z**-c",
            param_names=("eps_inf", "delta", "alpha", "beta", "c"),
            lower=(0.0, 1e-3, 0.0, 1e-6, 0.01),
            upper=(1.0, 1.0, 10.0, 1e3, 5.0),
            starts=(
                (0.1, 0.8, 1.0, 0.5, 0.5),
                (0.05, 0.85, 0.5, 0.2, 1.0),
                (0.2, 0.7, 2.0, 1.0, 0.3),
                (0.1, 0.8, 0.1, 0.1, 0.8),
            ),
            scale_param="beta",
            func=m4_law,
            grad=m4_gradient,
            bounded=True,
        ),
    )
}
"""Outer functions by name (paper section 5, plus Alabdulmohsin et al.'s M4)."""

PREDICTORS: dict[str, Predictor] = {
    p.name: p
    for p in (
        Predictor(
            name="m0",
            description="sum_c w_c n_c + w_epoch epoch",
            per_class=True,
            epoch_powers=(1,),
        ),
        Predictor(
            name="m1",
            description="sum_c w_c n_c + w_epoch epoch + w_epoch2 epoch^2",
            per_class=True,
            epoch_powers=(1, 2),
        ),
        Predictor(
            name="m2",
            description="w_total_n total_n + w_epoch epoch",
            per_class=False,
            epoch_powers=(1,),
        ),
        Predictor(
            name="m3",
            description="w_total_n total_n + w_epoch epoch + w_epoch2 epoch^2",
            per_class=False,
            epoch_powers=(1, 2),
        ),
        Predictor(
            name="s0",
            description="sum_c w_c n_c; accuracy = f(z * h), h = 1 - (1 + v/tau)^-kappa, "
                        "v = epoch * total_n^steps",
            per_class=True,
            epoch_powers=(),
            saturating=True,
        ),
        Predictor(
            name="s2",
            description="w_total_n total_n; accuracy = f(z * h), h = 1 - (1 + v/tau)^-kappa, "
                        "v = epoch * total_n^steps",
            per_class=False,
            epoch_powers=(),
            saturating=True,
        ),
    )
}
"""Linear predictors by name: the paper's models 0-3 (Table 1), where epochs add inside ``z``,
and the saturating ``s0`` (per class, like m0/m1) and ``s2`` (total count, like m2/m3), where
``h`` (:func:`length_saturation`: epochs counted as optimiser steps by the fitted share
``steps``) multiplies the family's accuracy at the data's ``z``: with epochs ``h -> 1``, so
the law approaches ``f(z_data)`` (below the family's asymptote) and never passes it; with no
images (``z = 0``) it predicts the family's no-data accuracy ``f(0)`` times ``h`` (for M4 its
floor ``1 - eps_inf - delta``, read as 0 when that is negative)."""


def get_family(name: str) -> Family:
    """Return the registered family ``name`` or raise :class:`MixscaleError` naming the choices."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise MixscaleError(
            f"`family` must be one of {sorted(FAMILIES)}, but got {name!r}."
        ) from None


def get_predictor(name: str) -> Predictor:
    """Return the registered predictor ``name`` or raise :class:`MixscaleError`."""
    try:
        return PREDICTORS[name]
    except (KeyError, TypeError):
        raise MixscaleError(
            f"`predictor` must be one of {sorted(PREDICTORS)}, but got {name!r}."
        ) from None


def bounded_law(family: str, predictor: str) -> bool:
    """Whether ``family`` with ``predictor`` is a bounded law: a bounded family (an asymptote
    that cannot pass 1) with a saturating predictor (epochs a separate factor), the laws that
    are registered and served."""
    return get_family(family).bounded and get_predictor(predictor).saturating


def n_raw_params(family: str, predictor: str, n_classes: int) -> int:
    """Number of estimated parameters (the count weights have one constraint)."""
    pred = get_predictor(predictor)
    n_count_terms = n_classes if pred.per_class else 1
    return len(get_family(family).param_names) + n_count_terms - 1 + pred.n_epoch_params
