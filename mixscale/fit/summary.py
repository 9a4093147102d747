"""Tables over fitted laws: parameter tables and the all-laws summary (paper Tables 1-5).

Re-exported by :mod:`mixscale.fit`, which is where users import them from.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mixscale.errors import FitError
from mixscale.fit.inputs import read_features
from mixscale.fit.laws import FAMILIES, PREDICTORS, bounded_law, n_raw_params
from mixscale.fit.scaling import ScalingLaw

__all__ = ["fit_all", "parameter_table"]


def parameter_table(law: ScalingLaw) -> pd.DataFrame:
    """One row per reported parameter: ``name``, ``value``, ``std_error`` (paper Tables 2-5).

    Values are in the reporting convention of :data:`CONVENTION`.
    """
    se = law.standard_errors()
    return pd.DataFrame(
        {
            "name": list(law.params_),
            "value": list(law.params_.values()),
            "std_error": [se[n] for n in law.params_],
        }
    )


def fit_all(
    X_train: pd.DataFrame,
    y_train: Any,
    X_val: pd.DataFrame | None = None,
    y_val: Any = None,
    *,
    families: list[str] | None = None,
    predictors: list[str] | None = None,
    groups: Any = None,
    sample_weight: Any = None,
    **kwargs: Any,
) -> tuple[dict[tuple[str, str], ScalingLaw], pd.DataFrame]:
    """Fit every family x predictor and summarise them like the paper's Table 1.

    Parameters
    ----------
    X_train, y_train : pandas.DataFrame, array_like
        Training design.
    X_val, y_val : pandas.DataFrame, array_like, optional
        Validation design; without it the ``val_*`` columns are ``nan``.
    families, predictors : list of str, optional
        Subsets of :data:`~mixscale.fit.laws.FAMILIES` / :data:`~mixscale.fit.laws.PREDICTORS`
        (default: all).
    groups : array_like, optional
        Passed to every :meth:`ScalingLaw.fit`.
    sample_weight : array_like, optional
        Row weights passed to the fits of the laws that use the extrapolation rule
        (:attr:`ScalingLaw.extrapolation_weighted`); the paper's laws stay unweighted
        (Table 1 parity).
    **kwargs
        Options for every :class:`ScalingLaw` (``min_epoch``, ``loss``, ...).

    Returns
    -------
    laws : dict
        ``(family, predictor) -> fitted ScalingLaw`` for the combinations that fitted.
    summary : pandas.DataFrame
        One row per combination: ``family, predictor, n_params, train_mse, train_r2,
        val_mse, val_r2, error`` (``error`` holds the :class:`FitError` message of a failed
        combination, else ``None``), then ``bounded`` (:attr:`ScalingLaw.bounded`),
        ``effective_params`` (trace of the hat matrix), ``shrinkage`` (the cross-validated
        ``lam`` of a per-class law's count weights, NaN for total-count laws) and
        ``identifiability`` (the law's warning that the design cannot identify its per-class
        weights, else ``None``).
    """
    families = list(FAMILIES) if families is None else list(families)
    predictors = list(PREDICTORS) if predictors is None else list(predictors)
    n_classes = len(read_features(X_train, class_columns=None)[2])
    laws: dict[tuple[str, str], ScalingLaw] = {}
    rows = []
    nan = float("nan")
    for fam in families:
        for pred in predictors:
            law = ScalingLaw(family=fam, predictor=pred, **kwargs)
            n_params = n_raw_params(fam, pred, n_classes)
            row = {
                "family": fam,
                "predictor": pred,
                "n_params": n_params,
                "train_mse": nan,
                "train_r2": nan,
                "val_mse": nan,
                "val_r2": nan,
                "error": None,
                "bounded": bounded_law(fam, pred),
                "effective_params": nan,
                "shrinkage": nan,
                "identifiability": None,
            }
            try:
                law.fit(X_train, y_train, groups=groups,
                        sample_weight=sample_weight if law.extrapolation_weighted else None)
            except FitError as exc:
                row["error"] = str(exc)
                rows.append(row)
                continue
            laws[(fam, pred)] = law
            row.update(effective_params=law.effective_params_,
                       shrinkage=nan if law.shrinkage_ is None else law.shrinkage_,
                       identifiability=law.identifiability_)
            train = law.score(X_train, y_train)
            row.update(train_mse=train["mse"], train_r2=train["r2"])
            if X_val is not None:
                val = law.score(X_val, y_val)
                row.update(val_mse=val["mse"], val_r2=val["r2"])
            rows.append(row)
    return laws, pd.DataFrame(rows)
