"""Team set-up throughput: rows per hour with 1 and 2 workers against a PostgreSQL-backed server.

Starts its own throwaway PostgreSQL cluster (tests/postgres.py: initdb in a temp dir, a free
loopback port) and `mlflow server` on it (tests/mlflowserver.py), then for each worker count
creates a fresh design (digits; the same spec and seed every time) and runs that many
`mixscale train --worker I --workers N` processes at once, as a team would on N machines.
It prints, side by side:

- rows per hour, counting from the launch of the workers to the last one's exit (process start
  and data loading included), and the mean time of a row's training loop (``train_seconds``);
- the tracking time per evaluation: one ``tracking.log_eval`` request (14 metrics and the
  heartbeat) against the server, against a direct SQLite store for comparison, and the share of
  a row's time it takes.

Each worker gets ``cores // workers`` torch threads (``OMP_NUM_THREADS``), as if the cores were
split between machines; on one machine the speed-up then shows how much of a row waits on the
tracking server, process start and data loading rather than computing.

Run with ``python benchmarks/bench_scale.py`` (``--quick``: 12 rows of 6 epochs, about two
minutes on 2 busy CPU cores). Needs the PostgreSQL server binaries (initdb, pg_ctl).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mixscale import track as tr  # noqa: E402
from mixscale.config import DesignSpec  # noqa: E402
from mixscale.stages.design import prepare_design, run_design  # noqa: E402
from tests.support.mlflowserver import MlflowServer  # noqa: E402
from tests.support.postgres import start_cluster  # noqa: E402

MIXSCALE = str(Path(sys.executable).parent / "mixscale")


def _design(client: MlflowClient, spec: DesignSpec) -> str:
    exp = client.create_experiment(f"bench-scale-{uuid.uuid4().hex[:8]}")
    return run_design(prepare_design(spec), client, exp, echo=lambda _: None).design_id


def _train(url: str, design_id: str, workers: int, train_args: list[str], log_dir: Path
           ) -> float:
    """Run ``workers`` partition workers at once; return the wall seconds until all exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_RUN_ID")}
    env["MLFLOW_TRACKING_URI"] = url
    # One machine stands in for N: each worker gets its share of the cores as torch threads.
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    t0 = time.perf_counter()
    procs = []
    for i in range(workers):
        log = open(log_dir / f"w{workers}-{i}.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(
            [MIXSCALE, "train", "--design-id", design_id, "--device", "cpu",
             "--worker", str(i), "--workers", str(workers), *train_args],
            env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        code = proc.wait(timeout=3600)
        log.close()
        if code != 0:
            raise SystemExit(f"worker failed ({code}): {Path(log.name).read_text()[-2000:]}")
    return time.perf_counter() - t0


def _row_seconds(client: MlflowClient, design_id: str) -> float:
    """Mean seconds of a row's training loop (its ``train_seconds``: evaluations and their
    tracking requests included, process start and data loading not)."""
    rows = tr.list_rows(client, design_id)
    assert all(r.status == "FINISHED" for r in rows)
    return statistics.mean(client.get_run(r.run_id).data.metrics["train_seconds"]
                           for r in rows)


def _eval_ms(client: MlflowClient, experiment_id: str, n: int) -> float:
    """Median milliseconds of one ``log_eval`` (14 metrics + heartbeat) on a fresh run."""
    run_id = client.create_run(experiment_id).info.run_id
    metrics = {"test_accuracy": 0.5, "test_loss": 1.0, "train_loss": 1.0,
               "train_accuracy": 0.5, **{f"test_accuracy_{k}": 0.5 for k in range(10)}}
    times = []
    for epoch in range(1, n + 1):
        t0 = time.perf_counter()
        tr.log_eval(client, run_id, epoch, metrics)
        times.append(time.perf_counter() - t0)
    client.set_terminated(run_id)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 rows of 6 epochs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--evals", type=int, default=50, help="log_eval calls to time")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    epochs = args.epochs or (6 if args.quick else 20)
    spec = (DesignSpec(subset_sizes=(40, 80), rows_per_size=4, val_rows_per_size=2,
                       iterations=50, seed=5) if args.quick else
            DesignSpec(subset_sizes=(60, 120, 240), rows_per_size=4, val_rows_per_size=2,
                       iterations=200, seed=5))
    train_args = ["--epochs", str(epochs), "--eval-every", "1", "--lr-milestones", "",
                  "--batch-size", "8"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    cluster = start_cluster()
    server = MlflowServer(cluster.create_database("mlflow_bench"), tmp / "artifacts",
                          tmp / "server.log")
    try:
        t0 = time.perf_counter()
        server.start()
        print(f"machine: {os.cpu_count()} CPU cores; PostgreSQL on port {cluster.port}, "
              f"mlflow server {server.url} (up in {time.perf_counter() - t0:.1f} s)")
        client = MlflowClient(server.url)
        n_rows = len(spec.subset_sizes) * (spec.rows_per_size + spec.val_rows_per_size)
        print(f"design: digits, sizes {','.join(map(str, spec.subset_sizes))}, {n_rows} rows, "
              f"{epochs} epochs, evaluated every epoch\n")
        print(f"{'workers':>7} {'threads':>7} {'wall s':>8} {'rows/h':>8} {'s per row':>10} "
              f"{'speed-up':>9}")
        base = None
        mean_row = 0.0
        for workers in (1, 2):
            design_id = _design(client, spec)
            wall = _train(server.url, design_id, workers, train_args, tmp)
            row_s = _row_seconds(client, design_id)
            mean_row = mean_row or row_s  # the 1-worker row time, for the share below
            rate = 3600 * n_rows / wall
            base = base or rate
            threads = max(1, (os.cpu_count() or 1) // workers)
            print(f"{workers:>7} {threads:>7} {wall:>8.1f} {rate:>8.0f} {row_s:>10.2f} "
                  f"{rate / base:>8.2f}x")
        exp = client.create_experiment(f"bench-eval-{uuid.uuid4().hex[:8]}")
        server_ms = _eval_ms(client, exp, args.evals)
        sqlite = MlflowClient(f"sqlite:///{tmp}/local.db")
        local_ms = _eval_ms(sqlite, sqlite.create_experiment("bench"), args.evals)
        print(f"\ntracking per evaluation (log_eval: 14 metrics + heartbeat, one request), "
              f"median of {args.evals}:")
        print(f"  mlflow server on PostgreSQL: {server_ms:6.1f} ms")
        print(f"  SQLite file, no server:      {local_ms:6.1f} ms  (server / SQLite = "
              f"{server_ms / local_ms:.2f}x)")
        print(f"  share of a row: {epochs} evaluations x {server_ms:.1f} ms = "
              f"{epochs * server_ms / 1000:.2f} s of {mean_row:.2f} s "
              f"({100 * epochs * server_ms / 1000 / mean_row:.0f} %)")
    finally:
        server.stop()
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
