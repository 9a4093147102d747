"""What every fitted law shares (private): kept bootstrap replicates, prediction intervals
(percentile, or calibrated on the backtest: :mod:`mixscale.fit.calibration`), the
extrapolation ratio and the JSON round trip. Base of :class:`mixscale.fit.ScalingLaw`,
:class:`mixscale.fit.classlaw.ClassLaw` and every other law kind.

A law's calibration travels in its JSON under the key ``"calibration"`` whatever its kind:
:meth:`LawBase.__init_subclass__` wraps each subclass's own ``to_dict``/``from_dict`` so that
no law format has to repeat it (absent or None: an uncalibrated law, as before)."""

from __future__ import annotations

import functools
import json
from typing import Any, Self

import numpy as np
import pandas as pd

from mixscale.errors import MixscaleError
from mixscale.fit.bootstrap import BootstrapResult
from mixscale.fit.calibration import Calibration

__all__: list[str] = []  # private module


CALIBRATION_KEY = "calibration"  # where a law's JSON dict keeps its Calibration
DESIGN_KEYS = ("min_count", "mix", "share_min", "share_max", "total_min", "total_max")


def design_envelope(counts: np.ndarray) -> dict[str, Any]:
    """What a law knows of the design it was fitted on, from its training rows' counts.

    Parameters
    ----------
    counts : numpy.ndarray
        Training rows x classes, raw image counts.

    Returns
    -------
    dict
        ``min_count`` (smallest count of any class in any row: the planner's default floor),
        ``mix`` (mean share of each class: how a plan of a class-blind law splits images),
        ``share_min``/``share_max`` (each class's smallest and largest share) and
        ``total_min``/``total_max`` (smallest and largest total): the served
        ``outside_design`` flag's box.
    """
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=1)
    shares = counts / np.where(total > 0, total, 1.0)[:, None]
    return {"min_count": int(counts.min()), "mix": shares.mean(axis=0).tolist(),
            "share_min": shares.min(axis=0).tolist(), "share_max": shares.max(axis=0).tolist(),
            "total_min": float(total.min()), "total_max": float(total.max())}


def check_design(d: Any, n_classes: int) -> dict[str, Any] | None:
    """A law JSON's ``design`` entry checked (None stays None: a law fitted before it existed)."""
    if d is None:
        return None
    ok = isinstance(d, dict) and all(k in d for k in DESIGN_KEYS)
    if ok:
        vectors = [np.asarray(d[k], dtype=float) for k in ("mix", "share_min", "share_max")]
        ok = all(v.shape == (n_classes,) and np.all(np.isfinite(v)) for v in vectors)
    if not ok:
        raise MixscaleError(f"a law's `design` must hold {list(DESIGN_KEYS)} with one share per "
                            f"class ({n_classes}), but got {d!r}.")
    return {"min_count": int(d["min_count"]),
            **{k: [float(v) for v in d[k]] for k in ("mix", "share_min", "share_max")},
            "total_min": float(d["total_min"]), "total_max": float(d["total_max"])}


