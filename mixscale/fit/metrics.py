"""Goodness-of-fit metrics of the paper's Table 1 (re-exported by :mod:`mixscale.fit`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixscale.errors import MixscaleError

__all__ = ["mse", "r2"]


def mse(y: Any, yhat: Any) -> float:
    """Mean squared error of ``yhat`` against ``y``."""
    y, yhat = _pair(y, yhat)
    return float(np.mean((y - yhat) ** 2))


def r2(y: Any, yhat: Any) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (``nan`` if ``y`` is constant)."""
    y, yhat = _pair(y, yhat)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot


def _pair(y: Any, yhat: Any) -> tuple[np.ndarray, np.ndarray]:
    y, yhat = np.asarray(y, dtype=float).ravel(), np.asarray(yhat, dtype=float).ravel()
    if y.size != yhat.size or y.size == 0:
        raise MixscaleError(
            f"`y` and `yhat` must be non-empty and of equal length, but got {y.size} and "
            f"{yhat.size}."
        )
    return y, yhat
