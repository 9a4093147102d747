"""The registered champion law: loaded in Python, and served by `mlflow models serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from tests.support.ports import free_port

CLASSES = [f"n_{k}" for k in range(10)]


def _rows(scale: list[int], epoch: int = 12) -> pd.DataFrame:
    return pd.DataFrame([{**{c: s for c in CLASSES}, "epoch": epoch} for s in scale])


@pytest.mark.slow
def test_pyfunc_in_process(pipeline) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{pipeline.model_name}@champion")
    assert model.metadata.signature.inputs is None  # checked by the model itself, as sent
    assert model.unwrap_python_model().law.class_columns_ == CLASSES
    pred = model.predict(_rows([2, 8, 16]))["accuracy"].to_numpy()
    assert ((pred >= 0) & (pred <= 1)).all()
    assert pred[0] < pred[1] < pred[2]
    with pytest.raises(MlflowException, match="n_3"):
        model.predict(_rows([4]).drop(columns="n_3"))
    bad = _rows([4])
    bad.loc[0, "n_2"] = -1
    with pytest.raises(MlflowException, match="n_2"):
        model.predict(bad)


@pytest.mark.slow
def test_per_class_law_serves_each_class_and_an_interval(pipeline) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{pipeline.model_name}@perclass-own-total")
    outputs = model.metadata.signature.outputs.input_names()
    assert [f"accuracy_{c[2:]}" for c in CLASSES] == outputs[3:-2]
    assert outputs[-2:] == ["extrapolation_ratio", "outside_design"]
    law = model.unwrap_python_model().law
    out = model.predict(_rows([2, 8, 16]), params={"interval": 0.9})
    per_class = out[[f"accuracy_{c[2:]}" for c in CLASSES]].to_numpy()
    assert ((per_class >= 0) & (per_class <= 1)).all()
    # the overall accuracy is the test-frequency weighted mean of the per-class ones
    np.testing.assert_allclose(out["accuracy"], per_class @ law.class_weights_, atol=1e-12)
    assert (out["accuracy_lower"] <= out["accuracy_upper"]).all()
    assert out["accuracy"].is_monotonic_increasing


def test_served_model_does_not_import_torch() -> None:
    code = ("import sys, mixscale.serve.pyfunc, mixscale.fit, mixscale.fit.laws, "
            "mixscale.serve.law_model; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"



def _post(url: str, payload: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _serve(model_uri: str, store, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    # `mlflow models serve` execs uvicorn from PATH: put this environment's bin/ first, as an
    # activated virtualenv would.
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [mlflow_bin, "models", "serve", "-m", model_uri,
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:  # poll /ping until the server answers, the process dies, or 120 s pass
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited early:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer in 120 s:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(pipeline, store, tmp_path_factory):
    yield from _serve(f"models:/{pipeline.model_name}@champion", store, tmp_path_factory)


@pytest.mark.slow
def test_http_predictions_in_unit_interval_and_growing(server) -> None:
    frame = _rows([2, 6, 12, 16])
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": frame.to_dict(orient="split", index=False)})
    assert status == 200, body
    preds = [p["accuracy"] for p in json.loads(body)["predictions"]]
    assert all(0.0 <= p <= 1.0 for p in preds)
    assert np.all(np.diff(preds) > 0), preds
    # more images of one class never lowers the prediction; for some class it raises it
    base = _rows([6])
    grown = pd.concat([base.assign(**{c: 30}) for c in CLASSES], ignore_index=True)
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": pd.concat([base, grown]).to_dict(
                             orient="split", index=False)})
    assert status == 200, body
    out = [p["accuracy"] for p in json.loads(body)["predictions"]]
    assert min(out[1:]) >= out[0] - 1e-12
    assert max(out[1:]) > out[0]


@pytest.mark.slow
def test_http_missing_class_is_400(server) -> None:
    frame = _rows([6]).drop(columns="n_7")
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": frame.to_dict(orient="split", index=False)})
    assert status == 400
    assert "n_7" in body


@pytest.mark.slow
def test_http_negative_count_is_400(server) -> None:
    frame = _rows([6])
    frame.loc[0, "n_1"] = -3
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": frame.to_dict(orient="split", index=False)})
    assert status == 400
    assert "n_1" in body and ">= 0" in body


def _synthetic_law(n_runs: int = 30, seed: int = 0):
    from mixscale.fit import ScalingLaw

    rng = np.random.default_rng(seed)
    counts = rng.integers(5, 100, size=(n_runs, 3))
    epochs = np.array([10, 20, 30])
    X = pd.DataFrame([{"n_a": c[0], "n_b": c[1], "n_c": c[2], "epoch": e}
                      for c in counts for e in epochs])
    z = (X[["n_a", "n_b", "n_c"]].to_numpy() @ [0.5, 0.3, 0.2]) / 100 + X["epoch"] / 30
    y = 0.1 + 0.5 * z**0.5 + rng.normal(0, 0.005, len(X))
    groups = np.repeat(np.arange(n_runs), len(epochs))
    law = ScalingLaw(family="power", predictor="m2", min_epoch=0, n_starts=3).fit(
        X, y, groups=groups)
    return law, X, y, groups


def test_pyfunc_round_trip_equals_in_process_and_serves_intervals(store) -> None:
    from mixscale import track as tr
    from mixscale.serve import log_law

    law, X, y, groups = _synthetic_law()
    law.keep_bootstrap(law.bootstrap(X, y, groups=groups, n_boot=30, seed=1))
    experiment_id = store.new_experiment()
    run_id = tr.start_stage_run(store.client, experiment_id, kind="fit", name="round-trip")
    version = log_law(law, run_id=run_id, name="law-power-m2",
                      registered_model_name="round-trip", input_example=X.head(2))
    model = mlflow.pyfunc.load_model(f"models:/round-trip/{version}")
    served = model.predict(X)
    np.testing.assert_allclose(served["accuracy"], np.clip(law.predict(X), 0, 1), rtol=1e-12)
    assert list(served.columns) == ["accuracy", "extrapolation_ratio", "outside_design"]
    with_interval = model.predict(X, params={"interval": 0.9})
    lower, upper = with_interval["accuracy_lower"], with_interval["accuracy_upper"]
    assert (lower <= upper).all() and (upper - lower).max() > 0
    assert ((lower >= 0) & (upper <= 1)).all()
    with pytest.raises(MlflowException, match=r"'interval' must be in \(0, 1\)"):
        model.predict(X, params={"interval": 1.5})


def test_law_without_bootstrap_refuses_interval(store) -> None:
    from mixscale import track as tr
    from mixscale.serve import log_law

    law, X, _, _ = _synthetic_law(seed=2)
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="nb")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="no-boot",
                      input_example=X.head(2))
    model = mlflow.pyfunc.load_model(f"models:/no-boot/{version}")
    with pytest.raises(MlflowException, match="carries no bootstrap replicates"):
        model.predict(X, params={"interval": 0.9})


def _bad_requests(law) -> list[tuple[pd.DataFrame, str]]:
    """Requests each refused with HTTP 400, and a pattern its message must match."""
    cols = list(law.class_columns_)
    good = pd.DataFrame([{**{c: 10 for c in cols}, "epoch": 12}])
    limit = 1000 * law.count_scale_
    return [
        (good.assign(**{cols[1]: 10.5}), rf"{cols[1]}.*whole numbers.*10\.5"),
        (good.assign(**{cols[0]: 1e15}), rf"{cols[0]}.*<= {limit:g} \(1000 x the law's "
                                         r"largest training class count.*1e\+15"),
        (good.assign(epoch=10**9), r"'epoch' must be <= .*largest training epoch"),
        (good.assign(n_zebra=3), r"unknown input column\(s\) \['n_zebra'\]"),
        (good.assign(**{cols[2]: "ten"}), rf"{cols[2]}.*must be numeric"),
        (good.assign(**{cols[0]: -3}), rf"{cols[0]}.*>= 0"),
        (good.drop(columns=cols[-1]), rf"missing input column\(s\) \['{cols[-1]}'\]"),
    ]


def test_served_input_is_checked_as_sent_and_predictions_clip_to_one(store) -> None:
    """In process, through MLflow's pyfunc (as the server calls it)."""
    from mixscale import track as tr
    from mixscale.serve import log_law

    law, X, _, _ = _synthetic_law(seed=4)
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="chk")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="checked",
                      input_example=X.head(2))
    model = mlflow.pyfunc.load_model(f"models:/checked/{version}")
    for frame, pattern in _bad_requests(law):
        with pytest.raises(MlflowException, match=pattern) as err:
            model.predict(frame)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        assert re.search(pattern, err.value.message)
    # the power law is unbounded: far beyond the design it passes 1, and is served as 1.0
    huge = pd.DataFrame([{"n_a": 90_000, "n_b": 90_000, "n_c": 90_000, "epoch": 30},
                         {**X.iloc[0][["n_a", "n_b", "n_c"]].to_dict(), "epoch": 30}])
    assert law.predict(huge)[0] > 1.5
    out = model.predict(huge)
    assert out["accuracy"].iloc[0] == 1.0 and out["accuracy"].iloc[1] < 1.0
    # and it is flagged as outside the design; a design row is not
    assert out["outside_design"].tolist() == [1, 0]
    # ints and whole floats are both fine
    np.testing.assert_array_equal(model.predict(huge.astype(float))["accuracy"], out["accuracy"])


