"""Per-class scaling laws with diminishing returns, 0 without own images, averaged by test share.

The laws of :mod:`mixscale.fit` feed the class counts into a link function through one linear
combination, so to a planner every image of a class is worth the same however many there are.
:class:`ClassLaw` instead models each class's own test accuracy (the ``test_accuracy_<class>``
metrics every row logs), in the spirit of Rolf et al. (2021), where a group's error falls with
its own count and, less, with the total:

    acc_c = g_c * (A_c - z_c ** (-p_c)),   g_c = x0_c / (x0_c + k_c),
    z_c = w_own_c * x_c + w_total_c * t + w_epoch_c * u

with ``x0_c = n_c / S`` and ``x_c = (n_c + 1) / (S + 1)`` (own count, ``S`` the largest class
count seen in training), ``t = (N + 1) / (S_N + 1)`` (total count ``N``, ``S_N`` its largest
value) and ``u = epoch / E`` (``E`` the largest epoch). ``A_c`` in [0, 1] is the class's accuracy
ceiling, ``p_c > 0`` how fast its error falls, and ``w_own_c, w_total_c, w_epoch_c >= 0`` what
one more image of the class, one more image of any class and one more epoch are worth to it.
The gate ``g_c`` is 0 at ``n_c = 0`` and rises to 1: a classifier never shown a class does not
recognise it, so **a class without images of its own is predicted 0 by the form itself**,
however many images of other classes there are (the form without the gate predicted 0.92-0.99
there on the digits demo). ``k_c > 0`` (in units of ``S``) is the own count at which the gate
is one half. ``g_c < 1`` and ``A_c <= 1`` keep every prediction below 1, also without a clip.
The coefficient of ``z_c ** (-p_c)`` is fixed at 1, so the size of the weights is not traded
against a scale factor: every parameter is identifiable (the reporting convention). The returns
diminish in every resource; an image of class c raises ``z_c`` by ``w_own_c / (S + 1) +
w_total_c / (S_N + 1)`` and every other class's ``z`` by its ``w_total / (S_N + 1)`` only.
Rolf et al. add the own-count and total-count terms (``d + s n_c^-p + t N^-q``); putting counts
and epochs into one ``z`` lets the law capture what an additive form cannot: a small subset
needs more epochs to learn at all. (On the digits demo design, measured: validation MSE 0.0058
for the additive form with an added epoch term, 0.0024 for this one without the gate, 0.0019
for the paper's best power law.)

The overall accuracy is ``sum_c w_c * clip(acc_c, 0, 1)`` with ``w_c`` the test split's class
frequencies. They are not a parameter of the fit: overall test accuracy *is* the frequency
weighted mean of per-class test accuracies, so ``w`` is recovered exactly from the logged
metrics by non-negative least squares (or passed as ``class_weights``).

Each class is fitted on its own (bounded least squares, several starts, analytic Jacobian), so a
fit is fast and a run bootstrap (resampling runs) gives intervals for every parameter and for
predictions. The estimator mirrors :class:`mixscale.fit.ScalingLaw` (``fit``, ``predict``,
``score``, ``bootstrap``, ``keep_bootstrap``, ``predict_interval``, JSON round trip), so fitting,
registration, serving and planning treat both alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from mixscale.errors import FitError, MixscaleError, NotFittedError
from mixscale.fit.base import LawBase, check_design
from mixscale.fit.bootstrap import BootstrapResult
from mixscale.fit.inputs import check_options, read_features, read_target
from mixscale.fit.lawjson import get_key
from mixscale.fit.metrics import mse, r2

__all__ = ["ClassLaw", "FAMILY", "PREDICTOR", "N_SHAPE", "CLASS_FORMAT", "class_accuracy_column",
           "given_weights", "class_law_to_dict", "class_law_from_dict"]

FAMILY, PREDICTOR = "perclass", "own-total"  # how the fit summary and the registry name it
_SHAPE = ("A", "p", "w_own", "w_total", "w_epoch", "k")  # per-class parameters, raw order
N_SHAPE = len(_SHAPE)
_LOWER = np.array([0.0, 0.01, 0.0, 0.0, 0.0, 1e-4])
_UPPER = np.array([1.0, 5.0, 1e4, 1e4, 1e4, 10.0])
_GRID = ((1.0, 0.5, 1.0, 1.0, 1.0, 0.01), (0.95, 1.0, 3.0, 1.0, 0.5, 0.05),
         (1.0, 0.3, 0.3, 3.0, 2.0, 0.002))
_Z_MIN = 1e-9
_MAX_NFEV = 300  # per start; 2000 took 4x as long on the digits demo, same val MSE (0.00221)
_WEIGHT_TOL = 1e-3  # largest residual of "overall = weighted mean of per-class accuracies"


def class_accuracy_column(class_column: str) -> str:
    """``n_<class>`` -> ``accuracy_<class>``, the column of that class's test accuracy."""
    return "accuracy_" + class_column.removeprefix("n_")


