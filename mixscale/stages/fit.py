"""The fit stage: table from the tracking server -> laws -> backtests, metrics, registry.

Every law is fitted on the training rows and backtested (:mod:`mixscale.fit.backtest`: fitted
on the rows up to each subset size but the largest, scored on every larger size, logged as
``backtest.csv`` and ``backtest.png``). Every *bounded* law (``law.bounded``: predictions in
[0, 1], a fitted asymptote) becomes a version of one registered model (default
``mixscale-<dataset>``) with the alias ``<family>-<predictor>`` (the ensemble of the bounded
laws, :mod:`mixscale.fit.ensemble`: ``ensemble``); unbounded laws (the paper's power models)
are fitted and reported in ``fit_summary.csv`` but not registered. The champion, alias
``champion``, is the registered law with the lowest backtest RMSE at extrapolation ratios up
to 3 (``select="backtest"``) or the lowest validation MSE (``select="validation"``; also the
fallback when no backtest fold exists), so ``models:/<name>@champion`` always names the
current best law. The model and every version carry a description (what the law is, what it
was fitted on, how it was chosen) and each version the tag ``mixscale.health`` (see
:mod:`mixscale.fit.report`).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixscale import plots
from mixscale import track as tr
from mixscale.config import Echo
from mixscale.errors import MixscaleError
from mixscale.fit import FitConfig, ScalingLaw, fit_all, parameter_table, report
from mixscale.fit.backtest import (
    BACKTEST_COLUMNS,
    SELECT_SCORE,
    backtest,
    backtest_summary,
    fold_scores,
)
from mixscale.fit.calibration import Calibration, noise_sd
from mixscale.fit.classlaw import FAMILY as CLASS_FAMILY
from mixscale.fit.classlaw import N_SHAPE, N_SHARED, ClassLaw, class_accuracy_column
from mixscale.fit.classlaw import PREDICTOR as CLASS_PREDICTOR
from mixscale.fit.ensemble import ENSEMBLE, EnsembleLaw, fit_ensemble
from mixscale.fit.laws import FAMILIES, PREDICTORS, bounded_law
from mixscale.serve import CHAMPION, log_law, set_alias

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["FitResult", "run_fit", "fit_and_log", "fit_table_and_log", "extrapolation_summary",
           "class_law_summary", "backtest_table", "choose_champion", "default_model_name",
           "serve_command"]

_QUALITY = ("train_mse", "train_r2", "val_mse", "val_r2", "extrap_mse", "extrap_r2",
            "extrap_rmse_points", "backtest_rmse", "backtest_rmse_r1.5", "backtest_rmse_r2",
            "backtest_rmse_r3")
BACKTEST_CSV, BACKTEST_PNG = "backtest.csv", "backtest.png"
_EXTRAP = ["extrap_mse", "extrap_r2", "extrap_rmse_points", "extrap_note"]
HEALTH_TAG = "mixscale.health"


def default_model_name(dataset: str) -> str:
    """``mixscale-<dataset>``, with ``imagefolder:/data/pets`` becoming ``imagefolder-pets``.

    Registered-model names keep to letters, digits, ``-``, ``_`` and ``.``.
    """
    if dataset.startswith("imagefolder:"):
        dataset = "imagefolder-" + Path(dataset.removeprefix("imagefolder:").rstrip("/")).name
    return "mixscale-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-")


_law_key = report.law_key


def _held_out(big: pd.DataFrame, config: FitConfig) -> np.ndarray:
    """The accuracies an extrapolation is scored on (the largest size, epoch >= min_epoch)."""
    return big.loc[big["epoch"] >= config.min_epoch, "accuracy"].to_numpy()


def _extrapolation_split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(training rows of all but the largest subset size, every row of the largest size), or
    None when fewer than 2 training runs remain to fit on."""
    largest = table["subset_size"].max()
    small = table[(table["role"] == "train") & (table["subset_size"] < largest)]
    if small["run_id"].nunique() < 2:
        return None
    return small, table[table["subset_size"] == largest]


