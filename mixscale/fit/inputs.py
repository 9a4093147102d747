"""Validation of the tables a scaling law reads (private; used by :mod:`mixscale.fit`).

Every error names the rule and the offending columns or values, because the serving endpoint
turns a :class:`~mixscale.errors.MixscaleError` into an HTTP 400 with this message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixscale.errors import FitError, MixscaleError
from mixscale.fit.laws import get_family, get_predictor

__all__: list[str] = []  # private module

CLASS_PREFIX = "n_"
EPOCH = "epoch"


def read_features(
    X: Any, *, class_columns: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return ``(counts, epoch, class_columns)`` as float arrays from a validated ``X``.

    With ``class_columns=None`` (fitting) every column named ``n_<class>`` is a class column;
    otherwise exactly ``class_columns`` (and ``epoch``) are required and others are ignored.
    """
    if not isinstance(X, pd.DataFrame):
        raise MixscaleError(
            f"`X` must be a pandas DataFrame with columns n_<class>... and {EPOCH!r}, "
            f"but got {type(X).__name__}."
        )
    if class_columns is None:
        class_columns = [c for c in X.columns if isinstance(c, str) and c.startswith("n_")]
        if not class_columns:
            raise FitError(
                f"`X` must have at least one class-count column named '{CLASS_PREFIX}<class>', "
                f"but its columns are {list(X.columns)}."
            )
    required = [*class_columns, EPOCH]
    missing = [c for c in required if c not in X.columns]
    if missing:
        raise MixscaleError(
            f"`X` is missing required column(s) {missing}; the law needs {required}."
        )
    non_numeric = {
        c: str(X[c].dtype)
        for c in required
        if not (pd.api.types.is_integer_dtype(X[c]) or pd.api.types.is_float_dtype(X[c]))
    }
    if non_numeric:
        raise MixscaleError(
            f"columns {list(non_numeric)} must be numeric (int or float), but have dtypes "
            f"{non_numeric}."
        )
    values = X[required].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [c for c, b in zip(required, bad.any(axis=0), strict=True) if b]
        raise MixscaleError(f"columns {cols} must be finite, but contain NaN or inf.")
    negative = values < 0
    if negative.any():
        cols = [c for c, b in zip(required, negative.any(axis=0), strict=True) if b]
        raise MixscaleError(
            f"counts and epochs must be >= 0, but columns {cols} contain negative values "
            f"(smallest {values[negative].min():g})."
        )
    return values[:, :-1], values[:, -1], list(class_columns)


def read_target(y: Any, *, n_rows: int) -> np.ndarray:
    """Observed accuracies as a finite 1-D float array of length ``n_rows``."""
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise MixscaleError(
            f"`y` must be numeric accuracies, but got {type(y).__name__}."
        ) from None
    if arr.ndim != 1 or arr.size != n_rows:
        raise MixscaleError(
            f"`y` must be 1-D with one accuracy per row of X ({n_rows}), "
            f"but got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        n_bad = int((~np.isfinite(arr)).sum())
        raise MixscaleError(f"`y` must be finite, but has {n_bad} NaN/inf value(s).")
    return arr


def check_options(
    *,
    family: Any,
    predictor: Any,
    min_epoch: Any,
    loss: Any,
    f_scale: Any,
    n_starts: Any,
    seed: Any,
    shrink: Any = True,
    weighting: Any = "none",
    prior: Any = "none",
) -> None:
    """Validate the options of a :class:`~mixscale.fit.ScalingLaw` (called by ``fit``)."""
    get_family(family)
    get_predictor(predictor)
    if not _is_int(min_epoch) or min_epoch < 0:
        raise MixscaleError(f"`min_epoch` must be an int >= 0, but got {min_epoch!r}.")
    if loss not in ("linear", "huber"):
        raise MixscaleError(f"`loss` must be 'linear' or 'huber', but got {loss!r}.")
    if (
        isinstance(f_scale, bool)
        or not isinstance(f_scale, (int, float))
        or not (0 < f_scale < np.inf)
    ):
        raise MixscaleError(f"`f_scale` must be a float > 0, but got {f_scale!r}.")
    if not _is_int(n_starts) or n_starts < 1:
        raise MixscaleError(f"`n_starts` must be an int >= 1, but got {n_starts!r}.")
    if seed is not None and not _is_int(seed):
        raise MixscaleError(f"`seed` must be an int or None, but got {seed!r}.")
    if not isinstance(shrink, (bool, np.bool_)):
        raise MixscaleError(f"`shrink` must be True or False, but got {shrink!r}.")
    if weighting not in WEIGHTINGS:
        raise MixscaleError(f"`weighting` must be one of {WEIGHTINGS}, but got {weighting!r}.")
    if prior not in PRIORS:
        raise MixscaleError(f"`prior` must be one of {PRIORS}, but got {prior!r}.")


WEIGHTINGS = ("auto", "none", "extrapolation", "extrapolation-log")
"""Row weightings of a :class:`~mixscale.fit.ScalingLaw` fit: ``none`` (the paper's plain
accuracy least squares), ``extrapolation`` (accuracy residuals, rows weighted by ``(total /
largest training total)**2``), ``extrapolation-log`` (the same weights on log-error residuals:
:func:`mixscale.fit.priors.fit_curve`'s default rule) and ``auto`` (``extrapolation`` for
bounded laws, ``none`` for the paper's m0-m3)."""


PRIORS = ("auto", "none")
"""Shape priors of a :class:`~mixscale.fit.ScalingLaw` fit: ``auto`` (the population prior
:data:`mixscale.fit.priors.M4_PRIOR` on a bounded m4 law, none otherwise) and ``none``."""


def binomial_weights(accuracy: Any, eval_images: Any) -> np.ndarray:
    """Inverse binomial variances ``1 / (p (1 - p) / N)`` of accuracies measured on ``N`` test
    images, normalised to mean 1 (the ``sample_weight`` of a fit).

    ``p`` is clipped to ``[0.5 / N, 1 - 0.5 / N]`` so a perfect (or zero) score keeps a finite
    weight. A row without a valid ``N`` (missing, < 1) gets the rows' mean variance.

    The fit stage does not pass these weights: on a digits fit table (N = 450) they doubled
    m4-s2's validation MSE (0.0032 -> 0.0064) and raised its backtest RMSE (0.038 -> 0.062)
    on top of the extrapolation weighting. Between-run noise and misfit, not the binomial
    noise of the test set, dominate those residuals, and ``1 / (p (1 - p))`` piles the weight
    on the most accurate rows.

    Parameters
    ----------
    accuracy : array_like
        Observed accuracy per row, in [0, 1].
    eval_images : array_like
        Test images each row was scored on (``eval_images`` of the fit table).

    Returns
    -------
    numpy.ndarray
        One weight per row, mean 1.
    """
    p = np.asarray(accuracy, dtype=float)
    n = np.asarray(pd.to_numeric(pd.Series(np.asarray(eval_images).ravel()), errors="coerce"),
                   dtype=float)
    if p.shape != n.shape:
        raise MixscaleError(f"`accuracy` and `eval_images` must have one value per row, but "
                            f"got shapes {p.shape} and {n.shape}.")
    ok = np.isfinite(n) & (n >= 1)
    var = np.full(p.shape, np.nan)
    half = 0.5 / n[ok]
    q = np.clip(p[ok], half, 1.0 - half)
    var[ok] = q * (1.0 - q) / n[ok]
    if not ok.any():
        return np.ones(p.shape)
    var[~ok] = np.mean(var[ok])
    weight = 1.0 / var
    return weight / weight.mean()


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