def test_outside_design_flags_shares_and_totals_outside_the_training_rows() -> None:
    from mixscale.serve import LawModel

    law, X = _class_law_with_interval_names()
    model = LawModel()
    model.law = law
    d = law.design_
    cols = law.class_columns_
    rows = X.head(3).copy()
    lone = {cols[0]: int(d["total_max"]) // 2, cols[1]: 0, cols[2]: 0, "epoch": 20}
    many = {c: int(d["total_max"]) for c in cols} | {"epoch": 20}
    rows = pd.concat([rows, pd.DataFrame([lone, many])], ignore_index=True)
    out = model.predict(None, rows)
    assert out["outside_design"].tolist() == [0, 0, 0, 1, 1]
    # a class without images is predicted 0 by the per-class law's form
    assert out.loc[3, "accuracy_class_upper"] == 0.0 and out.loc[3, "accuracy_a"] > 0.5


@pytest.mark.slow
def test_http_bad_requests_are_400_naming_the_problem(server, pipeline) -> None:
    law = mlflow.pyfunc.load_model(
        f"models:/{pipeline.model_name}@champion").unwrap_python_model().law
    for frame, pattern in _bad_requests(law):
        status, body = _post(f"{server}/invocations",
                             {"dataframe_split": frame.to_dict(orient="split", index=False)})
        assert status == 400, (pattern, body)
        assert re.search(pattern, json.loads(body)["message"]), (pattern, body)


@pytest.fixture(scope="module")
def plain_server(store, tmp_path_factory):
    """A served law that carries neither bootstrap replicates nor a calibration (the
    pipeline's registered laws all carry a calibration now)."""
    from mixscale import track as tr
    from mixscale.serve import log_law

    law, X, _, _ = _synthetic_law(seed=3)
    assert law.bootstrap_raw_ is None and law.calibration_ is None
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="plain")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="plain-http",
                      input_example=X.head(2))
    yield from _serve(f"models:/plain-http/{version}", store, tmp_path_factory)


