"""`mixscale tune`: Optuna studies on a validation split, logged as nested MLflow runs.

The studies here train the real network on digits with few epochs. Pruning is made certain by
the ranges: the first trial tries the recipe (lr 0.05, good), every later one an lr of at most
1e-5, which leaves the network near its initialisation; with two start-up trials the median at
epoch 1 lies halfway between good and hopeless, so every later trial is pruned at epoch 1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from mixscale import track as tr
from mixscale import tune as tu
from mixscale.cli import cli, tune_cmd
from mixscale.errors import MixscaleError

PRUNING = ["--epochs", "2", "--lr-range", "1e-6,1e-5", "--batch-sizes", "32",
           "--pruner-startup-trials", "2", "--pruner-warmup-epochs", "1", "--seed", "3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _runs(client: MlflowClient, experiment_id: str, kind: str) -> list:
    return client.search_runs([experiment_id], f"tags.`{tr.KIND}` = '{kind}'",
                              max_results=1000)


# --- pure parts -----------------------------------------------------------------------------

def test_cli_defaults_match_the_dataclasses() -> None:
    defaults = {p.name: p.default for p in tune_cmd.params}
    config, space = tu.TuneConfig(), tu.SearchSpace()
    assert defaults["trials"] == config.trials
    assert defaults["sampler"] == config.sampler and defaults["pruner"] == config.pruner
    assert defaults["pruner_startup_trials"] == config.startup_trials
    assert defaults["pruner_warmup_epochs"] == config.warmup_epochs
    assert defaults["val_fraction"] == config.val_fraction
    assert defaults["enqueue_recipe"] is config.enqueue_recipe
    assert tu.parse_range("lr", defaults["lr_range"], log=True) == space.lr
    assert tu.parse_range("m", defaults["momentum_range"], log=False) == space.momentum
    assert tu.parse_range("w", defaults["weight_decay_range"], log=True) == space.weight_decay
    assert tu.parse_choices("b", defaults["batch_sizes"]) == space.batch_size


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": (0.3, 0.001)}, r"`lr_range`: `low <= high` must hold, but got \(low=0.3"),
        ({"lr": (0.0, 0.1)}, r"`lr_range` is searched on a log scale, so `low > 0`"),
        ({"weight_decay": (-1.0, 0.1)}, r"`weight_decay_range` is searched on a log scale"),
        ({"momentum": (0.5, 1.5)}, r"`momentum_range` must lie within \[0.0, 0.999\]"),
        ({"batch_size": ()}, r"`batch_sizes` must be distinct integers"),
        ({"batch_size": (32, 32)}, r"`batch_sizes` must be distinct integers"),
    ],
)
def test_search_space_refuses_empty_ranges(kwargs, match) -> None:
    with pytest.raises(MixscaleError, match=match):
        tu.SearchSpace(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trials": 0}, r"`trials` must be an integer in \[1, 1000000\], but got trials=0"),
        ({"timeout": -1.0}, r"`timeout` must be > 0"),
        ({"sampler": "grid"}, r"unknown sampler 'grid'; allowed: 'tpe', 'random'"),
        ({"val_fraction": 1.0}, r"`val_fraction` must be in \(0, 1\)"),
        ({"study_name": " "}, r"`study_name` must not be blank"),
    ],
)
def test_tune_config_refuses_bad_values(kwargs, match) -> None:
    with pytest.raises(MixscaleError, match=match):
        tu.TuneConfig(**kwargs)


def test_validation_split_is_stratified_seeded_and_avoids_the_row() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 20])
    rest, val = tu.validation_split(labels, fraction=0.2, seed=0)
    assert np.bincount(labels[val]).tolist() == [10, 6, 4]
    assert len(np.intersect1d(rest, val)) == 0 and len(rest) + len(val) == 100
    again = tu.validation_split(labels, fraction=0.2, seed=0)[1]
    np.testing.assert_array_equal(val, again)
    subset = np.flatnonzero(labels == 2)[:18]  # a row that takes 18 of class 2's 20 images
    _, val_row = tu.validation_split(labels, fraction=0.2, seed=0, exclude=subset)
    assert len(np.intersect1d(val_row, subset)) == 0
    assert np.bincount(labels[val_row], minlength=3).tolist() == [10, 6, 2]


def test_default_storage_sits_next_to_a_sqlite_tracking_store(tmp_path, monkeypatch) -> None:
    assert tu.default_storage(f"sqlite:///{tmp_path}/mlflow.db") == \
        f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.chdir(tmp_path)
    assert tu.default_storage("http://server:5000") == f"sqlite:///{tmp_path}/optuna.db"
    assert tu.masked_url("postgresql+psycopg2://u:secret@h/db") == \
        "postgresql+psycopg2://u:***@h/db"


# --- bad input on the command line -----------------------------------------------------------

@pytest.fixture()
def fresh_dir(tmp_path, monkeypatch) -> Path:
    """An empty working directory, no tracking URI: ./mlflow.db appearing means a log."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "`trials` must be an integer in [1, 1000000], but got trials=0"),
        (["--lr-range", "0.3,0.001"], "`lr_range`: `low <= high` must hold"),
        (["--weight-decay-range", "0,0.01"], "`weight_decay_range` is searched on a log scale"),
        (["--lr-range", "fast"], "`lr_range` must be two numbers low,high"),
        (["--storage", "notaurl"], "`storage` must be a database URL"),
        (["--storage", "postgresql+psycopg2://u@127.0.0.1:1/x"],
         "cannot open the Optuna storage 'postgresql+psycopg2://u@127.0.0.1:1/x'"),
        (["--storage", "sqlite:////nonexistent-dir/x/optuna.db"],
         "cannot open the Optuna storage"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--epochs", "3", "--lr-milestones", "5"],
         "--lr-milestones '5' must be epochs in 1..3 (--epochs 3)"),
    ],
)
def test_bad_input_is_refused_before_anything_is_logged(fresh_dir, args, message) -> None:
    result = CliRunner().invoke(cli, ["tune", *args])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (fresh_dir / "mlflow.db").exists()
    assert not (fresh_dir / "mlruns").exists()


