"""The registered champion law: loaded in Python, and served by `mlflow models serve`."""

from __future__ import annotations

import json
import os
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

from tests.ports import free_port

CLASSES = [f"n_{k}" for k in range(10)]


def _rows(scale: list[int], epoch: int = 12) -> pd.DataFrame:
    return pd.DataFrame([{**{c: s for c in CLASSES}, "epoch": epoch} for s in scale])


@pytest.mark.slow
def test_pyfunc_in_process(pipeline) -> None:
    model = mlflow.pyfunc.load_model(f"models:/{pipeline.model_name}@champion")
    assert model.metadata.signature.inputs.input_names() == [*CLASSES, "epoch"]
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
    assert [f"accuracy_{c[2:]}" for c in CLASSES] == outputs[3:]
    law = model.unwrap_python_model().law
    out = model.predict(_rows([2, 8, 16]), params={"interval": 0.9})
    per_class = out[[f"accuracy_{c[2:]}" for c in CLASSES]].to_numpy()
    assert ((per_class >= 0) & (per_class <= 1)).all()
    # the overall accuracy is the test-frequency weighted mean of the per-class ones
    np.testing.assert_allclose(out["accuracy"], per_class @ law.class_weights_, atol=1e-12)
    assert (out["accuracy_lower"] <= out["accuracy_upper"]).all()
    assert out["accuracy"].is_monotonic_increasing


def test_served_model_does_not_import_torch() -> None:
    code = ("import sys, mixscale.serving, mixscale.fit, mixscale.laws, mixscale._law_model; "
            "print('torch' in sys.modules)")
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


@pytest.fixture(scope="module")
def server(pipeline, store, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    # `mlflow models serve` execs uvicorn from PATH: put this environment's bin/ first, as an
    # activated virtualenv would.
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [mlflow_bin, "models", "serve", "-m", f"models:/{pipeline.model_name}@champion",
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
    from mixscale import tracking as tr
    from mixscale.serving import log_law

    law, X, y, groups = _synthetic_law()
    law.keep_bootstrap(law.bootstrap(X, y, groups=groups, n_boot=30, seed=1))
    experiment_id = store.new_experiment()
    run_id = tr.start_stage_run(store.client, experiment_id, kind="fit", name="round-trip")
    version = log_law(law, run_id=run_id, name="law-power-m2",
                      registered_model_name="round-trip", input_example=X.head(2))
    model = mlflow.pyfunc.load_model(f"models:/round-trip/{version}")
    served = model.predict(X)
    np.testing.assert_allclose(served["accuracy"], np.clip(law.predict(X), 0, 1), rtol=1e-12)
    assert list(served.columns) == ["accuracy"]
    with_interval = model.predict(X, params={"interval": 0.9})
    lower, upper = with_interval["accuracy_lower"], with_interval["accuracy_upper"]
    assert (lower <= upper).all() and (upper - lower).max() > 0
    assert ((lower >= 0) & (upper <= 1)).all()
    with pytest.raises(MlflowException, match=r"'interval' must be in \(0, 1\)"):
        model.predict(X, params={"interval": 1.5})


def test_law_without_bootstrap_refuses_interval(store) -> None:
    from mixscale import tracking as tr
    from mixscale.serving import log_law

    law, X, _, _ = _synthetic_law(seed=2)
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="nb")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="no-boot",
                      input_example=X.head(2))
    model = mlflow.pyfunc.load_model(f"models:/no-boot/{version}")
    with pytest.raises(MlflowException, match="carries no bootstrap replicates"):
        model.predict(X, params={"interval": 0.9})


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
    """A small fitted ClassLaw (tests/test_classlaw.py's) whose classes are a, upper, lower."""
    from mixscale.classlaw import ClassLaw
    from tests.test_classlaw import _table

    names = {"b": "upper", "c": "lower"}
    X = _table(n_runs=20, noise=0.01, seed=3).rename(columns={
        f"{prefix}_{old}": f"{prefix}_{new}" for old, new in names.items()
        for prefix in ("n", "accuracy")})
    law = ClassLaw(min_epoch=0, n_starts=3).fit(X, X["accuracy"], groups=X["run"])
    law.keep_bootstrap(law.bootstrap(X, X["accuracy"], n_boot=12, seed=1))
    return law, X[[*law.class_columns_, "epoch"]]


def test_served_class_column_keeps_classes_off_the_interval_names() -> None:
    from mixscale.serving import served_class_column

    assert served_class_column("n_cat") == "accuracy_cat"
    assert served_class_column("n_0") == "accuracy_0"
    assert served_class_column("n_upper") == "accuracy_class_upper"
    assert served_class_column("n_lower") == "accuracy_class_lower"
    assert served_class_column("n_uppercase") == "accuracy_uppercase"


def test_classes_named_upper_and_lower_do_not_collide_with_the_interval() -> None:
    from mixscale.serving import LawModel, law_signature

    law, X = _class_law_with_interval_names()
    assert law.class_columns_ == ["n_a", "n_upper", "n_lower"]
    model = LawModel()
    model.law = law
    out = model.predict(None, X, params={"interval": 0.9})
    per_class = ["accuracy_a", "accuracy_class_upper", "accuracy_class_lower"]
    assert list(out.columns) == ["accuracy", *per_class, "accuracy_lower", "accuracy_upper"]
    expected = law.predict_classes(X).to_numpy()
    np.testing.assert_allclose(out[per_class].to_numpy(), np.clip(expected, 0, 1), atol=1e-12)
    lower, upper = law.predict_interval(X, 0.9)
    np.testing.assert_allclose(out["accuracy_lower"], np.clip(lower, 0, 1), atol=1e-12)
    np.testing.assert_allclose(out["accuracy_upper"], np.clip(upper, 0, 1), atol=1e-12)
    assert not np.allclose(out["accuracy_upper"], out["accuracy_class_upper"])
    assert list(model.predict(None, X).columns) == ["accuracy", *per_class]
    names = law_signature(law.class_columns_, per_class=True).outputs.input_names()
    assert names == ["accuracy", "accuracy_lower", "accuracy_upper", *per_class]
    assert len(set(names)) == len(names)


def test_law_signature_refuses_repeated_output_names() -> None:
    from mixscale.errors import MixscaleError
    from mixscale.serving import law_signature

    with pytest.raises(MixscaleError, match=r"\['accuracy_class_upper'\] would each appear "
                                            r"more than once.*'n_upper', 'n_class_upper'"):
        law_signature(["n_upper", "n_class_upper"], per_class=True)
    assert law_signature(["n_upper", "n_class_upper"]).outputs.input_names() == [
        "accuracy", "accuracy_lower", "accuracy_upper"]  # no per-class outputs: no clash