@pytest.mark.slow
def test_http_interval_on_a_law_without_replicates_is_400(plain_server) -> None:
    frame = pd.DataFrame([{"n_a": 10, "n_b": 20, "n_c": 30, "epoch": 20}])
    status, body = _post(f"{plain_server}/invocations",
                         {"dataframe_split": frame.to_dict(orient="split", index=False),
                          "params": {"interval": 0.9}})
    assert status == 400
    assert "carries no bootstrap replicates" in json.loads(body)["message"]
    status, body = _post(f"{plain_server}/invocations",
                         {"dataframe_split": frame.to_dict(orient="split", index=False)})
    assert status == 200, body


@pytest.mark.slow
def test_http_interval_param(server) -> None:
    frame = _rows([4, 12])
    status, body = _post(f"{server}/invocations",
                         {"dataframe_split": frame.to_dict(orient="split", index=False),
                          "params": {"interval": 0.9}})
    assert status == 200, body
    preds = json.loads(body)["predictions"]
    for p in preds:
        assert 0.0 <= p["accuracy_lower"] <= p["accuracy_upper"] <= 1.0


# --- per-class outputs beside the interval outputs -----------------------------------------
def _class_law_with_interval_names():
    """A small fitted ClassLaw (tests/fit/test_classlaw.py's) whose classes are a, upper, lower."""
    from mixscale.fit.classlaw import ClassLaw
    from tests.fit.test_classlaw import _table

    names = {"b": "upper", "c": "lower"}
    X = _table(n_runs=20, noise=0.01, seed=3).rename(columns={
        f"{prefix}_{old}": f"{prefix}_{new}" for old, new in names.items()
        for prefix in ("n", "accuracy")})
    law = ClassLaw(min_epoch=0, n_starts=3).fit(X, X["accuracy"], groups=X["run"])
    law.keep_bootstrap(law.bootstrap(X, X["accuracy"], n_boot=12, seed=1))
    return law, X[[*law.class_columns_, "epoch"]]


