"""The scaling-law estimator: fit, predict, score, uncertainty and a JSON round-trip.

:class:`ScalingLaw` fits ``accuracy = f(z)`` (a family of :mod:`mixscale.fit.laws`) where ``z``
is a linear predictor (the paper's models 0-3) of scaled per-class counts ``n_<class>`` and
``epoch``.

Scaling. All class columns share one scale, the largest class count over all classes and
training rows, so the class weights compare directly as "value of one image of class c" (the
paper scales counts to [0, 1]; with one common scale a weight ratio is a per-image value ratio).
``total_n`` (the row sum of the class columns) and ``epoch`` are each divided by their training
maximum. The scales are fitted attributes, so users pass raw counts and epochs.

Reporting convention (identifiability). The count weights (``w_n_<class>`` for ``m0``/``m1``,
``w_total_n`` for ``m2``/``m3``) sum to exactly 1; the family's scale parameter absorbs the
overall size of ``z``. ``w_epoch`` and ``w_epoch2`` are in the same normalised units. The fit
runs directly in this parameterisation, so standard errors and bootstrap intervals refer to it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from mixscale.errors import FitError, MixscaleError, NotFittedError
from mixscale.fit import lsq as _lsq
from mixscale.fit.base import LawBase
from mixscale.fit.bootstrap import BootstrapResult, bootstrap_law
from mixscale.fit.inputs import check_options, read_features, read_target
from mixscale.fit.lawjson import law_from_dict, law_to_dict
from mixscale.fit.laws import get_family, get_predictor, n_raw_params
from mixscale.fit.metrics import mse, r2

__all__ = ["ScalingLaw"]

class ScalingLaw(LawBase):
    """Per-class dataset-size scaling law ``accuracy = f(z)``, scikit-learn style.

    Parameters
    ----------
    family : str
        Outer function, a key of :data:`mixscale.fit.laws.FAMILIES`.
    predictor : str
        Linear predictor, a key of :data:`mixscale.fit.laws.PREDICTORS` (paper models 0-3).
    min_epoch : int
        ``fit`` and ``score`` drop rows with ``epoch < min_epoch`` (paper: 10).
    loss : {"linear", "huber"}
        Least-squares loss; ``huber`` down-weights residuals larger than ``f_scale``.
    f_scale : float
        Residual size (accuracy units) where the Huber loss turns linear.
    n_starts : int
        Number of least-squares starts: the family's grid first, then seeded random starts.
    seed : int or None
        Seed of the random starts.

    Attributes
    ----------
    class_columns_ : list of str
        The ``n_<class>`` columns seen in ``fit``, in order.
    count_scale_, total_scale_, epoch_scale_ : float
        Divisors of the class counts (one common scale), ``total_n`` and ``epoch``.
    params_ : dict of str to float
        Parameters in the reporting convention (module docstring): the family's shape
        parameters, then ``w_<count term>`` (summing to 1), then ``w_epoch`` [, ``w_epoch2``].
    raw_params_ : numpy.ndarray
        The optimised vector (the last count weight is implied by the sum).
    pcov_ : numpy.ndarray
        Covariance of ``params_`` values, in their order (``inf`` when not estimable).
    cost_ : float
        Final least-squares cost, ``0.5 * sum(loss(residual**2))``.
    n_train_ : int
        Rows used in the fit (after the ``min_epoch`` drop).
    groups_ : numpy.ndarray or None
        The ``groups`` passed to ``fit`` (all rows, before the drop), reused by ``bootstrap``.
    bootstrap_raw_ : numpy.ndarray or None
        Replicate parameter vectors kept by :meth:`keep_bootstrap` (saved in the JSON), which
        :meth:`predict_interval` turns into prediction intervals.
    """

    def __init__(
        self,
        *,
        family: str = "power",
        predictor: str = "m1",
        min_epoch: int = 10,
        loss: Literal["linear", "huber"] = "linear",
        f_scale: float = 0.01,
        n_starts: int = 8,
        seed: int | None = 0,
    ) -> None:
        self.family = family
        self.predictor = predictor
        self.min_epoch = min_epoch
        self.loss = loss
        self.f_scale = f_scale
        self.n_starts = n_starts
        self.seed = seed

    def __repr__(self) -> str:
        return f"ScalingLaw(family={self.family!r}, predictor={self.predictor!r})"

    # ------------------------------------------------------------------ fitting
    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None) -> ScalingLaw:
        """Fit the law to rows of counts and epochs with observed accuracies ``y``.

        Parameters
        ----------
        X : pandas.DataFrame
            Columns ``n_<class>`` (one per class; every such column is used) and ``epoch``;
            other columns are ignored. Counts and epochs must be numeric and non-negative.
        y : array_like
            Observed accuracy per row, in [0, 1].
        groups : array_like, optional
            Group label per row (for example the run id), kept for :meth:`bootstrap`.

        Returns
        -------
        ScalingLaw
            ``self``, fitted.

        Raises
        ------
        FitError
            Too few rows after dropping ``epoch < min_epoch`` (fewer than the number of
            parameters + 1), all-zero counts, or every start failed.
        """
        self._check_options()
        counts, epoch, columns = read_features(X, class_columns=None)
        y_all = read_target(y, n_rows=len(X))
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (len(X),):
                raise MixscaleError(
                    f"`groups` must have one label per row of X ({len(X)}), "
                    f"but got shape {groups.shape}."
                )
        keep = epoch >= self.min_epoch
        n_params = n_raw_params(self.family, self.predictor, len(columns))
        if keep.sum() < n_params + 1:
            raise FitError(
                f"fitting {self.family!r}/{self.predictor!r} needs at least {n_params + 1} rows "
                f"with epoch >= min_epoch={self.min_epoch} ({n_params} parameters + 1), "
                f"but got {int(keep.sum())} of {len(X)} rows."
            )
        counts, epoch, y_fit = counts[keep], epoch[keep], y_all[keep]
        scales = (counts.max(), counts.sum(axis=1).max(), epoch.max())
        for name, value in zip(("class count", "total_n", "epoch"), scales, strict=True):
            if not value > 0:
                raise FitError(
                    f"the largest {name} in the training rows must be > 0 to scale inputs to "
                    f"[0, 1], but got {value:g}."
                )
        problem = self._problem(counts, epoch, scales=scales)
        rng = np.random.default_rng(self.seed)
        starts = _lsq.starting_points(problem, y_fit, n_starts=self.n_starts, rng=rng)
        best = _lsq.solve(problem, y_fit, starts, loss=self.loss, f_scale=self.f_scale)
        raw_cov = _lsq.covariance(problem, best.x, y_fit, loss=self.loss, f_scale=self.f_scale)
        a, _ = _lsq.report_matrix(problem)
        pcov = np.full((a.shape[0], a.shape[0]), np.inf)
        if np.all(np.isfinite(raw_cov)):
            pcov = a @ raw_cov @ a.T
        # only a successful fit touches the fitted attributes
        self.class_columns_ = columns
        self.count_scale_, self.total_scale_, self.epoch_scale_ = (float(v) for v in scales)
        self._set_fitted(best.x, pcov, cost=float(best.cost), n_train=int(keep.sum()))
        self._set_design(counts)  # floor, mix and range of the training rows (plan, serving)
        self.groups_ = groups
        return self

    def _check_options(self) -> None:
        check_options(
            family=self.family,
            predictor=self.predictor,
            min_epoch=self.min_epoch,
            loss=self.loss,
            f_scale=self.f_scale,
            n_starts=self.n_starts,
            seed=self.seed,
        )

    def _problem(
        self, counts: np.ndarray, epoch: np.ndarray, *, scales: tuple[float, ...] | None = None
    ) -> _lsq.Problem:
        """Scaled design blocks for raw ``counts`` (rows x class columns) and ``epoch``.

        ``scales`` (count, total, epoch) default to the fitted ones.
        """
        if scales is None:
            scales = (self.count_scale_, self.total_scale_, self.epoch_scale_)
        count_scale, total_scale, epoch_scale = scales
        predictor = get_predictor(self.predictor)
        count_block = predictor.count_block(counts / count_scale, counts.sum(axis=1) / total_scale)
        epoch_block = predictor.epoch_block(epoch / epoch_scale)
        return _lsq.Problem(get_family(self.family), count_block, epoch_block)

    def _set_fitted(self, raw: np.ndarray, pcov: np.ndarray, *, cost: float, n_train: int) -> None:
        family, predictor = get_family(self.family), get_predictor(self.predictor)
        names = list(family.param_names)
        names += [f"w_{c}" for c in predictor.count_names(self.class_columns_)]
        names += [f"w_{e}" for e in predictor.epoch_names()]
        k, f = len(family.param_names), len(predictor.count_names(self.class_columns_)) - 1
        free = raw[k : k + f]
        values = np.concatenate([raw[: k + f], [1.0 - free.sum()], raw[k + f :]])
        self.raw_params_ = np.asarray(raw, dtype=float)
        self.bootstrap_raw_ = None  # replicates of an earlier fit no longer apply
        self.params_ = {n: float(v) for n, v in zip(names, values, strict=True)}
        self.pcov_ = np.asarray(pcov, dtype=float)
        self.cost_ = cost
        self.n_train_ = n_train

    def _check_fitted(self) -> None:
        if not hasattr(self, "raw_params_"):
            raise NotFittedError(
                "This ScalingLaw instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    # --------------------------------------------------------------- prediction
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted accuracy for every row of ``X`` (no rows are dropped).

        Parameters
        ----------
        X : pandas.DataFrame
            Raw (unscaled) counts in the fitted ``class_columns_`` and ``epoch``; int or float.

        Returns
        -------
        numpy.ndarray
            One prediction per row.

        Raises
        ------
        NotFittedError
            If called before :meth:`fit`.
        MixscaleError
            Missing columns (all are named), non-numeric columns, negative or non-finite values.
        """
        self._check_fitted()
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        return self._problem(counts, epoch).predict(self.raw_params_)

    def score(self, X: pd.DataFrame, y: Any) -> dict[str, float]:
        """MSE, r^2 and row count on the rows of ``X`` with ``epoch >= min_epoch``.

        Predictions are clipped to [0, 1] first, as served models and
        :class:`~mixscale.fit.classlaw.ClassLaw` clip them, so scores compare laws as they are
        used: a law that runs away outside the design costs at most the distance to 0 or 1.
        """
        self._check_fitted()
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        y = read_target(y, n_rows=len(X))
        keep = epoch >= self.min_epoch
        if not keep.any():
            raise MixscaleError(
                f"score needs rows with epoch >= min_epoch={self.min_epoch}, but got none."
            )
        pred = np.clip(self._problem(counts[keep], epoch[keep]).predict(self.raw_params_), 0, 1)
        return {"mse": mse(y[keep], pred), "r2": r2(y[keep], pred), "n": int(keep.sum())}

    # -------------------------------------------------------------- uncertainty
    def standard_errors(self) -> dict[str, float]:
        """Standard errors of :attr:`params_` from ``sigma^2 (J^T J)^-1``.

        The fit runs in the reporting convention (count weights sum to 1), so the covariance
        is that of the reported parameters; the implied last count weight gets its error by
        the (exact, linear) delta method. A count weight fixed by the convention (``w_total_n``
        or a single class) has error 0. ``inf`` means the Jacobian was rank deficient.
        """
        self._check_fitted()
        se = np.sqrt(np.clip(np.diag(self.pcov_), 0.0, None))
        return {name: float(v) for name, v in zip(self.params_, se, strict=True)}

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        """The box each optimised parameter of :attr:`params_` was fitted in.

        The last count weight is implied by the sum-to-one convention (and a single count
        weight is fixed at 1), so it has no box of its own and is left out.

        Returns
        -------
        dict of str to (float, float)
            ``name -> (lower, upper)``.
        """
        self._check_fitted()
        family, predictor = get_family(self.family), get_predictor(self.predictor)
        n_free = len(predictor.count_names(self.class_columns_)) - 1
        lower, upper = _lsq.raw_bounds(family, n_free, len(predictor.epoch_powers))
        k = len(family.param_names)
        names = list(self.params_)
        names = names[: k + n_free] + names[k + n_free + 1 :]  # drop the implied weight
        return {n: (float(lo), float(hi)) for n, lo, hi in zip(names, lower, upper, strict=True)}

    def bootstrap(
        self,
        X: pd.DataFrame,
        y: Any,
        *,
        groups: Any = None,
        n_boot: int = 200,
        seed: int | None = 0,
        X_pred: pd.DataFrame | None = None,
        level: float = 0.95,
    ) -> BootstrapResult:
        """Group (run) bootstrap: percentile intervals for every reported parameter.

        Groups are resampled with replacement and the law is refitted on their rows, starting
        from the fitted parameters, with the fitted scales held fixed (so every replicate
        reports in the same units).

        Parameters
        ----------
        X, y : pandas.DataFrame, array_like
            The training table (normally the one passed to :meth:`fit`).
        groups : array_like, optional
            Group label per row of ``X``; defaults to the ``groups`` given to :meth:`fit`.
        n_boot : int
            Number of bootstrap replicates.
        seed : int or None
            Seed of the resampling.
        X_pred : pandas.DataFrame, optional
            Rows to predict in every replicate; their percentile intervals are returned too.
        level : float
            Coverage of the percentile intervals.

        Returns
        -------
        BootstrapResult
        """
        self._check_fitted()
        if groups is None:
            groups = getattr(self, "groups_", None)
            if groups is None or len(groups) != len(X):
                raise MixscaleError(
                    "bootstrap resamples groups (runs) and needs `groups` with one label per "
                    "row of X; pass groups=... here or to fit()."
                )
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        y = read_target(y, n_rows=len(X))
        keep = epoch >= self.min_epoch
        problem = self._problem(counts[keep], epoch[keep])
        pred_problem = None
        if X_pred is not None:
            pc, pe, _ = read_features(X_pred, class_columns=self.class_columns_)
            pred_problem = self._problem(pc, pe)
        return bootstrap_law(
            problem,
            y[keep],
            np.asarray(groups)[keep],
            self.raw_params_,
            names=list(self.params_),
            estimate=np.array(list(self.params_.values())),
            loss=self.loss,
            f_scale=self.f_scale,
            n_boot=n_boot,
            seed=seed,
            pred_problem=pred_problem,
            level=level,
        )

    def _no_replicates(self) -> str:
        return (f"this {self.family!r}/{self.predictor!r} law carries no bootstrap replicates, "
                "so it has no prediction intervals (fit keeps them for the champion and the "
                "best per-class law when --n-boot > 0).")

    def _replicate_predictions(self, X: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        problem = self._problem(counts, epoch)
        return np.array([problem.predict(theta) for theta in raw])

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted law (plain JSON types)."""
        self._check_fitted()
        return law_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScalingLaw:
        """Rebuild a fitted law from :meth:`to_dict` output."""
        return law_from_dict(cls, d)