# --- a real study: pruning, nested runs, best parameters, resuming ---------------------------

@pytest.fixture(scope="module")
def study(store, tmp_path_factory):
    """One real study on digits (5 trials, 2 epochs each): its output, ids and storage."""
    experiment = f"tune-{uuid.uuid4().hex[:8]}"
    storage = f"sqlite:///{tmp_path_factory.mktemp('optuna')}/optuna.db"
    args = ["tune", "--tracking-uri", store.uri, "--experiment", experiment, "--storage",
            storage, "--study-name", "pruning", "--trials", "5", *PRUNING]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    run_id = re.search(r"tune run:\s+(\w+)", result.output).group(1)
    exp_id = store.client.get_experiment_by_name(experiment).experiment_id
    return {"output": result.output, "run_id": run_id, "storage": storage, "args": args,
            "experiment_id": exp_id, "experiment": experiment}


def test_a_study_prunes_hopeless_trials_and_logs_nested_runs(store, study) -> None:
    client = store.client
    trials = optuna.load_study(study_name="pruning", storage=study["storage"]).trials
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED", "PRUNED"], study["output"]
    assert trials[0].params["lr"] == 0.05  # the recipe's values come first
    assert all(t.params["lr"] <= 1e-5 for t in trials[1:])

    parent = client.get_run(study["run_id"])
    assert parent.data.tags[tr.KIND] == "tune" and parent.info.status == "FINISHED"
    assert parent.data.params["best_lr"] == "0.05"
    assert parent.data.params["best_batch_size"] == "32"
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(trials[0].value)
    assert parent.data.metrics["trials_pruned"] == 3
    children = client.search_runs([study["experiment_id"]],
                                  f"tags.`{tr.PARENT}` = '{study['run_id']}'")
    assert len(children) == 5
    by_number = {int(r.data.params["trial_number"]): r for r in children}
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags[tu.TRIAL_STATE] == t.state.name
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == ([1, 2] if t.state.name == "COMPLETE" else [1])
        assert {"val_loss", "train_loss"} <= set(run.data.metrics)
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
    artifacts = {a.path for a in client.list_artifacts(study["run_id"])}
    assert {"best_params.json", "trials.csv", "optimization_history.png",
            "intermediate_values.png", "param_importances.png"} <= artifacts


