"""The JSON form of a fitted :class:`~mixscale.fit.ScalingLaw`.

A served law is rebuilt from this dict in :meth:`mixscale.serve.LawModel.load_context`, so
the format is versioned and checked field by field when read back. The per-class law's form
lives beside :class:`~mixscale.fit.classlaw.ClassLaw`, and :func:`mixscale.fit.reader.read_law`
reads either kind by the ``format`` its JSON names. A law's calibration
(:mod:`mixscale.fit.calibration`) is added under ``"calibration"`` by
:class:`mixscale.fit.base.LawBase` for every law kind, so it is not repeated here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixscale.errors import MixscaleError
from mixscale.fit.base import check_design
from mixscale.fit.laws import EPOCH_FACTOR_NAMES, get_predictor, n_raw_params

CONVENTION = "count weights (w_n_<class> or w_total_n) sum to 1; epoch weights in the same units"
_FORMAT = "mixscale.ScalingLaw"
# 2: + `design` (training rows' floor, mix and range); 3: + `epoch_steps` of a saturating
# predictor (training length in epochs or optimiser steps). 1 and 2 are still read: a
# saturating law of theirs gets epoch_steps = 0, exactly its old predictions.
_FORMAT_VERSION = 3
_KEYS = (
    "family",
    "predictor",
    "options",
    "class_columns",
    "count_scale",
    "total_scale",
    "epoch_scale",
    "params",
    "raw_params",
    "pcov",
    "cost",
    "n_train",
)


def law_to_dict(law: Any) -> dict[str, Any]:
    """A fitted law as plain JSON types (the replicates of a kept bootstrap included)."""
    return {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "family": law.family,
        "predictor": law.predictor,
        "options": {
            "min_epoch": int(law.min_epoch),
            "loss": law.loss,
            "f_scale": float(law.f_scale),
            "n_starts": int(law.n_starts),
            "seed": None if law.seed is None else int(law.seed),
        },
        "convention": CONVENTION,
        "class_columns": list(law.class_columns_),
        "count_scale": law.count_scale_,
        "total_scale": law.total_scale_,
        "epoch_scale": law.epoch_scale_,
        "params": dict(law.params_),
        "raw_params": [float(v) for v in law.raw_params_],
        "pcov": [[float(v) if np.isfinite(v) else None for v in row] for row in law.pcov_],
        "cost": law.cost_,
        "n_train": law.n_train_,
        "bootstrap_raw": (None if getattr(law, "bootstrap_raw_", None) is None
                          else law.bootstrap_raw_.tolist()),
        "design": law.design_,
    }


def law_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a fitted law of class ``cls`` from :func:`law_to_dict` output, checking it."""
    if not isinstance(d, dict) or d.get("format") != _FORMAT:
        raise MixscaleError(f"not a {_FORMAT} dict: `format` is {get_key(d, 'format')!r}.")
    if d.get("version") not in (1, 2, _FORMAT_VERSION):
        raise MixscaleError(
            f"{_FORMAT} version must be 1, 2 or {_FORMAT_VERSION}, but got "
            f"{d.get('version')!r}."
        )
    missing = [key for key in _KEYS if key not in d]
    if missing:
        raise MixscaleError(f"{_FORMAT} dict is missing key(s) {missing}.")
    if d["version"] < 3 and get_predictor(d["predictor"]).saturating:
        d = _with_epoch_steps(d)
    law = cls(family=d["family"], predictor=d["predictor"], **d["options"])
    law._check_options()
    law.class_columns_ = list(d["class_columns"])
    law.count_scale_ = float(d["count_scale"])
    law.total_scale_ = float(d["total_scale"])
    law.epoch_scale_ = float(d["epoch_scale"])
    raw = np.asarray(d["raw_params"], dtype=float)
    n_raw = n_raw_params(law.family, law.predictor, len(law.class_columns_))
    if raw.shape != (n_raw,):
        raise MixscaleError(
            f"`raw_params` of a {law.family!r}/{law.predictor!r} law on "
            f"{len(law.class_columns_)} classes must have {n_raw} values, but got {raw.size}."
        )
    pcov = np.array([[np.inf if v is None else v for v in row] for row in d["pcov"]])
    law._set_fitted(raw, pcov, cost=float(d["cost"]), n_train=int(d["n_train"]))
    if list(law.params_) != list(d["params"]):
        raise MixscaleError(
            f"`params` names {list(d['params'])} do not match the family/predictor "
            f"({list(law.params_)})."
        )
    law.groups_ = None
    law.bootstrap_raw_ = None
    if d.get("bootstrap_raw") is not None:
        law.bootstrap_raw_ = np.asarray(d["bootstrap_raw"], dtype=float)
    law.design_ = check_design(d.get("design"), len(law.class_columns_))  # None in version 1
    return law


def _with_epoch_steps(d: dict[str, Any]) -> dict[str, Any]:
    """A version 1/2 saturating law with ``epoch_steps = 0`` appended (training length in
    epochs, as those versions had it): raw values, params, a zero row and column of the
    covariance and a zero column of the kept replicates."""
    steps = EPOCH_FACTOR_NAMES[-1]
    if steps in d.get("params", {}):
        return d
    pcov = [list(row) + [0.0] for row in d["pcov"]] + [[0.0] * (len(d["pcov"]) + 1)]
    boot = d.get("bootstrap_raw")
    return {**d, "raw_params": list(d["raw_params"]) + [0.0],
            "params": {**d["params"], steps: 0.0}, "pcov": pcov,
            "bootstrap_raw": None if boot is None else [list(r) + [0.0] for r in boot]}


def get_key(d: Any, key: str) -> Any:
    """``d.get(key)`` of a dict, else the name of ``d``'s type (for error messages)."""
    return d.get(key) if isinstance(d, dict) else type(d).__name__
