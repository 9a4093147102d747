"""The yardstick on data that does not saturate: the README's Fashion-MNIST pipeline, judged on
held-out runs larger than its design.

Prints, in one run:

1. the pipeline: ``mixscale main`` exactly as the README's Fashion-MNIST section gives it, run
   in ``--cache`` (skipped when the cache holds a finished run; its wall time is kept), and
   where its rows' time went (training, evaluation, data, tracking: sums of the rows' metrics);
2. the rows: how many gained at most 1 point over their last third of training and how many
   beat 1-NN on their own pixels (the metrics and tag ``mixscale.row_check`` of each row);
3. held-out runs at 1.5x and 2x the design's largest size, a uniform and a skewed mix (half the
   classes at 1.5x their balanced share, half at 0.5x), ``--seeds`` seeds each, trained with the
   same recipe by ``mixscale train-row --counts`` (cached: reruns reuse them) and scored on the
   whole test split at their last epoch;
4. every registered law of the pipeline, loaded as the served pyfunc, predicting them with its
   90 % interval: error (mean and largest, points), coverage and width per ratio.

A row's noise sets a floor under the error any law can reach; the held-out runs' own spread
between seeds is printed beside the laws.

Usage: ``python benchmarks/bench_realdata.py --cache DIR [--seeds 2]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
logging.getLogger("mlflow").setLevel(logging.ERROR)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from mixscale import track as tr  # noqa: E402

LEVEL = 0.9
RATIOS = (1.5, 2.0)
# The README's Fashion-MNIST command (section "A harder dataset"), as written there.
README_MAIN = ["main", "--dataset", "fashion-mnist", "--subset-sizes", "200,400,800,1600",
               "--rows-per-size", "4", "--val-rows-per-size", "2", "--min-share", "0.8",
               "--min-steps-per-epoch", "100"]
RECIPE = ["--min-steps-per-epoch", "100"]  # the recipe options of README_MAIN, for train-row
MODEL = "mixscale-fashion-mnist"


def _cli(args: list[str], cwd: Path) -> tuple[str, float]:
    exe = Path(sys.executable).with_name("mixscale")
    t0 = time.perf_counter()
    out = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True,
                         check=False)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"mixscale {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout + out.stderr, seconds


def pipeline(cache: Path) -> dict:
    """Run the README's command in ``cache`` once; its design and wall time."""
    done = cache / "pipeline.json"
    if done.exists():
        return json.loads(done.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    out, seconds = _cli(README_MAIN, cache)
    (cache / "pipeline.log").write_text(out)
    info = {"design_id": re.search(r"design run:\s+([0-9a-f]{32})", out).group(1),
            "fit_run_id": re.search(r"fit run:\s+([0-9a-f]{32})", out).group(1),
            "wall_s": seconds}
    done.write_text(json.dumps(info))
    return info


def rows_report(client: MlflowClient, design_id: str) -> pd.DataFrame:
    """Per design row: size, role, last accuracy, the two checks and the time split."""
    recs = []
    for run in tr.current_row_runs(client, design_id):
        m = run.data.metrics
        recs.append({"size": int(run.data.params["subset_size"]),
                     "role": run.data.params["role"], "accuracy": m.get("test_accuracy"),
                     "gain": m.get("last_third_gain_points"),
                     "baseline": m.get("baseline_accuracy"),
                     "check": run.data.tags.get(tr.ROW_CHECK, ""),
                     **{k: m.get(k, 0.0) for k in ("time_train_s", "time_eval_s",
                                                   "time_data_s", "time_tracking_s")}})
    return pd.DataFrame(recs)


def held_out_counts(available: np.ndarray, total: int, mix: str) -> np.ndarray:
    """Per-class counts summing to ``total``: balanced, or classes 0..k/2-1 at 1.5x their
    balanced share and the rest at 0.5x (``skewed``)."""
    k = len(available)
    share = np.full(k, 1.0) if mix == "uniform" else np.where(np.arange(k) < k // 2, 1.5, 0.5)
    exact = total * share / share.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[:total - counts.sum()]] += 1
    if np.any(counts > available):
        raise SystemExit(f"the held-out mix {counts.tolist()} exceeds what the classes have")
    return counts


def held_out(cache: Path, client: MlflowClient, uri: str, sizes: list[int], seeds: int,
             keys: list[str], available: np.ndarray) -> pd.DataFrame:
    """The held-out runs' last evaluations, trained when missing (cached by name)."""
    ledger = cache / "held_out.json"
    runs = json.loads(ledger.read_text()) if ledger.exists() else {}
    largest = max(sizes)
    recs = []
    for ratio in RATIOS:
        total = int(round(ratio * largest))
        for mix in ("uniform", "skewed"):
            counts = held_out_counts(available, total, mix)
            for seed in range(1, seeds + 1):
                name = f"{total}-{mix}-s{seed}"
                if name not in runs:
                    out, seconds = _cli(["train-row", "--tracking-uri", uri, "--dataset",
                                         "fashion-mnist", "--counts",
                                         ",".join(map(str, counts)), "--seed", str(seed),
                                         *RECIPE], cache)
                    runs[name] = re.search(r"ad-hoc run ([0-9a-f]{32})", out).group(1)
                    ledger.write_text(json.dumps(runs, indent=1))
                    print(f"  trained held-out {name} in {seconds:.0f} s", flush=True)
                run = client.get_run(runs[name])
                hist = client.get_metric_history(runs[name], "test_accuracy")
                last = max(hist, key=lambda m: m.step)
                rec = {"name": name, "ratio": ratio, "mix": mix, "seed": seed,
                       "epoch": last.step, "observed": last.value,
                       "check": run.data.tags.get(tr.ROW_CHECK, ""),
                       **{f"n_{k}": int(n) for k, n in zip(keys, counts, strict=True)}}
                recs.append(rec)
    return pd.DataFrame(recs)


def score_laws(client: MlflowClient, held: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every alias of the registered model predicts the held-out runs with its interval."""
    aliases = client.get_registered_model(MODEL).aliases
    X = held[[*[f"n_{k}" for k in keys], "epoch"]].astype("int64")
    recs = []
    for alias in sorted(aliases):
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@{alias}")
        with contextlib.redirect_stderr(io.StringIO()):
            out = model.predict(X, params={"interval": LEVEL})
        for i, row in held.iterrows():
            lo, hi = out["accuracy_lower"].iloc[i], out["accuracy_upper"].iloc[i]
            recs.append({"law": alias, "ratio": row["ratio"], "mix": row["mix"],
                         "observed": row["observed"], "pred": out["accuracy"].iloc[i],
                         "lower": lo, "upper": hi})
    return pd.DataFrame(recs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True,
                        help="folder of the pipeline's store and the held-out runs (reused)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per held-out mix and size")
    args = parser.parse_args()
    cache = args.cache.resolve()
    info = pipeline(cache)
    uri = f"sqlite:///{cache}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)

    rows = rows_report(client, info["design_id"])
    times = rows[["time_train_s", "time_eval_s", "time_data_s", "time_tracking_s"]].sum()
    print(f"1. pipeline: README's `mixscale {' '.join(README_MAIN)}` took "
          f"{info['wall_s'] / 60:.1f} min wall ({os.cpu_count()} CPU cores); rows' time: "
          + ", ".join(f"{k[5:-2]} {v / times.sum():.0%}" for k, v in times.items())
          + f" of {times.sum() / 60:.1f} min")
    ok_gain = (rows["gain"] <= 1.0).sum()
    beat = (rows["accuracy"] > rows["baseline"]).sum()
    print(f"2. rows: {ok_gain} of {len(rows)} gained <= 1 point over their last third "
          f"(median {rows['gain'].median():+.1f}, largest {rows['gain'].max():+.1f}); "
          f"{beat} of {len(rows)} beat 1-NN on their own pixels (smallest margin "
          f"{100 * (rows['accuracy'] - rows['baseline']).min():+.1f} points)")
    per_size = rows.groupby("size").agg(accuracy=("accuracy", "mean"),
                                        spread=("accuracy", lambda a: 100 * np.ptp(a)),
                                        gain=("gain", "median"), baseline=("baseline", "mean"))
    print(per_size.to_string(float_format=lambda v: f"{v:.3f}"))

    keys = client.get_run(info["design_id"]).data.params["class_keys"].split(",")
    from mixscale.data import load_dataset

    available = load_dataset("fashion-mnist").available
    sizes = sorted(rows["size"].unique().tolist())
    held = held_out(cache, client, uri, sizes, args.seeds, keys, available)
    spread = held.groupby(["ratio", "mix"])["observed"].agg(lambda a: 100 * np.ptp(a))
    print(f"3. held-out runs: {len(held)} (whole test split, epoch {held['epoch'].max()}); "
          "spread between seeds (points): "
          + ", ".join(f"{r:g}x {m} {v:.1f}" for (r, m), v in spread.items()))
    scored = score_laws(client, held, keys)
    scored["err"] = 100 * (scored["pred"] - scored["observed"])
    scored["inside"] = (scored["observed"] >= scored["lower"]) & (
        scored["observed"] <= scored["upper"])
    scored["width"] = 100 * (scored["upper"] - scored["lower"])
    table = scored.groupby(["law", "ratio"]).agg(
        mean_err=("err", "mean"), max_abs_err=("err", lambda e: e.abs().max()),
        coverage=("inside", "mean"), width=("width", "mean")).unstack("ratio")
    table.columns = [f"{a}@{r:g}" for a, r in table.columns]
    print("4. laws on the held-out runs (points; coverage of the 90 % interval):")
    with pd.option_context("display.width", 200):
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
