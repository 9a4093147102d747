"""The JSON form of a fitted :class:`~mixscale.fit.ScalingLaw` (private to mixscale.fit).

A served law is rebuilt from this dict in :meth:`mixscale.serve.LawModel.load_context`, so
the format is versioned and checked field by field when read back. :func:`read_law` reads
either kind of law (:class:`~mixscale.fit.ScalingLaw` or
:class:`~mixscale.fit.classlaw.ClassLaw`) by the ``format`` its JSON names.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mixscale.errors import MixscaleError
from mixscale.fit.base import check_design
from mixscale.fit.summary import n_raw_params

CONVENTION = "count weights (w_n_<class> or w_total_n) sum to 1; epoch weights in the same units"
_FORMAT = "mixscale.ScalingLaw"
_FORMAT_VERSION = 2  # 2: + `design` (training rows' floor, mix and range); 1 is still read
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
        raise MixscaleError(f"not a {_FORMAT} dict: `format` is {_get(d, 'format')!r}.")
    if d.get("version") not in (1, _FORMAT_VERSION):
        raise MixscaleError(
            f"{_FORMAT} version must be 1 or {_FORMAT_VERSION}, but got {d.get('version')!r}."
        )
    missing = [key for key in _KEYS if key not in d]
    if missing:
        raise MixscaleError(f"{_FORMAT} dict is missing key(s) {missing}.")
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


def read_law(text: str) -> Any:
    """A fitted law from its JSON: a ``ClassLaw`` or a ``ScalingLaw``, by ``format``."""
    d = json.loads(text)
    if isinstance(d, dict) and d.get("format") == CLASS_FORMAT:
        from mixscale.fit.classlaw import ClassLaw

        return ClassLaw.from_dict(d)
    from mixscale.fit.scaling import ScalingLaw

    return ScalingLaw.from_dict(d)


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, dict) else type(d).__name__


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
    from mixscale.fit.classlaw import N_SHAPE, given_weights

    if not isinstance(d, dict) or d.get("format") != CLASS_FORMAT:
        raise MixscaleError(f"not a {CLASS_FORMAT} dict: `format` is {_get(d, 'format')!r}.")
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