def test_resuming_adds_trials_and_a_changed_objective_is_refused(store, study) -> None:
    args = [a if a != "5" else "2" for a in study["args"]]  # --trials 2
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert "study pruning: 5 trial(s) so far" in result.output
    trials = optuna.load_study(study_name="pruning", storage=study["storage"]).trials
    assert len(trials) == 7
    assert sum(bool(t.user_attrs.get("mixscale.recipe")) for t in trials) == 1  # not re-queued
    assert len(_runs(store.client, study["experiment_id"], "tune")) == 2

    changed = list(args)
    changed[changed.index("--epochs") + 1] = "4"
    result = CliRunner().invoke(cli, changed)
    assert result.exit_code == 1
    assert "study 'pruning' was created with epochs=2 (now 4)" in result.output
    assert len(_runs(store.client, study["experiment_id"], "tune")) == 2  # nothing logged


def test_hparams_from_flows_into_a_row(store, study) -> None:
    client, exp = store.client, study["experiment"]
    design = _invoke(["design", "--tracking-uri", store.uri, "--experiment", exp,
                      "--subset-sizes", "40", "--rows-per-size", "1", "--val-rows-per-size",
                      "0", "--iterations", "10"])
    design_id = re.search(r"design (\w{32}):", design.output).group(1)
    row = tr.list_rows(client, design_id)[0]
    bad = CliRunner().invoke(cli, ["train-row", "--tracking-uri", store.uri, "--run-id",
                                   row.run_id, "--hparams-from", design_id])
    assert bad.exit_code == 1 and "is not a tune run" in bad.output
    result = _invoke(["train-row", "--tracking-uri", store.uri, "--run-id", row.run_id,
                      "--epochs", "1", "--lr-milestones", "", "--momentum", "0.5",
                      "--hparams-from", study["run_id"]])
    assert result.exit_code == 0, result.output
    params = client.get_run(row.run_id).data.params
    best = client.get_run(study["run_id"]).data.params
    assert params["hparams_from"] == study["run_id"]
    assert params["lr"] == best["best_lr"] and params["batch_size"] == best["best_batch_size"]
    assert float(params["weight_decay"]) == pytest.approx(float(best["best_weight_decay"]))
    assert params["momentum"] == "0.5"  # an explicit option wins over the tuned value


def test_a_study_on_one_row_trains_on_exactly_its_images(store, tmp_path) -> None:
    experiment = f"row-tune-{uuid.uuid4().hex[:8]}"
    design = _invoke(["design", "--tracking-uri", store.uri, "--experiment", experiment,
                      "--subset-sizes", "200", "--rows-per-size", "1", "--val-rows-per-size",
                      "0", "--iterations", "10"])
    design_id = re.search(r"design (\w{32}):", design.output).group(1)
    row = tr.list_rows(store.client, design_id)[0]
    result = _invoke(["tune", "--tracking-uri", store.uri, "--experiment", experiment,
                      "--run-id", row.run_id, "--trials", "1", "--epochs", "1",
                      "--batch-sizes", "128", "--pruner", "hyperband",
                      "--storage", f"sqlite:///{tmp_path}/optuna.db"])
    assert result.exit_code == 0, result.output
    run = store.client.get_run(re.search(r"tune run:\s+(\w+)", result.output).group(1))
    assert run.data.params["row_run_id"] == row.run_id
    assert run.data.params["n_train"] == "200"
    assert run.data.params["dataset"] == "digits"
    assert run.data.tags[tu.STUDY] == f"digits-smallcnn-row-{row.run_id[:8]}-e1"
    assert run.data.metrics["trials_complete"] == 1  # the importance figure is left out
    assert "left out: importances need >= 2 complete trials" in result.output