def _curve(theta: np.ndarray, x0: np.ndarray, x: np.ndarray, t: np.ndarray,
           u: np.ndarray) -> np.ndarray:
    a_max, p, w_own, w_total, w_epoch, k = theta
    z = np.maximum(w_own * x + w_total * t + w_epoch * u, _Z_MIN)
    return x0 / (x0 + k) * (a_max - z ** (-p)) + 0.0  # + 0.0: no -0.0 at n_c = 0


def _jacobian(theta: np.ndarray, x0: np.ndarray, x: np.ndarray, t: np.ndarray,
              u: np.ndarray) -> np.ndarray:
    a_max, p, w_own, w_total, w_epoch, k = theta
    z = np.maximum(w_own * x + w_total * t + w_epoch * u, _Z_MIN)
    zp = z ** (-p)
    gate = x0 / (x0 + k)
    dz = gate * p * zp / z  # gate * d(-z^-p)/dz
    return np.column_stack([gate, gate * zp * np.log(z), dz * x, dz * t, dz * u,
                            -(a_max - zp) * gate / (x0 + k)])


class ClassLaw(LawBase):
    """Per-class accuracy laws with diminishing returns, combined by test-class frequency.

    Parameters
    ----------
    min_epoch : int
        ``fit`` and ``score`` drop rows with ``epoch < min_epoch``.
    loss : {"linear", "huber"}
        Least-squares loss of every class fit.
    f_scale : float
        Residual size where the Huber loss turns linear.
    n_starts : int
        Starts per class: a fixed grid first, then seeded random starts.
    seed : int or None
        Seed of the random starts.

    Attributes
    ----------
    class_columns_ : list of str
        The ``n_<class>`` columns seen in ``fit``.
    count_scale_, total_scale_, epoch_scale_ : float
        ``S``, ``S_N`` and ``E`` of the module docstring.
    class_weights_ : numpy.ndarray
        Test-split class frequencies (sum to 1).
    raw_params_ : numpy.ndarray
        ``(A, p, w_own, w_total, w_epoch, k)`` of every class, concatenated in class order.
    params_ : dict of str to float
        ``<name>_<class>`` for every per-class parameter, then ``weight_<class>``.
    pcov_ : numpy.ndarray
        Block-diagonal covariance of ``raw_params_`` (``inf`` where not estimable).
    bootstrap_raw_ : numpy.ndarray or None
        Replicates of ``raw_params_`` kept by :meth:`keep_bootstrap`.
    """

    family = FAMILY
    predictor = PREDICTOR

    def __init__(self, *, min_epoch: int = 10, loss: Literal["linear", "huber"] = "linear",
                 f_scale: float = 0.01, n_starts: int = 8, seed: int | None = 0) -> None:
        self.min_epoch = min_epoch
        self.loss = loss
        self.f_scale = f_scale
        self.n_starts = n_starts
        self.seed = seed

    def __repr__(self) -> str:
        return f"ClassLaw(min_epoch={self.min_epoch!r})"

    # ------------------------------------------------------------------ fitting
    def _check_options(self) -> None:
        check_options(family="power", predictor="m0", min_epoch=self.min_epoch, loss=self.loss,
                      f_scale=self.f_scale, n_starts=self.n_starts, seed=self.seed)

    def _inputs(self, counts: np.ndarray, epoch: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``x0``, ``x``, ``t`` and ``u`` of the module docstring."""
        x0 = counts / self.count_scale_
        x = (counts + 1.0) / (self.count_scale_ + 1.0)
        t = (counts.sum(axis=1) + 1.0) / (self.total_scale_ + 1.0)
        return x0, x, t, epoch / self.epoch_scale_

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None,
            class_weights: Sequence[float] | None = None) -> ClassLaw:
        """Fit one law per class to the per-class accuracies in ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            ``n_<class>`` counts, ``epoch`` and, for every class column ``n_<class>``, its test
            accuracy ``accuracy_<class>`` (other columns are ignored).
        y : array_like
            Overall test accuracy per row (for the class weights and :meth:`score`).
        groups : array_like, optional
            Run label per row, kept for :meth:`bootstrap`.
        class_weights : sequence of float, optional
            Test-split class frequencies; default: recovered from ``y`` and the per-class
            accuracies by non-negative least squares.

        Returns
        -------
        ClassLaw
            ``self``, fitted.

        Raises
        ------
        FitError
            Missing or non-finite per-class accuracies, too few rows, overall accuracy that is
            not a weighted mean of the per-class ones, or a class whose every start failed.
        """
        self._check_options()
        counts, epoch, columns = read_features(X, class_columns=None)
        y_all = read_target(y, n_rows=len(X))
        targets = _class_targets(X, columns)
        keep = epoch >= self.min_epoch
        n_per_class = len(_SHAPE)
        if keep.sum() < n_per_class + 1:
            raise FitError(f"fitting the per-class law needs at least {n_per_class + 1} rows "
                           f"with epoch >= min_epoch={self.min_epoch}, but got "
                           f"{int(keep.sum())} of {len(X)} rows.")
        weights = (_recover_weights(targets, y_all) if class_weights is None
                   else given_weights(class_weights, len(columns)))
        counts, epoch, targets_fit = counts[keep], epoch[keep], targets[keep]
        scales = (counts.max(), counts.sum(axis=1).max(), epoch.max())
        if not min(scales) > 0:
            raise FitError(f"the largest class count, total and epoch of the training rows must "
                           f"be > 0, but got {scales}.")
        self.count_scale_, self.total_scale_, self.epoch_scale_ = (float(s) for s in scales)
        x0, x, t, u = self._inputs(counts, epoch)
        rng = np.random.default_rng(self.seed)
        raws, blocks, cost = [], [], 0.0
        for c, col in enumerate(columns):
            starts = [np.array(s) for s in _GRID][: self.n_starts]
            while len(starts) < self.n_starts:
                starts.append(np.array([rng.uniform(0.5, 1.0), rng.uniform(0.1, 2.0),
                                        *np.exp(rng.uniform(np.log(0.01), np.log(10.0), 3)),
                                        np.exp(rng.uniform(np.log(1e-3), np.log(0.3)))]))
            res = self._solve(x0[:, c], x[:, c], t, u, targets_fit[:, c], starts, what=col)
            raws.append(res.x)
            blocks.append(_block_cov(res, len(t)))
            cost += float(res.cost)
        self.class_columns_ = columns
        self.class_weights_ = weights
        self._set(np.concatenate(raws), _block_diag(blocks), cost=cost, n_train=int(keep.sum()))
        self._set_design(counts)
        self.groups_ = None if groups is None else np.asarray(groups)
        return self

    def _solve(self, x0: np.ndarray, x: np.ndarray, t: np.ndarray, u: np.ndarray,
               y: np.ndarray,
               starts: Sequence[np.ndarray], *, what: str) -> Any:
        best = None
        for start in starts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = least_squares(lambda th: _curve(th, x0, x, t, u) - y,
                                        np.clip(start, _LOWER, _UPPER),
                                        jac=lambda th: _jacobian(th, x0, x, t, u),
                                        bounds=(_LOWER, _UPPER), loss=self.loss,
                                        f_scale=self.f_scale, max_nfev=_MAX_NFEV)
            except (ValueError, FloatingPointError):
                continue
            if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
                best = res
        if best is None:
            raise FitError(f"the per-class law of {what!r} failed from all {len(starts)} starts.")
        return best

    def _set(self, raw: np.ndarray, pcov: np.ndarray, *, cost: float, n_train: int) -> None:
        keys = [c.removeprefix("n_") for c in self.class_columns_]
        theta = raw.reshape(len(keys), len(_SHAPE))
        self.raw_params_ = np.asarray(raw, dtype=float)
        self.params_ = {f"{name}_{k}": float(theta[c, j])
                        for c, k in enumerate(keys) for j, name in enumerate(_SHAPE)}
        self.params_.update({f"weight_{k}": float(w)
                             for k, w in zip(keys, self.class_weights_, strict=True)})
        self.pcov_ = pcov
        self.cost_ = cost
        self.n_train_ = n_train
        self.bootstrap_raw_: np.ndarray | None = None

    def _check_fitted(self) -> None:
        if not hasattr(self, "raw_params_"):
            raise NotFittedError("This ClassLaw instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # --------------------------------------------------------------- prediction
    def _class_matrix(self, counts: np.ndarray, epoch: np.ndarray,
                      raw: np.ndarray | None = None) -> np.ndarray:
        theta = (self.raw_params_ if raw is None else raw).reshape(-1, len(_SHAPE))
        x0, x, t, u = self._inputs(counts, epoch)
        return np.column_stack([_curve(theta[c], x0[:, c], x[:, c], t, u)
                                for c in range(len(theta))])

    def predict_classes(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each class's predicted test accuracy (clipped to [0, 1]), one ``accuracy_<class>``
        column per class."""
        self._check_fitted()
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        acc = np.clip(self._class_matrix(counts, epoch), 0.0, 1.0)
        return pd.DataFrame(acc, columns=[class_accuracy_column(c) for c in self.class_columns_],
                            index=X.index)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Overall accuracy: per-class predictions weighted by the test class frequencies."""
        self._check_fitted()
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        return np.clip(self._class_matrix(counts, epoch), 0.0, 1.0) @ self.class_weights_

    def score(self, X: pd.DataFrame, y: Any) -> dict[str, float]:
        """MSE, r^2 and row count of the overall prediction on rows with ``epoch >= min_epoch``."""
        self._check_fitted()
        _, epoch, _ = read_features(X, class_columns=self.class_columns_)
        y = read_target(y, n_rows=len(X))
        keep = epoch >= self.min_epoch
        if not keep.any():
            raise MixscaleError(f"score needs rows with epoch >= min_epoch={self.min_epoch}, "
                                "but got none.")
        pred = self.predict(X[keep])
        return {"mse": mse(y[keep], pred), "r2": r2(y[keep], pred), "n": int(keep.sum())}

    # -------------------------------------------------------------- uncertainty
    def standard_errors(self) -> dict[str, float]:
        """Standard errors of :attr:`params_` (the class weights are exact: 0)."""
        self._check_fitted()
        se = np.sqrt(np.clip(np.diag(self.pcov_), 0.0, None))
        names = list(self.params_)
        out = {n: float(v) for n, v in zip(names, se, strict=False)}
        out.update({n: 0.0 for n in names[len(se):]})
        return out

    def bootstrap(self, X: pd.DataFrame, y: Any, *, groups: Any = None, n_boot: int = 200,
                  seed: int | None = 0, level: float = 0.95) -> BootstrapResult:
        """Run bootstrap: resample runs, refit every class from the fitted values, same scales.

        ``X`` and ``y`` are as for :meth:`fit`; ``groups`` defaults to the ones given to it.
        """
        self._check_fitted()
        if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
            raise MixscaleError(f"`n_boot` must be an int >= 2, but got {n_boot!r}.")
        if not 0.0 < level < 1.0:
            raise MixscaleError(f"`level` must be in (0, 1), but got {level!r}.")
        groups = self.groups_ if groups is None else np.asarray(groups)
        if groups is None or len(groups) != len(X):
            raise MixscaleError("bootstrap resamples runs and needs `groups` with one label per "
                                "row of X; pass groups=... here or to fit().")
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        targets = _class_targets(X, self.class_columns_)
        keep = epoch >= self.min_epoch
        x0, x, t, u = self._inputs(counts[keep], epoch[keep])
        labels, inverse = np.unique(np.asarray(groups)[keep], return_inverse=True)
        if labels.size < 2:
            raise MixscaleError(f"bootstrap needs at least 2 runs with epoch >= min_epoch, "
                                f"but got {labels.size}.")
        members = [np.flatnonzero(inverse == g) for g in range(labels.size)]
        theta = self.raw_params_.reshape(-1, len(_SHAPE))
        rng = np.random.default_rng(seed)
        raws, n_failed = [], 0
        for _ in range(n_boot):
            rows = np.concatenate([members[g] for g in rng.integers(0, labels.size, labels.size)])
            try:
                raws.append(np.concatenate([
                    self._solve(x0[rows, c], x[rows, c], t[rows], u[rows],
                                targets[keep][rows, c],
                                [theta[c]], what=col).x
                    for c, col in enumerate(self.class_columns_)]))
            except FitError:
                n_failed += 1
        if not raws:
            raise FitError(f"every one of the {n_boot} bootstrap replicates failed.")
        raw = np.array(raws)
        names = list(self.params_)[: raw.shape[1]]
        tail = 100.0 * (1.0 - level) / 2.0
        lower, upper = np.percentile(raw, [tail, 100.0 - tail], axis=0)
        intervals = pd.DataFrame({"estimate": self.raw_params_, "lower": lower, "upper": upper},
                                 index=pd.Index(names, name="name"))
        return BootstrapResult(samples=pd.DataFrame(raw, columns=names), intervals=intervals,
                               predictions=None, prediction_intervals=None, level=level,
                               n_boot=n_boot, n_failed=n_failed, raw_samples=raw)

    def _no_replicates(self) -> str:
        return ("this per-class law carries no bootstrap replicates, so it has no prediction "
                "intervals (fit keeps them when --n-boot > 0).")

    def _replicate_predictions(self, X: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
        counts, epoch, _ = read_features(X, class_columns=self.class_columns_)
        return np.array([np.clip(self._class_matrix(counts, epoch, theta), 0.0, 1.0)
                         @ self.class_weights_ for theta in raw])

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted law (plain JSON types)."""
        self._check_fitted()
        return class_law_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassLaw:
        """Rebuild a fitted law from :meth:`to_dict` output, checking it."""
        return class_law_from_dict(cls, d)


def _class_targets(X: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The ``accuracy_<class>`` columns as floats, checked to be present and finite."""
    names = [class_accuracy_column(c) for c in columns]
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise FitError(f"the per-class law needs each class's test accuracy (the rows' "
                       f"test_accuracy_<class> metrics) as columns {names}, but {missing} are "
                       "missing.")
    values = X[names].to_numpy(dtype=float)
    bad = [n for n, b in zip(names, ~np.isfinite(values).all(axis=0), strict=True) if b]
    if bad:
        raise FitError(f"per-class accuracy columns {bad} must be finite, but contain NaN "
                       "(a row without that class's test_accuracy_<class> metric).")
    return values


def _recover_weights(targets: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Test class frequencies from ``overall = targets @ w`` by non-negative least squares."""
    w, _ = nnls(targets, y)
    if not w.sum() > 0:
        raise FitError("cannot recover the test class frequencies: the per-class accuracies "
                       "are all zero; pass class_weights.")
    w = w / w.sum()
    worst = float(np.max(np.abs(targets @ w - y)))
    if worst > _WEIGHT_TOL:
        raise FitError(f"overall accuracy is not a weighted mean of the per-class accuracies "
                       f"(largest residual {worst:.3g} > {_WEIGHT_TOL}); pass class_weights.")
    return w


def given_weights(weights: Sequence[float], n: int) -> np.ndarray:
    """``weights`` checked (n non-negative finite values, positive sum) and normalised."""
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != n or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise MixscaleError(f"`class_weights` must be {n} non-negative finite values with a "
                            f"positive sum, but got {w.tolist()}.")
    return w / w.sum()


def _block_cov(res: Any, n_rows: int) -> np.ndarray:
    """``sigma^2 (J^T J)^-1`` of one class fit (``inf`` when ``J`` is rank deficient)."""
    k = res.x.size
    jac = np.asarray(res.jac, dtype=float)
    dof = max(n_rows - k, 1)
    sigma2 = float(np.sum(res.fun ** 2)) / dof
    if np.linalg.matrix_rank(jac) < k:
        return np.full((k, k), np.inf)
    return sigma2 * np.linalg.pinv(jac.T @ jac)


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    k = sum(b.shape[0] for b in blocks)
    out = np.zeros((k, k))
    i = 0
    for b in blocks:
        out[i:i + b.shape[0], i:i + b.shape[0]] = b
        i += b.shape[0]
    return out


# 2: the own-count gate (0 accuracy without images of its own; parameter k) and `design`
CLASS_FORMAT, CLASS_FORMAT_VERSION = "mixscale.ClassLaw", 2
_CLASS_KEYS = ("options", "class_columns", "count_scale", "total_scale", "epoch_scale",
               "class_weights", "raw_params", "pcov", "cost", "n_train")


def class_law_to_dict(law: Any) -> dict[str, Any]:
    """A fitted :class:`~mixscale.fit.classlaw.ClassLaw` as plain JSON types."""
    return {
        "format": CLASS_FORMAT, "version": CLASS_FORMAT_VERSION, "family": law.family,
        "predictor": law.predictor,
        "options": {"min_epoch": int(law.min_epoch), "loss": law.loss,
                    "f_scale": float(law.f_scale), "n_starts": int(law.n_starts),
                    "seed": None if law.seed is None else int(law.seed)},
        "class_columns": list(law.class_columns_),
        "count_scale": law.count_scale_, "total_scale": law.total_scale_,
        "epoch_scale": law.epoch_scale_,
        "class_weights": [float(w) for w in law.class_weights_],
        "params": dict(law.params_),
        "raw_params": [float(v) for v in law.raw_params_],
        "pcov": [[float(v) if np.isfinite(v) else None for v in row] for row in law.pcov_],
        "cost": law.cost_, "n_train": law.n_train_,
        "bootstrap_raw": (None if law.bootstrap_raw_ is None else law.bootstrap_raw_.tolist()),
        "design": law.design_,
    }


def class_law_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a fitted per-class law of class ``cls`` from :func:`class_law_to_dict` output."""
    if not isinstance(d, dict) or d.get("format") != CLASS_FORMAT:
        raise MixscaleError(f"not a {CLASS_FORMAT} dict: `format` is {get_key(d, 'format')!r}.")
    if d.get("version") == 1:
        raise MixscaleError(f"{CLASS_FORMAT} version 1 is the per-class form without the "
                            "own-count gate (it predicts high accuracy for a class with no "
                            "images); refit it with `mixscale fit` to get version "
                            f"{CLASS_FORMAT_VERSION}.")
    if d.get("version") != CLASS_FORMAT_VERSION:
        raise MixscaleError(f"{CLASS_FORMAT} version must be {CLASS_FORMAT_VERSION}, but got "
                            f"{d.get('version')!r}.")
    missing = [k for k in _CLASS_KEYS if k not in d]
    if missing:
        raise MixscaleError(f"{CLASS_FORMAT} dict is missing key(s) {missing}.")
    law = cls(**d["options"])
    law._check_options()
    law.class_columns_ = list(d["class_columns"])
    law.count_scale_, law.total_scale_, law.epoch_scale_ = (
        float(d[k]) for k in ("count_scale", "total_scale", "epoch_scale"))
    law.class_weights_ = given_weights(d["class_weights"], len(law.class_columns_))
    raw = np.asarray(d["raw_params"], dtype=float)
    n_raw = len(law.class_columns_) * N_SHAPE
    if raw.shape != (n_raw,):
        raise MixscaleError(f"`raw_params` of a per-class law on {len(law.class_columns_)} "
                            f"classes must have {n_raw} values, but got {raw.size}.")
    pcov = np.array([[np.inf if v is None else v for v in row] for row in d["pcov"]])
    law._set(raw, pcov, cost=float(d["cost"]), n_train=int(d["n_train"]))
    law.groups_ = None
    if d.get("bootstrap_raw") is not None:
        law.bootstrap_raw_ = np.asarray(d["bootstrap_raw"], dtype=float)
    law.design_ = check_design(d.get("design"), len(law.class_columns_))
    return law
