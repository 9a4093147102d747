"""Tuning the SGD settings of one dataset with Optuna.

:mod:`~mixscale.tune.space` is what a study searches and how it is configured,
:mod:`~mixscale.tune.tuned` reads a finished study's best values back (``--hparams-from``),
:mod:`~mixscale.tune.trialdata` is what trials train and are scored on, and
:mod:`~mixscale.tune.study` runs the study: the only optuna importer. This face imports each
name from its module on first use, so ``mixscale.tune.space`` (which the command line's options
need) loads without optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "TRIAL_STATE": "study",
    "STUDY": "study",
    "TuneSetup": "study",
    "TuneResult": "study",
    "prepare_tune": "study",
    "default_study_name": "study",
    "run_tune": "study",
    "SEARCHED": "space",
    "SAMPLERS": "space",
    "PRUNERS": "space",
    "SearchSpace": "space",
    "TuneConfig": "space",
    "parse_range": "space",
    "parse_choices": "space",
    "default_storage": "space",
    "masked_url": "space",
    "best_params_from_run": "tuned",
    "tuned_values": "tuned",
    "validation_split": "trialdata",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    """``mixscale.tune.<name>`` from its module, imported now (optuna only with the study's)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'mixscale.tune' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mixscale.tune.{_WHERE[name]}"), name)
