"""How far out can a mixscale law be trusted? Extrapolation error and interval coverage.

Prints side by side in one run (issue 14, item 7):

(a) the public vision learning curves: each family's extrapolation loss on the 72 curves of
    ``shared/data/scaling_benchmark`` (``benchmarks/_curves.py`` when it is there, else what
    ``benchmarks/bench_scaling_benchmark.py`` prints), beside the published M4's 0.0415;
(b) a synthetic per-class truth outside every fitted family (``tests/support/synthetic.py``):
    the pipeline's own fit stage (``stages.fit.fit_table_and_log`` into a throwaway SQLite
    store: every law it fits, its champion, its registry) on a design of sizes up to S = 400,
    then each registered law, loaded as the served pyfunc, predicts held-out runs at 1.25, 1.5,
    2 and 3 S with its 90 % interval (``params={"interval": 0.9}``). Beside them the "oracle",
    the truth's own form refitted to the same training rows (``synthetic.oracle_fit``): what
    the best possible law misses by on that design, from the noise of its rows alone;
(c) digits: real mixscale rows (the demo's design and recipe, trained by the ``mixscale`` CLI
    into a cached SQLite store), fitted on the sizes up to 480, predicting the design's rows at
    960 and full-split runs (1,347 images, several seeds).

For every law: RMSE in accuracy points (against the noise-free truth on (b), against the
observed run on (c)) and the share of held-out runs whose observed accuracy lies inside the 90 %
interval (on (b) also of the noise-free truth), per extrapolation ratio r = size / largest
fitted size. Rows with ``epoch >= min_epoch`` are scored. "today's power-m3" is the paper's
model 3 fitted and bootstrapped as the pipeline did before issue 14 (it is fitted anew when the
pipeline no longer registers it). ``--figure`` draws RMSE and coverage against r.

Usage: ``python benchmarks/bench_extrapolation.py [--quick] [--parts a,b,c] [--cache DIR]
[--synthetic-seeds 3] [--digits-seeds 3] [--figure docs/extrapolation.png]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.synthetic, run from anywhere
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
logging.getLogger("mlflow").setLevel(logging.ERROR)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from mixscale import track as tr  # noqa: E402
from mixscale.fit import FitConfig, fit_all  # noqa: E402
from mixscale.fit.report import law_key  # noqa: E402
from mixscale.stages.fit import fit_table_and_log  # noqa: E402
from tests.support import synthetic  # noqa: E402

LEVEL = 0.9
TODAY = "power-m3"  # the champion before issue 14
DIGITS_SIZES = "60,120,240,480,960"
DIGITS_FIT_MAX = 480
EXPERIMENT = "bench-extrapolation"


# ----------------------------------------------------------------------------------- helpers
def _store(root: Path) -> tuple[MlflowClient, str]:
    """A SQLite tracking store under ``root`` (artifacts beside it) and its fit experiment."""
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    name = f"{EXPERIMENT}-fit"
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        name, artifact_location=(root / "mlruns-fit").as_uri())
    return client, exp_id


def _today_law(train: pd.DataFrame, features: list[str], config: FitConfig):
    """``power-m3`` fitted and run-bootstrapped as the pipeline did before issue 14."""
    laws, _ = fit_all(train[features], train["accuracy"].to_numpy(), families=["power"],
                      predictors=["m3"], groups=train["run_id"].to_numpy(),
                      min_epoch=config.min_epoch, n_starts=config.n_starts, seed=config.seed)
    law = laws[("power", "m3")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = law.bootstrap(train[features], train["accuracy"].to_numpy(),
                             groups=train["run_id"].to_numpy(), n_boot=config.n_boot,
                             seed=config.seed)
    law.keep_bootstrap(boot)
    return law


def _predict_served(uri: str, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point prediction and 90 % interval of a registered law, through its served pyfunc
    (NaN bounds when the law serves no interval)."""
    model = mlflow.pyfunc.load_model(uri)
    try:
        out = model.predict(X, params={"interval": LEVEL})
        return (out["accuracy"].to_numpy(), out["accuracy_lower"].to_numpy(),
                out["accuracy_upper"].to_numpy())
    except Exception:  # noqa: BLE001 - a law without bootstrap or calibration: no interval
        out = model.predict(X)
        nan = np.full(len(X), np.nan)
        return out["accuracy"].to_numpy(), nan, nan


