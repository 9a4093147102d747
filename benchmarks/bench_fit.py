"""Fit-stage benchmark at the paper's scale: table assembly from a real server, then fitting.

Starts a local ``mlflow server`` (SQLite backend, loopback), logs a synthetic design of
450 row runs x 40 evaluations (10 classes, subset sizes 5,000..45,000, cap 5,000 per class, a
known per-class power law plus noise), then measures side by side in one run:

* assembling the fit table one request at a time (``max_workers=1``) against the concurrent
  assembly ``fit`` uses (``max_workers=16``), checking both give the same table;
* fitting every law family x predictor on the assembled table.

Usage: ``python benchmarks/bench_fit.py [--runs 450] [--evals 40] [--workers 16] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from _server import start_server, stop_server
from mlflow import MlflowClient
from mlflow.entities import Metric

from mixscale import track as tr
from mixscale.design import FeasibleSampler
from mixscale.fit import fit_all
from mixscale.fit.laws import FAMILIES

K = 10
CAP = 5000


def _synthetic_design(n_runs: int, rng: np.random.Generator) -> pd.DataFrame:
    sizes = np.arange(5000, 45001, 5000)
    per_size = int(np.ceil(n_runs / len(sizes)))
    parts = []
    for size in sizes:
        sampler = FeasibleSampler(int(size), np.ones(K, dtype=int), np.full(K, CAP))
        part = pd.DataFrame(sampler.sample(per_size, rng), columns=[f"n_{k}" for k in range(K)])
        part.insert(0, "subset_size", int(size))
        part.insert(0, "role", np.where(np.arange(per_size) < per_size * 2 // 3, "train",
                                        "validation"))
        parts.append(part)
    table = pd.concat(parts, ignore_index=True).head(n_runs)
    table.insert(0, "row", np.arange(len(table)))
    table.insert(3, "seed", table["row"])
    return table


def _accuracy(counts: np.ndarray, epochs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    weights = np.linspace(0.6, 1.4, K) / K
    z = counts @ weights / CAP * 1.5 + 2.0 * epochs / epochs.max() - 0.8 * (
        epochs / epochs.max()) ** 2
    return np.clip(-0.05 + 0.4 * np.maximum(z, 1e-9) ** 0.55 + rng.normal(0, 0.01, len(z)),
                   0, 1)


def _log_runs(client: MlflowClient, experiment_id: str, table: pd.DataFrame, evals: int,
              rng: np.random.Generator) -> str:
    design_id = tr.start_stage_run(client, experiment_id, kind="design", name="bench-design")
    tr.log_params(client, design_id, {"dataset": "synthetic",
                                      "class_keys": ",".join(map(str, range(K)))})
    client.set_tag(design_id, tr.DESIGN, design_id)
    cols = [f"n_{k}" for k in range(K)]
    row_ids = tr.create_design_rows(client, design_id, table, count_columns=cols,
                                    dataset="synthetic")
    epochs = np.arange(1, evals + 1) * 5
    noise = [np.random.default_rng(s) for s in rng.integers(0, 2**31, len(row_ids))]

    def log_one(i: int) -> None:
        acc = _accuracy(np.repeat(table[cols].to_numpy()[i:i + 1], evals, 0), epochs, noise[i])
        ts = int(time.time() * 1000)
        client.log_batch(row_ids[i], metrics=[Metric("test_accuracy", float(a), ts, int(e))
                                              for e, a in zip(epochs, acc, strict=True)])
        client.set_terminated(row_ids[i], "FINISHED")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(log_one, range(len(row_ids))))
    tr.end_run(client, design_id)
    return design_id


def main() -> None:
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=450)
    parser.add_argument("--evals", type=int, default=40)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="90 runs, power law only")
    args = parser.parse_args()
    runs = 90 if args.quick else args.runs
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            client = MlflowClient(url)
            experiment_id = client.create_experiment("bench-fit")
            t0 = time.perf_counter()
            design_id = _log_runs(client, experiment_id, _synthetic_design(runs, rng),
                                  args.evals, rng)
            print(f"server {url}: logged {runs} runs x {args.evals} evaluations in "
                  f"{time.perf_counter() - t0:.1f} s")
            timings = {}
            tables = {}
            for workers in (1, args.workers):
                t0 = time.perf_counter()
                tables[workers] = tr.assemble_table(client, [design_id], max_workers=workers)
                timings[workers] = time.perf_counter() - t0
            pd.testing.assert_frame_equal(tables[1], tables[args.workers])
        finally:
            stop_server(proc)
    table = tables[1]
    print(f"assembled table: {len(table)} rows x {table.shape[1]} columns (identical both ways)")
    print(f"  one request at a time : {timings[1]:7.2f} s")
    print(f"  {args.workers:>2} concurrent requests: {timings[args.workers]:7.2f} s   "
          f"speed-up x{timings[1] / timings[args.workers]:.1f}")
    features = [*[f"n_{k}" for k in range(K)], "epoch"]
    train, val = table[table["role"] == "train"], table[table["role"] == "validation"]
    families = ["power"] if args.quick else list(FAMILIES)
    summaries, total = [], 0.0
    for family in families:  # timed per family: their costs differ by orders of magnitude
        t0 = time.perf_counter()
        laws, summary = fit_all(train[features], train["accuracy"].to_numpy(), val[features],
                                val["accuracy"].to_numpy(), families=[family],
                                groups=train["run_id"].to_numpy(), min_epoch=10)
        seconds = time.perf_counter() - t0
        total += seconds
        summaries.append(summary.assign(seconds_per_law=seconds / max(len(laws), 1)))
    summary = pd.concat(summaries, ignore_index=True)
    print(f"fitted {len(summary)} laws (families x predictors) on {len(train)} training points "
          f"in {total:.1f} s")
    with pd.option_context("display.width", 120):
        print(summary[["family", "predictor", "n_params", "train_r2", "val_r2",
                       "seconds_per_law"]].to_string(index=False,
                                                     float_format=lambda v: f"{v:.4f}"))

if __name__ == "__main__":
    main()
