"""The fit stage: table from the tracking server -> laws -> metrics, artifacts, registry.

Every fitted law becomes a version of one registered model (default ``mixscale-<dataset>``)
with the alias ``<family>-<predictor>``; the law with the lowest validation MSE also gets the
alias ``champion``, so ``models:/<name>@champion`` always names the current best law.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mixscale import plots
from mixscale import tracking as tr
from mixscale.config import FitConfig
from mixscale.errors import MixscaleError
from mixscale.fit import fit_all, parameter_table
from mixscale.serving import CHAMPION, log_law, set_alias

__all__ = ["fit_and_log"]


def _law_key(family: str, predictor: str) -> str:
    return f"{family}-{predictor}"


def fit_and_log(config: FitConfig, client: MlflowClient, experiment_id: str,
                design_ids: list[str], *, run_id: str | None = None,
                parent_run_id: str | None = None, echo: Callable[[str], None] = print):
    """Fit, log and register every law; see :func:`mixscale.pipeline.run_fit`."""
    from mixscale.pipeline import FitResult

    if not design_ids:
        raise MixscaleError("`design_ids` must name at least one design run.")
    table = tr.assemble_table(client, design_ids)  # validates the designs before logging
    count_cols = [c for c in table.columns if c.startswith("n_")]
    dataset = client.get_run(design_ids[0]).data.params["dataset"]
    model_name = config.model_name or f"mixscale-{dataset}"
    train = table[table["role"] == "train"]
    val = table[table["role"] == "validation"]
    if train["run_id"].nunique() < 2:
        raise MixscaleError(
            f"fitting needs FINISHED training rows from at least 2 runs, but the design(s) have "
            f"{train['run_id'].nunique()}; train more rows first."
        )
    features = [*count_cols, "epoch"]
    t0 = time.perf_counter()
    laws, summary = fit_all(
        train[features], train["accuracy"].to_numpy(),
        val[features] if len(val) else None, val["accuracy"].to_numpy() if len(val) else None,
        families=config.families, predictors=config.predictors,
        groups=train["run_id"].to_numpy(), min_epoch=config.min_epoch,
        n_starts=config.n_starts, seed=config.seed,
    )
    fit_seconds = time.perf_counter() - t0
    if not laws:
        raise MixscaleError("every law failed to fit:\n" + summary.to_string(index=False))
    basis = "val_mse" if len(val) and summary["val_mse"].notna().any() else "train_mse"
    ranked = summary.dropna(subset=[basis]).sort_values(basis)
    best = ranked.iloc[0]
    champion = _law_key(best["family"], best["predictor"])

    fit_id = tr.start_stage_run(
        client, experiment_id, kind="fit", name=f"fit-{dataset}-{'+'.join(config.families)}",
        tags={tr.DATASET: dataset, tr.DESIGN: ",".join(design_ids)}, run_id=run_id,
        parent_run_id=parent_run_id)
    try:
        tr.log_params(client, fit_id, skip_existing=True, params={
            "design_ids": ",".join(design_ids), "families": ",".join(config.families),
            "predictors": ",".join(config.predictors), "min_epoch": config.min_epoch,
            "n_starts": config.n_starts, "seed": config.seed, "model_name": model_name,
            "champion_basis": basis,
        })
        metrics = {"fit_seconds": fit_seconds, "n_runs_train": train["run_id"].nunique(),
                   "n_runs_validation": val["run_id"].nunique(), "n_points": len(table)}
        for rec in summary.to_dict("records"):
            prefix = f"{rec['family']}_{rec['predictor']}"
            for key in ("train_mse", "train_r2", "val_mse", "val_r2"):
                value = rec.get(key)
                if value is not None and np.isfinite(value):
                    metrics[f"{prefix}_{key}"] = value
        metrics.update({f"champion_{k}": best[k] for k in ("train_mse", "train_r2", "val_mse",
                                                           "val_r2") if np.isfinite(best[k])})
        tr.log_metrics(client, fit_id, metrics)

        champ_law = laws[(best["family"], best["predictor"])]
        pred = champ_law.predict(table[features])
        kept = table["epoch"] >= config.min_epoch
        figs = {
            "accuracy_vs_epoch.png": plots.accuracy_vs_epoch(table),
            "accuracy_vs_size.png": plots.accuracy_vs_size(table),
            f"predicted_vs_observed_{champion}.png": plots.predicted_vs_observed(
                table["accuracy"].to_numpy()[kept], pred[kept], table["role"].to_numpy()[kept],
                champion),
        }
        files: dict[str, object] = {tr.FIT_TABLE_CSV: table, tr.FIT_SUMMARY_CSV: summary,
                                    **figs}
        for (family, predictor), law in laws.items():
            files[f"params_{_law_key(family, predictor)}.csv"] = parameter_table(law)
        tr.log_artifacts(client, fit_id, files)
        for fig in figs.values():
            plots.close(fig)

        example = table.loc[table.groupby("run_id")["epoch"].idxmax(), features].head(3)
        example = example.astype("int64").reset_index(drop=True)
        versions = {}
        for (family, predictor), law in laws.items():
            key = _law_key(family, predictor)
            rec = summary[(summary["family"] == family) & (summary["predictor"] == predictor)]
            versions[key] = log_law(
                law, run_id=fit_id, name=f"law-{key}", registered_model_name=model_name,
                input_example=example,
                tags={"mixscale.family": family, "mixscale.predictor": predictor,
                      "mixscale.fit_run": fit_id,
                      "val_mse": rec["val_mse"].iloc[0], "train_mse": rec["train_mse"].iloc[0]},
            )
            set_alias(model_name, key, versions[key])
        set_alias(model_name, CHAMPION, versions[champion])
        client.set_tag(fit_id, "mixscale.champion", f"{champion} (v{versions[champion]})")
    except BaseException as exc:
        tr.end_run(client, fit_id, error=exc)
        raise
    if run_id is None:
        tr.end_run(client, fit_id)
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    echo(f"champion: {champion} (version {versions[champion]}, {basis} "
         f"{best[basis]:.4g}, validation r2 {best['val_r2']:.3f})")
    return FitResult(fit_run_id=fit_id, model_name=model_name, versions=versions,
                     champion=champion, summary=summary)