def extrapolation_summary(table: pd.DataFrame, features: list[str], config: FitConfig
                          ) -> pd.DataFrame:
    """Fit every law on the training rows of all but the largest subset size; score on it.

    The largest size's rows (training and validation designs) are never seen by the fit, as
    when a team predicts a bigger dataset from smaller ones.

    Returns
    -------
    DataFrame
        ``family, predictor, extrap_mse, extrap_r2, extrap_rmse_points, extrap_note`` (empty
        when there is only one size); ``extrap_r2`` is NaN, and ``extrap_note`` says why,
        where the held-out accuracies barely vary (:mod:`mixscale.fit.report`).
    """
    split = _extrapolation_split(table)
    if split is None:
        return pd.DataFrame(columns=["family", "predictor", *_EXTRAP])
    small, big = split
    _, summary = fit_all(small[features], small["accuracy"].to_numpy(), big[features],
                         big["accuracy"].to_numpy(), families=config.families,
                         predictors=config.predictors, min_epoch=config.min_epoch,
                         n_starts=config.n_starts, seed=config.seed, loss=config.loss)
    held_out = _held_out(big, config)
    scores = [report.extrap_columns(r["val_mse"], r["val_r2"], held_out)
              for r in summary.to_dict("records")]
    return pd.concat([summary[["family", "predictor"]],
                      pd.DataFrame(scores, columns=_EXTRAP, index=summary.index)], axis=1)


def class_law_summary(table: pd.DataFrame, features: list[str], config: FitConfig
                      ) -> tuple[ClassLaw | None, dict[str, object]]:
    """Fit the per-class law (:mod:`mixscale.fit.classlaw`) and score it like the other laws.

    Returns the fitted law (None when it failed) and its row of the fit summary: train and
    validation MSE/r^2 (its extrapolation scores come from its backtest, as every law's).
    """
    nan = float("nan")
    n_classes = sum(c.startswith("n_") for c in features)
    row: dict[str, object] = {"family": CLASS_FAMILY, "predictor": CLASS_PREDICTOR,
                              "n_params": N_SHAPE * n_classes + N_SHARED, "train_mse": nan,
                              "train_r2": nan,
                              "val_mse": nan, "val_r2": nan, "error": None}
    train = table[table["role"] == "train"]
    val = table[table["role"] == "validation"]
    try:
        law = _fitter((CLASS_FAMILY, CLASS_PREDICTOR), features, config)(train, groups=True)
    except MixscaleError as exc:
        row["error"] = str(exc)
        return None, row
    score = law.score(train[features], train["accuracy"].to_numpy())
    row.update(train_mse=score["mse"], train_r2=score["r2"],
               shrinkage=law.strength_)  # cross-validated strength (inf: class-blind)
    if len(val):
        score = law.score(val[features], val["accuracy"].to_numpy())
        row.update(val_mse=score["mse"], val_r2=score["r2"])
    return law, row


def _fitter(key: tuple[str, str], features: list[str], config: FitConfig
            ) -> Callable[..., object]:
    """``fit(rows, groups=False) -> law``: one law fitted on some rows of the fit table, with
    the fit's options (``groups=True`` keeps the run ids, for the run bootstrap)."""
    options = {"min_epoch": config.min_epoch, "n_starts": config.n_starts, "seed": config.seed,
               "loss": config.loss}

    def fit(rows: pd.DataFrame, groups: bool = False) -> object:
        law = (ClassLaw(**options) if key == (CLASS_FAMILY, CLASS_PREDICTOR)
               else ScalingLaw(family=key[0], predictor=key[1], **options))
        return law.fit(rows[features], rows["accuracy"].to_numpy(),
                       groups=rows["run_id"].to_numpy() if groups else None)
    return fit


def _backtest_laws(table: pd.DataFrame, laws: dict[tuple[str, str], object],
                   features: dict[tuple[str, str], list[str]], config: FitConfig
                   ) -> dict[tuple[str, str], pd.DataFrame]:
    """Every fitted law's backtest residuals (:func:`mixscale.fit.backtest.backtest`).

    A bounded law (one that can be registered, chosen, stacked and calibrated) is backtested
    on every fold; an unbounded one, only reported, on the fold without the largest size
    (today's ``extrap_*`` split, ``backtest_folds`` 1), which keeps the fit's time near what
    it was: the per-class m4 laws cost a minute a fit on the digits demo.
    """
    sizes = sorted(int(v) for v in table["subset_size"].unique())
    last = sizes[-2:-1]
    return {key: backtest(table, _fitter(key, features[key], config), features=features[key],
                          min_epoch=config.min_epoch,
                          fit_sizes=None if report.is_bounded(law) else last)
            for key, law in laws.items()}


