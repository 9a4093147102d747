"""What every fitted law shares (private): kept bootstrap replicates, percentile prediction
intervals and the JSON round trip. Base of :class:`mixscale.fit.ScalingLaw` and
:class:`mixscale.fit.classlaw.ClassLaw`."""

from __future__ import annotations

import json
from typing import Any, Self

import numpy as np
import pandas as pd

from mixscale.errors import MixscaleError
from mixscale.fit.bootstrap import BootstrapResult

__all__: list[str] = []  # private module


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
        """Percentile interval of the prediction over the kept bootstrap replicates.

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
            If ``level`` is outside (0, 1) or no bootstrap was kept (:meth:`keep_bootstrap`).
        """
        self._check_fitted()
        if not 0.0 < level < 1.0:
            raise MixscaleError(f"`level` must be in (0, 1), but got level={level!r}.")
        raw = getattr(self, "bootstrap_raw_", None)
        if raw is None:
            raise MixscaleError(self._no_replicates())
        preds = self._replicate_predictions(X, raw)
        tail = 100.0 * (1.0 - level) / 2.0
        lower, upper = np.percentile(preds, [tail, 100.0 - tail], axis=0)
        return lower, upper

    def to_json(self) -> str:
        """``to_dict()`` as a JSON string (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=1)  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, text: str) -> Any:
        """Rebuild a fitted law from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))  # type: ignore[attr-defined]
