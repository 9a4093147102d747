"""Fitted laws as MLflow pyfunc models: the wrapper, its signature, registration and aliases.

The model is logged "from code" (:mod:`mixscale.serve.law_model`): ``load_context`` rebuilds the
law from its JSON artifact and ``predict`` delegates to :meth:`mixscale.fit.ScalingLaw.predict`.
Every row also says how far out it asks (``extrapolation_ratio``), and the interval is the
backtest-calibrated one when the law carries a calibration (:mod:`mixscale.fit.calibration`).
The ``mixscale`` package travels with the model as ``code_paths``, and nothing here imports torch,
so ``mlflow models serve`` needs only numpy, scipy, pandas and mlflow.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import scipy
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from mixscale.errors import MixscaleError
from mixscale.fit.reader import read_law

__all__ = ["LawModel", "check_served_input", "law_signature", "load_law", "log_law",
           "served_class_column", "set_alias", "CHAMPION", "MAX_SCALE", "OUTSIDE", "RATIO"]

CHAMPION = "champion"  # alias of the law with the best validation MSE
LAW_ARTIFACT = "law"  # artifact key of the law's JSON inside the logged model
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mixscale/, shipped as the code_paths
_MODEL_CODE = Path(__file__).resolve().parent / "law_model.py"
_INTERVAL_KEYS = ("lower", "upper")  # accuracy_lower/accuracy_upper are the interval outputs


def served_class_column(class_column: str) -> str:
    """The served output of one class's accuracy: ``n_<class>`` -> ``accuracy_<class>``.

    A class whose key is ``lower`` or ``upper`` becomes ``accuracy_class_lower`` or
    ``accuracy_class_upper`` instead, so that it does not collide with the interval outputs
    ``accuracy_lower``/``accuracy_upper``. (The fit table keeps ``accuracy_<class>``:
    :func:`mixscale.fit.classlaw.class_accuracy_column`.)

    Parameters
    ----------
    class_column : str
        A count column, ``n_<class>``.

    Returns
    -------
    str
        The output column name.
    """
    key = class_column.removeprefix("n_")
    return f"accuracy_class_{key}" if key in _INTERVAL_KEYS else f"accuracy_{key}"


MAX_SCALE = 1000  # a served count (epoch) above this many times the law's largest is refused
OUTSIDE = "outside_design"  # served flag: 1 where a class share or the total leaves the design
RATIO = "extrapolation_ratio"  # served: a row's total / the design's largest total (>= 1)


def _bad(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def check_served_input(frame: pd.DataFrame, law) -> pd.DataFrame:
    """The served request checked column by column; the required columns as float64.

    Parameters
    ----------
    frame : DataFrame
        The request: exactly the law's ``n_<class>`` columns and ``epoch``.
    law : ScalingLaw or ClassLaw
        The served law (its columns and scales set the rules).

    Returns
    -------
    DataFrame
        ``n_<class>`` and ``epoch`` as floats holding whole numbers.

    Raises
    ------
    MlflowException
        (HTTP 400) naming the column and values: a missing or unknown column, a value that is
        not a number, negative, not a whole number, or above :data:`MAX_SCALE` x the law's
        largest training class count (counts) or epoch (``epoch``).
    """
    required = [*law.class_columns_, "epoch"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _bad(f"missing input column(s) {missing}; required: {required}.")
    unknown = [c for c in frame.columns if c not in required]
    if unknown:
        raise _bad(f"unknown input column(s) {unknown}; the law takes exactly {required}.")
    out = {}
    for col in required:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any() or pd.api.types.is_bool_dtype(frame[col]):
            raise _bad(f"column {col!r} must be numeric, but got {frame[col].tolist()}.")
        values = values.astype(float)
        if not np.isfinite(values).all():
            raise _bad(f"column {col!r} must be finite, but got {values.tolist()}.")
        if (values < 0).any():
            raise _bad(f"column {col!r} must be >= 0, but got {values[values < 0].tolist()}.")
        frac = values != np.floor(values)
        if frac.any():
            raise _bad(f"column {col!r} must hold whole numbers (images, epochs), but got "
                       f"{values[frac].tolist()}.")
        scale = law.epoch_scale_ if col == "epoch" else law.count_scale_
        limit = MAX_SCALE * scale
        if (values > limit).any():
            what = "epoch" if col == "epoch" else "class count"
            raise _bad(f"column {col!r} must be <= {limit:g} ({MAX_SCALE} x the law's largest "
                       f"training {what}, {scale:g}), but got "
                       f"{[f'{v:g}' for v in values[values > limit]]}.")
        out[col] = values
    return pd.DataFrame(out, index=frame.index)


class LawModel(mlflow.pyfunc.PythonModel):
    """Serves a fitted :class:`~mixscale.fit.ScalingLaw`: counts and epoch in, accuracy out.

    Predictions are clipped to [0, 1] (an accuracy); ``params={"interval": 0.9}`` adds the
    law's prediction interval (calibrated on the backtest when the law carries a calibration,
    else its run-bootstrap percentiles), ``extrapolation_ratio`` says how far beyond the
    design's largest total each row is (1 inside it), and ``outside_design`` (0/1) flags rows
    outside the design's range of class shares and totals. Bad input raises an
    :class:`~mlflow.exceptions.MlflowException` that the scoring server turns into HTTP 400
    (:func:`check_served_input`).
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Rebuild the law (a ScalingLaw or a ClassLaw) from its JSON artifact."""
        self.law = read_law(Path(context.artifacts[LAW_ARTIFACT]).read_text())

    def predict(self, context: object, model_input: pd.DataFrame,
                params: dict | None = None) -> pd.DataFrame:
        """Predicted accuracy for each row of ``n_<class>`` counts and ``epoch``.

        A per-class law also returns each class's accuracy, named by
        :func:`served_class_column` (``accuracy_<class>``; ``accuracy_class_lower`` and
        ``accuracy_class_upper`` for classes ``lower`` and ``upper``), and the param
        ``interval`` adds ``accuracy_lower``/``accuracy_upper`` (the calibrated interval of
        :meth:`mixscale.fit.base.LawBase.predict_interval` when the law has a calibration).
        ``extrapolation_ratio`` is every row's total over the design's largest (>= 1; NaN for
        a law fitted before laws stored their design). ``outside_design`` is 1 where a class's
        share or the total is outside the range of the law's training rows (absent for a law
        fitted before laws stored that range).
        """
        frame = check_served_input(pd.DataFrame(model_input), self.law)
        accuracy = np.clip(self.law.predict(frame), 0.0, 1.0)
        out = pd.DataFrame({"accuracy": accuracy})
        if hasattr(self.law, "predict_classes"):  # a per-class law also says it per class
            per_class = self.law.predict_classes(frame)
            names = [served_class_column(c) for c in self.law.class_columns_]
            out[names] = per_class.to_numpy()
        level = float((params or {}).get("interval") or 0.0)
        if level:
            if not 0.0 < level < 1.0:
                raise _bad(f"param 'interval' must be in (0, 1), e.g. 0.9, but got {level}.")
            try:
                lower, upper = self.law.predict_interval(frame, level)
            except ValueError as exc:  # MixscaleError: this law kept no bootstrap replicates
                raise _bad(str(exc)) from None
            out["accuracy_lower"] = np.clip(lower, 0.0, 1.0)
            out["accuracy_upper"] = np.clip(upper, 0.0, 1.0)
        counts = frame[self.law.class_columns_].to_numpy()
        out[RATIO] = np.maximum(np.asarray(self.law.extrapolation_ratio(counts), float), 1.0)
        if self.law.design_ is not None:
            out[OUTSIDE] = self.law.outside_design(counts).astype(np.int64)
        return out


def law_signature(class_columns: Sequence[str], *, per_class: bool = False
                  ) -> ModelSignature:
    """Signature: ``accuracy`` (and more) out, the param ``interval``; no input schema.

    The inputs are a column per class count ``n_<class>`` and ``epoch``, whole numbers. They
    have no schema on purpose: MLflow would cast a ``long`` column before the model sees it
    (10.5 -> 10) and drop unknown columns, so :func:`check_served_input` checks the request
    as sent. The param ``interval`` (e.g. 0.9; default 0 = none) adds
    ``accuracy_lower``/``accuracy_upper``, the prediction interval (calibrated when the law
    carries a calibration, else the bootstrap's), for laws that have one;
    ``extrapolation_ratio`` (every row) is the row's total over the design's largest, and
    ``outside_design`` (0/1) flags rows outside the design. A
    per-class law (``per_class=True``) also returns each class's accuracy, named by
    :func:`served_class_column` (``accuracy_<class>``, or ``accuracy_class_<class>`` for the
    classes ``lower`` and ``upper``).

    Raises
    ------
    MixscaleError
        If two outputs would have one name (e.g. classes ``upper`` and ``class_upper``).
    """
    names = ["accuracy", "accuracy_lower", "accuracy_upper",
             *(map(served_class_column, class_columns) if per_class else [])]
    every = [*names, RATIO, OUTSIDE]
    repeated = sorted({n for n in every if every.count(n) > 1})
    if repeated:
        raise MixscaleError(f"the served outputs {repeated} would each appear more than once "
                            f"for classes {list(class_columns)}; rename those classes.")
    outputs = Schema([*(ColSpec("double", n, required=n == "accuracy") for n in names),
                      ColSpec("double", RATIO), ColSpec("long", OUTSIDE, required=False)])
    params = ParamSchema([ParamSpec("interval", "double", 0.0)])
    return ModelSignature(inputs=None, outputs=outputs, params=params)


def _pip_requirements() -> list[str]:
    return [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}",
            f"pandas=={pd.__version__}", f"scipy=={scipy.__version__}"]


def log_law(law, *, run_id: str, name: str, registered_model_name: str,
            input_example: pd.DataFrame, tags: Mapping[str, str] | None = None) -> str:
    """Log a fitted law as a pyfunc model on ``run_id`` and register it.

    Parameters
    ----------
    law : ScalingLaw or ClassLaw
        A fitted law.
    run_id : str
        The fit run to attach the model to (resumed for the call, then ended FINISHED).
    name : str
        Model name within the run, e.g. ``law-power-m1``.
    registered_model_name : str
        Registered model to add a version to.
    input_example : DataFrame
        A few rows of ``n_<class>`` counts and ``epoch`` (int64).
    tags : mapping, optional
        Tags set on the new model version.

    Returns
    -------
    str
        The new model version.
    """
    with tempfile.TemporaryDirectory() as tmp:
        law_path = Path(tmp) / "law.json"
        law_path.write_text(law.to_json())
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(_MODEL_CODE),
                artifacts={LAW_ARTIFACT: str(law_path)},
                code_paths=[str(_PACKAGE_DIR)],
                signature=law_signature(law.class_columns_,
                                        per_class=hasattr(law, "predict_classes")),
                input_example=input_example,
                pip_requirements=_pip_requirements(),
                registered_model_name=registered_model_name,
            )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_model_version_tag(registered_model_name, version, key, str(value))
    return version


def set_alias(registered_model_name: str, alias: str, version: str) -> None:
    """Point ``models:/<name>@<alias>`` at ``version``."""
    MlflowClient().set_registered_model_alias(registered_model_name, alias, version)


def load_law(model_uri: str, tracking_uri: str):
    """The fitted law (:class:`~mixscale.fit.ScalingLaw` or ``ClassLaw``) of a registered
    pyfunc law, loaded from the store at ``tracking_uri``.

    Raises
    ------
    MixscaleError
        If ``model_uri`` names no model (an unknown name, alias or run) or not a mixscale law.
    """
    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(model_uri)
        return model.unwrap_python_model().law
    except Exception as exc:  # unknown name/alias/run, or not a mixscale law
        raise MixscaleError(f"cannot load a mixscale law from --model-uri {model_uri!r} "
                            f"({type(exc).__name__}: {str(exc)[:300]}).") from None