def _backtest_columns(table: pd.DataFrame, residuals: dict[tuple[str, str], pd.DataFrame]
                      ) -> pd.DataFrame:
    """Per law: the backtest RMSEs and, from the fold without the largest size, the
    ``extrap_*`` columns (today's single split, kept)."""
    sizes = sorted(table["subset_size"].unique())
    last = int(sizes[-2]) if len(sizes) > 1 else None
    rows = []
    for (family, predictor), res in residuals.items():
        row: dict[str, object] = {"family": family, "predictor": predictor}
        if len(res):
            row.update(backtest_summary(res))
        scored = fold_scores(res, last) if last is not None else None
        if scored is not None:
            row.update(report.extrap_columns(*scored))
        rows.append(row)
    return pd.DataFrame(rows)


def _bootstrap_files(key: str, law, train: pd.DataFrame, features: list[str],
                     config: FitConfig) -> dict[str, object]:
    """Run-bootstrap intervals of one law: a CSV, and a coefficient plot for per-class laws.

    Returns a ``bootstrap_<law>.txt`` note instead when no replicate could identify the law
    (too few runs per weight): the fit itself stands, only its intervals are missing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            boot = law.bootstrap(train[features], train["accuracy"].to_numpy(),
                                 groups=train["run_id"].to_numpy(), n_boot=config.n_boot,
                                 seed=config.seed)
    except MixscaleError as exc:
        return {f"bootstrap_{key}.txt": f"no bootstrap intervals for {key}: {exc}\n"}
    law.keep_bootstrap(boot)  # the registered model then serves prediction intervals
    intervals = boot.intervals.rename_axis("name").reset_index()
    intervals["n_boot_ok"] = config.n_boot - boot.n_failed
    files: dict[str, object] = {f"bootstrap_{key}.csv": intervals}
    if boot.intervals.index.str.startswith("w_n_").any() and len(boot.samples):
        files[f"class_coefficients_{key}.png"] = plots.class_coefficients(
            boot.intervals, f"{key}: per-class weights, {boot.level:.0%} run-bootstrap "
                            f"({len(boot.samples)} replicates)")
    return files


def fit_and_log(config: FitConfig, client: MlflowClient, experiment_id: str,
                design_ids: list[str], *, run_id: str | None = None,
                parent_run_id: str | None = None, echo: Echo = print):
    """Fit, log and register every law; see :func:`mixscale.stages.design.run_fit`."""
    if not design_ids:
        raise MixscaleError("`design_ids` must name at least one design run.")
    t_assemble = time.perf_counter()
    # validates the designs before logging
    table = tr.assemble_table(client, design_ids, class_metrics=config.class_law)
    assemble_seconds = time.perf_counter() - t_assemble
    dataset = client.get_run(design_ids[0]).data.params["dataset"]
    return fit_table_and_log(config, client, experiment_id, table, design_ids=design_ids,
                             dataset=dataset, assemble_seconds=assemble_seconds, run_id=run_id,
                             parent_run_id=parent_run_id, echo=echo)


def _fit_laws(table: pd.DataFrame, features: list[str], config: FitConfig
              ) -> tuple[dict[tuple[str, str], object], pd.DataFrame,
                         dict[tuple[str, str], pd.DataFrame]]:
    """Every requested law (and the per-class law) fitted to the training rows, backtested
    (with ``config.extrapolate``), and the ensemble of the bounded ones.

    Returns
    -------
    laws : dict
        ``(family, predictor) -> fitted law`` (the ensemble is ``("ensemble", "")``).
    summary : pandas.DataFrame
        One row per law: the fit's scores, backtest RMSEs, ``extrap_*``, ``bounded``,
        ``effective_params`` and ``identifiability`` (each law's own, where it has them).
    residuals : dict
        ``(family, predictor) -> backtest residuals`` (empty without ``config.extrapolate``).

    Raises
    ------
    MixscaleError
        If every law failed to fit.
    """
    count_cols = [c for c in features if c.startswith("n_")]
    train = table[table["role"] == "train"]
    val = table[table["role"] == "validation"]
    laws, summary = fit_all(
        train[features], train["accuracy"].to_numpy(),
        val[features] if len(val) else None, val["accuracy"].to_numpy() if len(val) else None,
        families=config.families, predictors=config.predictors,
        groups=train["run_id"].to_numpy(), min_epoch=config.min_epoch,
        n_starts=config.n_starts, seed=config.seed, loss=config.loss,
    )
    law_features = dict.fromkeys(laws, features)
    if config.class_law:  # features + each class's accuracy column, which only it reads
        class_features = [*features, *map(class_accuracy_column, count_cols)]
        class_law, row = class_law_summary(table, class_features, config)
        summary = pd.concat([summary, pd.DataFrame([row])], ignore_index=True)
        if class_law is not None:
            laws[(CLASS_FAMILY, CLASS_PREDICTOR)] = class_law
            law_features[(CLASS_FAMILY, CLASS_PREDICTOR)] = class_features
    if not laws:
        raise MixscaleError("every law failed to fit:\n" + summary.to_string(index=False))
    residuals = _backtest_laws(table, laws, law_features, config) if config.extrapolate else {}
    members = {key: laws[key] for key in laws if report.is_bounded(laws[key])}
    if len(members) >= 2 and residuals:
        ensemble, nested = fit_ensemble(
            {_law_key(*k): m for k, m in members.items()},
            {_law_key(*k): residuals[k] for k in members})
        if ensemble is not None:
            key = (ENSEMBLE, "")
            laws[key], residuals[key] = ensemble, nested
            summary = pd.concat([summary, pd.DataFrame([_ensemble_row(ensemble, summary,
                                                                      train, val)])],
                                ignore_index=True)
    if residuals:
        summary = summary.merge(_backtest_columns(table, residuals), on=["family", "predictor"],
                                how="left")
    keys = list(zip(summary["family"], summary["predictor"], strict=True))
    summary["bounded"] = [report.is_bounded(laws[k]) if k in laws else None for k in keys]
    for col, attr, empty in (("effective_params", "effective_params_", np.nan),
                             ("identifiability", "identifiability_", None)):
        # fit_all reports them for its laws; the per-class law and the ensemble say their own
        have = summary[col] if col in summary else pd.Series(empty, index=summary.index)
        summary[col] = [getattr(laws[k], attr, empty) if k in laws and pd.isna(v) else v
                        for k, v in zip(keys, have, strict=True)]
    return laws, summary, residuals


def _ensemble_row(ensemble: EnsembleLaw, summary: pd.DataFrame, train: pd.DataFrame,
                  val: pd.DataFrame) -> dict[str, object]:
    """The ensemble's row of the fit summary (its parameters: its members' and the weights)."""
    n_params = summary.set_index(summary["family"] + "-" + summary["predictor"])["n_params"]
    row: dict[str, object] = {
        "family": ENSEMBLE, "predictor": "", "error": None,
        "n_params": int(sum(n_params.get(n, 0) for n in ensemble.members)
                        + len(ensemble.members) - 1)}
    score = ensemble.score(train, train["accuracy"].to_numpy())
    row.update(train_mse=score["mse"], train_r2=score["r2"], val_mse=np.nan, val_r2=np.nan)
    if len(val):
        score = ensemble.score(val, val["accuracy"].to_numpy())
        row.update(val_mse=score["mse"], val_r2=score["r2"])
    return row


def _fit_artifacts(table: pd.DataFrame, features: list[str],
                   laws: dict[tuple[str, str], object], summary: pd.DataFrame, best: pd.Series,
                   per_class: pd.DataFrame, residuals: dict[tuple[str, str], pd.DataFrame],
                   config: FitConfig) -> tuple[dict[str, object], dict[str, object]]:
    """The fit run's tables (fit table, summary, backtest, each law's parameters) and its
    figures."""
    count_cols = [c for c in features if c.startswith("n_")]
    train = table[table["role"] == "train"]
    champion = _law_key(best["family"], best["predictor"])
    kept = table["epoch"] >= config.min_epoch
    figs: dict[str, object] = {
        "accuracy_vs_epoch.png": plots.accuracy_vs_epoch(
            table, law=laws[(best["family"], best["predictor"])],
            law_name=f"champion {champion}", min_epoch=config.min_epoch),
        "accuracy_vs_size.png": plots.accuracy_vs_size(table),
    }
    shown = {champion: best}
    if len(per_class):  # the best law that says something about each class
        pc = per_class.iloc[0]
        shown[_law_key(pc["family"], pc["predictor"])] = pc
    if (CLASS_FAMILY, CLASS_PREDICTOR) in laws:  # the planner's law: keep its intervals
        shown[_law_key(CLASS_FAMILY, CLASS_PREDICTOR)] = summary[
            summary["family"] == CLASS_FAMILY].iloc[0]
    files: dict[str, object] = {tr.FIT_TABLE_CSV: table, tr.FIT_SUMMARY_CSV: summary}
    if residuals:
        files[BACKTEST_CSV] = backtest_table(residuals)
        figs[BACKTEST_PNG] = plots.backtest_error(files[BACKTEST_CSV])
    # Predicted vs observed (the paper's Figs. 3-6) for every law of a small fit, else for the
    # paper's power laws, the champion and the best per-class law.
    pictured = ([(_law_key(f, p), law) for (f, p), law in laws.items()] if len(laws) <= 8
                else [(_law_key(f, p), law) for (f, p), law in laws.items() if f == "power"]
                + [(k, laws[(r["family"], r["predictor"])]) for k, r in shown.items()])
    for key, law in dict(pictured).items():
        pred = law.predict(table[features])
        figs[f"predicted_vs_observed_{key}.png"] = plots.predicted_vs_observed(
            table["accuracy"].to_numpy()[kept], pred[kept],
            table["role"].to_numpy()[kept], key)
    class_law = laws.get((CLASS_FAMILY, CLASS_PREDICTOR))
    if class_law is not None:  # which class still gains from more images
        largest = train.loc[train["total_n"].idxmax()]
        figs["class_curves.png"] = plots.class_curves(
            class_law, per_class=max(1, int(largest["total_n"]) // len(count_cols)),
            epochs=int(train["epoch"].max()))
    if config.n_boot:
        boot_features = [*(c for c in table.columns if c.startswith(("n_", "accuracy_"))),
                         "epoch"]
        for key, rec in shown.items():
            law = laws[(rec["family"], rec["predictor"])]
            # an ensemble's interval is its members': bootstrap those that carry weight
            boot = ([(n, m) for n, m in law.members.items() if law.weights[n] > 0]
                    if isinstance(law, EnsembleLaw) else [(key, law)])
            for name, one in boot:
                figs.update(_bootstrap_files(name, one, train, boot_features, config))
    for (family, predictor), law in laws.items():
        files[f"params_{_law_key(family, predictor)}.csv"] = parameter_table(law)
    return files, figs


def backtest_table(residuals: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    """Every law's backtest residuals in one table, ``law`` first (``backtest.csv``)."""
    parts = [res.assign(law=_law_key(*key)) for key, res in residuals.items() if len(res)]
    if not parts:
        return pd.DataFrame(columns=["law", *BACKTEST_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    return out[["law", *BACKTEST_COLUMNS]]


def _calibrate(laws: dict[tuple[str, str], object], residuals: dict[tuple[str, str],
               pd.DataFrame], table: pd.DataFrame, config: FitConfig) -> dict[str, str]:
    """Calibrate every registered law's interval on its own backtest residuals
    (:mod:`mixscale.fit.calibration`, with the table's seed/evaluation noise).

    Returns ``law -> why not`` for the laws that could not be calibrated.
    """
    noise = noise_sd(table, min_epoch=config.min_epoch)
    skipped = {}
    for key, law in laws.items():
        res = residuals.get(key)
        if res is None or not hasattr(law, "calibrate"):
            continue
        if "fit_sizes" in res and (res["fit_sizes"] >= 2).any():
            res = res[res["fit_sizes"] >= 2]
        try:
            law.calibrate(Calibration.from_residuals(res, noise_sd=noise))
        except MixscaleError as exc:
            skipped[_law_key(*key)] = str(exc)
    return skipped


def choose_champion(summary: pd.DataFrame, select: str, *, has_validation: bool
                    ) -> tuple[str, pd.Series]:
    """The selection basis and the eligible-laws mask of a fit summary.

    Only registered (bounded) laws are eligible. ``select="backtest"`` ranks them by
    :data:`~mixscale.fit.backtest.SELECT_SCORE` (backtest RMSE at ratios in (1, 3]), else,
    when no law has a residual there, by ``backtest_rmse``; only laws whose backtest covers
    as many rows as the most complete one are ranked (a law that failed on a fold would be
    scored on easier rows). ``select="validation"``, or a backtest without any fold, ranks by
    ``val_mse`` (``train_mse`` without validation rows): today's rule. Ties keep the
    summary's order.

    Returns
    -------
    basis : str
        The summary column the champion is the lowest of.
    eligible : pandas.Series
        True for the laws that are ranked.
    """
    registered = summary["bounded"].eq(True)
    if select == "backtest":
        for basis in (SELECT_SCORE, "backtest_rmse"):
            if basis in summary and summary.loc[registered, basis].notna().any():
                n = summary["backtest_n"].where(registered)
                return basis, registered & summary[basis].notna() & n.eq(n.max())
    basis = ("val_mse" if has_validation and summary.loc[registered, "val_mse"].notna().any()
             else "train_mse")
    return basis, registered & summary[basis].notna()


def fit_table_and_log(config: FitConfig, client: MlflowClient, experiment_id: str,
                      table: pd.DataFrame, *, design_ids: list[str], dataset: str,
                      assemble_seconds: float = 0.0, run_id: str | None = None,
                      parent_run_id: str | None = None, echo: Echo = print):
    """Fit, log and register every law on a fit table already in hand.

    Parameters
    ----------
    config, client, experiment_id, run_id, parent_run_id, echo
        As for :func:`mixscale.stages.design.run_fit`.
    table : pandas.DataFrame
        The fit table, as :func:`mixscale.track.assemble_table` returns it.
    design_ids : list of str
        The designs ``table`` comes from (logged and named in the descriptions).
    dataset : str
        Their dataset.
    assemble_seconds : float
        Time it took to assemble ``table`` (logged as a metric).

    Returns
    -------
    FitResult
    """
    count_cols = [c for c in table.columns if c.startswith("n_")]
    model_name = config.model_name or default_model_name(dataset)
    train = table[table["role"] == "train"]
    val = table[table["role"] == "validation"]
    config.check_design(train_runs=train["run_id"].nunique(),
                        sizes=train["subset_size"].nunique())
    features = [*count_cols, "epoch"]
    t0 = time.perf_counter()
    laws, summary, residuals = _fit_laws(table, features, config)
    fit_seconds = time.perf_counter() - t0
    registered = {k: law for k, law in laws.items() if report.is_bounded(law)}
    if not registered:
        failed = [f"{_law_key(f, pr)}: {err}" for f, pr, err in
                  zip(summary["family"], summary["predictor"], summary["error"], strict=True)
                  if isinstance(err, str) and (f == CLASS_FAMILY
                                               or (f in FAMILIES and bounded_law(f, pr)))]
        raise MixscaleError(config.no_bounded_law("fitted") + (
            " Why each bounded law failed: " + " ".join(failed) if failed else ""))
    calibration_notes = _calibrate(registered, residuals, table, config) if residuals else {}
    health = {key: report.law_health(law) for key, law in laws.items()}
    row_metrics, row_lines = report.row_health(table)
    summary["health"] = [health[k][0] if k in health else None
                         for k in zip(summary["family"], summary["predictor"], strict=True)]
    basis, eligible = choose_champion(summary, config.select, has_validation=bool(len(val)))
    summary = report.order_summary(summary, basis, eligible)
    ranked = summary[eligible.to_numpy()].sort_values(basis, kind="stable")
    best = ranked.iloc[0]
    champion = _law_key(best["family"], best["predictor"])
    # the best registered law that says something about each class (ranked or not: a law
    # whose backtest misses a fold still has intervals worth keeping)
    per_class = summary[summary["bounded"].eq(True).to_numpy() & np.array(
        [p in PREDICTORS and PREDICTORS[p].per_class for p in summary["predictor"]])
                        ].sort_values(basis, kind="stable")

    with tr.stage_run(
        client, experiment_id, kind="fit", name=f"fit-{dataset}-{'+'.join(config.families)}",
        tags={tr.DATASET: dataset, tr.DESIGN: ",".join(design_ids)}, run_id=run_id,
        parent_run_id=parent_run_id) as fit_id:
        tr.log_params(client, fit_id, skip_existing=True, params={
            "design_ids": ",".join(design_ids), "families": ",".join(config.families),
            "predictors": ",".join(config.predictors), "min_epoch": config.min_epoch,
            "n_starts": config.n_starts, "seed": config.seed, "model_name": model_name,
            "loss": config.loss, "n_boot": config.n_boot, "extrapolate": config.extrapolate,
            "class_law": config.class_law, "select": config.select,
            "champion_basis": basis,
        })
        metrics = {"fit_seconds": fit_seconds, "assemble_seconds": assemble_seconds,
                   "n_runs_train": train["run_id"].nunique(),
                   "n_runs_validation": val["run_id"].nunique(), "n_points": len(table),
                   **row_metrics}
        for rec in summary.to_dict("records"):
            prefix = _metric_prefix(rec["family"], rec["predictor"])
            for key in _QUALITY:
                value = rec.get(key)
                if value is not None and np.isfinite(value):
                    metrics[f"{prefix}_{key}"] = value
        metrics.update({f"champion_{k}": best[k] for k in _QUALITY
                        if k in best and np.isfinite(best[k])})
        tr.log_metrics(client, fit_id, metrics)

        files, figs = _fit_artifacts(table, features, laws, summary, best, per_class,
                                     residuals, config)
        if calibration_notes:
            files["calibration_skipped.txt"] = "".join(
                f"{k}: {why}\n" for k, why in calibration_notes.items())
        tr.log_artifacts(client, fit_id, {**files, **figs})
        for name, fig in figs.items():
            if name.endswith(".png"):
                plots.close(fig)

        example = table.loc[table.groupby("run_id")["epoch"].idxmax(), features].head(3)
        example = example.astype("int64").reset_index(drop=True)
        seen = report.fitted_on(table, design_ids, dataset, config.min_epoch)
        versions = {}
        for (family, predictor), law in registered.items():
            key = _law_key(family, predictor)
            rec = summary[(summary["family"] == family) & (summary["predictor"] == predictor)]
            tags = {"mixscale.family": family, "mixscale.predictor": predictor,
                    "mixscale.fit_run": fit_id, HEALTH_TAG: health[(family, predictor)][0],
                    "val_mse": rec["val_mse"].iloc[0], "train_mse": rec["train_mse"].iloc[0]}
            if SELECT_SCORE in rec and np.isfinite(rec[SELECT_SCORE].iloc[0]):
                tags[SELECT_SCORE] = rec[SELECT_SCORE].iloc[0]
            versions[key] = log_law(law, run_id=fit_id, name=f"law-{key}",
                                    registered_model_name=model_name, input_example=example,
                                    tags=tags)
            client.update_model_version(model_name, versions[key], description=(
                report.version_description(
                    law, rec.iloc[0].to_dict(), fit_run_id=fit_id, seen=seen, basis=basis,
                    n_laws=len(ranked), champion=champion, champion_score=best[basis],
                    health_lines=health[(family, predictor)][1])))
            set_alias(model_name, key, versions[key])
        set_alias(model_name, CHAMPION, versions[champion])
        client.update_registered_model(model_name, description=report.model_description(
            dataset, fit_run_id=fit_id, seen=seen, basis=basis, champion=champion,
            champion_version=versions[champion], champion_score=best[basis]))
        client.set_tag(fit_id, "mixscale.champion", f"{champion} (v{versions[champion]})")
    _echo_summary(summary, health, basis, echo)
    if row_lines:
        echo(f"WARNING rows: {len(row_lines)} of {int(row_metrics['rows_checked'])} did not "
             "measure their data (every law above is fitted to them; the runs' tag "
             f"mixscale.row_check): " + "; ".join(row_lines[:6])
             + (f"; and {len(row_lines) - 6} more" if len(row_lines) > 6 else ""))
    other = "val_mse" if basis != "val_mse" else SELECT_SCORE
    also = (f", {other} {best[other]:.4g}" if other in best and np.isfinite(best[other])
            else "")
    echo(f"champion: {champion} (version {versions[champion]}, select {config.select}: "
         f"lowest {basis} {best[basis]:.4g}{also}, validation r2 {best['val_r2']:.3f})")
    return FitResult(fit_run_id=fit_id, model_name=model_name, versions=versions,
                     champion=champion, summary=summary)


def _metric_prefix(family: str, predictor: str) -> str:
    """``<family>_<predictor>`` (the ensemble: ``ensemble``), the prefix of a law's metrics."""
    return f"{family}_{predictor}" if predictor else family


_TABLE_TEXT = 40  # characters of a text cell in the printed summary table


def _clip_text(value: object) -> object:
    """A text cell of the printed summary, cut to :data:`_TABLE_TEXT` characters."""
    if isinstance(value, str) and len(value) > _TABLE_TEXT:
        return value[: _TABLE_TEXT - 3] + "..."
    return value


def _echo_summary(summary: pd.DataFrame, health: dict[tuple[str, str], tuple[str, list[str]]],
                  basis: str, echo: Echo) -> None:
    """The summary table (deciding columns first), then one warning line per unhealthy law
    and a footnote for every empty ``extrap_r2``."""
    cols = [c for c in summary.columns if c not in ("family", "predictor", "extrap_note")
            and (c != "error" or summary[c].notna().any())]
    shown = summary[cols].copy()
    if "health" in shown:
        shown["health"] = [("ok" if h == "ok" else "WARNING") if isinstance(h, str) else ""
                           for h in shown["health"]]
    for col in shown.columns:  # long notes (identifiability) go in full to the CSV and the
        textual = (pd.api.types.is_object_dtype(shown[col])
                   or pd.api.types.is_string_dtype(shown[col]))
        if textual and col not in ("law", "error"):  # the warning lines, not the table
            shown[col] = [_clip_text(v) for v in shown[col]]
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        echo(shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
    # a registered (served) law's warning in full; the laws that are only reported share a
    # line (on digits nearly every unbounded law has a parameter at a bound: a wall of text)
    bounded = (set(summary.loc[summary["bounded"].eq(True), "law"]) if "bounded" in summary
               else None)
    reported_only = []
    for (family, predictor), (tag, lines) in health.items():
        key = _law_key(family, predictor)
        if tag == "ok":
            continue
        if bounded is not None and key not in bounded:
            reported_only.append(f"{key} ({tag})")
            continue
        more = f"; and {len(lines) - 4} more" if len(lines) > 4 else ""
        echo(f"WARNING {key}: " + "; ".join(lines[:4]) + more)
    if reported_only:
        echo(f"WARNING, not registered ({len(reported_only)}): " + ", ".join(reported_only)
             + " (the health column of fit_summary.csv)")
    notes = summary.dropna(subset=["extrap_note"]) if "extrap_note" in summary else summary[:0]
    if len(notes):
        echo(f"note: {notes['extrap_note'].iloc[0]} ({', '.join(notes['law'])}); "
             "extrap_rmse_points is the RMSE in accuracy points.")
    if "bounded" in summary and (~summary["bounded"].eq(True)).any():
        echo("(unbounded laws are reported but not registered: "
             f"{', '.join(summary.loc[~summary['bounded'].eq(True), 'law'])})")
    if any(tag != "ok" for tag, _ in health.values()):
        echo(f"(a WARNING law's parameters are not pinned down by the data: see its "
             f"{HEALTH_TAG} model version tag; the champion is still chosen by {basis})")


@dataclass(frozen=True)
class FitResult:
    """A logged fit."""

    fit_run_id: str
    model_name: str  # registered model holding one version per law
    versions: dict[str, str]  # "<family>-<predictor>" -> model version
    champion: str  # "<family>-<predictor>" of the champion
    summary: pd.DataFrame  # one row per law: train/validation MSE and r2

    @property
    def champion_uri(self) -> str:
        """``models:/<name>@champion``."""
        return f"models:/{self.model_name}@champion"


def serve_command(model_uri: str, tracking_uri: str, port: int = 5001) -> str:
    """The exact shell command that serves ``model_uri`` from this tracking store."""
    return (f"MLFLOW_TRACKING_URI={tracking_uri} mlflow models serve -m '{model_uri}' "
            f"--env-manager local --port {port}")


def run_fit(config: FitConfig, client: MlflowClient, experiment_id: str,
            design_ids: Sequence[str], *, run_id: str | None = None,
            parent_run_id: str | None = None, echo: Echo = print) -> FitResult:
    """Fit every requested law to the designs' FINISHED rows, log, register, pick a champion."""
    return fit_and_log(config, client, experiment_id, list(design_ids), run_id=run_id,
                       parent_run_id=parent_run_id, echo=echo)
