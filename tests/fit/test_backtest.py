"""Backtests, champion selection on extrapolation, and the stacked ensemble (issue 14, items 1,
2 and the ensemble of 4). No tracking store here: the fit stage's logging is in test_report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

from mixscale.errors import FitError, MixscaleError
from mixscale.fit import FitConfig, ScalingLaw
from mixscale.fit.backtest import (
    BACKTEST_COLUMNS,
    SELECT_SCORE,
    backtest,
    backtest_folds,
    backtest_summary,
)
from mixscale.fit.ensemble import EnsembleLaw, ensemble_backtest, fit_ensemble, stacking_weights
from mixscale.fit.reader import read_law
from mixscale.stages.fit import _backtest_columns, choose_champion, extrapolation_summary
from tests.support.synthetic import synthetic_table, truth_rows

SIZES = (100, 200, 300, 400)
EPOCHS = (10, 20, 30, 40)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_table(sizes=SIZES, rows_per_size=6, n_classes=3, epochs=EPOCHS, seed=0)


def _features(table: pd.DataFrame) -> list[str]:
    return [*(c for c in table.columns if c.startswith("n_")), "epoch"]


def _power_m2(rows: pd.DataFrame) -> ScalingLaw:
    law = ScalingLaw(family="power", predictor="m2", min_epoch=10, n_starts=2)
    return law.fit(rows[_features(rows)], rows["accuracy"])


def test_backtest_fits_on_small_sizes_and_predicts_every_larger_row(table) -> None:
    seen: list[pd.DataFrame] = []

    def spy(rows: pd.DataFrame) -> ScalingLaw:
        seen.append(rows)
        return _power_m2(rows)

    late = table.assign(epoch=table["epoch"].where(table["epoch"] > 10, 5))  # epoch 10 -> 5
    res = backtest(late, spy, features=_features(late), min_epoch=10)
    assert list(res.columns) == BACKTEST_COLUMNS
    assert backtest_folds(late) == [100, 200, 300]
    assert sorted(res["fit_size"].unique()) == [100, 200, 300]
    for s, rows in zip([100, 200, 300], seen, strict=True):  # fits see training rows <= s
        assert rows["subset_size"].max() == s and set(rows["role"]) == {"train"}
        assert len(rows) == ((late["role"] == "train") & (late["subset_size"] <= s)).sum()
        fold = res[res["fit_size"] == s]
        target = late[(late["subset_size"] > s) & (late["epoch"] >= 10)]
        assert len(fold) == len(target) and set(fold["role"]) == {"train", "validation"}
        assert (fold["fit_sizes"] == SIZES.index(s) + 1).all()
    assert (res["epoch"] >= 10).all() and (res["subset_size"] > res["fit_size"]).all()
    np.testing.assert_allclose(res["ratio"], res["subset_size"] / res["fit_size"])
    np.testing.assert_allclose(res["residual"], res["observed"] - res["predicted"])
    assert set(np.round(res["ratio"], 3)) == {4.0, 3.0, 2.0, 1.5, 1.333}
    assert res["predicted"].between(0, 1).all()


def test_backtest_on_chosen_folds_only(table) -> None:
    res = backtest(table, _power_m2, features=_features(table), min_epoch=10, fit_sizes=[300])
    full = backtest(table, _power_m2, features=_features(table), min_epoch=10)
    assert set(res["fit_size"]) == {300}
    pd.testing.assert_frame_equal(res, full[full["fit_size"] == 300].reset_index(drop=True))


def test_a_fold_that_cannot_fit_is_skipped(table) -> None:
    def fails_on_one_size(rows: pd.DataFrame) -> ScalingLaw:
        if rows["subset_size"].nunique() == 1:
            raise FitError("one size cannot place an exponent")
        return _power_m2(rows)

    res = backtest(table, fails_on_one_size, features=_features(table), min_epoch=10)
    assert sorted(res["fit_size"].unique()) == [200, 300]
    few = table[(table["role"] == "validation") | (table["subset_size"] > 100)
                | table["run_id"].isin(table["run_id"].unique()[:1])]
    assert backtest_folds(few) == [200, 300]  # 1 training run at 100: no fold there


def test_summary_bins_rmse_by_ratio() -> None:
    res = pd.DataFrame({"fit_size": [100, 100, 200, 200, 200], "fit_sizes": [1, 1, 2, 2, 2],
                        "ratio": [4.0, 2.0, 1.5, 2.0, 1.25],
                        "residual": [0.4, 0.1, 0.03, -0.05, 0.04]})
    out = backtest_summary(res)
    assert out["backtest_rmse"] == pytest.approx(np.sqrt(np.mean(res["residual"] ** 2)))
    assert out["backtest_rmse_r1.5"] == pytest.approx(np.sqrt((0.03**2 + 0.04**2) / 2))
    assert out["backtest_rmse_r2"] == pytest.approx(np.sqrt((0.1**2 + 0.05**2) / 2))
    # the selection score leaves out the fold fitted on one size (its 0.1 at ratio 2)
    assert out[SELECT_SCORE] == pytest.approx(np.sqrt((0.03**2 + 0.05**2 + 0.04**2) / 3))
    assert out["backtest_n"] == 5 and out["backtest_folds"] == 2


def test_last_fold_is_the_old_extrapolation_split(table) -> None:
    config = FitConfig(families=("power",), predictors=("m2",), min_epoch=10, n_starts=2,
                       n_boot=0, class_law=False)
    old = extrapolation_summary(table, _features(table), config).iloc[0]
    res = backtest(table, _power_m2, features=_features(table), min_epoch=10)
    new = _backtest_columns(table, {("power", "m2"): res}).iloc[0]
    for col in ("extrap_mse", "extrap_r2", "extrap_rmse_points"):
        assert new[col] == pytest.approx(old[col], rel=1e-12), col


class _Curve:
    """A test law of the total count only: ``predict`` applies ``f(total, epoch)``."""

    def __init__(self, f, columns) -> None:
        self.f, self.columns = f, columns

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.f(X[self.columns].sum(axis=1).to_numpy(float), X["epoch"].to_numpy(float))


def _cubic(rows: pd.DataFrame) -> _Curve:
    """Flexible in the design (a cubic in log total + 1/epoch), wild outside it."""
    cols = [c for c in rows.columns if c.startswith("n_")]

    def basis(t, e):
        u = np.log(t)
        return np.column_stack([np.ones_like(u), u, u**2, u**3, 1 / e])
    rows = rows[rows["epoch"] >= 10]
    t, e = rows[cols].sum(axis=1).to_numpy(float), rows["epoch"].to_numpy(float)
    coef, *_ = np.linalg.lstsq(basis(t, e), rows["accuracy"].to_numpy(), rcond=None)
    return _Curve(lambda t, e: basis(t, e) @ coef, cols)


def _saturating(rows: pd.DataFrame) -> _Curve:
    """``a - b / (1 + t / d) - g / e``: saturates in the data, like the truth."""
    cols = [c for c in rows.columns if c.startswith("n_")]
    rows = rows[rows["epoch"] >= 10]

    def f(x, a, b, d, g):
        return a - b / (1 + x[0] / d) - g / x[1]
    x = np.vstack([rows[cols].sum(axis=1).to_numpy(float), rows["epoch"].to_numpy(float)])
    p, _ = curve_fit(f, x, rows["accuracy"].to_numpy(), p0=(0.9, 0.6, 100, 1),
                     bounds=([0, 0, 1, 0], [1, 2, 1e4, 50]))
    return _Curve(lambda t, e: f(np.vstack([t, e]), *p), cols)


def test_backtest_selection_picks_the_law_that_truly_extrapolates_best(table) -> None:
    """Validation (interpolation) prefers the flexible cubic; the backtest prefers the
    saturating law, and on held-out truths at 1.5x and 2x the largest size it is the better."""
    held = truth_rows(design_max=max(SIZES), n_classes=3, epochs=EPOCHS, seed=1)
    train, val = table[table["role"] == "train"], table[table["role"] == "validation"]
    rows, truth_rmse = [], {}
    for name, fit in (("cubic", _cubic), ("saturating", _saturating)):
        res = backtest(table, fit, features=_features(table), min_epoch=10)
        law = fit(train)
        truth_rmse[name] = np.sqrt(np.mean((np.clip(law.predict(held), 0, 1)
                                            - held["truth"]) ** 2))
        val_mse = np.mean((law.predict(val) - val["accuracy"]) ** 2)
        rows.append({"family": name, "predictor": "", "bounded": True, "val_mse": val_mse,
                     **backtest_summary(res)})
    summary = pd.DataFrame(rows)
    basis, eligible = choose_champion(summary, "backtest", has_validation=True)
    assert basis == SELECT_SCORE and eligible.all()
    by_backtest = summary.loc[summary[basis].idxmin(), "family"]
    by_validation = summary.loc[summary["val_mse"].idxmin(), "family"]
    assert by_validation == "cubic" and by_backtest == "saturating"
    assert truth_rmse["saturating"] < truth_rmse["cubic"]
    basis, _ = choose_champion(summary, "validation", has_validation=True)
    assert basis == "val_mse"


def test_choose_champion_ranks_only_registered_complete_laws() -> None:
    summary = pd.DataFrame({
        "family": ["power", "m4", "m4", "perclass"], "predictor": ["m2", "s2", "s0", "x"],
        "bounded": [False, True, True, True], "val_mse": [0.001, 0.004, 0.003, 0.002],
        "train_mse": [0.001, 0.003, 0.002, 0.001],
        SELECT_SCORE: [0.01, 0.03, 0.02, 0.005], "backtest_rmse": [0.02, 0.04, 0.03, 0.01],
        "backtest_n": [90, 90, 90, 60]})  # the per-class law failed a fold: easier rows
    basis, eligible = choose_champion(summary, "backtest", has_validation=True)
    assert basis == SELECT_SCORE and eligible.tolist() == [False, True, True, False]
    basis, eligible = choose_champion(summary, "validation", has_validation=True)
    assert basis == "val_mse" and eligible.tolist() == [False, True, True, True]
    no_folds = summary.assign(**{SELECT_SCORE: np.nan, "backtest_rmse": np.nan})
    assert choose_champion(no_folds, "backtest", has_validation=True)[0] == "val_mse"
    assert choose_champion(no_folds, "backtest", has_validation=False)[0] == "train_mse"


def test_stacking_weights_recover_a_known_mix() -> None:
    rng = np.random.default_rng(0)
    preds = pd.DataFrame({"a": rng.uniform(0.5, 0.9, 200), "b": rng.uniform(0.5, 0.9, 200),
                          "c": rng.uniform(0.5, 0.9, 200)})
    observed = 0.3 * preds["a"] + 0.7 * preds["b"]
    w = stacking_weights(preds, observed.to_numpy())
    assert w == pytest.approx({"a": 0.3, "b": 0.7, "c": 0.0}, abs=1e-9)
    assert stacking_weights(preds[:0], np.array([])) == pytest.approx(dict.fromkeys("abc", 1 / 3))


def _bounded_laws(table):
    train = table[table["role"] == "train"]
    f = _features(table)
    out, res = {}, {}
    for pred in ("s2", "s0"):
        def fit(rows, pred=pred):
            return ScalingLaw(family="m4", predictor=pred, min_epoch=10, n_starts=2).fit(
                rows[f], rows["accuracy"])
        out[f"m4-{pred}"] = fit(train)
        res[f"m4-{pred}"] = backtest(table, fit, features=f, min_epoch=10)
    return out, res


@pytest.fixture(scope="module")
def members(table):
    return _bounded_laws(table)


def test_ensemble_is_bounded_served_as_json_and_backtested_without_its_own_rows(
        table, members) -> None:
    laws, res = members
    assert all(law.bounded for law in laws.values())
    ens, nested = fit_ensemble(laws, res)
    assert ens is not None and ens.bounded
    assert sum(ens.weights.values()) == pytest.approx(1.0)
    assert all(w > 0 for w in ens.weights.values())
    X = table[_features(table)]
    pred = ens.predict(X)
    expected = sum(w * np.clip(laws[n].predict(X), 0, 1) for n, w in ens.weights.items())
    np.testing.assert_allclose(pred, expected)
    back = read_law(ens.to_json())
    assert isinstance(back, EnsembleLaw) and back.weights == ens.weights
    np.testing.assert_allclose(back.predict(X), pred, rtol=0, atol=1e-12)
    assert list(nested.columns) == BACKTEST_COLUMNS
    assert sorted(nested["fit_size"].unique()) == [100, 200, 300]
    # nested: the weights of fold s come from folds < s only, so poisoning what fold s
    # observes leaves its predictions as they were (and moves only its residuals)
    poisoned = {n: r.assign(observed=np.where(r["fit_size"] == 300, 0.0, r["observed"]))
                for n, r in res.items()}
    again = ensemble_backtest(poisoned)
    last = nested["fit_size"] == 300
    np.testing.assert_array_equal(again.loc[last, "predicted"], nested.loc[last, "predicted"])
    assert not np.allclose(again.loc[last, "residual"], nested.loc[last, "residual"])
    # nor does any row of a size the fold did not train on (earlier folds' rows at 400)
    unseen = {n: r.assign(observed=np.where(r["subset_size"] == 400, 0.0, r["observed"]))
              for n, r in res.items()}
    np.testing.assert_array_equal(ensemble_backtest(unseen).loc[last, "predicted"],
                                  nested.loc[last, "predicted"])
    # whereas poisoning an earlier fold moves the later fold's weights
    early = {n: r.assign(observed=np.where(r["fit_size"] == 200, 0.0, r["observed"]))
             for n, r in res.items()}
    assert not np.allclose(ensemble_backtest(early).loc[last, "predicted"],
                           nested.loc[last, "predicted"])


def test_ensemble_refuses_bad_weights(members) -> None:
    laws, _ = members
    with pytest.raises(MixscaleError, match="sum to 1"):
        EnsembleLaw(laws, {"m4-s2": 0.5, "m4-s0": 0.6})
    with pytest.raises(MixscaleError, match="exactly the members"):
        EnsembleLaw(laws, {"m4-s2": 1.0})