class LawBase:
    """Mixin: a subclass provides ``_check_fitted``, ``to_dict``/``from_dict``,
    ``_replicate_predictions`` and ``_no_replicates``."""

    raw_params_: np.ndarray
    bootstrap_raw_: np.ndarray | None
    design_: dict[str, Any] | None = None  # design_envelope() of the training rows
    calibration_: Calibration | None = None  # set by calibrate(): backtest-calibrated intervals

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make the subclass's own ``to_dict``/``from_dict`` carry ``calibration_``."""
        super().__init_subclass__(**kwargs)
        to_dict = cls.__dict__.get("to_dict")
        if callable(to_dict):
            @functools.wraps(to_dict)
            def to_dict_calibrated(self: LawBase) -> dict[str, Any]:
                d = to_dict(self)
                cal = getattr(self, "calibration_", None)
                d[CALIBRATION_KEY] = None if cal is None else cal.to_dict()
                return d
            cls.to_dict = to_dict_calibrated  # type: ignore[method-assign]
        from_dict = cls.__dict__.get("from_dict")
        if isinstance(from_dict, classmethod):
            inner = from_dict.__func__

            @functools.wraps(inner)
            def from_dict_calibrated(klass: type, d: dict[str, Any]) -> Any:
                law = inner(klass, d)
                cal = d.get(CALIBRATION_KEY) if isinstance(d, dict) else None
                law.calibration_ = None if cal is None else Calibration.from_dict(cal)
                return law
            cls.from_dict = classmethod(from_dict_calibrated)  # type: ignore[method-assign]

    def _set_design(self, counts: np.ndarray) -> None:
        self.design_ = design_envelope(counts)

    def outside_design(self, counts: np.ndarray) -> np.ndarray:
        """Per row of raw ``counts``: is a class share or the total outside the design's range?

        Rows are compared with :func:`design_envelope` of the training rows (a small
        tolerance keeps the design's own rows inside). A law without one (fitted before
        laws stored it) returns all False.
        """
        counts = np.atleast_2d(np.asarray(counts, dtype=float))
        d = self.design_
        if d is None:
            return np.zeros(len(counts), dtype=bool)
        total = counts.sum(axis=1)
        shares = counts / np.where(total > 0, total, 1.0)[:, None]
        tol = 1e-9
        out = (total < d["total_min"] * (1 - tol)) | (total > d["total_max"] * (1 + tol))
        out |= np.any(shares < np.asarray(d["share_min"]) - tol, axis=1)
        out |= np.any(shares > np.asarray(d["share_max"]) + tol, axis=1)
        return out

    def extrapolation_ratio(self, counts: Any) -> np.ndarray:
        """Per row of raw ``counts``: its total over the design's largest total.

        Parameters
        ----------
        counts : numpy.ndarray or pandas.DataFrame
            Rows x classes of raw image counts (a DataFrame: its ``class_columns_``).

        Returns
        -------
        numpy.ndarray
            ``total / design_["total_max"]``, floored at 1.0 (inside the design's largest
            size a law interpolates); NaN for every row of a law without a ``design_``.
        """
        if isinstance(counts, pd.DataFrame):
            counts = counts[list(self.class_columns_)].to_numpy(dtype=float)  # type: ignore[attr-defined]
        counts = np.atleast_2d(np.asarray(counts, dtype=float))
        if self.design_ is None:
            return np.full(len(counts), np.nan)
        top = max(float(self.design_["total_max"]), 1e-12)
        return np.maximum(counts.sum(axis=1) / top, 1.0)

    def calibrate(self, calibration: Calibration | None) -> Self:
        """Use ``calibration`` for :meth:`predict_interval` (None: back to the bootstrap).

        Raises
        ------
        MixscaleError
            If the law has no ``design_`` (its extrapolation ratio is unknown) or
            ``calibration`` is not a :class:`~mixscale.fit.calibration.Calibration`.
        """
        self._check_fitted()
        if calibration is not None:
            if not isinstance(calibration, Calibration):
                raise MixscaleError(f"`calibration` must be a Calibration or None, but got "
                                    f"{type(calibration).__name__}.")
            if self.design_ is None:
                raise MixscaleError("this law stores no design (it was fitted before laws "
                                    "kept one), so its extrapolation ratio and a calibrated "
                                    "interval are unknown; refit it with `mixscale fit`.")
        self.calibration_ = calibration
        return self

    def _check_fitted(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _replicate_predictions(self, X: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``X``, one row per replicate in ``raw``."""
        raise NotImplementedError  # pragma: no cover

    def _no_replicates(self) -> str:
        """The message when no bootstrap was kept."""
        raise NotImplementedError  # pragma: no cover

    def keep_bootstrap(self, result: BootstrapResult) -> Self:
        """Keep a bootstrap's replicate parameters so the law can give prediction intervals."""
        self._check_fitted()
        raw = np.asarray(result.raw_samples, dtype=float)
        if raw.ndim != 2 or raw.shape[1:] != self.raw_params_.shape or len(raw) < 2:
            raise MixscaleError(
                f"a bootstrap of this law needs >= 2 replicates of {self.raw_params_.size} "
                f"parameters, but got shape {raw.shape}."
            )
        self.bootstrap_raw_ = raw
        return self

    def predict_interval(self, X: pd.DataFrame, level: float = 0.9
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` interval of the prediction for each row of ``X``.

        Uncalibrated (``calibration_`` None): the percentile interval over the kept bootstrap
        replicates. Calibrated (:meth:`calibrate`): around the point prediction ``p``,
        ``p - sqrt(h**2 + (p - b_lo)**2)`` to ``p + sqrt(h**2 + (b_hi - p)**2)``, where ``h``
        is :meth:`Calibration.half_width` at the row's :meth:`extrapolation_ratio` (backtest
        error, seed/evaluation noise as a floor) and ``b_lo``/``b_hi`` the bootstrap
        percentiles (0 spread without kept replicates): the half-widths add in quadrature as
        independent errors do. Clipped to [0, 1].

        Parameters
        ----------
        X : pandas.DataFrame
            ``n_<class>`` columns and ``epoch``, as for ``predict``.
        level : float
            Coverage in (0, 1), e.g. 0.9 for the 5 % and 95 % percentiles.

        Returns
        -------
        lower, upper : numpy.ndarray

        Raises
        ------
        MixscaleError
            If ``level`` is outside (0, 1), or the law is uncalibrated and kept no bootstrap
            (:meth:`keep_bootstrap`).
        """
        self._check_fitted()
        if isinstance(level, bool) or not isinstance(level, int | float | np.floating) \
                or not 0.0 < level < 1.0:
            raise MixscaleError(f"`level` must be in (0, 1), but got level={level!r}.")
        raw = getattr(self, "bootstrap_raw_", None)
        cal = getattr(self, "calibration_", None)
        if raw is None and cal is None:
            raise MixscaleError(self._no_replicates())
        tail = 100.0 * (1.0 - level) / 2.0
        if raw is not None:
            preds = self._replicate_predictions(X, raw)
            lower, upper = np.percentile(preds, [tail, 100.0 - tail], axis=0)
            if cal is None:
                return lower, upper
        point = np.asarray(self.predict(X), dtype=float)  # type: ignore[attr-defined]
        if raw is None:
            lower = upper = point
        h = cal.half_width(self.extrapolation_ratio(X), level)
        down = np.sqrt(h ** 2 + np.maximum(point - lower, 0.0) ** 2)
        up = np.sqrt(h ** 2 + np.maximum(upper - point, 0.0) ** 2)
        return np.clip(point - down, 0.0, 1.0), np.clip(point + up, 0.0, 1.0)

    def to_json(self) -> str:
        """``to_dict()`` as a JSON string (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=1)  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Rebuild a fitted law from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))  # type: ignore[attr-defined]
