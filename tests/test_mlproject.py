"""The MLproject: `mlflow run . -e <entry point> --env-manager local` drives the real stages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mixscale import tracking as tr

ROOT = Path(__file__).resolve().parents[1]


def test_mlproject_entry_points_match_the_cli() -> None:
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    assert project["conda_env"] == "conda.yaml"
    points = project["entry_points"]
    assert set(points) == {"main", "design", "train_row", "train", "fit", "tune", "plan"}
    for name, point in points.items():
        script = re.search(r"python (entrypoints/\w+\.py)", point["command"]).group(1)
        assert (ROOT / script).exists()
        for param in point["parameters"]:
            assert f"--{param.replace('_', '-')} {{{param}}}" in point["command"], (name, param)
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "." in pip  # the pip: section installs this project


def _mlflow_run(args: list[str], uri: str, cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_RUN_ID", None)
    return subprocess.run([str(bin_dir / "mlflow"), "run", str(ROOT), "--env-manager", "local",
                           "--experiment-name", "mlproject", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_mlflow_run_design_train_fit(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).search_experiments()  # create the store once, before any subprocess
    design = _mlflow_run(["-e", "design", "-P", "subset_sizes=40,80", "-P", "rows_per_size=3",
                          "-P", "val_rows_per_size=1", "-P", "iterations=50"], uri, tmp_path)
    assert design.returncode == 0, design.stderr
    design_id = re.search(r"design (\w{32}): 8 rows", design.stdout).group(1)
    client = MlflowClient(uri)
    # the run `mlflow run` created *is* the design run
    assert client.get_run(design_id).data.tags[tr.KIND] == "design"
    assert client.get_run(design_id).info.status == "FINISHED"

    train = _mlflow_run(["-e", "train", "-P", f"design_id={design_id}", "-P", "epochs=4",
                         "-P", "eval_every=2", "-P", "lr_milestones="], uri, tmp_path)
    assert train.returncode == 0, train.stderr
    rows = tr.list_rows(client, design_id)
    assert [r.status for r in rows] == ["FINISHED"] * 8

    fit = _mlflow_run(["-e", "fit", "-P", f"design_id={design_id}", "-P", "min_epoch=0",
                       "-P", "predictors=m2,m3", "-P", "model_name=mlproject-law"],
                      uri, tmp_path)
    assert fit.returncode == 0, fit.stderr
    assert int(client.get_model_version_by_alias("mlproject-law", "champion").version) in (1, 2)

    bad = _mlflow_run(["-e", "design", "-P", "subset_sizes=99999"], uri, tmp_path)
    assert bad.returncode != 0
    assert "subset size 99999 is more than" in bad.stderr
    assert "Traceback" not in bad.stdout
