"""What every fitted law shares (private): kept bootstrap replicates, percentile prediction
intervals and the JSON round trip. Base of :class:`mixscale.fit.ScalingLaw` and
:class:`mixscale.classlaw.ClassLaw`."""

from __future__ import annotations

import json
from typing import Any, Self

import numpy as np
import pandas as pd

from mixscale._bootstrap import BootstrapResult
from mixscale.errors import MixscaleError

__all__: list[str] = []  # private module


class LawBase:
    """Mixin: a subclass provides ``_check_fitted``, ``to_dict``/``from_dict``,
    ``_replicate_predictions`` and ``_no_replicates``."""

    raw_params_: np.ndarray
    bootstrap_raw_: np.ndarray | None

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