@pytest.mark.slow
def test_main_tune_trains_the_design_with_the_best_values(store, tmp_path) -> None:
    experiment = f"main-tune-{uuid.uuid4().hex[:8]}"
    result = _invoke(["main", "--tracking-uri", store.uri, "--experiment", experiment,
                      "--tune", "true", "--tune-trials", "2", "--tune-epochs", "1",
                      "--subset-sizes", "40,80", "--rows-per-size", "3",
                      "--val-rows-per-size", "1", "--iterations", "20", "--epochs", "2",
                      "--eval-every", "1", "--lr-milestones", "", "--families", "m4",
                      "--predictors", "s2", "--min-epoch", "0", "--n-starts", "1",
                      "--n-boot", "0", "--extrapolate", "false", "--select", "validation",
                      "--model-name", "mixscale-tune-e2e"])
    assert result.exit_code == 0, result.output
    client = store.client
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (tune_run,) = _runs(client, exp_id, "tune")
    (main_run,) = _runs(client, exp_id, "pipeline")
    assert tune_run.data.tags[tr.PARENT] == main_run.info.run_id
    rows = _runs(client, exp_id, "row")
    assert len(rows) == 8
    for row in rows:
        assert row.data.params["hparams_from"] == tune_run.info.run_id
        assert row.data.params["lr"] == tune_run.data.params["best_lr"]
    assert main_run.data.params["hparams_from"] == tune_run.info.run_id


# --- several processes on one PostgreSQL study -----------------------------------------------

@pytest.mark.slow
def test_two_processes_share_a_postgresql_study(postgres, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    storage = postgres.create_database(f"optuna_{tag}")
    tracking = postgres.create_database(f"mlflow_{tag}")
    MlflowClient(tracking).create_experiment("parallel")  # schema and experiment, made once
    exe = Path(sys.executable).with_name("mixscale")
    # one torch thread each: two processes share the (2-core) machine
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    procs = [subprocess.Popen(
        [str(exe), "tune", "--experiment", "parallel", "--storage", storage, "--study-name",
         "shared", "--trials", "2", "--epochs", "1", "--lr-milestones", "", "--pruner", "none",
         "--batch-sizes", "128",
         "--seed", str(seed)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for seed in (0, 1)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(trials) == 4
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    client = MlflowClient(tracking)
    exp_id = client.get_experiment_by_name("parallel").experiment_id
    parents = _runs(client, exp_id, "tune")
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert len(_runs(client, exp_id, "trial")) == 4
    best = max(t.value for t in trials)
    assert all(p.data.metrics["best_val_accuracy"] <= best for p in parents)
    assert max(p.data.metrics["trials_complete"] for p in parents) == 4  # the later one saw all


# --- the MLproject entry point ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_mlproject_tune_entry_point_passes_every_parameter() -> None:
    import yaml

    points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    tune = points["tune"]
    assert "python entrypoints/tune.py" in tune["command"]
    options = {p.name for p in tune_cmd.params}
    for param in tune["parameters"]:
        assert f"--{param.replace('_', '-')} {{{param}}}" in tune["command"], param
        assert param in options, param
    for name in ("main", "train", "train_row"):
        assert "--hparams-from {hparams_from}" in points[name]["command"], name
    assert "--tune {tune}" in points["main"]["command"]


@pytest.mark.slow
def test_mlflow_run_tune_adopts_the_project_run(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.search_experiments()  # create the store once, before the subprocess
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run([str(bin_dir / "mlflow"), "run", str(ROOT), "--env-manager", "local",
                           "--experiment-name", "mlproject-tune", "-e", "tune",
                           "-P", "trials=2", "-P", "epochs=1", "-P", "batch_sizes=128"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"tune run:\s+(\w+)", proc.stdout).group(1)
    run = client.get_run(run_id)  # the run `mlflow run` created is the study run
    assert run.data.tags[tr.KIND] == "tune" and run.info.status == "FINISHED"
    assert "best_lr" in run.data.params
    assert len(client.search_runs([run.info.experiment_id],
                                  f"tags.`{tr.PARENT}` = '{run_id}'")) == 2
