"""What a fit says about itself: law health, extrapolation in accuracy points, the summary's
column order, registry descriptions and the figures (issue 12, items 5 and 6)."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

from mixscale import plots
from mixscale import track as tr
from mixscale.fit import FitConfig, ScalingLaw
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
    options = {"families": ("power",), "predictors": ("m2",), "min_epoch": 3, "n_starts": 2,
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
    """power m0 and m2 fitted and registered on a tiny table a power law fits well."""
    return _fit(store, fit_table(), predictors=("m0", "m2"))


def test_law_at_its_bound_is_warned_and_tagged(store) -> None:
    result, out = _fit(store, fit_table(shape="log"))
    version = store.client.get_model_version(result.model_name, result.versions["power-m2"])
    assert version.tags[HEALTH_TAG] == "at_bound:a"
    assert "WARNING power-m2: a = -2 at its lower bound -2" in out
    row = result.summary.set_index("law").loc["power-m2"]
    assert row["health"] == "at_bound:a"
    assert "Health warning `at_bound:a`: a = -2 at its lower bound -2" in version.description


def test_healthy_law_is_ok(healthy, store) -> None:
    result, out = healthy
    for key in ("power-m0", "power-m2"):
        version = store.client.get_model_version(result.model_name, result.versions[key])
        assert version.tags[HEALTH_TAG] == "ok"
        assert "Health: `ok`" in version.description
    assert "WARNING" not in out


def test_huge_standard_error_is_named() -> None:
    # rows that barely vary the class mix (thirds, +-1 image) cannot place per-class weights
    train = fit_table().query("role == 'train'").copy()
    jitter = dict(zip(train["run_id"].unique(), [-1, 0, 1] * 10, strict=False))
    third = train["total_n"] // 3
    train["n_c0"] = third + train["run_id"].map(jitter)
    train["n_c1"] = third
    train["n_c2"] = train["total_n"] - train["n_c0"] - train["n_c1"]
    law = ScalingLaw(family="power", predictor="m0", min_epoch=3, n_starts=2)
    law.fit(train[_features(train)], train["accuracy"])
    tag, lines = law_health(law)
    se, bounds = law.standard_errors(), law.parameter_bounds()
    huge = [n for n in bounds if se[n] > bounds[n][1] - bounds[n][0]]
    assert huge and f"huge_se:{','.join(huge)}" in tag
    assert any(f"{huge[0]}: standard error" in line for line in lines)


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
    assert "note: extrap_r2 left empty" in out and "(power-m2)" in out


def test_summary_puts_the_deciding_columns_first(healthy, store) -> None:
    result, out = healthy
    path = store.client.download_artifacts(result.fit_run_id, tr.FIT_SUMMARY_CSV)
    summary = pd.read_csv(path)
    assert list(summary.columns[:6]) == ["law", "rank", "val_mse", "val_r2",
                                         "extrap_rmse_points", "health"]
    assert {"family", "predictor", "train_mse", "extrap_mse", "extrap_r2"} <= set(summary)
    champion = summary.loc[summary["rank"] == 1, "law"].item()
    assert champion == result.champion
    assert summary.loc[summary["rank"] == 1, "val_mse"].item() == summary["val_mse"].min()
    assert out.splitlines()[0].split()[:6] == list(summary.columns[:6])


def test_registry_descriptions_say_what_where_and_why(healthy, store) -> None:
    result, _ = healthy
    client = store.client
    model = client.get_registered_model(result.model_name)
    assert "design-tiny" in model.description and result.champion in model.description
    for key, version in result.versions.items():
        text = client.get_model_version(result.model_name, version).description
        assert "design-tiny" in text and "tiny" in text and result.fit_run_id in text
        assert "a + b * z**c" in text  # the formula
        assert "subset sizes 10, 40, 160" in text
        assert "12 training runs and 6 validation runs" in text
        if key == result.champion:
            assert "**Champion**" in text and "lowest val_mse" in text
        else:
            assert "Rank 2 of 2 by val_mse" in text
    m0 = client.get_model_version(result.model_name, result.versions["power-m0"]).description
    assert "each class's image count (one weight per class" in m0


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
