"""What a fit says about itself: law health, extrapolation in accuracy points, the summary's
column order, registry descriptions and the figures (issue 12, items 5 and 6)."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest

from mixscale import plots
from mixscale import track as tr
from mixscale.errors import MixscaleError
from mixscale.fit import FitConfig, ScalingLaw, report
from mixscale.fit.backtest import BACKTEST_COLUMNS, SELECT_SCORE
from mixscale.fit.report import FLAT_STD, law_health
from mixscale.stages.fit import HEALTH_TAG, extrapolation_summary, fit_table_and_log

SIZES = (10, 40, 160)
EPOCHS = (3, 6, 9, 12)


def fit_table(*, shape: str = "power", flat_largest: bool = False, seed: int = 0,
              n_classes: int = 3, n_train: int = 4, n_val: int = 2) -> pd.DataFrame:
    """A tiny fit table (the columns of :func:`mixscale.track.assemble_table`).

    ``shape="power"`` follows a power law a power law can fit; ``"log"`` follows a logarithm,
    which a power law only reaches with its offset at the lower bound. ``flat_largest`` makes
    every accuracy of the largest size 0.95 (+- 0.1 points of noise).
    """
    rng = np.random.default_rng(seed)
    keys = [f"c{k}" for k in range(n_classes)]
    e = np.asarray(EPOCHS, float) / max(EPOCHS)
    frames = []
    for size in SIZES:
        for role, n in (("train", n_train), ("validation", n_val)):
            for r in range(n):
                share = rng.dirichlet(np.full(n_classes, 4.0))
                counts = np.maximum(1, np.round(share * size)).astype(int)
                counts[-1] = size - counts[:-1].sum()
                z = 0.8 * size / max(SIZES) + 0.2 * e
                acc = 0.95 + 0.1 * np.log(z) if shape == "log" else 0.3 + 0.6 * z**0.5
                acc = acc + 0.004 * rng.standard_normal(len(EPOCHS))
                if flat_largest and size == max(SIZES):
                    acc = 0.95 + 0.001 * rng.standard_normal(len(EPOCHS))
                frame = pd.DataFrame({"accuracy": np.clip(acc, 0, 1), "epoch": EPOCHS})
                for k, n_k in zip(keys, counts, strict=True):
                    frame[f"n_{k}"] = int(n_k)
                frame["total_n"] = int(counts.sum())
                frame["subset_size"] = size
                frame["role"] = role
                frame["run_id"] = f"s{size}-{role}-{r}"
                frame["design_id"] = "design-tiny"
                frames.append(frame)
    cols = ["accuracy", *[f"n_{k}" for k in keys], "epoch", "total_n", "subset_size", "role",
            "run_id", "design_id"]
    return pd.concat(frames, ignore_index=True)[cols]


def _config(**kw) -> FitConfig:
    # power-m2 (the paper's, unbounded: reported, not registered) and m4-s2 (bounded: registered)
    options = {"families": ("power", "m4"), "predictors": ("m2", "s2"), "min_epoch": 3,
               "n_starts": 2,
               "n_boot": 0, "class_law": False,
               "model_name": f"fit-report-{uuid.uuid4().hex[:8]}"}
    return FitConfig(**{**options, **kw})


def _features(table: pd.DataFrame) -> list[str]:
    return [*[c for c in table.columns if c.startswith("n_")], "epoch"]


def _fit(store, table, **kw):
    lines: list[str] = []
    result = fit_table_and_log(_config(**kw), store.client, store.new_experiment(), table,
                               design_ids=["design-tiny"], dataset="tiny", echo=lines.append)
    return result, "\n".join(lines)


@pytest.fixture(scope="module")
def healthy(store):
    """power-m2 (healthy, unbounded) with the bounded m4-s0 and m4-s2 and their ensemble,
    fitted, backtested and registered on a tiny table a power law fits well."""
    return _fit(store, fit_table(), predictors=("m2", "s0", "s2"))


def test_law_at_its_bound_is_warned_and_tagged(store) -> None:
    result, out = _fit(store, fit_table(shape="log"))
    rows = result.summary.set_index("law")
    assert rows.loc["power-m2", "health"] == "at_bound:a"
    # an unregistered law's warning shares one line with the other reported-only laws
    shared = [line for line in out.splitlines() if line.startswith("WARNING, not registered")]
    assert len(shared) == 1 and "power-m2 (at_bound:a)" in shared[0]
    assert "WARNING power-m2" not in out
    assert "power-m2" not in result.versions  # unbounded: reported, not registered
    # a registered law's version carries its health tag and says it in its description
    tag = rows.loc["m4-s2", "health"]
    version = store.client.get_model_version(result.model_name, result.versions["m4-s2"])
    assert tag.startswith("at_bound:") and version.tags[HEALTH_TAG] == tag
    assert f"Health warning `{tag}`" in version.description
    assert "WARNING m4-s2: " in out


def test_healthy_law_is_ok(healthy, store) -> None:
    result, out = healthy
    assert result.summary.set_index("law").loc["power-m2", "health"] == "ok"
    assert "WARNING power-m2" not in out
    for key, version in result.versions.items():  # every registered law's tag is its health
        tag = result.summary.set_index("law").loc[key, "health"]
        assert store.client.get_model_version(result.model_name, version).tags[HEALTH_TAG] == tag
    rec = {"family": "power", "predictor": "m2", "rank": 1, "val_mse": 0.1, "health": "ok"}
    text = report.version_description(
        ScalingLaw(family="power", predictor="m2"), rec, fit_run_id="r", seen="s",
        basis="val_mse", n_laws=1, champion="power-m2", champion_score=0.1)
    assert "Health: `ok`" in text


class _Law:
    """What law_health reads of a law: parameters, boxes and standard errors."""

    family = "power"

    def __init__(self, se: dict[str, float]) -> None:
        self.params_ = {"a": 0.1, "b": 1.0, "c": 0.5}
        self._se = se

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        return {"a": (-2.0, 1.0), "b": (0.0, 20.0), "c": (0.01, 3.0)}

    def standard_errors(self) -> dict[str, float]:
        return self._se


def test_huge_standard_error_is_named() -> None:
    tag, lines = law_health(_Law({"a": 3.5, "b": 0.1, "c": 0.2}))  # a's box is 3 wide
    assert tag == "huge_se:a"
    assert lines == ["a: standard error 3.5 > its box width 3"]
    assert law_health(_Law({"a": 2.9, "b": 0.1, "c": 0.2}))[0] == "ok"


def test_unidentified_class_weights_are_named() -> None:
    # rows that barely vary the class mix (thirds, +-1 image) cannot place per-class weights:
    # the law shrinks them to equal and says which rows would help; the health tag carries it
    train = fit_table().query("role == 'train'").copy()
    jitter = dict(zip(train["run_id"].unique(), [-1, 0, 1] * 10, strict=False))
    third = train["total_n"] // 3
    train["n_c0"] = third + train["run_id"].map(jitter)
    train["n_c1"] = third
    train["n_c2"] = train["total_n"] - train["n_c0"] - train["n_c1"]
    law = ScalingLaw(family="power", predictor="m0", min_epoch=3, n_starts=2)
    law.fit(train[_features(train)], train["accuracy"])
    tag, lines = law_health(law)
    assert law.identifiability_ and "unidentified" in tag.split(";")
    assert law.identifiability_ in lines and "'c0'" in law.identifiability_


def test_extrap_r2_blank_where_held_out_accuracies_are_flat() -> None:
    config = _config()
    flat = fit_table(flat_largest=True)
    big = flat[(flat["subset_size"] == max(SIZES))]
    assert big["accuracy"].std() < FLAT_STD
    row = extrapolation_summary(flat, _features(flat), config).iloc[0]
    assert np.isnan(row["extrap_r2"]) and "extrap_r2 left empty" in row["extrap_note"]
    assert row["extrap_rmse_points"] == pytest.approx(100 * np.sqrt(row["extrap_mse"]))

    varied = fit_table()
    row = extrapolation_summary(varied, _features(varied), config).iloc[0]
    assert np.isfinite(row["extrap_r2"]) and row["extrap_note"] is None
    assert row["extrap_rmse_points"] == pytest.approx(100 * np.sqrt(row["extrap_mse"]))


def test_flat_extrapolation_logs_points_not_r2(store) -> None:
    result, out = _fit(store, fit_table(flat_largest=True))
    metrics = store.client.get_run(result.fit_run_id).data.metrics
    assert "power_m2_extrap_rmse_points" in metrics and "power_m2_extrap_mse" in metrics
    assert "power_m2_extrap_r2" not in metrics
    (note,) = [line for line in out.splitlines() if line.startswith("note: extrap_r2 left empty")]
    assert "power-m2" in note


def test_summary_puts_the_deciding_columns_first(healthy, store) -> None:
    result, out = healthy
    path = store.client.download_artifacts(result.fit_run_id, tr.FIT_SUMMARY_CSV)
    summary = pd.read_csv(path)
    # the tiny table's sizes 10, 40, 160 give ratios 4 only: no residual at ratios <= 3, so
    # the backtest ranks by backtest_rmse (all ratios)
    assert list(summary.columns[:9]) == ["law", "rank", "backtest_rmse", "val_mse", "val_r2",
                                         SELECT_SCORE, "extrap_rmse_points", "bounded",
                                         "health"]
    assert {"family", "predictor", "train_mse", "extrap_mse", "extrap_r2", "backtest_rmse_r1.5",
            "backtest_rmse_r2", "backtest_n", "effective_params"} <= set(summary)
    champion = summary.loc[summary["rank"] == 1, "law"].item()
    assert champion == result.champion
    registered = summary[summary["bounded"]]
    assert summary["rank"].notna().tolist() == summary["bounded"].tolist()
    assert summary.loc[summary["rank"] == 1, "backtest_rmse"].item() == \
        registered["backtest_rmse"].min()
    assert out.splitlines()[0].split()[:9] == list(summary.columns[:9])
    assert f"champion: {champion} (version" in out and "select backtest" in out


def test_registry_descriptions_say_what_where_and_why(healthy, store) -> None:
    result, _ = healthy
    client = store.client
    model = client.get_registered_model(result.model_name)
    assert "design-tiny" in model.description and result.champion in model.description
    assert set(result.versions) == {"m4-s0", "m4-s2", "ensemble"}
    for key, version in result.versions.items():
        text = client.get_model_version(result.model_name, version).description
        assert "design-tiny" in text and "tiny" in text and result.fit_run_id in text
        if key == "ensemble":
            assert "stacked average of bounded laws" in text
            assert "Members and weights: m4-s" in text
        else:
            assert "(eps - eps_inf)" in text  # the formula
        assert "subset sizes 10, 40, 160" in text
        assert "12 training runs and 6 validation runs" in text
        if key == result.champion:
            assert "**Champion**" in text and "lowest backtest_rmse of the 3 laws" in text
        else:
            assert "of 3 by backtest_rmse" in text
    s0 = client.get_model_version(result.model_name, result.versions["m4-s0"]).description
    assert "each class's image count (one weight per class" in s0


def test_backtest_is_logged_per_law(healthy, store) -> None:
    result, _ = healthy
    client = store.client
    artifacts = {a.path for a in client.list_artifacts(result.fit_run_id)}
    assert {"backtest.csv", "backtest.png"} <= artifacts
    res = pd.read_csv(client.download_artifacts(result.fit_run_id, "backtest.csv"))
    assert list(res.columns) == ["law", *BACKTEST_COLUMNS]
    assert set(res["law"]) == set(result.summary["law"])  # every law, the unbounded too
    folds = res.groupby("law")["fit_size"].unique().map(sorted)
    for law in result.summary["law"]:  # registrable laws on every fold, the others on the last
        bounded = result.summary.set_index("law").loc[law, "bounded"]
        assert folds[law] == ([10, 40] if bounded else [40]), law
    np.testing.assert_allclose(res["ratio"], res["subset_size"] / res["fit_size"])
    assert (res["ratio"] > 1).all() and (res["epoch"] >= 3).all()
    np.testing.assert_allclose(res["residual"], res["observed"] - res["predicted"])
    metrics = client.get_run(result.fit_run_id).data.metrics
    for law, part in res.groupby("law"):
        prefix = law.replace("-", "_") if law != "ensemble" else law
        rmse = np.sqrt(np.mean(part["residual"] ** 2))
        assert metrics[f"{prefix}_backtest_rmse"] == pytest.approx(rmse, rel=1e-9), law
        assert f"{prefix}_{SELECT_SCORE}" not in metrics  # no ratio <= 3 in this design


def test_only_bounded_laws_are_registered_and_champion(healthy, store) -> None:
    result, _ = healthy
    summary = result.summary.set_index("law")
    assert set(result.versions) == set(summary.index[summary["bounded"].eq(True)])
    assert {"power-m2", "power-s0", "power-s2", "m4-m2"} <= set(summary.index)  # reported
    assert not summary.loc[["power-m2", "power-s2", "m4-m2"], "bounded"].any()
    model = store.client.get_registered_model(result.model_name)
    assert set(model.aliases) == {*result.versions, "champion"}
    assert summary.loc[result.champion, "bounded"]
    # each registered law serves an interval calibrated on its own backtest residuals, from
    # the folds fitted on >= 2 sizes (the ones the champion is chosen on)
    res = pd.read_csv(store.client.download_artifacts(result.fit_run_id, "backtest.csv"))
    served = mlflow.pyfunc.load_model(f"models:/{result.model_name}@m4-s2")
    law = served.unwrap_python_model().law
    mine = res[(res["law"] == "m4-s2") & (res["fit_sizes"] >= 2)]
    assert 0 < len(mine) < (res["law"] == "m4-s2").sum()
    assert law.calibration_ is not None and law.calibration_.n == len(mine)
    assert law.calibration_.max_ratio == pytest.approx(mine["ratio"].max())


def test_select_validation_reproduces_the_old_rule(healthy, store) -> None:
    old, _ = healthy
    result, out = _fit(store, fit_table(), predictors=("m2", "s0", "s2"), select="validation")
    summary = result.summary
    registered = summary[summary["bounded"].eq(True)]
    # the rule before backtests: lowest val_mse (here among the registered laws)
    before = registered.dropna(subset=["val_mse"]).sort_values("val_mse").iloc[0]
    assert result.champion == before["law"]
    assert summary.loc[summary["rank"] == 1, "law"].item() == before["law"]
    assert "select validation: lowest val_mse" in out
    params = store.client.get_run(result.fit_run_id).data.params
    assert params["select"] == "validation" and params["champion_basis"] == "val_mse"
    by_backtest = registered.sort_values("backtest_rmse").iloc[0]["law"]
    assert old.champion == by_backtest  # the same laws, chosen by the backtest


def test_no_bounded_law_is_refused_before_logging(store) -> None:
    experiment = store.new_experiment()
    with pytest.raises(MixscaleError, match="no bounded law fitted"):
        fit_table_and_log(_config(families=("power",)), store.client, experiment, fit_table(),
                          design_ids=["design-tiny"], dataset="tiny", echo=lambda _: None)
    assert store.client.search_runs([experiment]) == []


def test_a_bounded_law_that_failed_says_why(store) -> None:
    """The settings could register a law, but the rows are too few for m4-s2: the refusal
    names the law and its own error (not only the settings), and nothing is logged."""
    experiment = store.new_experiment()
    table = fit_table(n_train=2)
    table = table[table["epoch"] == table["epoch"].max()]  # 6 training rows: one per run
    with pytest.raises(MixscaleError, match=r"no bounded law fitted .* Why each bounded law "
                                            r"failed: m4-s2: fitting 'm4'/'s2' needs at least"):
        fit_table_and_log(_config(), store.client, experiment, table,
                          design_ids=["design-tiny"], dataset="tiny", echo=lambda _: None)
    assert store.client.search_runs([experiment]) == []


def test_backtest_figure_has_one_line_per_law() -> None:
    res = pd.DataFrame({"law": ["a", "a", "b", "b", "b"], "ratio": [1.5, 2.0, 1.5, 2.0, 2.0],
                        "residual": [0.01, 0.02, 0.03, 0.04, 0.0]})
    fig = plots.backtest_error(res)
    try:
        ax = fig.axes[0]
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"a", "b"} and ax.get_xscale() == "log"
        np.testing.assert_allclose(lines["b"].get_ydata(), [3.0, 100 * np.sqrt(0.04**2 / 2)])
    finally:
        plots.close(fig)


def test_accuracy_vs_epoch_has_a_legend_and_the_law(healthy) -> None:
    table = fit_table()
    train = table[table["role"] == "train"]
    law = ScalingLaw(family="power", predictor="m2", min_epoch=3, n_starts=2)
    law.fit(train[_features(train)], train["accuracy"])
    fig = plots.accuracy_vs_epoch(table, law=law, law_name="champion power-m2", min_epoch=3)
    try:
        (legend,) = fig.legends
        labels = [t.get_text() for t in legend.get_texts()]
        assert "champion power-m2 (fitted)" in labels
        assert {"training row (observed)", "validation row (observed)"} <= set(labels)
        first = fig.axes[0]
        runs = table.loc[table["subset_size"] == SIZES[0], "run_id"].nunique()
        dotted = [line for line in first.get_lines() if line.get_linestyle() == ":"]
        assert len(dotted) == runs  # one fitted curve per run
    finally:
        plots.close(fig)
    fig = plots.accuracy_vs_epoch(table)
    try:
        assert not [line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":"]
    finally:
        plots.close(fig)


def test_accuracy_vs_size_is_on_a_log_axis() -> None:
    fig = plots.accuracy_vs_size(fit_table())
    try:
        assert fig.axes[0].get_xscale() == "log"
    finally:
        plots.close(fig)


def test_design_heatmap_shares_one_colour_scale() -> None:
    last = fit_table().groupby("run_id").tail(1)
    design = last.assign(row=range(len(last)))
    counts = [c for c in design.columns if c.startswith("n_")]
    fig = plots.design_heatmap(design, counts)
    try:
        panels = [ax for ax in fig.axes if ax.images]
        assert len(panels) == 2 * len(SIZES)
        assert len({ax.images[0].get_clim() for ax in panels}) == 1
        assert len(fig.axes) == len(panels) + 1  # one colorbar for all
        shares = design[counts].to_numpy() / design[["subset_size"]].to_numpy()
        assert panels[0].images[0].get_clim() == (0.0, pytest.approx(shares.max()))
        titles = " ".join(ax.get_title() for ax in panels)
        assert "training rows" in titles and "validation rows" in titles
        assert {ax.get_ylabel() for ax in panels} == {"design row", ""}
        assert "class" in {ax.get_xlabel() for ax in panels}
    finally:
        plots.close(fig)


def test_scores_clip_predictions_as_served() -> None:
    table = fit_table()
    train = table[table["role"] == "train"]
    law = ScalingLaw(family="power", predictor="m2", min_epoch=3, n_starts=2)
    law.fit(train[_features(train)], train["accuracy"])
    far = train.assign(**{c: train[c] * 1000 for c in train if c.startswith("n_")})
    raw = law.predict(far[_features(far)])
    assert raw.max() > 1.5  # the unbounded power law runs away far outside the design
    score = law.score(far[_features(far)], far["accuracy"])
    assert score["mse"] == pytest.approx(np.mean((np.clip(raw, 0, 1) - far["accuracy"]) ** 2))


def test_a_scale_far_inside_a_wide_box_is_not_at_its_bound() -> None:
    """m4's beta lives in [1e-6, 1e3]: 0.08 is four decades from 1e-6 (it read as "at its
    lower bound" when the tolerance was a share of the linear width, 0.1); a value at the end
    still is, and a narrow box keeps the linear rule."""
    from mixscale.fit.report import _near_bound

    assert not _near_bound(0.08, 1e-6, 1e-6, 1e3)
    assert _near_bound(1.0001e-6, 1e-6, 1e-6, 1e3) and _near_bound(999.99, 1e3, 1e-6, 1e3)
    assert _near_bound(-2.0, -2.0, -2.0, 3.0) and not _near_bound(-1.9, -2.0, -2.0, 3.0)


def test_printed_table_cuts_long_notes_and_the_warning_keeps_them(healthy) -> None:
    """The per-class law's identifiability note runs to hundreds of characters: the printed
    table shows its first 40 (the CSV and the law's WARNING line keep it whole)."""
    result, out = healthy
    table = out.split("\nWARNING")[0]
    notes = result.summary["identifiability"].dropna()
    long = [n for n in notes if isinstance(n, str) and len(n) > 40]
    assert long  # the tiny table's shrunk per-class laws carry one
    for note in long:
        assert note not in table and note[:37] + "..." in table


def test_rows_that_did_not_measure_their_data_are_warned_and_counted(store) -> None:
    table = fit_table()
    runs = sorted(table["run_id"].unique())
    checks = {run: "ok" for run in runs}
    checks[runs[0]] = "still rising: +2.4 points over the last third of training (more than 1)"
    checks[runs[1]] = "below baseline: 0.500 vs 1-NN on its pixels 0.550"
    table["row_check"] = table["run_id"].map(checks)
    result, out = _fit(store, table)
    (line,) = [x for x in out.splitlines() if x.startswith("WARNING rows:")]
    assert line.startswith(f"WARNING rows: 2 of {len(runs)} did not measure their data")
    assert f"{runs[0][:8]} (" in line and "still rising: +2.4 points" in line
    assert f"{runs[1][:8]} (" in line and "below baseline: 0.500" in line
    metrics = store.client.get_run(result.fit_run_id).data.metrics
    assert (metrics["rows_checked"], metrics["rows_still_rising"],
            metrics["rows_below_baseline"]) == (len(runs), 1, 1)


def test_rows_without_checks_are_not_warned_about(healthy, store) -> None:
    result, out = healthy  # a table without row_check: rows trained before the checks
    assert "WARNING rows:" not in out
    assert "rows_checked" not in store.client.get_run(result.fit_run_id).data.metrics
