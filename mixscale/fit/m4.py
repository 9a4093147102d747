"""Numerics of the M4 law (private; :func:`mixscale.fit.laws.m4_law` is the public face).

M4 (Alabdulmohsin et al. 2022) defines the error implicitly. With ``t = (eps - eps_inf) /
delta`` in (0, 1) the equation is ``log t - alpha * log(1 - t) = log K``; it is solved in
``s = logit(t)`` by a vectorised Newton iteration safeguarded by bisection, and its derivatives
follow from the implicit function theorem, so a fit needs one root solve per Jacobian.
"""

from __future__ import annotations

import numpy as np

__all__ = ["m4_fraction", "m4_gradient"]

Z_MIN = 1e-12  # families that need z > 0 clip the linear predictor here
_S_MAX = 50.0  # |logit| bound of the root solve: sigmoid(50) == 1 - 2e-22
_ITERATIONS = 60


def m4_gradient(
    z: np.ndarray, eps_inf: float, delta: float, alpha: float, beta: float, c: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(dy/dz, dy/d(eps_inf, delta, alpha, beta, c))`` of ``m4_law``, analytically.

    Implicit differentiation of ``G = log t - alpha log(1 - t) - log K = 0``:
    ``dt/d(log K) = t (1 - t) / ((1 - t) + alpha t)``, one root solve for all derivatives.
    """
    z = np.asarray(z, dtype=float)
    zc = np.maximum(z, Z_MIN)
    log_k = np.log(beta) - c * np.log(zc) + (alpha - 1.0) * np.log(delta)
    t, u = m4_fraction(log_k, alpha)
    denom = u + alpha * t
    with np.errstate(divide="ignore", invalid="ignore"):
        dt = np.where(denom > 0.0, t * u / denom, 0.0)  # dt / dlog K; 0 where t is pinned
        dt_dalpha = np.where(dt > 0.0, (np.log(u) + np.log(delta)) * dt, 0.0)
    dy_dshape = np.stack(
        [
            np.full(z.shape, -1.0),
            -t - (alpha - 1.0) * dt,  # dy/ddelta = -t - delta * dt/ddelta
            -delta * dt_dalpha,
            -delta * dt / beta,
            delta * np.log(zc) * dt,
        ],
        axis=-1,
    )
    dy_dz = np.where(z > Z_MIN, delta * c * dt / zc, 0.0)
    return dy_dz, dy_dshape


def m4_fraction(log_k: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``log t - alpha log(1 - t) = log_k`` for ``t`` in (0, 1); return ``(t, 1 - t)``."""
    log_k = np.asarray(log_k, dtype=float)
    if alpha <= 0.0:
        neg = np.minimum(log_k, 0.0)
        return np.exp(neg), -np.expm1(neg)
    g_hi = alpha * np.logaddexp(0.0, _S_MAX) - np.logaddexp(0.0, -_S_MAX) - log_k
    g_lo = alpha * np.logaddexp(0.0, -_S_MAX) - np.logaddexp(0.0, _S_MAX) - log_k
    # start from the tail asymptotes: s ~ log_k / alpha for t -> 1, s ~ log_k for t -> 0
    s = np.clip(np.where(log_k > 0.0, log_k / alpha, log_k), -_S_MAX, _S_MAX)
    s = np.where(g_hi <= 0.0, _S_MAX, np.where(g_lo >= 0.0, -_S_MAX, s))
    active = (g_hi > 0.0) & (g_lo < 0.0)  # roots clipped at +-_S_MAX are final already
    lo = np.full(log_k.shape, -_S_MAX)
    hi = np.full(log_k.shape, _S_MAX)
    for _ in range(_ITERATIONS):
        # g(s) = log t - alpha log(1 - t) - log_k with t = sigmoid(s); g is increasing in s
        g = alpha * np.logaddexp(0.0, s) - np.logaddexp(0.0, -s) - log_k
        lo = np.where(g < 0.0, s, lo)
        hi = np.where(g >= 0.0, s, hi)
        newton = s - g / (alpha * _sigmoid(s) + _sigmoid(-s))
        s_new = np.where((newton >= lo) & (newton <= hi), newton, 0.5 * (lo + hi))
        s_new = np.where(active, s_new, s)
        done = np.all(np.abs(s_new - s) <= 1e-13 * (1.0 + np.abs(s)))
        s = s_new
        if done:
            break
    return _sigmoid(s), _sigmoid(-s)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))