def evaluate(fit_table: pd.DataFrame, held_out: pd.DataFrame | Callable[[], pd.DataFrame], *,
             part: str, root: Path, config: FitConfig, fit_max: int
             ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Run the pipeline's fit stage on ``fit_table``; every registered law (and today's
    power-m3) predicts ``held_out`` (or what it returns, called after the fit).

    Returns one row per (law, held-out row) and the labels of the champions.
    """
    client, exp_id = _store(root)
    counts = [c for c in fit_table.columns if c.startswith("n_")]
    features = [*counts, "epoch"]
    model = f"bench-{part}-{uuid.uuid4().hex[:8]}"
    config = dataclasses.replace(config, model_name=model)
    lines: list[str] = []
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow's "Registered model ..." lines
        result = fit_table_and_log(config, client, exp_id, fit_table,
                                   design_ids=sorted(fit_table["design_id"].unique()),
                                   dataset=part, echo=lines.append)
    seconds = time.perf_counter() - t0
    summary = result.summary
    registered = set(result.versions)
    keys = [law_key(f, p) for f, p in zip(summary["family"], summary["predictor"], strict=True)]
    by_val = summary.assign(key=keys)
    by_val = by_val[by_val["key"].isin(registered)].dropna(subset=["val_mse"])
    val_champion = by_val.sort_values("val_mse")["key"].iloc[0] if len(by_val) else None
    select = getattr(config, "select", "validation")
    roles = {result.champion: f"champion (select={select})"}
    if val_champion is not None and val_champion != result.champion:
        roles[val_champion] = "champion by validation"
    if callable(held_out):
        held_out = held_out()
    held = held_out[held_out["epoch"] >= config.min_epoch].reset_index(drop=True)
    X = held[features]
    frames = []
    for key in sorted(registered):
        pred, lo, hi = _predict_served(f"models:/{model}@{key}", X)
        frames.append(_scored(held, pred, lo, hi, key, part))
    if TODAY not in registered:
        train = fit_table[fit_table["role"] == "train"]
        law = _today_law(train, features, config)
        lo, hi = law.predict_interval(X, LEVEL)
        frames.append(_scored(held, law.predict(X), lo, hi, TODAY, part))
    rows = _with_champions(pd.concat(frames, ignore_index=True).assign(role=""), roles)
    unregistered = sorted(set(keys) - registered - {TODAY})
    print(f"  [{part}] pipeline fit of {fit_table['run_id'].nunique()} runs (sizes <= "
          f"{fit_max}) in {seconds:.0f} s: {len(registered)} registered laws, champion "
          f"{result.champion}" + (f"; fitted, not registered: {', '.join(unregistered)}"
                                  if unregistered else ""))
    return rows, roles


def _with_champions(rows: pd.DataFrame, roles: dict[str, str]) -> pd.DataFrame:
    """``rows`` plus a copy of each champion's rows under the champion's label (``law``), with
    the law it picked in ``role``."""
    picked = [rows[rows["law"] == key].assign(law=label, role=key)
              for key, label in roles.items()]
    return pd.concat([rows, *picked], ignore_index=True)


def _read_rows(path: Path) -> pd.DataFrame:
    """A ``--rows-out`` CSV (also the first format, where a champion's rows carried their
    label in ``role`` instead of being copied)."""
    rows = pd.read_csv(path).fillna({"role": ""})
    if "code" not in rows:
        rows["code"] = path.stem
    if rows["role"].str.startswith("champion").any():
        roles = rows["role"].to_numpy()
        plain = rows.assign(role="")
        labelled = rows[roles != ""].copy()
        labelled["law"], labelled["role"] = roles[roles != ""], rows.loc[roles != "", "law"]
        rows = pd.concat([plain, labelled], ignore_index=True)
    return rows


def _scored(held: pd.DataFrame, pred, lo, hi, key: str, part: str) -> pd.DataFrame:
    observed = held["accuracy"].to_numpy()
    true = held["truth"].to_numpy() if "truth" in held else observed
    return pd.DataFrame({"part": part, "law": key, "ratio": held["ratio"].to_numpy(),
                         "run_id": held["run_id"].to_numpy(), "observed": observed,
                         "truth": true, "pred": pred, "lower": lo, "upper": hi})


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """RMSE (points) and 90 % coverage per law and extrapolation ratio (predictions and
    bounds clipped to [0, 1] as the served model clips them, also today's power-m3's)."""
    rows = rows.assign(raw=rows["pred"],
                       **{c: rows[c].clip(0.0, 1.0) for c in ("pred", "lower", "upper")})
    def one(g: pd.DataFrame) -> pd.Series:
        rmse = 100 * float(np.sqrt(np.mean((g["pred"] - g["truth"]) ** 2)))
        # unclipped: a law that predicts 108 % is 8 points off, not 1 (digits' ceiling)
        raw = 100 * float(np.sqrt(np.mean((g["raw"] - g["truth"]) ** 2)))
        bias = 100 * float(np.mean(g["pred"] - g["truth"]))
        g = g[g["lower"].notna()]  # coverage over the rows the law gave an interval for
        has = len(g) > 0
        inside_obs = (g["observed"] >= g["lower"]) & (g["observed"] <= g["upper"])
        inside_true = (g["truth"] >= g["lower"]) & (g["truth"] <= g["upper"])
        return pd.Series({
            "n_interval": len(g),
            "rmse_pts": rmse,
            "rmse_raw_pts": raw,
            "above_1": float(np.mean(g["raw"] > 1.0)),
            "bias_pts": bias,
            "cover_obs": float(inside_obs.mean()) if has else np.nan,
            "cover_truth": float(inside_true.mean()) if has else np.nan,
            "width_pts": 100 * float((g["upper"] - g["lower"]).mean()) if has else np.nan,
        })
    out = rows.groupby(["part", "code", "law", "ratio"], sort=True).apply(
        one, include_groups=False).reset_index()
    world = rows["world"].fillna(0) if "world" in rows else 0
    picks = rows.assign(world=world)[rows["role"] != ""].drop_duplicates(
        ["part", "code", "law", "world"])  # one pick per fitted design
    picked = (picks.groupby(["part", "code", "law"])["role"]
              .agg(lambda r: ", ".join(f"{k} x{n}" for k, n in r.value_counts().items())))
    out["role"] = [picked.get((p, c, law), "") for p, c, law in
                   zip(out["part"], out["code"], out["law"], strict=True)]
    return out


def _print(summary: pd.DataFrame, part: str, ratios: list[float], note: str) -> None:
    part_rows = summary[summary["part"] == part]
    wide = []
    several = part_rows["code"].nunique() > 1
    for (code, law, role), g in part_rows.groupby(["code", "law", "role"], sort=False):
        rec = {"law": (f"[{code}] " if several else "") + law + (f" = {role}" if role else "")}
        for r in ratios:
            hit = g[np.isclose(g["ratio"], r)]
            if len(hit):
                h = hit.iloc[0]
                rec[f"rmse@{r:g}"] = h["rmse_pts"]
                rec[f"raw@{r:g}"] = h["rmse_raw_pts"]
                rec[f"cov@{r:g}"] = h["cover_obs"]
                if part == "synthetic":
                    rec[f"covT@{r:g}"] = h["cover_truth"]
                rec[f"width@{r:g}"] = h["width_pts"]
        wide.append(rec)
    frame = pd.DataFrame(wide)
    first = (frame["law"].str.contains("champion") | frame["law"].str.endswith(TODAY)
             | frame["law"].str.endswith(ORACLE))
    frame = pd.concat([frame[first], frame[~first]])
    print(note)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(frame.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3g}"))


# ------------------------------------------------------------------------------ (a) curves
def part_a(quick: bool) -> None:
    """The public curves: ``_curves.part_a`` when present, else bench_scaling_benchmark."""
    print("\n(a) public vision learning curves (extrapolation loss = RMSE of log error on the "
          "held-out larger sizes; published M4: mean 0.0415, median 0.030)")
    here = Path(__file__).resolve().parent
    if (here / "_curves.py").exists():  # CURVES' shared protocol: every method, with coverage
        sys.path.insert(0, str(here))
        import _curves  # type: ignore[import-not-found]

        print("  " + _curves.part_a(argparse.Namespace(quick=quick)).replace("\n", "\n  "))
        return
    script = here / "bench_scaling_benchmark.py"
    print(f"  (no benchmarks/_curves.py here: what {script.name} prints)")
    cmd = [sys.executable, str(script), *(["--quick"] if quick else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    print("  " + (out.stdout + out.stderr[-2000:]).strip().replace("\n", "\n  "))


# --------------------------------------------------------------------------- (b) synthetic
SYN_RATIOS = (1.25, 1.5, 2.0, 3.0)
ORACLE = "oracle: the truth's form refitted"  # no interval: a yardstick for the point error


def part_b(root: Path, config: FitConfig, seeds: int) -> pd.DataFrame:
    """The synthetic truth: ``seeds`` independent designs (noise draws), each fitted by the
    pipeline and scored on held-out runs at 1.25-3 S."""
    s_max = synthetic.DEFAULT_SIZES[-1]
    warnings.filterwarnings("ignore")
    frames = []
    for s in range(seeds):
        table = synthetic.synthetic_table(seed=s)
        held = synthetic.truth_rows(design_max=s_max, ratios=SYN_RATIOS, seed=1000 + s,
                                    rows_per_size=4, seeds=2)
        rows, _ = evaluate(table, held, part="synthetic", root=root, config=config,
                           fit_max=s_max)
        # the yardstick: the truth's own form refitted to the laws' training rows
        train = table[(table["role"] == "train") & (table["epoch"] >= config.min_epoch)]
        scored = held[held["epoch"] >= config.min_epoch].reset_index(drop=True)
        oracle = _scored(scored, synthetic.oracle_fit(train)(scored), np.nan, np.nan, ORACLE,
                         "synthetic").assign(role="")
        frames.append(pd.concat([rows, oracle], ignore_index=True).assign(world=s))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------ (c) digits
def _cli(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("mixscale")
    out = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise RuntimeError(f"mixscale {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout + out.stderr


def _digits_design(cache: Path, quick: bool) -> tuple[pd.DataFrame, MlflowClient, list[str]]:
    """The digits fit table of the design (sizes 60-960), its rows trained on demand into
    ``cache`` (reruns reuse every finished row); also the store's client and the CLI's store
    options."""
    cache.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{cache}/mlflow.db"
    base = ["--tracking-uri", uri, "--experiment", EXPERIMENT]
    design_args = (["--rows-per-size", "2", "--val-rows-per-size", "1", "--iterations", "200"]
                   if quick else ["--rows-per-size", "6", "--val-rows-per-size", "3"])
    id_file = cache / f"design-{_tag(quick)}.id"
    if not id_file.exists():
        out = _cli(["design", *base, "--subset-sizes", DIGITS_SIZES, *design_args], cache)
        id_file.write_text(re.search(r"design ([0-9a-f]{32})", out).group(1))
    design_id = id_file.read_text().strip()
    client = MlflowClient(uri)
    if any(r.status != "FINISHED" for r in tr.list_rows(client, design_id)):
        t0 = time.perf_counter()
        _cli(["train", *base, "--design-id", design_id, *_recipe(quick)], cache)
        print(f"  [digits] trained the design's rows in {time.perf_counter() - t0:.0f} s")
    return tr.assemble_table(client, [design_id], class_metrics=True), client, base


def _tag(quick: bool) -> str:
    return "quick" if quick else "demo"


def _recipe(quick: bool) -> list[str]:
    return ["--epochs", "12", "--eval-every", "3", "--lr-milestones", ""] if quick else []


def _digits_full(cache: Path, quick: bool, seeds: int, client: MlflowClient, base: list[str],
                 keys: list[str]) -> pd.DataFrame:
    """``seeds`` runs on the whole training split (1,347 images), trained on demand."""
    from mixscale.data import load_dataset

    full = load_dataset("digits").available
    frames = []
    for seed in range(1, seeds + 1):
        run_file = cache / f"full-{_tag(quick)}-seed{seed}.id"
        if not run_file.exists():
            t0 = time.perf_counter()
            out = _cli(["train-row", *base, "--counts", ",".join(map(str, full)), "--seed",
                        str(seed), *_recipe(quick)], cache)
            run_file.write_text(re.search(r"ad-hoc run ([0-9a-f]{32})", out).group(1))
            print(f"  [digits] trained a full-split run (seed {seed}) in "
                  f"{time.perf_counter() - t0:.0f} s")
        run_id = run_file.read_text().strip()
        hist = client.get_metric_history(run_id, "test_accuracy")
        frame = pd.DataFrame({"accuracy": [m.value for m in hist],
                              "epoch": [m.step for m in hist]})
        for k, n in zip(keys, full, strict=True):
            frame[f"n_{k}"] = int(n)
        frame["total_n"] = int(full.sum())
        frame["subset_size"] = int(full.sum())
        frame["role"] = "validation"
        frame["run_id"] = run_id
        frame["design_id"] = "full-split"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def part_c(root: Path, cache: Path, config: FitConfig, quick: bool, seeds: int
           ) -> pd.DataFrame:
    """Digits: fit on the sizes up to 480, predict 960 and the full 1,347 images (the full-split
    runs are trained, when missing, after the fit)."""
    table, client, base = _digits_design(cache, quick)
    keys = [c.removeprefix("n_") for c in table.columns if c.startswith("n_")]
    fit_table = table[table["subset_size"] <= DIGITS_FIT_MAX].reset_index(drop=True)

    def held_out() -> pd.DataFrame:
        full = _digits_full(cache, quick, seeds, client, base, keys)
        held = pd.concat([table[table["subset_size"] > DIGITS_FIT_MAX], full],
                         ignore_index=True)
        return held.assign(ratio=(held["subset_size"] / DIGITS_FIT_MAX).round(2))

    rows, _ = evaluate(fit_table, held_out, part="digits", root=root, config=config,
                       fit_max=DIGITS_FIT_MAX)
    return rows


# ------------------------------------------------------------------------------ the figure
def figure(summary: pd.DataFrame, path: Path) -> None:
    """RMSE and 90 % coverage against the extrapolation ratio, for the champion, the
    per-class law, the ensemble and today's power-m3, on (b) and (c)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_e, ax_c) = plt.subplots(1, 2, figsize=(9.5, 4.8))
    styles = {"synthetic": "-", "digits": "--"}
    several = summary["code"].nunique() > 1
    colours = iter(plt.cm.tab20(np.arange(20)))  # one colour per line (up to 20)
    for (part, code, law), g in summary.groupby(["part", "code", "law"], sort=False):
        if not (law.startswith("champion (") or law in (TODAY, "ensemble", ORACLE)
                or law.startswith("perclass")):
            continue
        label = f"{part}{f' [{code}]' if several else ''}: {law}"
        g = g.sort_values("ratio")
        line, = ax_e.plot(g["ratio"], g["rmse_pts"], styles[part], marker="o", label=label,
                          color=next(colours, "k"))
        if g["cover_obs"].notna().any():
            ax_c.plot(g["ratio"], 100 * g["cover_obs"], styles[part], marker="o",
                      color=line.get_color())
    ax_e.set(xlabel="extrapolation ratio r = size / largest fitted size",
             ylabel="RMSE (accuracy points)", ylim=(0, None), title="error")
    ax_c.axhspan(80, 95, color="0.9", label="target 80-95 %")
    ax_c.axhline(90, color="0.5", lw=0.8)
    ax_c.set(xlabel="extrapolation ratio r", ylabel="runs inside the 90 % interval (%)",
             ylim=(-3, 103), title="90 % interval coverage")
    ax_c.legend(fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.legend(*ax_e.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7,
               frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="(a) 12 curves, (b) 1 design, (c) a 15-row digits design at 12 "
                             "epochs and 1 full-split run; 30 bootstrap replicates")
    parser.add_argument("--parts", default="a,b,c", help="which of a, b, c to run")
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the trained digits rows here (reruns reuse them); "
                             "default: a temporary folder")
    parser.add_argument("--synthetic-seeds", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--digits-seeds", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--n-boot", type=int, default=None,
                        help="run-bootstrap replicates (default: the pipeline's 100; quick 30)")
    parser.add_argument("--figure", type=Path, default=None, help="write the figure here")
    parser.add_argument("--rows-out", type=Path, default=None,
                        help="also write every scored prediction (one row per law and held-out "
                             "row) to this CSV")
    parser.add_argument("--tag", default="now",
                        help="names this run's rows (e.g. before/after) in --rows-out")
    parser.add_argument("--rows-in", type=Path, nargs="*", default=[],
                        help="print (and draw) earlier --rows-out CSVs too, without refitting")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    config = FitConfig(n_boot=args.n_boot if args.n_boot is not None
                       else 30 if args.quick else 100)
    syn_seeds = args.synthetic_seeds or (1 if args.quick else 3)
    dig_seeds = args.digits_seeds or (1 if args.quick else 3)
    t0 = time.perf_counter()
    if parts & {"b", "c"}:
        print(f"fit config: {config}")
    if "a" in parts:
        part_a(args.quick)
    frames = []
    with tempfile.TemporaryDirectory(prefix="bench-extrapolation-") as tmp:
        cache = args.cache or Path(tmp) / "digits"
        if "b" in parts:
            frames.append(part_b(Path(tmp) / "fit", config, syn_seeds))
        if "c" in parts:
            frames.append(part_c(Path(tmp) / "fit", cache.resolve(), config, args.quick,
                                 dig_seeds))
    frames = [f.assign(code=args.tag) for f in frames]
    frames += [_read_rows(path) for path in args.rows_in]
    if frames:
        rows = pd.concat(frames, ignore_index=True)
        if args.rows_out:
            rows.to_csv(args.rows_out, index=False)
        summary = summarise(rows)
        if "world" in rows and (rows["part"] == "synthetic").any():
            syn_seeds = int(rows.loc[rows["part"] == "synthetic"].groupby("code")["world"]
                            .nunique().max())
        parts |= set(rows["part"].map({"synthetic": "b", "digits": "c"}))
        if "b" in parts:
            _print(summary, "synthetic", [1.5, 2.0],
                   f"\n(b) synthetic per-class truth, design up to S = "
                   f"{synthetic.DEFAULT_SIZES[-1]}, {syn_seeds} design(s); held-out runs at "
                   "r x S. rmse = RMSE vs the noise-free truth (points; raw = unclipped); "
                   "cov = share of "
                   "observed runs inside the 90 % interval, covT = of the truth; width = mean "
                   "interval width (points)")
        if "c" in parts:
            ratios = sorted(summary.loc[summary["part"] == "digits", "ratio"].unique())
            _print(summary, "digits", ratios,
                   f"\n(c) digits, fitted on sizes <= {DIGITS_FIT_MAX}; held out: the design's "
                   f"960-image rows (r = 2) and {dig_seeds} full-split run(s) (1,347 images, "
                   "r = 2.81). rmse vs the observed runs (points; raw = unclipped, so a "
                   "prediction above 100 % counts in full); cov = runs inside the 90 % "
                   "interval")
        if args.figure:
            figure(summary, args.figure)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
