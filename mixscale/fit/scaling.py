"""The scaling-law estimator: fit, predict, score, uncertainty and a JSON round-trip.

:class:`ScalingLaw` fits ``accuracy = f(z)`` (a family of :mod:`mixscale.fit.laws`) where ``z``
is a linear predictor (the paper's models 0-3) of scaled per-class counts ``n_<class>`` and
``epoch``, or ``accuracy = f(z_data * h)`` with a saturating predictor (``s0``, ``s2``), where
training length is a separate resource that cannot replace data without limit: ``h`` rises
from 0 to 1 in ``v = epoch * (total_n / largest)**epoch_steps``
(:func:`mixscale.fit.laws.length_saturation`; ``epoch_steps`` in [0, 1] is fitted: 0 counts
epochs, 1 optimiser steps at mixscale's fixed batch size, so that a larger subset may reach its
ceiling in fewer epochs). On the digits demo (batch 32, fitted on sizes <= 480) the 60-image
rows are still 38 points below their ceiling at epoch 12 while the 480-image rows are flat,
and ``m4-s2`` fits ``epoch_steps`` = 0.50: its RMSE on the 960- and 1,347-image runs falls
from 1.27 and 1.46 points (training length in epochs) to 1.17 and 1.33.
:attr:`ScalingLaw.bounded` says whether a law keeps every prediction in [0, 1] below a fitted
asymptote (a bounded family with a saturating predictor); only such laws are served.

Shrinkage. The count weights of a per-class predictor (``m0``, ``m1``, ``s0``) are shrunk
towards equal weights -- the total-count twin -- by a ridge penalty ``lam * sum_c (w_c -
1/m)**2`` whose strength is chosen by K-fold cross-validation over runs
(:func:`mixscale.fit.lsq.choose_penalty`): a per-class law moves away from equal weights only as
far as held-out runs support. ``shrinkage_`` is the chosen ``lam``, ``effective_params_`` the
trace of the hat matrix, and ``identifiability_`` a warning when the design cannot identify the
per-class weights (and which rows would help). ``shrink=False`` fits as the paper does.

Scaling. All class columns share one scale, the largest class count over all classes and
training rows, so the class weights compare directly as "value of one image of class c" (the
paper scales counts to [0, 1]; with one common scale a weight ratio is a per-image value ratio).
``total_n`` (the row sum of the class columns) and ``epoch`` are each divided by their training
maximum. The scales are fitted attributes, so users pass raw counts and epochs.

Weighting. ``weighting="extrapolation"`` fits the way that extrapolates: each row's squared
accuracy residual is weighted by ``(total / largest training total)**2``
(:func:`mixscale.fit.priors.size_weights`, mean 1), so the largest rows, nearest the sizes a
plan asks about, steer the shape. ``"extrapolation-log"`` puts the same weights on log-error
residuals ``log(1 - pred) - log(1 - y)`` (errors floored at
:data:`~mixscale.fit.priors.OBSERVED_ERROR_FLOOR`): :func:`~mixscale.fit.priors.fit_curve`'s
rule, the best on the 72 public curves (m4 0.036 mean extrapolation loss against 0.038 for
accuracy z**2 and 0.045 unweighted) but on a digits fit table 3x the validation MSE of
accuracy z**2 (small rows fitted in relative error, weighted ~0), hence not the default.
``"none"`` is the paper's plain accuracy least squares; ``"auto"`` (the default) uses
``extrapolation`` for bounded laws and the paper's for m0-m3 (Table 1 parity).
``fit(..., sample_weight=w)`` multiplies every row's squared residual by ``w`` on top (e.g.
:func:`mixscale.fit.inputs.binomial_weights` from ``eval_images``).

Prior. ``prior="auto"`` (the default) fits a bounded m4 law by maximum a posteriori under the
population prior :data:`mixscale.fit.priors.M4_PRIOR` on its shape ``delta, alpha, c``
(learned once from the 72 public vision learning curves), in units of the unpenalised fit's
own residual size: many rows override it, a backtest fold with two sizes is held near the
shape learning curves usually have. On the public curves, scored leave-one-task-out, it takes m4's
mean extrapolation loss from 0.038 to 0.031 (``benchmarks/bench_scaling_benchmark.py``,
method ``default``). ``prior="none"`` fits the data alone.

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
from mixscale.fit.laws import bounded_law, get_family, get_predictor, n_raw_params
from mixscale.fit.metrics import mse, r2
from mixscale.fit.priors import (
    M4_PRIOR,
    OBSERVED_ERROR_FLOOR,
    ShapePrior,
    residual_size,
    size_weights,
)

_MAX_NAMED = 3  # classes named by an identifiability warning

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
        Seed of the random starts (and of the shrinkage folds).
    shrink : bool
        Shrink the per-class count weights towards equal weights with a cross-validated
        strength (per-class predictors only; module docstring). False: the paper's fit.
    weighting : {"auto", "none", "extrapolation", "extrapolation-log"}
        Residual space and size weights of the fit (module docstring); ``auto``:
        ``extrapolation`` for :attr:`bounded` laws, ``none`` otherwise. With Huber loss,
        ``f_scale`` is in the weighted residual's units.
    prior : {"auto", "none"}
        Shape prior (module docstring); ``auto``: :data:`~mixscale.fit.priors.M4_PRIOR` for a
        bounded m4 law, none otherwise.

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
    shrinkage_ : float or None
        The chosen shrinkage strength ``lam`` of the count weights (0: none); None for a
        total-count predictor (nothing to shrink). Bootstrap refits use the same ``lam``.
    shrinkage_cv_ : dict of float to float or None
        Held-out MSE per candidate ``lam`` (None without cross-validation; not in the JSON).
    effective_params_ : float
        Effective number of parameters (trace of the linearised hat matrix); the raw count
        without shrinkage.
    prior_sigma_ : float or None
        The residual size the shape prior was measured in (None: fitted without a prior);
        bootstrap refits use the same.
    identifiability_ : str or None
        A readable warning when the training rows cannot identify the per-class weights
        (too few distinct mixtures, shares that do not vary independently, or shrinkage at
        the top of its grid), naming the classes whose share the next rows should vary; None
        when they can (and for total-count predictors).
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
        shrink: bool = True,
        weighting: Literal["auto", "none", "extrapolation", "extrapolation-log"] = "auto",
        prior: Literal["auto", "none"] = "auto",
    ) -> None:
        self.family = family
        self.predictor = predictor
        self.min_epoch = min_epoch
        self.loss = loss
        self.f_scale = f_scale
        self.n_starts = n_starts
        self.seed = seed
        self.shrink = shrink
        self.weighting = weighting
        self.prior = prior

    def __repr__(self) -> str:
        return f"ScalingLaw(family={self.family!r}, predictor={self.predictor!r})"

    @property
    def bounded(self) -> bool:
        """True iff every prediction is in [0, 1] below a fitted asymptote and more epochs
        saturate: a bounded family (:attr:`mixscale.fit.laws.Family.bounded`) with a
        saturating predictor (``s0``, ``s2``). The paper's m0-m3 are never bounded."""
        return bounded_law(self.family, self.predictor)

    @property
    def extrapolation_weighted(self) -> bool:
        """True iff the fit uses the extrapolation rule (``weighting``, with ``auto`` resolved
        by :attr:`bounded`)."""
        return self.weighting.startswith("extrapolation") or (self.weighting == "auto"
                                                              and self.bounded)

    @property
    def shape_prior(self) -> ShapePrior | None:
        """The prior this law's shape is fitted under (``prior``, with ``auto`` resolved)."""
        if self.prior == "auto" and self.bounded and self.family == M4_PRIOR.family:
            return M4_PRIOR
        return None

    # ------------------------------------------------------------------ fitting
    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None,
            sample_weight: Any = None) -> ScalingLaw:
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
        sample_weight : array_like, optional
            Weight (>= 0) of each row's squared residual, combined multiplicatively with the
            ``weighting`` (normalised to mean 1 over the fitted rows); kept for
            :meth:`bootstrap`.

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
        sample_weight = _read_sample_weight(sample_weight, n_rows=len(X))
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
        weight_fit = None if sample_weight is None else sample_weight[keep]
        problem = self._problem(counts, epoch, scales=scales, penalty=0.0,
                                sample_weight=weight_fit, weighted=True, prior_sigma=None)
        rng = np.random.default_rng(self.seed)
        starts = _lsq.starting_points(problem, y_fit, n_starts=self.n_starts, rng=rng)
        best = _lsq.solve(problem, y_fit, starts, loss=self.loss, f_scale=self.f_scale)
        prior_sigma = None
        if self.shape_prior is not None:
            problem, best = self._fit_prior(problem, y_fit, best)
            prior_sigma = problem.prior_sigma
        per_class = get_predictor(self.predictor).per_class and len(columns) > 1
        choice, lam = None, (0.0 if per_class else None)
        if per_class and self.shrink:
            fold_groups = groups[keep] if groups is not None else _mixture_groups(counts)
            choice = _lsq.choose_penalty(problem, y_fit, best, fold_groups, loss=self.loss,
                                         f_scale=self.f_scale, seed=self.seed)
            best, lam = choice.result, choice.penalty
            problem = problem.with_penalty(lam)
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
        self.sample_weight_ = sample_weight
        self.shrinkage_ = lam
        self.prior_sigma_ = prior_sigma
        self.shrinkage_cv_ = (None if choice is None or not choice.n_folds else
                              {float(g): float(v) for g, v in zip(choice.grid, choice.cv_mse,
                                                                  strict=True)})
        self.effective_params_ = _lsq.effective_params(problem, best.x)
        self.identifiability_ = (identifiability_warning(counts, columns, choice)
                                 if per_class else None)
        return self

    def _fit_prior(self, problem: _lsq.Problem, y: np.ndarray, unpenalised: Any
                   ) -> tuple[_lsq.Problem, Any]:
        """Refit under :attr:`shape_prior`, measured in the unpenalised fit's residual size
        (:func:`~mixscale.fit.priors.residual_size`), from that fit and from the prior's
        center."""
        prior = self.shape_prior
        sigma = residual_size(problem.residuals(unpenalised.x, y), problem.n_raw)
        problem = problem.with_prior(prior, sigma)
        lower, upper = _lsq.bounds(problem)
        centered = np.array(unpenalised.x, dtype=float)
        k = problem.n_shape
        centered[:k] = prior.center_shape(centered[:k])
        centered = np.clip(centered, lower, upper)
        best = _lsq.solve(problem, y, [unpenalised.x, centered], loss=self.loss,
                          f_scale=self.f_scale)
        return problem, best

    def _check_options(self) -> None:
        check_options(
            family=self.family,
            predictor=self.predictor,
            min_epoch=self.min_epoch,
            loss=self.loss,
            f_scale=self.f_scale,
            n_starts=self.n_starts,
            seed=self.seed,
            shrink=self.shrink,
            weighting=self.weighting,
            prior=self.prior,
        )

    def _problem(
        self, counts: np.ndarray, epoch: np.ndarray, *, scales: tuple[float, ...] | None = None,
        penalty: float | None = None, sample_weight: np.ndarray | None = None,
        weighted: bool = False, prior_sigma: float | None | str = "fitted",
    ) -> _lsq.Problem:
        """Scaled design blocks for raw ``counts`` (rows x class columns) and ``epoch``.

        ``scales`` (count, total, epoch) default to the fitted ones, ``penalty`` to the
        fitted shrinkage (so bootstrap refits shrink as the fit did). ``weighted``: the
        residuals of a fit on these rows (the ``weighting`` rule times ``sample_weight``);
        predictions need neither. A weighted problem carries the shape prior measured in
        ``prior_sigma`` (``"fitted"``: the fit's :attr:`prior_sigma_`; None: no prior).
        """
        if scales is None:
            scales = (self.count_scale_, self.total_scale_, self.epoch_scale_)
        if penalty is None:
            penalty = getattr(self, "shrinkage_", None) or 0.0
        count_scale, total_scale, epoch_scale = scales
        predictor = get_predictor(self.predictor)
        count_block = predictor.count_block(counts / count_scale, counts.sum(axis=1) / total_scale)
        epoch_block = predictor.epoch_block(epoch / epoch_scale)
        extrapolation = weighted and self.extrapolation_weighted
        weight = None
        if weighted and (extrapolation or sample_weight is not None):
            weight = np.ones(len(counts))
            if extrapolation:
                weight = size_weights(counts.sum(axis=1) / total_scale)
            if sample_weight is not None:
                weight = weight * sample_weight
            weight = np.sqrt(weight / weight.mean())
        if prior_sigma == "fitted":
            prior_sigma = getattr(self, "prior_sigma_", None)
        prior = self.shape_prior if weighted and prior_sigma is not None else None
        size = counts.sum(axis=1) / total_scale if predictor.saturating else None
        return _lsq.Problem(get_family(self.family), count_block, epoch_block,
                            saturating=predictor.saturating, size=size, penalty=float(penalty),
                            row_weight=weight,
                            log_error=extrapolation and self.weighting == "extrapolation-log",
                            error_floor=OBSERVED_ERROR_FLOOR, prior=prior,
                            prior_sigma=float(prior_sigma) if prior is not None else 0.0)

    def _set_fitted(self, raw: np.ndarray, pcov: np.ndarray, *, cost: float, n_train: int) -> None:
        family, predictor = get_family(self.family), get_predictor(self.predictor)
        names = list(family.param_names)
        names += [f"w_{c}" for c in predictor.count_names(self.class_columns_)]
        names += predictor.epoch_param_names()
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
        lower, upper = _lsq.raw_bounds(family, n_free, predictor.n_epoch_params,
                                       saturating=predictor.saturating)
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
        sample_weight: Any = None,
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
        sample_weight : array_like, optional
            Row weights as for :meth:`fit`; default the ones given to :meth:`fit` when they
            have one value per row of ``X``.
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
        if sample_weight is None:
            kept = getattr(self, "sample_weight_", None)
            sample_weight = kept if kept is not None and len(kept) == len(X) else None
        sample_weight = _read_sample_weight(sample_weight, n_rows=len(X))
        problem = self._problem(counts[keep], epoch[keep], weighted=True,
                                sample_weight=None if sample_weight is None
                                else sample_weight[keep])
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
        """Everything needed to rebuild the fitted law (plain JSON types), with the
        shrinkage, effective parameters and identifiability warning of the fit."""
        self._check_fitted()
        d = law_to_dict(self)
        d["options"]["shrink"] = bool(self.shrink)
        d["options"]["weighting"] = self.weighting
        d["options"]["prior"] = self.prior
        d["prior_sigma"] = getattr(self, "prior_sigma_", None)
        lam = getattr(self, "shrinkage_", None)
        d["shrinkage"] = None if lam is None else float(lam)
        d["effective_params"] = float(self.effective_params_)
        d["identifiability"] = self.identifiability_
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScalingLaw:
        """Rebuild a fitted law from :meth:`to_dict` output (a law saved before shrinkage
        existed reads as unshrunk: ``shrinkage_`` 0 or None, no warning; one saved before
        ``weighting`` or ``prior`` existed reads as ``"none"``, how it was fitted)."""
        law = law_from_dict(cls, d)
        if "weighting" not in d["options"]:
            law.weighting = "none"
        if "prior" not in d["options"]:
            law.prior = "none"
        sigma = d.get("prior_sigma")
        if sigma is not None and not (isinstance(sigma, (int, float)) and 0 < sigma < np.inf):
            raise MixscaleError(f"a law's `prior_sigma` must be a float > 0 or null, "
                                f"but got {sigma!r}.")
        law.prior_sigma_ = None if sigma is None else float(sigma)
        per_class = get_predictor(law.predictor).per_class and len(law.class_columns_) > 1
        lam = d.get("shrinkage", 0.0 if per_class else None)
        if lam is not None and not (isinstance(lam, (int, float)) and 0 <= lam < np.inf):
            raise MixscaleError(f"a law's `shrinkage` must be a float >= 0 or null, "
                                f"but got {lam!r}.")
        law.shrinkage_ = None if lam is None else float(lam)
        law.shrinkage_cv_ = None
        law.effective_params_ = float(d.get("effective_params", law.raw_params_.size))
        note = d.get("identifiability")
        law.identifiability_ = None if note is None else str(note)
        return law


