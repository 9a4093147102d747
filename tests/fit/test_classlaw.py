"""Tests of mixscale.fit.classlaw (bounded per-class law, shrinkage) and its planning."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mixscale.errors import FitError, MixscaleError
from mixscale.fit import NotFittedError
from mixscale.fit.classlaw import N_SHARED, ClassLaw, class_accuracy_column
from mixscale.fit.reader import read_law
from mixscale.plan import plan_counts

CLASSES = ["n_a", "n_b", "n_c"]
WEIGHTS = np.array([0.5, 0.3, 0.2])  # test-split class frequencies
# (A, m, w_own, p, w_total, q, k) per class, and the shared epoch saturation (rate, kappa)
TRUE = np.array([[0.98, 0.6, 20.0, 1.0, 5.0, 1.0, 0.05],
                 [0.80, 0.5, 8.0, 1.5, 10.0, 1.5, 0.15],
                 [0.95, 0.7, 12.0, 0.5, 1.0, 0.8, 0.03]])
EPOCH_TRUE = (4.0, 1.5)
S, S_N, E = 80, 240, 30  # the largest class count, total and epoch of the synthetic rows


def _truth(counts: np.ndarray, epoch: np.ndarray, params: np.ndarray = TRUE,
           steps: float = 0.0) -> np.ndarray:
    """The module docstring's form, written out independently of the code under test (training
    length ``u * t**steps``; 0: the same epoch curve at every size)."""
    a_max, m, w_own, p, w_total, q, k = params.T
    x = counts / S
    t = counts.sum(axis=1, keepdims=True) / S_N
    u = (epoch / E)[:, None] * t ** steps
    rate, kappa = EPOCH_TRUE
    gate = x / (x + k)
    data = 1 - m * (1 + w_own * x) ** -p - (1 - m) * (1 + w_total * t) ** -q
    return a_max * gate * data * (1 - (1 + rate * u / kappa) ** -kappa)


def _table(n_runs: int = 40, noise: float = 0.0, seed: int = 0,
           params: np.ndarray = TRUE, balanced: bool = False, steps: float = 0.0
           ) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, S, size=(n_runs, 3))
    if balanced:  # every class the same count in a run: own and total counts move together
        counts[:] = counts[:, :1]
    counts[0, :] = [S, S, S]  # pin the scales to S, S_N and E
    rows = []
    for r, c in enumerate(counts):
        for epoch in range(10, E + 1, 5):
            rows.append({**dict(zip(CLASSES, c, strict=True)), "epoch": epoch, "run": r})
    X = pd.DataFrame(rows)
    acc = _truth(X[CLASSES].to_numpy(float), X["epoch"].to_numpy(float), params, steps)
    acc = acc + noise * rng.standard_normal(acc.shape)
    for j, col in enumerate(CLASSES):
        X[class_accuracy_column(col)] = acc[:, j]
    y = acc @ WEIGHTS
    return X.assign(accuracy=y)


@pytest.fixture(scope="module")
def law() -> ClassLaw:
    X = _table()
    return ClassLaw(min_epoch=0).fit(X, X["accuracy"], groups=X["run"])


def test_recovers_a_known_law_and_the_class_frequencies(law: ClassLaw) -> None:
    np.testing.assert_allclose(law.class_weights_, WEIGHTS, atol=1e-9)
    assert law.count_scale_ == S and law.total_scale_ == 3 * S and law.epoch_scale_ == E
    fresh = _table(n_runs=15, seed=7)
    np.testing.assert_allclose(law.predict(fresh), np.clip(_truth(
        fresh[CLASSES].to_numpy(float), fresh["epoch"].to_numpy(float)), 0, 1) @ WEIGHTS,
        atol=2e-3)
    per_class = law.predict_classes(fresh)
    assert list(per_class.columns) == ["accuracy_a", "accuracy_b", "accuracy_c"]
    np.testing.assert_allclose(per_class.to_numpy() @ law.class_weights_, law.predict(fresh))
    assert law.score(fresh, fresh["accuracy"])["r2"] > 0.99
    # each class its own curve, also at twice the design's counts (class b is the hard one)
    far = pd.DataFrame({"n_a": [160], "n_b": [160], "n_c": [160], "epoch": [30]})
    true_far = _truth(far[CLASSES].to_numpy(float), far["epoch"].to_numpy(float))[0]
    np.testing.assert_allclose(law.predict_classes(far).to_numpy()[0], true_far, atol=0.025)
    assert true_far[0] - true_far[1] > 0.1
    assert law.params_["weight_b"] == pytest.approx(0.3, abs=1e-9)
    assert law.bounded is True


def test_returns_diminish_and_own_images_count_more(law: ClassLaw) -> None:
    def acc_a(n_a: int, n_b: int) -> float:
        X = pd.DataFrame({"n_a": [n_a], "n_b": [n_b], "n_c": [20], "epoch": [20]})
        return float(law.predict_classes(X)["accuracy_a"].iloc[0])

    gains = [acc_a(n + 10, 20) - acc_a(n, 20) for n in (5, 20, 40, 70)]
    assert all(g > 0 for g in gains) and gains == sorted(gains, reverse=True)
    # ten more images of class a help class a more than ten more of class b do
    assert acc_a(30, 20) - acc_a(20, 20) > acc_a(20, 30) - acc_a(20, 20) > 0


def test_missing_or_incoherent_class_accuracy_is_a_clear_fit_error() -> None:
    X = _table(n_runs=8)
    with pytest.raises(FitError, match=r"accuracy_b"):
        ClassLaw(min_epoch=0).fit(X.drop(columns="accuracy_b"), X["accuracy"])
    X.loc[3, "accuracy_c"] = np.nan
    with pytest.raises(FitError, match=r"accuracy_c.*NaN"):
        ClassLaw(min_epoch=0).fit(X, X["accuracy"])
    X = _table(n_runs=8)
    with pytest.raises(FitError, match="not a weighted mean"):
        ClassLaw(min_epoch=0).fit(X, X["accuracy"] + np.linspace(0, 0.2, len(X)))
    with pytest.raises(MixscaleError, match="class_weights"):
        ClassLaw(min_epoch=0).fit(X, X["accuracy"], class_weights=[1, -1, 1])
    with pytest.raises(NotFittedError):
        ClassLaw().predict(X)


def test_json_round_trip_keeps_predictions_and_bootstrap() -> None:
    X = _table(n_runs=20, noise=0.01, seed=3)
    law = ClassLaw(min_epoch=0, n_starts=3).fit(X, X["accuracy"], groups=X["run"])
    boot = law.bootstrap(X, X["accuracy"], n_boot=12, seed=1)
    assert boot.n_boot == 12 and len(boot.samples) == 12 - boot.n_failed > 6
    law.keep_bootstrap(boot)
    fresh = _table(n_runs=5, seed=9)
    lower, upper = law.predict_interval(fresh, 0.9)
    assert (upper - lower).max() > 0  # replicates that differ, so a lost one would show
    back = read_law(law.to_json())
    assert isinstance(back, ClassLaw)
    # the round trip is exact: the same replicates, hence the same intervals, bit for bit
    np.testing.assert_array_equal(back.bootstrap_raw_, boot.raw_samples)
    np.testing.assert_array_equal(back.raw_params_, law.raw_params_)
    np.testing.assert_array_equal(back.predict(fresh), law.predict(fresh))
    back_lower, back_upper = back.predict_interval(fresh, 0.9)
    np.testing.assert_array_equal(back_lower, lower)
    np.testing.assert_array_equal(back_upper, upper)
    assert back.params_ == law.params_ and back.design_ == law.design_
    assert back.design_["min_count"] == int(X[CLASSES].to_numpy().min())
    assert set(law.standard_errors()) == set(law.params_)
    with pytest.raises(MixscaleError, match="raw_params"):
        ClassLaw.from_dict({**law.to_dict(), "raw_params": [0.5] * 4})
    assert back.shrinkage_ == law.shrinkage_ and back.strength_ == law.strength_
    assert back.effective_params_ == law.effective_params_
    assert back.identifiability_ == law.identifiability_
    with pytest.raises(MixscaleError, match="version 1 is the per-class form without the "
                                            "own-count gate.*refit"):
        ClassLaw.from_dict({**law.to_dict(), "version": 1})
    with pytest.raises(MixscaleError, match="version 2 is the per-class form with epochs "
                                            "inside z.*refit.*version 4"):
        ClassLaw.from_dict({**law.to_dict(), "version": 2})
    with pytest.raises(MixscaleError, match="version 3 is the per-class form with one power "
                                            "law in w_own x \\+ w_total t.*refit"):
        ClassLaw.from_dict({**law.to_dict(), "version": 3})


def test_a_class_without_images_is_predicted_zero_by_the_form(law: ClassLaw) -> None:
    """No clip involved: the per-class curve is exactly 0 at own count 0, for any counts of
    the other classes and any epoch, and every prediction stays in [0, 1), also for huge
    counts and epochs."""
    counts = np.array([[0, 80, 80], [0, 5000, 5000], [40, 0, 3], [10**6, 10**6, 0],
                       [10**12, 10**12, 10**12], [0, 10**12, 1]], float)
    epoch = np.array([30.0, 300.0, 20.0, 30.0, 1e12, 1e12])
    raw = law._class_matrix(counts, epoch)  # predict itself applies no clip
    assert np.isfinite(raw).all() and (raw >= 0.0).all() and (raw < 1.0).all()
    assert raw[0, 0] == 0.0 and raw[1, 0] == 0.0 and raw[2, 1] == 0.0 and raw[3, 2] == 0.0
    assert raw[5, 0] == 0.0
    assert raw[2, 0] > 0.5 and raw[3, 0] > 0.7  # classes with images are recognised
    frame = pd.DataFrame(counts, columns=CLASSES).assign(epoch=epoch)
    np.testing.assert_array_equal(law.predict(frame), raw @ law.class_weights_)
    few = pd.DataFrame({"n_a": [40] * 3, "n_b": [2, 6, 15], "n_c": [40] * 3, "epoch": [30] * 3})
    np.testing.assert_allclose(  # the gate is identified: few images of b, b's true accuracy
        law.predict_classes(few)["accuracy_b"], _truth(few[CLASSES].to_numpy(float),
                                                       few["epoch"].to_numpy(float))[:, 1],
        atol=0.01)
    one = pd.DataFrame({"n_a": [1, 2, 8], "n_b": [20] * 3, "n_c": [20] * 3, "epoch": [20] * 3})
    acc = law.predict_classes(one)["accuracy_a"].to_numpy()
    assert 0.0 < acc[0] < acc[1] < acc[2]  # and it rises from there
    assert (law._class_matrix(np.zeros((2, 3)), np.array([0.0, 30.0])) == 0.0).all()


def test_more_images_of_any_class_never_lower_any_class(law: ClassLaw) -> None:
    rng = np.random.default_rng(4)
    base = rng.integers(0, 400, size=(200, 3)).astype(float)
    epoch = rng.uniform(1, 100, 200)
    before = law._class_matrix(base, epoch)
    for c in range(3):
        more = base.copy()
        more[:, c] += rng.integers(1, 1000, 200)
        assert (law._class_matrix(more, epoch) >= before).all()


def test_epochs_saturate_and_do_not_stand_in_for_data(law: ClassLaw) -> None:
    """At fixed data, more epochs approach a ceiling: the data curve itself. Epochs and data are
    separate resources, so what endless training adds is a share that never grows with the
    data size (v2 put epochs inside z: there, at a small subset, enough epochs replaced the
    data; an epoch over more images is at most more steps, so larger subsets saturate no
    later)."""
    counts = np.array([[3.0, 3.0, 3.0], [10.0, 10.0, 10.0], [60.0, 60.0, 60.0],
                       [500.0, 500.0, 500.0]])
    epochs = np.array([30.0, 300.0, 3e4, 3e6])
    curves = np.array([law._class_matrix(np.repeat(row[None], 4, axis=0), epochs)
                       for row in counts])  # (size, epoch, class)
    assert (np.diff(curves, axis=1) >= 0).all()  # more epochs never hurt
    assert np.abs(curves[:, 3] - curves[:, 2]).max() < 1e-3  # ... and they saturate
    gain = curves[:, 3] / curves[:, 0]  # endless training / the design's last epoch
    np.testing.assert_allclose(gain, np.tile(gain[:, :1], (1, 3)), rtol=1e-9)  # shared h
    assert (gain >= 1.0).all() and (np.diff(gain[:, 0]) <= 1e-12).all()
    assert (curves[0, 3] < curves[3, 0] - 0.1).all()  # few images, any epochs: far below


def test_shrinkage_takes_alike_classes_to_the_class_blind_law() -> None:
    same = np.tile(TRUE[0], (3, 1))
    X = _table(params=same, noise=0.01, seed=2)
    law = ClassLaw(min_epoch=0).fit(X, X["accuracy"], groups=X["run"])
    assert law.shrinkage_["fraction"] > 0.9 and law.effective_params_ < 12  # class-blind: 10
    assert law.shrinkage_["folds"] == 5 and len(law.shrinkage_["cv_mse"]) > 1
    theta = law.raw_params_[:-N_SHARED].reshape(3, -1)
    np.testing.assert_allclose(theta, np.tile(theta.mean(axis=0), (3, 1)), rtol=0.05)
    row = pd.DataFrame({"n_a": [30], "n_b": [30], "n_c": [30], "epoch": [20]})
    per_class = law.predict_classes(row).to_numpy()[0]
    assert per_class.max() - per_class.min() < 0.005  # the same own count, the same accuracy


def test_shrinkage_keeps_large_real_differences() -> None:
    X = _table(noise=0.01, seed=2)
    law = ClassLaw(min_epoch=0).fit(X, X["accuracy"], groups=X["run"])
    assert law.shrinkage_["fraction"] < 0.75 and law.effective_params_ > 10
    row = pd.DataFrame({"n_a": [60], "n_b": [60], "n_c": [60], "epoch": [30]})
    per_class = law.predict_classes(row).to_numpy()[0]
    true = _truth(row[CLASSES].to_numpy(float), row["epoch"].to_numpy(float))[0]
    assert true[0] - true[1] > 0.1  # class b is much harder ...
    np.testing.assert_allclose(per_class, true, atol=0.015)  # ... and the law keeps it so
    fresh = _table(n_runs=15, seed=7)
    truth = _truth(fresh[CLASSES].to_numpy(float), fresh["epoch"].to_numpy(float))
    assert np.sqrt(np.mean((law.predict_classes(fresh).to_numpy() - truth) ** 2)) < 0.01


def test_a_design_that_cannot_separate_own_from_total_says_which_rows_help() -> None:
    X = _table(noise=0.01, seed=2, balanced=True)
    law = ClassLaw(min_epoch=0, n_starts=3).fit(X, X["accuracy"], groups=X["run"])
    assert law.identifiability_ is not None
    assert "w_own" in law.identifiability_
    assert "class shares differ at the same total" in law.identifiability_


# --- planning with a law whose returns diminish ------------------------------------------
EPOCHS = 20
CUR, CAP = np.array([4, 4, 4]), np.array([30, 30, 30])


def _predict(law: ClassLaw, counts: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(np.atleast_2d(counts), columns=law.class_columns_)
    frame["epoch"] = EPOCHS
    return law.predict(frame)


@pytest.mark.parametrize("costs", [(1.0, 1.0, 1.0), (1.0, 2.5, 1.5)])
def test_plan_with_a_class_law_is_brute_force_optimal(law: ClassLaw, costs: tuple) -> None:
    grid = np.array(list(itertools.product(*[range(a, b + 1) for a, b in zip(CUR, CAP,
                                                                              strict=True)])))
    acc = _predict(law, grid)
    target = float(_predict(law, CUR)[0] + 0.6 * (acc.max() - _predict(law, CUR)[0]))
    plan = plan_counts(law, current=CUR, caps=CAP, costs=costs, target=target, epochs=EPOCHS)
    feasible = acc >= target
    best_cost = np.min((grid[feasible] - CUR) @ np.array(costs))
    assert plan.reachable and plan.predicted >= target
    assert plan.cost <= best_cost + 1e-9 + max(costs)  # within one image of the optimum
    assert np.all(plan.counts >= CUR) and np.all(plan.counts <= CAP)


def test_diminishing_returns_spread_a_plan_over_identical_classes() -> None:
    same = np.tile(TRUE[0], (3, 1))
    X = _table(params=same)
    law = ClassLaw(min_epoch=0).fit(X, X["accuracy"], class_weights=[1, 1, 1])
    target = float(_predict(law, CUR)[0] + 0.5 * (_predict(law, CAP)[0] - _predict(law, CUR)[0]))
    plan = plan_counts(law, current=CUR, caps=CAP, costs=[1, 1, 1], target=target,
                       epochs=EPOCHS)
    assert plan.counts.max() - plan.counts.min() <= 2  # no class is filled to its cap first
    dear = plan_counts(law, current=CUR, caps=CAP, costs=[1.5, 1, 1], target=target,
                       epochs=EPOCHS)
    assert dear.counts[0] < plan.counts[0] and dear.counts[0] > CUR[0]  # less, not none


def test_training_length_in_steps_is_learned_when_larger_subsets_train_faster() -> None:
    """With a fixed batch size an epoch over more images is more optimiser steps: rows whose
    early epochs rise faster at larger sizes give ``steps`` near 1, and the law predicts a
    larger subset's early epochs; rows with one epoch curve for every size give ``steps``
    near 0 (the module fixture)."""
    X = _table(noise=0.005, seed=5, steps=1.0)
    law = ClassLaw(min_epoch=0).fit(X, X["accuracy"], groups=X["run"])
    assert law.params_["steps"] > 0.7
    big = pd.DataFrame({"n_a": [120] * 3, "n_b": [120] * 3, "n_c": [120] * 3,
                        "epoch": [10, 20, 30]})  # 1.5x the design's largest total
    true = _truth(big[CLASSES].to_numpy(float), big["epoch"].to_numpy(float), steps=1.0)
    np.testing.assert_allclose(law.predict_classes(big).to_numpy(), true, atol=0.03)
    flat = ClassLaw(min_epoch=0).fit(*(lambda t: (t, t["accuracy"]))(_table(noise=0.005,
                                                                             seed=5)))
    assert flat.params_["steps"] < 0.2