def test_served_class_column_keeps_classes_off_the_interval_names() -> None:
    from mixscale.serve import served_class_column

    assert served_class_column("n_cat") == "accuracy_cat"
    assert served_class_column("n_0") == "accuracy_0"
    assert served_class_column("n_upper") == "accuracy_class_upper"
    assert served_class_column("n_lower") == "accuracy_class_lower"
    assert served_class_column("n_uppercase") == "accuracy_uppercase"


def test_classes_named_upper_and_lower_do_not_collide_with_the_interval() -> None:
    from mixscale.serve import LawModel, law_signature

    law, X = _class_law_with_interval_names()
    assert law.class_columns_ == ["n_a", "n_upper", "n_lower"]
    model = LawModel()
    model.law = law
    out = model.predict(None, X, params={"interval": 0.9})
    per_class = ["accuracy_a", "accuracy_class_upper", "accuracy_class_lower"]
    assert list(out.columns) == ["accuracy", *per_class, "accuracy_lower", "accuracy_upper",
                                 "extrapolation_ratio", "outside_design"]
    expected = law.predict_classes(X).to_numpy()
    np.testing.assert_allclose(out[per_class].to_numpy(), np.clip(expected, 0, 1), atol=1e-12)
    lower, upper = law.predict_interval(X, 0.9)
    np.testing.assert_allclose(out["accuracy_lower"], np.clip(lower, 0, 1), atol=1e-12)
    np.testing.assert_allclose(out["accuracy_upper"], np.clip(upper, 0, 1), atol=1e-12)
    assert not np.allclose(out["accuracy_upper"], out["accuracy_class_upper"])
    assert list(model.predict(None, X).columns) == ["accuracy", *per_class,
                                                    "extrapolation_ratio", "outside_design"]
    names = law_signature(law.class_columns_, per_class=True).outputs.input_names()
    assert names == ["accuracy", "accuracy_lower", "accuracy_upper", *per_class,
                     "extrapolation_ratio", "outside_design"]
    assert len(set(names)) == len(names)


def test_law_signature_refuses_repeated_output_names() -> None:
    from mixscale.errors import MixscaleError
    from mixscale.serve import law_signature

    with pytest.raises(MixscaleError, match=r"\['accuracy_class_upper'\] would each appear "
                                            r"more than once.*'n_upper', 'n_class_upper'"):
        law_signature(["n_upper", "n_class_upper"], per_class=True)
    assert law_signature(["n_upper", "n_class_upper"]).outputs.input_names() == [
        "accuracy", "accuracy_lower", "accuracy_upper", "extrapolation_ratio",
        "outside_design"]  # no clash


def test_a_version_1_scaling_law_is_read_and_served_without_the_flag() -> None:
    from mixscale.fit import ScalingLaw
    from mixscale.plan import default_floor
    from mixscale.serve import LawModel

    law, X, _, _ = _synthetic_law(seed=5)
    old = {k: v for k, v in law.to_dict().items() if k != "design"} | {"version": 1}
    back = ScalingLaw.from_dict(old)
    assert back.design_ is None and default_floor(back) == 0
    model = LawModel()
    model.law = back
    out = model.predict(None, X.head(3))
    # no range stored: no outside_design flag, and the extrapolation ratio is unknown
    assert list(out.columns) == ["accuracy", "extrapolation_ratio"]
    assert out["extrapolation_ratio"].isna().all()
    np.testing.assert_array_equal(out["accuracy"], np.clip(law.predict(X.head(3)), 0, 1))
    assert ScalingLaw.from_dict(law.to_dict()).design_ == law.design_


# --- calibrated intervals and the extrapolation ratio ---------------------------------------
def _calibrated_law():
    """The synthetic law with a bootstrap and a calibration whose error grows like r**1.5."""
    from mixscale.fit.calibration import Calibration

    law, X, y, groups = _synthetic_law(seed=6)
    law.keep_bootstrap(law.bootstrap(X, y, groups=groups, n_boot=20, seed=1))
    rng = np.random.default_rng(0)
    ratio = rng.uniform(1.2, 4.0, 300)
    residuals = pd.DataFrame({"ratio": ratio, "residual": rng.normal(0, 0.01 * ratio**1.5)})
    return law.calibrate(Calibration.from_residuals(residuals, noise_sd=0.004)), X


