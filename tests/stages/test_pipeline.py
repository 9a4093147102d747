"""End to end: `mixscale main` with tiny settings on a real store, checked from the outside."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixscale import track as tr
from mixscale.fit import FitConfig, fit_all
from mixscale.stages import fit as fitstage

pytestmark = pytest.mark.slow


def test_main_prints_where_everything_is(pipeline, store) -> None:
    out = pipeline.output
    assert f"tracking URI: {store.uri}" in out
    assert "experiment:   e2e-main" in out
    assert "champion:     models:/mixscale-e2e@champion" in out
    assert (f"MLFLOW_TRACKING_URI={store.uri} mlflow models serve -m "
            "'models:/mixscale-e2e@champion' --env-manager local") in out
    assert (f"plan with it: mixscale plan --tracking-uri {store.uri} --model-uri "
            "'models:/mixscale-e2e@perclass-own-total'") in out
    assert "Traceback" not in out


def test_run_tree(pipeline, store) -> None:
    client = store.client
    runs = client.search_runs([pipeline.experiment_id])
    kinds = {r.info.run_id: r.data.tags.get(tr.KIND) for r in runs}
    (main_id,) = [i for i, k in kinds.items() if k == "pipeline"]
    design = client.get_run(pipeline.design_id)
    fit = client.get_run(pipeline.fit_run_id)
    assert design.data.tags[tr.PARENT] == main_id == fit.data.tags[tr.PARENT]
    assert kinds[pipeline.design_id] == "design" and kinds[pipeline.fit_run_id] == "fit"
    for run in (client.get_run(main_id), design, fit):
        assert run.info.status == "FINISHED"
    main = client.get_run(main_id)
    assert main.data.params["champion_uri"] == "models:/mixscale-e2e@champion"


def test_rows_finished_with_params_and_histories(pipeline, store) -> None:
    client = store.client
    rows = tr.list_rows(client, pipeline.design_id)
    assert len(rows) == 3 * (4 + 2)
    for row in rows:
        run = client.get_run(row.run_id)
        assert run.info.status == "FINISHED"
        p = run.data.params
        counts = np.array([int(p[f"n_{k}"]) for k in range(10)])
        assert counts.sum() == int(p["total_n"]) == int(p["subset_size"])
        assert p["role"] in ("train", "validation") and p["model"] == "smallcnn"
        history = client.get_metric_history(row.run_id, "test_accuracy")
        assert sorted(m.step for m in history) == [6, 9, 12]  # 3 < --min-epoch 6: skipped
        assert all(0.0 <= m.value <= 1.0 for m in history)
        assert {"test_loss", "train_loss", "train_accuracy", "test_accuracy_0"} <= set(
            run.data.metrics)
    design_csv = pd.read_csv(client.download_artifacts(pipeline.design_id, tr.DESIGN_CSV))
    assert len(design_csv) == len(rows)
    # accuracy grows with data: the largest subsets beat the smallest at the last epoch
    final = {r.subset_size: [] for r in rows}
    for r in rows:
        final[r.subset_size].append(client.get_run(r.run_id).data.metrics["test_accuracy"])
    assert np.mean(final[160]) > np.mean(final[40])


def test_fit_logged_quality_and_artifacts(pipeline, store) -> None:
    client = store.client
    fit = client.get_run(pipeline.fit_run_id)
    for pred in ("m0", "m1", "m2", "m3"):
        for key in ("train_mse", "train_r2", "val_mse", "val_r2"):
            assert f"power_{pred}_{key}" in fit.data.metrics
    artifacts = {a.path for a in client.list_artifacts(pipeline.fit_run_id)}
    assert {tr.FIT_TABLE_CSV, tr.FIT_SUMMARY_CSV, "accuracy_vs_epoch.png",
            "params_power-m1.csv", "accuracy_vs_size.png"} <= artifacts
    for pred in ("m0", "m1", "m2", "m3"):  # the paper's Figs. 3-6
        assert f"predicted_vs_observed_power-{pred}.png" in artifacts
    table = pd.read_csv(client.download_artifacts(pipeline.fit_run_id, tr.FIT_TABLE_CSV))
    assert list(table.columns[:2]) == ["accuracy", "n_0"]
    assert {"epoch", "total_n", "role", "run_id"} <= set(table.columns)
    assert table["run_id"].nunique() == 18


def test_bounded_laws_registered_and_champion_is_best_on_backtest(pipeline, store) -> None:
    client = store.client
    name = pipeline.model_name
    fit = client.get_run(pipeline.fit_run_id)
    summary = pd.read_csv(client.download_artifacts(pipeline.fit_run_id, tr.FIT_SUMMARY_CSV))
    assert fit.data.params["families"] == "power,m4" and fit.data.params["select"] == "backtest"
    assert {f"power-m{k}" for k in range(4)} <= set(summary["law"])  # the paper's, reported
    registered = set(summary.loc[summary["bounded"], "law"])
    assert {"m4-s0", "m4-s2", "perclass-own-total"} <= registered
    assert not any(law.startswith("power-") for law in registered)
    versions = client.search_model_versions(f"name = '{name}'")
    assert {v.tags["mixscale.family"] + ("-" + v.tags["mixscale.predictor"]
                                         if v.tags["mixscale.predictor"] else "")
            for v in versions} == registered
    model = client.get_registered_model(name)
    assert set(model.aliases) == {"champion", *registered}
    basis = fit.data.params["champion_basis"]
    assert basis == "backtest_rmse_r3"  # sizes 40, 80, 160: ratios 2 and 4
    ranked = summary[summary["rank"].notna()]
    best = ranked.sort_values(basis).iloc[0]
    champion = client.get_model_version_by_alias(name, "champion")
    assert (champion.tags["mixscale.family"], champion.tags["mixscale.predictor"]) == (
        best["family"], "" if pd.isna(best["predictor"]) else best["predictor"])
    assert champion.tags["mixscale.fit_run"] == pipeline.fit_run_id
    law = best["law"].replace("-", "_") if best["law"] != "ensemble" else "ensemble"
    assert fit.data.metrics[f"{law}_{basis}"] == pytest.approx(best[basis])
    res = pd.read_csv(client.download_artifacts(pipeline.fit_run_id, "backtest.csv"))
    assert sorted(res["fit_size"].unique()) == [40, 80]
    assert set(np.round(res["ratio"], 6)) == {2.0, 4.0}


def test_fit_extrapolation_and_bootstrap_outputs(pipeline, store, monkeypatch) -> None:
    client = store.client
    fit = client.get_run(pipeline.fit_run_id)
    summary = pd.read_csv(client.download_artifacts(pipeline.fit_run_id, tr.FIT_SUMMARY_CSV))
    assert {"extrap_mse", "extrap_r2"} <= set(summary.columns)
    # The extrapolation fit never sees the largest subset size: poison that size's accuracies
    # and its laws' parameters must stay bit for bit, while their error on it must move.
    p = fit.data.params
    powers = tuple(q for q in p["predictors"].split(",") if q.startswith("m"))  # the paper's
    config = FitConfig(families=("power",), predictors=powers, min_epoch=int(p["min_epoch"]),
                       n_starts=int(p["n_starts"]), seed=int(p["seed"]), loss=p["loss"])
    table = pd.read_csv(client.download_artifacts(pipeline.fit_run_id, tr.FIT_TABLE_CSV))
    features = [*(c for c in table.columns if c.startswith("n_")), "epoch"]
    largest = table["subset_size"] == table["subset_size"].max()
    assert largest.any() and (~largest & (table["role"] == "train")).any()
    poisoned = table.assign(accuracy=np.where(
        largest, np.random.default_rng(0).uniform(0.0, 1.0, len(table)), table["accuracy"]))
    fitted = []  # the laws each extrapolation fit made, through the real fit_all

    def keep_laws(*args, **kwargs):
        laws, out = fit_all(*args, **kwargs)
        fitted.append(laws)
        return laws, out

    monkeypatch.setattr(fitstage, "fit_all", keep_laws)
    clean = fitstage.extrapolation_summary(table, features, config).set_index("predictor")
    bad = fitstage.extrapolation_summary(poisoned, features, config).set_index("predictor")
    (clean_laws, bad_laws) = fitted
    assert set(clean_laws) == set(bad_laws) == {("power", q) for q in ("m0", "m1", "m2", "m3")}
    for key, law in clean_laws.items():
        np.testing.assert_array_equal(bad_laws[key].raw_params_, law.raw_params_, err_msg=key)
    big = poisoned[largest]
    for pred in ("m0", "m1", "m2", "m3"):  # what the fit run logged is this held-out score
        logged = fit.data.metrics[f"power_{pred}_extrap_mse"]
        assert logged == pytest.approx(clean.loc[pred, "extrap_mse"], rel=1e-9)
        # scored on the (poisoned) largest size: the error moves, the law did not
        moved = clean_laws[("power", pred)].score(big[features], big["accuracy"])["mse"]
        assert bad.loc[pred, "extrap_mse"] == pytest.approx(moved, rel=1e-12)
        assert bad.loc[pred, "extrap_mse"] != pytest.approx(logged, rel=1e-3)
    artifacts = {a.path for a in client.list_artifacts(pipeline.fit_run_id)}
    champion = fit.data.tags["mixscale.champion"].split()[0]
    # the tiny design has 12 training runs: enough to bootstrap a total-count law (m2/m3),
    # too few for 10 class weights, which must then say why instead of failing the fit
    boot_csv = sorted(a for a in artifacts if a.startswith("bootstrap_") and a.endswith(".csv"))
    assert boot_csv
    for name in boot_csv:
        boot = pd.read_csv(client.download_artifacts(pipeline.fit_run_id, name))
        assert (boot["lower"] <= boot["upper"]).all() and boot["estimate"].notna().all()
        assert (boot["n_boot_ok"] > 0).all()
    shown = {a.removeprefix("bootstrap_").rsplit(".", 1)[0] for a in artifacts
             if a.startswith("bootstrap_")}
    if champion == "ensemble":  # its interval is its members': they are bootstrapped
        weights = pd.read_csv(client.download_artifacts(pipeline.fit_run_id,
                                                        "params_ensemble.csv"))
        assert {n.removeprefix("weight_") for n in weights["name"]} <= shown
    else:
        assert champion in shown
    assert any(k.endswith(("m0", "m1", "s0")) for k in shown)  # the best per-class law
    assert "perclass-own-total" in shown  # the planner's law always keeps its intervals
    assert {"class_curves.png", "params_perclass-own-total.csv"} <= artifacts
    params = pd.read_csv(client.download_artifacts(pipeline.fit_run_id,
                                                   "params_perclass-own-total.csv"))
    weights = params[params["name"].str.startswith("weight_")]
    assert len(weights) == 10 and weights["value"].sum() == pytest.approx(1.0)
    for name in (a for a in artifacts if a.startswith("bootstrap_") and a.endswith(".txt")):
        text = open(client.download_artifacts(pipeline.fit_run_id, name)).read()
        assert "no bootstrap intervals" in text and "groups" in text
    assert fit.data.metrics["assemble_seconds"] > 0
