"""Team set-up: workers against a real `mlflow server` on PostgreSQL, partitions, faults, Ray.

The server fixture starts `mlflow server` (served by gunicorn) on the throwaway PostgreSQL
cluster (its own database, a local artifact folder, a free loopback port) and polls /health with
a bounded deadline.
Workers are subprocesses of the `mixscale` console script. Designs are tiny (digits, sizes 40
and 80, 4 + 2 rows per size, 3 epochs evaluated every epoch) so the file runs in minutes on two
busy cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mixscale import track as tr
from mixscale.cli import cli
from mixscale.config import DesignSpec, TrainConfig
from mixscale.data import design_dataset, eval_subset, subset_hash
from mixscale.errors import MixscaleError
from mixscale.stages import rows as wk
from mixscale.stages.design import prepare_design, run_design
from mixscale.stages.rows import train_rows
from tests.support.claimrace import race_claims
from tests.support.mlflowserver import MlflowServer

MIXSCALE = str(Path(sys.executable).parent / "mixscale")
SPEC = DesignSpec(subset_sizes=(40, 80), rows_per_size=4, val_rows_per_size=2, iterations=50,
                  seed=3)
TRAIN_ARGS = ["--epochs", "3", "--eval-every", "1", "--lr-milestones", "", "--batch-size", "8",
              "--eval-early"]  # every epoch evaluated: the checks below count the steps
CONFIG = TrainConfig(epochs=3, eval_every=1, lr_milestones=(), batch_size=8)
N_ROWS = 12


# ---------------------------------------------------------------- fast unit tests of the rules

def _row(row: int, status: str, heartbeat: float | None = None) -> tr.RowSpec:
    return tr.RowSpec(run_id=f"r{row}", design_id="d", row=row, role="train", subset_size=40,
                      seed=row, counts=np.ones(10, dtype=np.int64), status=status,
                      heartbeat=heartbeat)


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_partitions_cover_every_row_once(workers: int) -> None:
    rows = [_row(i, "SCHEDULED") for i in range(N_ROWS)]
    owned = [a.row.row for w in range(workers) for a in wk.select_rows(rows, worker=w,
                                                                       workers=workers)]
    assert sorted(owned) == list(range(N_ROWS))
    assert [a.row.row for a in wk.select_rows(rows, worker=1, workers=3)] == [1, 4, 7, 10]


def test_select_rows_rules_for_running_rows() -> None:
    now = 10_000.0
    rows = [_row(0, "FINISHED"), _row(1, "RUNNING", now - 5), _row(2, "RUNNING", now - 500),
            _row(3, "FAILED"), _row(4, "KILLED"), _row(5, "SCHEDULED")]
    plain = wk.select_rows(rows, now=now)
    assert [(a.row.row, a.takeover) for a in plain] == [(3, False), (4, False), (5, False)]
    stale = wk.select_rows(rows, stale_after=60, now=now)
    assert [(a.row.row, a.takeover) for a in stale] == [(2, True), (3, False), (4, False),
                                                         (5, False)]
    # The partition's owner restarts its RUNNING rows whatever their heartbeat.
    owner = wk.select_rows(rows, worker=1, workers=2, now=now)
    assert [(a.row.row, a.takeover) for a in owner] == [(1, True), (3, False),
                                                         (5, False)]


@pytest.mark.parametrize(
    ("worker", "workers", "environ", "expected"),
    [("2", 3, {}, 2), ("0", 0, {}, 0), ("env", 4, {"JOB_COMPLETION_INDEX": "3"}, 3),
     ("env", 4, {"SLURM_ARRAY_TASK_ID": "1"}, 1),
     ("env", 4, {"JOB_COMPLETION_INDEX": "0", "SLURM_ARRAY_TASK_ID": "2"}, 0)],
)
def test_resolve_worker(worker: str, workers: int, environ: dict, expected: int) -> None:
    assert wk.resolve_worker(worker, workers, environ) == expected


@pytest.mark.parametrize(
    ("worker", "workers", "environ", "message"),
    [("3", 3, {}, r"--worker must be in \[0, 2\] for --workers 3, but got 3"),
     ("1", 0, {}, "--worker=1 needs --workers N"),
     ("x", 2, {}, "--worker must be an integer or 'env', but got 'x'"),
     ("env", 2, {}, "--worker env needs one of JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID"),
     ("env", 2, {"SLURM_ARRAY_TASK_ID": "5"}, r"SLURM_ARRAY_TASK_ID must be in \[0, 1\]")],
)
def test_resolve_worker_refuses(worker: str, workers: int, environ: dict, message: str) -> None:
    with pytest.raises(MixscaleError, match=message):
        wk.resolve_worker(worker, workers, environ)


def test_cli_refuses_bad_worker_before_logging(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(cli, ["train", "--design-id", "x", "--worker", "2",
                                      "--workers", "2"])
    assert result.exit_code == 1
    assert "Error: --worker must be in [0, 1] for --workers 2, but got 2." in result.output
    assert not (tmp_path / "mlflow.db").exists()


def test_with_retries_backs_off_on_transient_errors_only() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("connection refused")
        return "ok"

    assert tr.with_retries(flaky, attempts=4, base_delay=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]
    with pytest.raises(MlflowException, match="bad"):
        tr.with_retries(lambda: (_ for _ in ()).throw(
            MlflowException("bad", error_code=INVALID_PARAMETER_VALUE)), sleep=sleeps.append)
    assert sleeps == [0.5, 1.0]  # a permanent error is not repeated


def test_with_retries_gives_up_in_one_line_after_its_backoff() -> None:
    sleeps = []

    def down() -> None:
        raise ConnectionError("connection refused\n  (errno 111)")

    with pytest.raises(tr.TrackingUnavailable, match=(
            r"^logging epoch 3 failed 3 times in \d+ s, the tracking store did not answer "
            r"\(ConnectionError: connection refused \(errno 111\)\); rerun once it does")
            ) as info:
        tr.with_retries(down, what="logging epoch 3", attempts=3, base_delay=0.5,
                        sleep=sleeps.append)
    assert sleeps == [0.5, 1.0] and "\n" not in str(info.value)
    assert isinstance(info.value, MixscaleError)  # the CLI prints it as one Error line
    assert isinstance(info.value.__cause__, ConnectionError)


def test_takeover_of_a_dead_row_and_late_end_of_the_zombie(store) -> None:
    client = store.client
    design = run_design(prepare_design(SPEC), client, store.new_experiment(),
                        echo=lambda _: None)
    row = tr.list_rows(client, design.design_id)[0]
    stale_id = tr.claim_row(client, row)
    tr.log_eval(client, stale_id, 1, {"test_accuracy": 0.3})
    running = tr.list_rows(client, design.design_id)[0]
    assert running.status == "RUNNING" and running.heartbeat is not None
    with pytest.raises(MixscaleError, match="is RUNNING, probably in another process"):
        tr.claim_row(client, running)
    new_id = tr.claim_row(client, running, takeover=True)
    old = client.get_run(stale_id)
    assert old.info.status == "KILLED" and old.data.tags[tr.SUPERSEDED_BY] == new_id
    assert client.get_run(new_id).data.tags[tr.RESTART_OF] == stale_id
    assert client.get_metric_history(new_id, "test_accuracy") == []
    # The presumed-dead worker was alive after all: its end is recorded KILLED, not FINISHED.
    assert tr.end_row(client, stale_id) is False
    assert client.get_run(stale_id).info.status == "KILLED"
    assert tr.end_row(client, new_id) is True
    rows = tr.list_rows(client, design.design_id)
    assert len(rows) == N_ROWS and rows[0].run_id == new_id and rows[0].status == "FINISHED"


def test_list_rows_ignores_a_half_made_restart(store) -> None:
    """A worker that died between creating the new run and tagging the old one."""
    client = store.client
    design = run_design(prepare_design(SPEC), client, store.new_experiment(),
                        echo=lambda _: None)
    row = tr.list_rows(client, design.design_id)[2]
    run = client.get_run(row.run_id)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    new = client.create_run(run.info.experiment_id, run_name=run.info.run_name,
                            tags={**tags, tr.PARENT: design.design_id, tr.RESTART_OF: row.run_id})
    tr.log_params(client, new.info.run_id, {k: v for k, v in run.data.params.items()})
    rows = tr.list_rows(client, design.design_id)
    assert len(rows) == N_ROWS and rows[2].run_id == new.info.run_id


def test_a_row_logs_where_its_time_went_and_train_prints_the_shares(store) -> None:
    client = store.client
    design = run_design(prepare_design(SPEC), client, store.new_experiment(),
                        echo=lambda _: None)
    row = tr.list_rows(client, design.design_id)[0]
    lines: list[str] = []
    t0 = time.perf_counter()
    assert train_rows(client, design.design_id, CONFIG, run_ids=[row.run_id],
                      echo=lines.append) == 1
    wall = time.perf_counter() - t0
    m = client.get_run(row.run_id).data.metrics
    times = [m[f"time_{p}_s"] for p in ("data", "train", "eval", "tracking")]
    assert min(times) > 0  # even digits' data and SQLite's tracking take some time
    assert sum(times) <= wall + 0.05
    # 40 images are 5 batches of 8: each epoch draws 30 (min_steps_per_epoch) from 6 passes
    params = client.get_run(row.run_id).data.params
    assert (params["steps_per_epoch"], params["train_steps"]) == ("30", "90")
    assert m["train_images_per_s"] * m["time_train_s"] == pytest.approx(
        30 * 8 * CONFIG.epochs, rel=1e-6)
    n_test = len(design_dataset(client.get_run(design.design_id).data.params).test_labels)
    assert m["eval_images_per_s"] * m["time_eval_s"] == pytest.approx(
        n_test * len(CONFIG.eval_epochs()), rel=1e-6)
    shares = re.fullmatch(r"time: data (\d+)%, train (\d+)%, eval (\d+)%, tracking (\d+)% "
                          r"of \d+ s over 1 row\(s\)", lines[-1])
    assert shares is not None, lines[-1]
    assert abs(sum(int(v) for v in shares.groups()) - 100) <= 1


def _eval_input(client: MlflowClient, run_id: str):
    (di,) = [di for di in client.get_run(run_id).inputs.dataset_inputs
             if {t.key: t.value for t in di.tags}["mlflow.data.context"] == "evaluation"]
    return di.dataset


def test_eval_images_scores_a_fixed_stratified_subset_and_logs_it(store) -> None:
    client = store.client
    design = run_design(prepare_design(SPEC), client, store.new_experiment(),
                        echo=lambda _: None)
    ds = design_dataset(client.get_run(design.design_id).data.params)
    first, second, third = tr.list_rows(client, design.design_id)[:3]
    config = dataclasses.replace(CONFIG, eval_images=50)
    with pytest.raises(MixscaleError, match=r"--eval-images must be 0 \(the default\) "
                       r"or in \[10, 450\].*eval_images=451"):
        train_rows(client, design.design_id, dataclasses.replace(config, eval_images=451),
                   run_ids=[first.run_id], echo=lambda _: None)
    assert client.get_run(first.run_id).data.params.get("eval_images") is None  # nothing logged
    assert client.get_run(first.run_id).info.status == "SCHEDULED"
    for row in (first, second):
        assert train_rows(client, design.design_id, config, run_ids=[row.run_id],
                          echo=lambda _: None) == 1
    train_rows(client, design.design_id, CONFIG, run_ids=[third.run_id], echo=lambda _: None)

    idx = eval_subset(ds.test_labels, 50, n_classes=ds.n_classes)
    digests = set()
    for row in (first, second):
        run = client.get_run(row.run_id)
        assert run.data.params["eval_images"] == "50"
        m = run.data.metrics
        # epochs 1 and 2 score the 50; epoch 3 the whole split, whose pass also gives the
        # accuracy on the 50 (the row's gain over its last third compares the same images)
        assert m["eval_images_per_s"] * m["time_eval_s"] == pytest.approx(50 * 2 + 450,
                                                                          rel=1e-6)
        assert run.data.params["eval_final_images"] == "450"
        test = _eval_input(client, row.run_id)
        assert test.name == "digits-test-subset" and test.digest == subset_hash(idx)
        profile = json.loads(test.profile)
        assert profile["num_rows"] == 50
        assert list(profile["counts"].values()) == np.bincount(
            ds.test_labels[idx], minlength=10).tolist() == [5] * 10
        digests.add(test.digest)
    assert len(digests) == 1  # every row scores the same images
    full = client.get_run(third.run_id)  # digits' 450 test images are fewer than 2,000
    assert full.data.params["eval_images"] == str(len(ds.test_labels)) == "450"
    assert _eval_input(client, third.run_id).name == "digits-test"


def test_epochs_below_the_fits_min_epoch_are_not_evaluated_unless_asked(store) -> None:
    client = store.client
    design = run_design(prepare_design(SPEC), client, store.new_experiment(),
                        echo=lambda _: None)
    first, second = tr.list_rows(client, design.design_id)[:2]
    args = ["train", "--design-id", design.design_id, "--tracking-uri", store.uri,
            "--epochs", "12", "--eval-every", "3", "--lr-milestones", "", "--batch-size", "8"]
    env = {"MLFLOW_TRACKING_URI": store.uri}
    out = CliRunner().invoke(cli, [*args, "--worker", "0", "--workers", "12"],
                             env=env)  # row 0 only
    assert out.exit_code == 0, out.output
    steps = [m.step for m in client.get_metric_history(first.run_id, "test_accuracy")]
    assert steps == [12]  # 3, 6 and 9 lie below the fit's default min_epoch, 10
    note = ("evaluating epochs 12 of 12: epochs below 10 (the fit's --min-epoch, which drops "
            "them) are not evaluated; --eval-early evaluates them too")
    assert out.output.count(note) == 1
    assert client.get_run(first.run_id).data.params["eval_from"] == "10"
    out = CliRunner().invoke(cli, [*args, "--eval-early", "--worker", "1", "--workers", "12"],
                             env=env)  # row 1, asked for every evaluation
    assert out.exit_code == 0, out.output
    steps = [m.step for m in client.get_metric_history(second.run_id, "test_accuracy")]
    assert steps == [3, 6, 9, 12]
    assert "evaluating epochs" not in out.output


# ------------------------------------------------------------ a real server on PostgreSQL

@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    # Served by gunicorn, as the README recommends (test_checkpoint's server keeps uvicorn).
    srv = MlflowServer(postgres.create_database(f"mlflow_{uuid.uuid4().hex[:8]}"),
                       root / "artifacts", root / "server.log", gunicorn=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server) -> MlflowClient:
    return MlflowClient(server.url)


def _design(client: MlflowClient, spec: DesignSpec = SPEC) -> str:
    exp = client.create_experiment(f"team-{uuid.uuid4().hex[:8]}")
    return run_design(prepare_design(spec), client, exp, echo=lambda _: None).design_id


def _worker(server: MlflowServer, design_id: str, *args: str, log: Path,
            env: dict[str, str] | None = None) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT"))}
    env = {**base, "MLFLOW_TRACKING_URI": server.url, "MIXSCALE_TRACKING_BACKOFF": "1",
           **(env or {})}
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([MIXSCALE, "train", "--design-id", design_id, "--device", "cpu",
                             *TRAIN_ARGS, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, log: Path, timeout: float = 240) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"worker did not finish in {timeout} s:\n{log.read_text()[-3000:]}") from None


def _wait_running_with_metrics(client: MlflowClient, design_id: str, rows: set[int],
                               proc: subprocess.Popen, log: Path,
                               timeout: float = 300) -> tr.RowSpec:
    """A row of ``rows`` that is RUNNING and has logged at least one evaluation, trained by
    ``proc`` (whose log the failure shows: a worker that died or crawled says why)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        for r in tr.list_rows(client, design_id):
            if r.row in rows and r.status == "RUNNING" and client.get_metric_history(
                    r.run_id, "test_accuracy"):
                return r
        time.sleep(0.3)
    state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
    raise AssertionError(f"no row of {sorted(rows)} was RUNNING with metrics in {timeout} s "
                         f"(the worker {state}):\n{log.read_text()[-3000:]}")


