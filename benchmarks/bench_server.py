"""How the way ``mlflow server`` is started changes what mixscale's workers and ``fit`` wait for.

Starts a local ``mlflow server`` (SQLite backend, loopback) three ways, one after another, and
measures the same work against each, side by side in one run:

* one request (``get_run`` of a row run), median of 50;
* a row's tracking life cycle as a worker does it: ``claim_row``, ``--evals`` evaluations of
  11 metrics each (``log_eval``), ``end_row``;
* assembling the fit table of those rows with per-class histories (``fit``'s 16 threads).

The three servers: MLflow's default (uvicorn, ``--workers 4``), uvicorn ``--workers 1``, and
gunicorn ``--workers 4`` (``--gunicorn-opts``). Uvicorn's multi-worker mode binds its listening
socket itself with ``proto`` 0, so asyncio never sets ``TCP_NODELAY`` on the connections it
accepts: every request on a kept-alive connection after the first waits for the client's
delayed ACK, about 40 ms on Linux (Kludex/uvicorn#3149). One uvicorn worker, or gunicorn,
does not have this.

Usage: ``python benchmarks/bench_server.py [--rows 12] [--evals 10]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _server import start_server, stop_server
from mlflow import MlflowClient

from mixscale import track as tr
from mixscale.config import DesignSpec
from mixscale.stages.design import prepare_design, run_design

SERVERS = (("MLflow default: uvicorn, 4 workers", 4, False),
           ("uvicorn, 1 worker", 1, False),
           ("gunicorn, 4 workers", 4, True))


def _measure(url: str, rows: int, evals: int) -> dict[str, float]:
    """Seconds per request, per row life cycle and for the table, against one server."""
    client = MlflowClient(url)
    exp = client.create_experiment("bench-server")
    per_size = max(1, rows // 2)
    spec = DesignSpec(subset_sizes=(100, 200), rows_per_size=per_size, val_rows_per_size=0,
                      iterations=20, seed=0)
    design_id = run_design(prepare_design(spec), client, exp, echo=lambda _: None).design_id
    listed = tr.list_rows(client, design_id)
    keys = tr.design_class_keys(client, design_id)
    client.get_run(listed[0].run_id)  # warm the connection and the server's worker
    single = []
    for _ in range(50):
        t0 = time.perf_counter()
        client.get_run(listed[0].run_id)
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for row in listed:
        run_id = tr.claim_row(client, row)
        for epoch in range(1, evals + 1):
            metrics = {"test_accuracy": epoch / (evals + 1),
                       **{f"test_accuracy_{k}": epoch / (evals + 2) for k in keys}}
            tr.log_eval(client, run_id, epoch, metrics)
        tr.end_row(client, run_id)
    lifecycle = (time.perf_counter() - t0) / len(listed)
    t0 = time.perf_counter()
    table = tr.assemble_table(client, [design_id], class_metrics=True)
    assemble = time.perf_counter() - t0
    assert len(table) == len(listed) * evals, len(table)
    return {"request": statistics.median(single), "row": lifecycle, "table": assemble,
            "rows": len(listed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=12, help="design rows (even)")
    parser.add_argument("--evals", type=int, default=10, help="evaluations per row")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, workers, gunicorn) in enumerate(SERVERS):
            proc, url = start_server(Path(tmp) / f"server{i}", workers, gunicorn=gunicorn)
            try:
                results[name] = _measure(url, args.rows, args.evals)
            finally:
                stop_server(proc)
    base = results[SERVERS[0][0]]
    n = int(base["rows"])
    print(f"{n} rows x {args.evals} evaluations (11 metrics each); SQLite backend, loopback\n")
    print(f"{'server':<36} {'one request':>12} {'row life cycle':>15} "
          f"{'fit table':>10}   speed-up vs default (request / row / table)")
    for name, r in results.items():
        print(f"{name:<36} {r['request'] * 1e3:9.1f} ms {r['row'] * 1e3:12.0f} ms "
              f"{r['table']:8.2f} s   {base['request'] / r['request']:5.1f}x / "
              f"{base['row'] / r['row']:4.1f}x / {base['table'] / r['table']:4.1f}x")


if __name__ == "__main__":
    main()
