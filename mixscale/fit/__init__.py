"""Fitting scaling laws (numpy/scipy only): families, estimators, least squares, bootstrap,
summaries, fit reports and the JSON law format.

Modules: :mod:`~mixscale.fit.laws` (families and linear predictors), :mod:`~mixscale.fit.scaling`
(:class:`ScalingLaw`), :mod:`~mixscale.fit.classlaw` (:class:`ClassLaw`), :mod:`~mixscale.fit.base`
(what both share), :mod:`~mixscale.fit.inputs`, :mod:`~mixscale.fit.lsq`,
:mod:`~mixscale.fit.bootstrap`, :mod:`~mixscale.fit.metrics`, :mod:`~mixscale.fit.summary`,
:mod:`~mixscale.fit.report`, :mod:`~mixscale.fit.lawjson` (the JSON law format) and
:mod:`~mixscale.fit.reader`; :class:`FitConfig` (:mod:`~mixscale.fit.options`): how to fit.
"""

from __future__ import annotations

from mixscale.errors import NotFittedError
from mixscale.fit.bootstrap import BootstrapResult
from mixscale.fit.lawjson import CONVENTION
from mixscale.fit.metrics import mse, r2
from mixscale.fit.options import FitConfig
from mixscale.fit.scaling import ScalingLaw
from mixscale.fit.summary import fit_all, parameter_table

__all__ = [
    "CONVENTION",
    "BootstrapResult",
    "FitConfig",
    "NotFittedError",
    "ScalingLaw",
    "fit_all",
    "mse",
    "parameter_table",
    "r2",
]
