"""The MLproject matches the CLI, and a request it refuses leaves a labelled empty run.

Every entry point runs through `mlflow run` with its documented parameters in
tests/test_readme.py (which checks that the README documents each one).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mixscale import track as tr

ROOT = Path(__file__).resolve().parents[2]


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
@pytest.mark.parametrize(("params", "message"), [
    (["-e", "design", "-P", "subset_sizes=99999"], "subset size 99999 is more than"),
    (["-e", "train_row", "-P", "counts=5,5,5,5,5,5,5,5,5,999", "-P", "epochs=3"],
     "count of class '9' must be in 0..1"),
    (["-e", "design", "-P", "rows_per_size=0"], "0 is not in the range 1<=x<=10000"),
])
def test_refused_mlflow_run_leaves_a_labelled_empty_run(tmp_path, params, message) -> None:
    """One Error: line, no traceback; MLflow ends its run FAILED, we label it refused."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).search_experiments()  # create the store once, before any subprocess
    proc = _mlflow_run(params, uri, tmp_path)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mlproject").experiment_id])
    assert run.info.status == "FAILED" and run.info.run_name == f"refused-{params[1]}"
    assert run.data.tags[tr.KIND] == "refused"
    assert message in run.data.tags[tr.ERROR] and not run.data.metrics


def test_mark_refused_project_run_only_labels_empty_project_runs(store, monkeypatch) -> None:
    from mixscale.cli.options import mark_refused_project_run as _mark_refused_project_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    client, exp = store.client, store.new_experiment()
    project = {"mlflow.source.type": "PROJECT"}
    empty = client.create_run(exp, tags=project).info.run_id
    client.log_param(empty, "model", "recipe")  # what `mlflow run` logs itself
    assert _mark_refused_project_run(empty, "train", "Error text")
    run = client.get_run(empty)
    assert run.info.run_name == "refused-train" and run.data.tags[tr.KIND] == "refused"
    assert run.data.tags[tr.ERROR] == "refused: Error text"

    with_metric = client.create_run(exp, tags=project).info.run_id
    client.log_metric(with_metric, "test_accuracy", 0.5)
    design = client.create_run(exp, tags={**project, tr.KIND: "design"}).info.run_id
    parent = client.create_run(exp, tags={**project, tr.KIND: "launcher"}).info.run_id
    client.create_run(exp, tags={tr.PARENT: parent})
    not_project = client.create_run(exp).info.run_id
    for run_id in (with_metric, design, parent, not_project):
        assert not _mark_refused_project_run(run_id, "train", "Error text")
        assert tr.ERROR not in client.get_run(run_id).data.tags
