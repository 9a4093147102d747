"""End to end on a real, harder dataset: Fashion-MNIST where Debian's package puts it.

`.ci/run` installs the package and sets ``MIXSCALE_REQUIRE_FASHION_MNIST=1``, so there a missing
package fails this test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mixscale.data import datasets

pytestmark = pytest.mark.slow

SYSTEM_DIR = datasets.SYSTEM_DATA_DIRS["fashion-mnist"]


@pytest.fixture(scope="module")
def fashion_pipeline(tmp_path_factory):
    if not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists():
        if os.environ.get("MIXSCALE_REQUIRE_FASHION_MNIST") == "1":
            pytest.fail(f"{SYSTEM_DIR} is missing: apt-get install dataset-fashion-mnist")
        pytest.skip(f"{SYSTEM_DIR} is missing (apt-get install dataset-fashion-mnist)")
    cwd = tmp_path_factory.mktemp("fashion")
    cmd = [str(Path(sys.executable).with_name("mixscale")), "main",
           "--dataset", "fashion-mnist", "--subset-sizes", "100,200,400",
           "--rows-per-size", "2", "--val-rows-per-size", "1", "--iterations", "50",
           "--epochs", "4", "--eval-every", "2", "--min-epoch", "2",
           "--predictors", "m3,s2", "--n-starts", "2", "--n-boot", "0", "--class-law", "false"]
    # No --data-dir: ./data does not exist here, so the system's package must be found.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return proc, f"sqlite:///{cwd / 'mlflow.db'}"


def test_main_on_fashion_mnist_needs_no_data_dir(fashion_pipeline) -> None:
    proc, uri = fashion_pipeline
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert f"tracking URI: {uri}" in out
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "mixscale"]
    rows = client.search_runs([exp.experiment_id], "tags.`mixscale.kind` = 'row'")
    assert len(rows) == 3 * (2 + 1)
    for run in rows:
        assert run.info.status == "FINISHED"
        p = run.data.params
        # Fashion-MNIST's class names become keys: "T-shirt/top" -> n_T_shirt_top.
        assert {"n_T_shirt_top", "n_Ankle_boot", "n_Trouser"} <= set(p)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")]
        assert steps == [2, 4]
    largest = [r for r in rows if r.data.params["subset_size"] == "400"]
    # Well above chance (0.10; 0.35 measured): images and labels were read in the right order.
    assert min(r.data.metrics["test_accuracy"] for r in largest) > 0.25
    version = client.get_model_version_by_alias("mixscale-fashion-mnist", "champion")
    # only bounded laws are registered: m4 with the saturating epochs (s2) is the one here
    assert (version.tags["mixscale.family"], version.tags["mixscale.predictor"]) == ("m4", "s2")
    (design,) = client.search_runs([exp.experiment_id], "tags.`mixscale.kind` = 'design'")
    keys = design.data.params["class_keys"].split(",")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/mixscale-fashion-mnist@champion")
    request = pd.DataFrame([[40] * len(keys) + [4]], columns=[f"n_{k}" for k in keys] + ["epoch"])
    predicted = float(model.predict(request)["accuracy"].iloc[0])
    assert 0.1 < predicted <= 1.0