def _read_sample_weight(sample_weight: Any, *, n_rows: int) -> np.ndarray | None:
    """``sample_weight`` as a float array of one finite value >= 0 per row (None stays)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (n_rows,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise MixscaleError(
            f"`sample_weight` must have one finite value >= 0 per row of X ({n_rows}), not all "
            f"0, but got shape {w.shape} with values in [{np.min(w, initial=np.nan)}, "
            f"{np.max(w, initial=np.nan)}]."
        )
    return w


def _mixture_groups(counts: np.ndarray) -> np.ndarray:
    """One group per distinct count vector (a run's rows share it): the folds' default."""
    return np.unique(counts, axis=0, return_inverse=True)[1].reshape(-1)


def _class_names(columns: list[str], index: np.ndarray) -> str:
    names = [columns[i].removeprefix("n_") for i in index[:_MAX_NAMED]]
    return ", ".join(repr(n) for n in names)


def identifiability_warning(counts: np.ndarray, columns: list[str],
                            choice: _lsq.PenaltyChoice | None) -> str | None:
    """Why the rows ``counts`` cannot identify per-class weights, and which rows would help.

    Parameters
    ----------
    counts : numpy.ndarray
        Training rows x classes, raw counts (after the ``min_epoch`` drop).
    columns : list of str
        The ``n_<class>`` columns.
    choice : PenaltyChoice or None
        The shrinkage choice (None: not shrunk).

    Returns
    -------
    str or None
        None when the weights are identified: at least ``m + 1`` distinct mixtures for ``m``
        classes, class shares that vary independently (condition of the centred shares), and
        a cross-validated shrinkage below the top of its grid.
    """
    mixes = np.unique(np.asarray(counts, dtype=float), axis=0)
    m = len(columns)
    total = mixes.sum(axis=1, keepdims=True)
    shares = mixes / np.where(total > 0, total, 1.0)
    mean = shares.mean(axis=0)
    spread = shares.std(axis=0) / np.where(mean > 0, mean, 1.0)
    least_varied = np.argsort(spread, kind="stable")
    help_rows = (f"rows that vary the share of class {_class_names(columns, least_varied)} "
                 "(the classes whose share the design moves least)")
    if len(mixes) < m + 1:
        return (f"per-class weights not identified: {len(mixes)} distinct class mixtures for "
                f"{m} per-class weights (need at least {m + 1}); they were shrunk towards "
                f"equal weights. Add {help_rows}.")
    sv, vt = np.linalg.svd(shares - mean, full_matrices=False)[1:]
    if m > 1 and sv[m - 2] < 1e-3 * sv[0]:
        together = np.argsort(-np.abs(vt[m - 2]), kind="stable")
        return (f"per-class weights not identified: the shares of class "
                f"{_class_names(columns, together)} move together across the design "
                f"(condition {sv[0] / max(sv[m - 2], 1e-300):.3g}). Add rows that vary them "
                "independently.")
    if choice is not None and choice.at_top:
        why = ("too few runs to cross-validate" if not choice.n_folds else
               "cross-validation over runs chose the top of the grid")
        return (f"per-class weights shrunk to (nearly) equal ({why}, lam = "
                f"{choice.penalty:.3g}): these rows do not tell the classes apart. Add "
                f"{help_rows}.")
    return None