def _far_rows(law, factors=(0.5, 1.0, 1.5, 2.0, 2.5)) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows in the design's mix at ``factors`` x its largest total; their expected ratios."""
    top, mix = law.design_["total_max"], np.asarray(law.design_["mix"])
    rows = pd.DataFrame(np.round(np.outer(factors, top * mix)), columns=law.class_columns_)
    rows["epoch"] = 10  # predictions stay below 1 up to 2.5x, so no bound is clipped
    ratio = np.maximum(rows[law.class_columns_].sum(axis=1).to_numpy() / top, 1.0)
    return rows.astype(np.int64), ratio


def _check_calibrated(out: pd.DataFrame, law, rows: pd.DataFrame, ratio: np.ndarray) -> None:
    """The documented rule: p -/+ sqrt(h(r)**2 + bootstrap spread**2), h at the row's ratio."""
    np.testing.assert_allclose(out["extrapolation_ratio"], ratio, rtol=1e-12)
    point = law.predict(rows)
    calibration, law.calibration_ = law.calibration_, None  # the bootstrap-only interval
    try:
        b_lo, b_hi = law.predict_interval(rows, 0.9)
    finally:
        law.calibration_ = calibration
    h = calibration.half_width(ratio, 0.9)
    assert np.all(np.diff(h) >= 0) and h[-1] > 1.5 * h[1] and h[0] > 0
    np.testing.assert_allclose(out["accuracy_upper"] - point,
                               np.sqrt(h**2 + np.maximum(b_hi - point, 0) ** 2), atol=1e-9)
    np.testing.assert_allclose(point - out["accuracy_lower"],
                               np.sqrt(h**2 + np.maximum(point - b_lo, 0) ** 2), atol=1e-9)
    width = (out["accuracy_upper"] - out["accuracy_lower"]).to_numpy()
    assert np.all(np.diff(width) >= -1e-12), width  # never narrower further out
    assert width[-1] > 1.5 * width[1], width  # 2.5x the largest total: wider than at 1x
    assert np.all(width > (b_hi - b_lo) + 1e-6)  # wider than the bootstrap's alone
    assert out["accuracy_upper"].max() < 1.0  # (unclipped)


def test_served_calibrated_interval_and_extrapolation_ratio_in_process(store) -> None:
    from mixscale import track as tr
    from mixscale.serve import log_law

    law, X = _calibrated_law()
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="cal")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="calibrated",
                      input_example=X.head(2))
    model = mlflow.pyfunc.load_model(f"models:/calibrated/{version}")
    served_law = model.unwrap_python_model().law
    assert served_law.calibration_.to_dict() == law.calibration_.to_dict()  # via the JSON
    rows, ratio = _far_rows(law)
    assert ratio[0] == 1.0 and abs(ratio[1] - 1.0) < 0.01 and ratio[-1] > 2.4
    out = model.predict(rows, params={"interval": 0.9})
    _check_calibrated(out, law, rows, ratio)
    plain = model.predict(rows)  # without the param: the ratio, no interval
    assert "accuracy_lower" not in plain and "extrapolation_ratio" in plain


@pytest.fixture(scope="module")
def calibrated_server(store, tmp_path_factory):
    """``mlflow models serve`` of a small calibrated law (no pipeline needed)."""
    from mixscale import track as tr
    from mixscale.serve import log_law

    law, X = _calibrated_law()
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="cal")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="calibrated-http",
                      input_example=X.head(2))
    for url in _serve(f"models:/calibrated-http/{version}", store, tmp_path_factory):
        yield url, law


@pytest.mark.slow
def test_http_serves_the_calibrated_interval_and_extrapolation_ratio(calibrated_server) -> None:
    url, law = calibrated_server
    rows, ratio = _far_rows(law)
    status, body = _post(f"{url}/invocations",
                         {"dataframe_split": rows.to_dict(orient="split", index=False),
                          "params": {"interval": 0.9}})
    assert status == 200, body
    out = pd.DataFrame(json.loads(body)["predictions"])
    _check_calibrated(out, law, rows, ratio)
    status, body = _post(f"{url}/invocations",
                         {"dataframe_split": rows.to_dict(orient="split", index=False)})
    assert status == 200, body
    assert [p["extrapolation_ratio"] for p in json.loads(body)["predictions"]] == pytest.approx(
        ratio.tolist(), rel=1e-12)
