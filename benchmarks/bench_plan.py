"""Closed-loop planning benchmark on digits: fit, plan, train the plan, compare with naive.

1. Runs ``mixscale main`` (design, training, fit; the default digits recipe) into a temporary
   SQLite store, unless ``--tracking-uri`` names a store where that already happened.
2. Starts from a skewed collection (``--current``: some classes scarce), caps = what the
   digits training split has, every image costing 1, and asks each registered law for the
   cheapest counts predicted to reach ``--target`` at the recipe's epochs.
3. Trains every plan with ``--seeds`` seeds (subset draw and initialisation) with the recipe
   the laws were fitted on, traced back from the registry as ``mixscale plan --verify`` does
   (here without tracking the runs), and prints predicted against realised accuracy.
4. The naive plan: the same number of added images spread in proportion to each class's
   remaining availability (``caps - current``). It is trained at growing totals until it
   matches the per-class law's realised accuracy; the images that took, minus the plan's,
   are the images the plan saves at equal realised accuracy (linear interpolation between
   the two bracketing totals).

Usage: ``python benchmarks/bench_plan.py [--seeds 3] [--target 0.95] [--quick]``
(about 4 minutes on 2 CPU cores; ``--quick`` fits a smaller design).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

from mixscale.config import TrainConfig
from mixscale.data import load_dataset, sample_subset
from mixscale.plan import plan_counts
from mixscale.stages.verify import resolve_recipe, verify_config
from mixscale.train import train_model

MODEL = "mixscale-digits"
LAWS = ("perclass-own-total", "champion", "power-m1")
DEFAULT_CURRENT = "10,10,3,10,2,10,10,3,10,10"


def _main_run(uri: str, quick: bool) -> float:
    args = [str(Path(sys.executable).with_name("mixscale")), "main", "--tracking-uri", uri,
            "--experiment", "bench-plan"]
    if quick:
        args += ["--subset-sizes", "60,120,240,480", "--rows-per-size", "4",
                 "--val-rows-per-size", "2", "--n-boot", "30"]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _realise(ds, counts: np.ndarray, seeds: int, config: TrainConfig) -> list[float]:
    """Final test accuracy of training ``counts`` images per class, once per seed."""
    out = []
    for seed in range(seeds):
        idx = sample_subset(ds.train_labels, counts.astype(np.int64), seed=seed)
        result = train_model(ds.train_images[idx], ds.train_labels[idx], ds.test_images,
                             ds.test_labels, config=config, class_keys=ds.class_keys,
                             seed=seed, mean=ds.mean, std=ds.std)
        out.append(result.final["test_accuracy"])
    return out


def _naive(current: np.ndarray, caps: np.ndarray, added: int) -> np.ndarray:
    """``added`` images spread in proportion to ``caps - current`` (largest remainders)."""
    room = (caps - current).astype(float)
    added = int(min(added, room.sum()))
    share = added * room / room.sum()
    extra = np.floor(share)
    for c in np.argsort(-(share - extra))[: added - int(extra.sum())]:
        extra[c] += 1
    return current + extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.96)
    parser.add_argument("--current", default=DEFAULT_CURRENT)
    parser.add_argument("--tracking-uri", default="")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()  # removed at exit
    uri = args.tracking_uri or f"sqlite:///{tmp.name}/mlflow.db"
    if not args.tracking_uri:
        print(f"fitting the laws: mixscale main into {uri} ... ", end="", flush=True)
        print(f"{_main_run(uri, args.quick):.0f} s")
    mlflow.set_tracking_uri(uri)
    # the recipe the laws were fitted on, traced back from the registry as `plan --verify` does
    dataset_name, config, _ = resolve_recipe(MlflowClient(uri), f"models:/{MODEL}@champion")
    ds = load_dataset(dataset_name, data_dir=config.data_dir)
    current = np.array([int(v) for v in args.current.split(",")])
    caps = ds.available.astype(float)
    costs = np.ones_like(caps)
    print(f"current {current.tolist()} ({current.sum()} images), caps {caps.astype(int).tolist()}"
          f", target {args.target} at {config.epochs} epochs, {args.seeds} seeds")

    rows, realised = [], {}
    t0 = time.perf_counter()
    base = statistics.mean(_realise(ds, current, args.seeds, config))
    for alias in LAWS:
        law = mlflow.pyfunc.load_model(f"models:/{MODEL}@{alias}").unwrap_python_model().law
        plan = plan_counts(law, current=current, caps=caps, costs=costs, target=args.target,
                           epochs=config.epochs)
        acc = _realise(ds, plan.counts, args.seeds, verify_config(config, plan.epochs))
        realised[alias] = (plan, acc)
        rows.append((f"{alias} ({law.family}-{law.predictor})", plan, acc))
    print(f"\nrealised accuracy of the current collection: {base:.4f}\n")
    print(f"  {'plan':<34} {'added':>6} {'predicted':>9} {'90% interval':>15} "
          f"{'realised':>15} {'|pred-real|':>11}")
    for name, plan, acc in rows:
        interval = ("" if plan.interval is None
                    else f"{plan.interval[0]:.3f}-{plan.interval[1]:.3f}")
        reach = "" if plan.reachable else " (unreachable: best)"
        print(f"  {name:<34} {int(plan.added.sum()):6d} {plan.predicted:9.4f} {interval:>15} "
              f"{statistics.mean(acc):.4f}+-{statistics.stdev(acc) if len(acc) > 1 else 0:.4f}"
              f" {abs(plan.predicted - statistics.mean(acc)):11.4f}{reach}")
        print(f"  {'':<34} counts {plan.counts.astype(int).tolist()}")
        for note in plan.warnings:  # a class-blind law's split, an extrapolated plan
            print(f"  {'':<34} warning: {note}")

    plan, acc = realised["perclass-own-total"]
    goal, added = statistics.mean(acc), int(plan.added.sum())
    if added == 0:
        print("\nthe per-class plan adds no images (the target is met already): no naive "
              "comparison; lower --current or raise --target")
        return
    print(f"\nnaive plan (same added images spread by availability) until it realises "
          f"{goal:.4f}, the per-class plan's accuracy:")
    prev = (0, base)
    needed = None
    room = int((caps - current).sum())
    for factor in (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0):
        n_added = min(int(round(factor * added)), room)
        counts = _naive(current, caps, n_added)
        mean = statistics.mean(_realise(ds, counts, args.seeds, config))
        print(f"  added {n_added:5d} ({factor:.2f}x): realised {mean:.4f}  "
              f"counts {counts.astype(int).tolist()}")
        if mean >= goal:
            lo_n, lo_a = prev
            needed = lo_n + (goal - lo_a) / max(mean - lo_a, 1e-12) * (n_added - lo_n)
            break
        prev = (n_added, mean)
        if n_added == room:
            break
    if needed is None:
        print(f"  the naive plan never reaches {goal:.4f} within the caps: the plan saves "
              f"more than {room - added} images")
    else:
        print(f"  images needed at equal realised accuracy: naive {needed:.0f} vs plan {added}"
              f" -> {needed - added:.0f} images saved ({(needed - added) / needed:.0%} of naive)")
    print(f"\ntraining for the comparison took {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