def _check_complete(client: MlflowClient, design_id: str, epochs: int = 3,
                    n_rows: int = N_ROWS) -> None:
    """Exactly one FINISHED run per row, each with the steps 1..epochs once."""
    exp = client.get_run(design_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`{tr.DESIGN}` = '{design_id}' and "
                                     f"tags.`{tr.KIND}` = 'row'", max_results=1000)
    finished = pd.Series([int(r.data.params["row"]) for r in runs
                          if r.info.status == "FINISHED"]).value_counts()
    assert sorted(finished.index) == list(range(n_rows)), finished
    assert (finished == 1).all(), finished
    rows = tr.list_rows(client, design_id)
    assert [r.status for r in rows] == ["FINISHED"] * n_rows
    for r in rows:
        steps = [m.step for m in client.get_metric_history(r.run_id, "test_accuracy")]
        assert steps == list(range(1, epochs + 1)), (r.row, steps)


def _values(table: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in table.columns if c not in ("run_id", "design_id")]
    return table[keep].sort_values(["subset_size", "role", "total_n", *[
        c for c in keep if c.startswith("n_")], "epoch"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def single_worker_table(client) -> pd.DataFrame:
    """The fit table one in-process worker produces for the same design and seeds."""
    design_id = _design(client)
    assert train_rows(client, design_id, CONFIG, echo=lambda _: None) == N_ROWS
    return _values(tr.assemble_table(client, [design_id]))


def _assert_same_table(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    table = _values(table)
    pd.testing.assert_frame_equal(table.drop(columns="accuracy"),
                                  reference.drop(columns="accuracy"))
    # Training is seeded per row: with the same torch thread count on one machine the
    # accuracies agree exactly (see the README's Team set-up).
    np.testing.assert_allclose(table["accuracy"], reference["accuracy"], rtol=0, atol=1e-12)


@pytest.mark.slow
def test_three_workers_one_killed_mid_row(server, client, tmp_path,
                                          single_worker_table) -> None:
    design_id = _design(client)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    # Worker 1 trains long rows so that it can be killed while a row is RUNNING.
    doomed_log = tmp_path / "doomed.log"
    doomed = _worker(server, design_id, "--worker", "1", "--workers", "3", "--epochs", "400",
                     log=doomed_log)
    others = [_worker(server, design_id, "--worker", str(i), "--workers", "3", log=logs[i])
              for i in (0, 2)]
    try:
        victim = _wait_running_with_metrics(client, design_id, {1, 4, 7, 10}, doomed, doomed_log)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert client.get_run(victim.run_id).info.status == "RUNNING"  # left behind by the kill
    for proc, log in zip(others, (logs[0], logs[2]), strict=True):
        assert _wait(proc, log) == 0, log.read_text()[-3000:]
    # The rerun of partition 1, the only owner of the stale row, restarts it.
    rerun = _worker(server, design_id, "--worker", "1", "--workers", "3", log=logs[1])
    assert _wait(rerun, logs[1]) == 0, logs[1].read_text()[-3000:]
    assert "worker 1 of 3: 4 row(s) to train" in logs[1].read_text()
    _check_complete(client, design_id)
    stale = client.get_run(victim.run_id)
    assert stale.info.status == "KILLED" and tr.SUPERSEDED_BY in stale.data.tags
    _assert_same_table(tr.assemble_table(client, [design_id]), single_worker_table)


def test_racing_claims_through_the_server_have_exactly_one_winner(server, client) -> None:
    """Eight workers' clients claim one row through the server (PostgreSQL) at once."""
    design_id = _design(client)
    row = tr.list_rows(client, design_id)[0]
    won, lost, errors = race_claims(server.url, row)
    assert errors == [] and len(won) == 1 and len(lost) == 7, (won, lost, errors)
    run = client.get_run(won[0])
    assert run.info.status == "RUNNING"
    assert list(tr.claim_links(client, run)) == ["first"]  # on the design's ledger
    assert tr.claim_links(client, run)["first"] == run.data.tags[tr.CLAIM]
    assert not [k for k in run.data.params if "claim" in k]  # not on the row


@pytest.mark.slow
def test_unpartitioned_workers_pull_rows_without_training_one_twice(
        server, client, tmp_path, single_worker_table) -> None:
    """Three plain `mixscale train --design-id` started together: claims are atomic, so the
    workers share the rows between them, and none is trained twice or restarted."""
    design_id = _design(client)
    logs = [tmp_path / f"puller{i}.log" for i in range(3)]
    procs = [_worker(server, design_id, log=log) for log in logs]
    for proc, log in zip(procs, logs, strict=True):
        assert _wait(proc, log) == 0, log.read_text()[-3000:]
    _check_complete(client, design_id)
    exp = client.get_run(design_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`{tr.DESIGN}` = '{design_id}' and "
                                     f"tags.`{tr.KIND}` = 'row'", max_results=1000)
    assert len(runs) == N_ROWS  # no row was restarted in a second run
    assert all(len(tr.claim_links(client, r)) == 1 for r in runs)
    texts = [log.read_text() for log in logs]
    trained = [len(re.findall(r"^\[\d+/\d+\] row ", t, re.M)) for t in texts]
    skipped = [t.count("skipped: row ") for t in texts]
    assert sum(trained) == N_ROWS, (trained, texts)
    # Every row a worker listed it either trained or skipped as taken (the progress total
    # drops by one per skip, so the first row line's total plus the skips before it is the
    # list); a worker that starts after some rows FINISHED lists fewer, so at most two skips
    # per row.
    for t, n_trained, n_skipped in zip(texts, trained, skipped, strict=True):
        first = re.search(r"^\[\d+/(\d+)\] row ", t, re.M)
        if first:
            listed = int(first.group(1)) + t[:first.start()].count("skipped: row ")
            assert n_trained + n_skipped == listed, t[-1500:]
    assert sum(skipped) <= 2 * N_ROWS, (skipped, texts)
    for t, n in zip(texts, skipped, strict=True):
        assert (f"{n} row(s) were taken by other workers" in t) == (n > 0), t[-500:]
    _assert_same_table(tr.assemble_table(client, [design_id]), single_worker_table)


# Workers facing an outage: MLflow's own HTTP retries off, so every failed request reaches
# `tracking.with_retries` at once (the retry these tests are about), with a short backoff.
RETRY_LINE = re.compile(r"failed \(.*\); retrying in [\d.]+ s \(2/\d+\)")
SMALL = DesignSpec(subset_sizes=(40,), rows_per_size=4, val_rows_per_size=2, iterations=50,
                   seed=3)


def _outage_env(tries: int) -> dict[str, str]:
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MIXSCALE_TRACKING_RETRIES": str(tries),
            "MIXSCALE_TRACKING_BACKOFF": "0.5"}


def _row_runs(client: MlflowClient, design_id: str) -> list:
    exp = client.get_run(design_id).info.experiment_id
    return client.search_runs([exp], f"tags.`{tr.DESIGN}` = '{design_id}' and "
                                     f"tags.`{tr.KIND}` = 'row'", max_results=1000)


@pytest.mark.slow
def test_server_restarted_mid_design(server, client, tmp_path) -> None:
    """The server goes down once the worker has logged an evaluation and comes back once the
    worker has seen a request fail: the retries carry the worker over, with no restart."""
    design_id = _design(client, SMALL)
    log = tmp_path / "worker.log"
    # 8 tries: 0.5 + 1 + ... + 32 = 63.5 s of backoff per call, enough for a restart.
    proc = _worker(server, design_id, "--epochs", "6", log=log, env=_outage_env(8))
    try:
        _wait_running_with_metrics(client, design_id, set(range(6)), proc, log)
        server.stop()
        end = time.monotonic() + 60  # until the worker has met the outage (or has ended)
        while (not RETRY_LINE.search(log.read_text()) and proc.poll() is None
               and time.monotonic() < end):
            time.sleep(0.1)
        server.start()
        code = _wait(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        if not server.running:
            server.start()
    text = log.read_text()
    assert RETRY_LINE.search(text), text[-3000:]  # the outage was met, and ridden over
    assert code == 0, text[-3000:]
    _check_complete(client, design_id, epochs=6, n_rows=6)
    runs = _row_runs(client, design_id)
    assert len(runs) == 6  # one run per row: none was restarted
    assert not [r.info.run_id for r in runs
                if tr.SUPERSEDED_BY in r.data.tags or tr.RESTART_OF in r.data.tags]


@pytest.mark.slow
def test_worker_gives_up_on_a_server_gone_for_good(server, client, tmp_path) -> None:
    """3 tries = 0.5 + 1 s of backoff: the worker ends with one Error line, exit status 1."""
    design_id = _design(client, SMALL)
    log = tmp_path / "worker.log"
    # Long rows: the server goes while a row trains, so the call that gives up logs an epoch.
    proc = _worker(server, design_id, "--epochs", "400", log=log, env=_outage_env(3))
    try:
        row = _wait_running_with_metrics(client, design_id, set(range(6)), proc, log)
        server.stop()
        gone = time.monotonic()
        code = _wait(proc, log, timeout=120)
        waited = time.monotonic() - gone
    finally:
        if proc.poll() is None:
            proc.kill()
        server.start()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert re.match(r"Error: logging epoch \d+ of run \w+ failed 3 times in \d+ s, the tracking "
                    rf"store {re.escape(server.url)} did not answer \(", last), text[-3000:]
    assert "$MIXSCALE_TRACKING_RETRIES" in last
    # The bound: 1.5 s of backoff, plus training up to the next request and the exit.
    assert waited < 30, (waited, text[-3000:])
    assert client.get_run(row.run_id).info.status == "RUNNING"  # for a restart, as documented


@pytest.mark.slow
def test_ray_executor(server, client, tmp_path, single_worker_table) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixscale[ray]')")
    design_id = _design(client)
    log = tmp_path / "ray.log"
    # Two CPUs per task = two torch threads, as in the reference worker: with another thread
    # count, float sums run in another order and the seeded training takes another path.
    proc = _worker(server, design_id, "--executor", "ray", "--ray-cpus", "2", log=log)
    assert _wait(proc, log, timeout=300) == 0, log.read_text()[-3000:]
    assert "ray: 12 row(s), 1 at once, 2 CPU per task" in log.read_text()
    _check_complete(client, design_id)
    _assert_same_table(tr.assemble_table(client, [design_id]), single_worker_table)


@pytest.mark.slow
def test_max_parallel_local_processes_then_rerun_restarts_killed_rows(tmp_path) -> None:
    """`train --max-parallel 2` on a SQLite store: two local processes, one partition each;
    a run killed mid-row is completed by rerunning the same command."""
    from mixscale.stages.design import prepare_design, run_design

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("max-parallel")
    spec = DesignSpec(subset_sizes=(40, 80), rows_per_size=2, val_rows_per_size=1,
                      iterations=50, seed=3)
    design_id = run_design(prepare_design(spec), client, experiment_id,
                           echo=lambda _: None).design_id
    exe = str(Path(sys.executable).with_name("mixscale"))
    args = [exe, "train", "--design-id", design_id, "--tracking-uri", uri, "--max-parallel",
            "2", "--eval-every", "1", "--lr-milestones", "", "--eval-early"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([*args, "--epochs", "300"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until a row is RUNNING with some metrics
        running = [r for r in tr.list_rows(client, design_id) if r.status == "RUNNING"]
        if running and client.get_metric_history(running[0].run_id, "test_accuracy"):
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("no row started in 120 s")
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both worker processes
    proc.wait(timeout=30)
    done = subprocess.run([*args, "--epochs", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    rows = tr.list_rows(client, design_id)
    assert len(rows) == 6 and all(r.status == "FINISHED" for r in rows)
    for r in rows:
        steps = [m.step for m in client.get_metric_history(r.run_id, "test_accuracy")]
        assert steps == [1, 2]
    finished = client.search_runs([experiment_id],
                                  f"tags.`{tr.KIND}` = 'row' and attributes.status = 'FINISHED'")
    assert len(finished) == 6  # exactly one FINISHED run per row
