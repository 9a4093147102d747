"""Tests of mixscale.plan.planner (the acquisition planner) and the `mixscale plan` command."""

from __future__ import annotations

import functools
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mixscale.cli import cli
from mixscale.errors import MixscaleError
from mixscale.fit import ScalingLaw
from mixscale.plan import Plan, plan_counts

CLASSES = ["n_a", "n_b", "n_c"]
EPOCHS = 20


def _synthetic(predictor: str) -> ScalingLaw:
    """A power law fitted to noiseless data with known class weights (0.5, 0.3, 0.2)."""
    rng = np.random.default_rng(0)
    counts = rng.integers(5, 60, size=(60, 3))
    epoch = rng.integers(10, 30, size=60)
    z = counts @ np.array([0.5, 0.3, 0.2]) / 60 + epoch / 30
    X = pd.DataFrame(counts, columns=CLASSES)
    X["epoch"] = epoch
    return ScalingLaw(family="power", predictor=predictor, min_epoch=0).fit(X, 0.9 - 0.5 * z**-0.7)


@pytest.fixture(scope="module", params=["m0"])
def law(request: pytest.FixtureRequest) -> ScalingLaw:
    return _synthetic(request.param)


# the optimiser's own tests: no floor (the floor's tests are below)
plan0 = functools.partial(plan_counts, floor=0)


def _predict(law: ScalingLaw, counts: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(np.atleast_2d(counts), columns=law.class_columns_)
    frame["epoch"] = EPOCHS
    return law.predict(frame)


CUR, CAP = np.array([3, 5, 2]), np.array([25, 25, 25])


@pytest.fixture(scope="module")
def grid() -> np.ndarray:
    return np.array(list(itertools.product(*[range(a, b + 1) for a, b in zip(CUR, CAP,
                                                                              strict=True)])))


@pytest.mark.parametrize("costs", [(1.0, 2.0, 3.0), (3.0, 1.0, 1.5), (1.0, 1.0, 1.0)])
@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9])
def test_plan_is_brute_force_optimal(law: ScalingLaw, grid: np.ndarray, costs: tuple,
                                     quantile: float) -> None:
    acc = _predict(law, grid)
    lo, hi = float(_predict(law, CUR)[0]), float(acc.max())
    target = lo + quantile * (hi - lo)
    plan = plan0(law, current=CUR, caps=CAP, costs=costs, target=target, epochs=EPOCHS)
    best = ((grid[acc >= target] - CUR) @ np.asarray(costs)).min()
    assert plan.reachable
    assert np.all(plan.counts >= CUR) and np.all(plan.counts <= CAP)
    assert np.all(plan.counts == np.round(plan.counts))
    assert _predict(law, plan.counts)[0] >= target
    assert plan.cost == pytest.approx(best)
    assert plan.predicted == pytest.approx(_predict(law, plan.counts)[0])


def test_doubling_a_cost_never_increases_that_class(law: ScalingLaw) -> None:
    target = float(_predict(law, [18, 15, 10])[0])
    base = [1.0, 1.2, 1.5]
    for c in range(3):
        costs = list(base)
        before = plan0(law, current=CUR, caps=CAP, costs=costs, target=target,
                             epochs=EPOCHS)
        costs[c] *= 2
        after = plan0(law, current=CUR, caps=CAP, costs=costs, target=target,
                            epochs=EPOCHS)
        assert after.counts[c] <= before.counts[c]


def test_unreachable_target_reports_the_caps(law: ScalingLaw) -> None:
    at_caps = float(_predict(law, CAP)[0])
    plan = plan0(law, current=CUR, caps=CAP, costs=[1, 1, 1], target=at_caps + 0.01,
                       epochs=EPOCHS)
    assert not plan.reachable
    np.testing.assert_array_equal(plan.counts, CAP)
    assert plan.predicted == pytest.approx(at_caps)


def test_target_already_met_costs_nothing(law: ScalingLaw) -> None:
    plan = plan0(law, current=CUR, caps=CAP, costs=[1, 1, 1], target=0.01, epochs=EPOCHS)
    assert plan.reachable and plan.cost == 0
    np.testing.assert_array_equal(plan.counts, CUR)


def test_plan_table_interval_and_gains() -> None:
    law = _synthetic("m0")
    plan = plan0(law, current=CUR, caps=CAP, costs=[1, 2, 3],
                       target=float(_predict(law, [10, 10, 10])[0]), epochs=EPOCHS)
    assert isinstance(plan, Plan) and plan.interval is None  # no bootstrap kept
    frame = plan.to_frame()
    assert list(frame["class"]) == ["a", "b", "c"]
    np.testing.assert_array_equal(frame["added"], plan.counts - CUR)
    assert frame["cost"].sum() == pytest.approx(plan.cost)
    assert np.all(plan.marginal_gain > 0)
    gain = _predict(law, plan.counts + np.array([1, 0, 0]))[0] - _predict(law, plan.counts)[0]
    assert plan.marginal_gain[0] == pytest.approx(gain)
    assert json.loads(json.dumps(plan.to_dict()))["reachable"] is True


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"current": [1, 2]}, r"`current` must have one value per class.*got 2"),
    ({"caps": [25, 25, 25, 25]}, r"`caps` must have one value per class.*got 4"),
    ({"costs": [1, 1]}, r"`costs` must have one value per class"),
    ({"caps": [25, 4, 25]}, r"`current <= caps`.*n_b: current=5 > cap=4"),
    ({"costs": [1, -1, 1]}, r"`costs` must be >= 0.*-1"),
    ({"target": 1.0}, r"`target` must be in \(0, 1\).*target=1.0"),
    ({"target": 0}, r"`target` must be in \(0, 1\)"),
    ({"epochs": 0}, r"`epochs` must be an integer >= 1.*epochs=0"),
    ({"current": [1.5, 2, 2]}, r"`current` must be non-negative integers"),
    ({"floor": [30, 0, 0]}, r"`floor <= caps`.*n_a: floor=30 > cap=25.*lower the floor"),
    ({"floor": -1}, r"`floor` must be non-negative integers.*-1"),
    ({"floor": [1, 2]}, r"`floor` must have one value per class.*got 2"),
])
def test_bad_input_names_rule_and_value(kwargs: dict, match: str) -> None:
    law = _synthetic("m0")
    args = {"current": CUR, "caps": CAP, "costs": [1, 1, 1], "target": 0.3, "epochs": EPOCHS}
    with pytest.raises(MixscaleError, match=match):
        plan0(law, **{**args, **kwargs})


# ------------------------------------------------------- floors and class-blind laws
def test_the_default_floor_is_the_designs_smallest_class_count() -> None:
    law = _synthetic("m0")
    assert law.design_["min_count"] == 5  # the training rows' counts are 5..59
    zeros = [0, 0, 0]
    met = plan_counts(law, current=zeros, caps=CAP, costs=[1, 1, 1], target=0.01,
                      epochs=EPOCHS)  # already met by the floor itself
    np.testing.assert_array_equal(met.counts, [5, 5, 5])
    np.testing.assert_array_equal(met.floor, [5, 5, 5])
    assert met.cost == 15 and met.to_dict()["floor"] == [5, 5, 5]
    assert list(met.to_frame()["floor"]) == [5, 5, 5]
    target = float(_predict(law, [12, 12, 12])[0])
    for floor, low in ((None, [5, 5, 5]), (8, [8, 8, 8]), ([0, 9, 2], [0, 9, 2])):
        plan = plan_counts(law, current=zeros, caps=CAP, costs=[1, 1, 1], target=target,
                           epochs=EPOCHS, floor=floor)
        assert plan.reachable and np.all(plan.counts >= low), (floor, plan.counts)
    # a current count above the floor is kept; the floor only lifts classes below it
    plan = plan_counts(law, current=[20, 0, 0], caps=CAP, costs=[1, 1, 1], target=0.01,
                       epochs=EPOCHS)
    np.testing.assert_array_equal(plan.counts, [20, 5, 5])


def test_a_free_class_cannot_push_the_others_below_the_floor() -> None:
    law = _synthetic("m0")
    target = float(_predict(law, [15, 15, 15])[0])
    free = plan_counts(law, current=[0, 0, 0], caps=CAP, costs=[0, 1, 1], target=target,
                       epochs=EPOCHS)
    assert free.reachable and free.predicted >= target
    assert np.all(free.counts[1:] >= 5)  # the floor holds for the classes that cost
    assert free.counts[0] == CAP[0]  # the free class is used to its cap first
    nofloor = plan0(law, current=[0, 0, 0], caps=CAP, costs=[0, 1, 1], target=target,
                    epochs=EPOCHS)
    assert nofloor.counts[0] == CAP[0] and nofloor.cost < free.cost  # the floor has a price


def _uneven_total_law() -> ScalingLaw:
    """A total-count (m2) law fitted on rows whose mix is a: 1/2, b: 1/4, c: 1/4."""
    rng = np.random.default_rng(1)
    base = rng.integers(5, 40, size=(40, 1))
    counts = np.hstack([2 * base, base, base])
    epoch = rng.integers(10, 30, size=40)
    X = pd.DataFrame(counts, columns=CLASSES)
    X["epoch"] = epoch
    z = counts.sum(axis=1) / 160 + epoch / 30
    return ScalingLaw(family="power", predictor="m2", min_epoch=0).fit(X, 0.9 - 0.5 * z**-0.7)


def test_a_class_blind_law_warns_and_splits_in_the_designs_mix() -> None:
    law = _uneven_total_law()
    np.testing.assert_allclose(law.design_["mix"], [0.5, 0.25, 0.25])
    target = float(_predict(law, [60, 30, 30])[0]) - 1e-9
    plan = plan_counts(law, current=[0, 0, 0], caps=[100, 100, 100], costs=[2.0, 1.0, 3.0],
                       target=target, epochs=EPOCHS)
    assert plan.reachable and plan.predicted >= target
    assert len(plan.warnings) == 1 and "cannot tell the classes apart" in plan.warnings[0]
    assert "a: 0.500, b: 0.250, c: 0.250" in plan.warnings[0]
    # the split follows the mix (to within one image), it does not fill the cheapest class b
    total = plan.counts.sum()
    assert total == 120
    assert np.abs(plan.counts - total * np.array([0.5, 0.25, 0.25])).max() <= 1
    # a law that tells classes apart gets no such warning
    m0 = plan_counts(_synthetic("m0"), current=[0, 0, 0], caps=CAP, costs=[1, 1, 1],
                     target=0.5, epochs=EPOCHS)
    assert m0.warnings == ()


# --------------------------------------------------------------------------- CLI, end to end
def _plan_runs(store, experiment: str) -> list:
    exp = store.client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return store.client.search_runs([exp.experiment_id], "tags.`mixscale.kind` = 'plan'")


def test_cli_plan_against_the_registered_champion(store, pipeline) -> None:
    uri = f"models:/{pipeline.model_name}@champion"
    result = CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", "plan-e2e", "--model-uri", uri,
        "--current", ",".join(["4"] * 10), "--costs", "1,1,1,1,1,1,1,1,2,3",
        "--target", "0.5", "--epochs", "12"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "predicted accuracy:" in result.output and "marginal_gain" in result.output
    runs = _plan_runs(store, "plan-e2e")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model_uri"] == uri and run.data.params["epochs"] == "12"
    assert {"predicted_accuracy", "cost", "reachable"} <= set(run.data.metrics)
    names = {a.path for a in store.client.list_artifacts(run.info.run_id)}
    assert {"plan.json", "plan.png"} <= names
    path = store.client.download_artifacts(run.info.run_id, "plan.json", str(store.root))
    with open(path) as fh:
        saved = json.load(fh)
    assert len(saved["counts"]) == 10 and saved["target"] == 0.5
    assert saved["predicted_accuracy"] == pytest.approx(run.data.metrics["predicted_accuracy"])
    assert saved["interval"] is not None  # the champion carries bootstrap replicates


@pytest.mark.parametrize(("args", "match"), [
    (["--current", "1,2,3"], "`current` must have one value per class"),
    (["--target", "1.5"], "`target` must be in (0, 1)"),
    (["--caps", "1,1,1,1,1,1,1,1,1,1", "--current", ",".join(["4"] * 10)], "`current <= caps`"),
    (["--floor", "1,2"], "`floor` must have one value per class"),
    (["--floor", "5", "--caps", ",".join(["4"] * 10)], "`floor <= caps`"),
])
def test_cli_plan_bad_input_logs_nothing(store, pipeline, args: list, match: str) -> None:
    result = CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", "plan-bad", "--model-uri",
        f"models:/{pipeline.model_name}@champion", "--target", "0.5", *args])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and match in lines[0], result.output
    assert _plan_runs(store, "plan-bad") == []


def test_cli_plan_floor_and_the_class_blind_warning(store, pipeline) -> None:
    uri = f"models:/{pipeline.model_name}@power-m2"  # a total-count law
    result = CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", "plan-floor", "--model-uri", uri,
        "--floor", "6", "--target", "0.5", "--epochs", "12"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Warning: the law power-m2 cannot tell the classes apart" in result.output
    (run,) = _plan_runs(store, "plan-floor")
    assert run.data.params["floor"] == ",".join(["6"] * 10)
    assert "cannot tell the classes apart" in run.data.tags["mixscale.plan_warning"]
    path = store.client.download_artifacts(run.info.run_id, "plan.json", str(store.root))
    with open(path) as fh:
        saved = json.load(fh)
    assert min(saved["counts"]) >= 6 and saved["floor"] == [6] * 10
    assert "cannot tell the classes apart" in saved["warnings"][0]


def test_cli_plan_unknown_model(store) -> None:
    result = CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", "plan-bad",
        "--model-uri", "models:/no-such-model@champion", "--target", "0.5"])
    assert result.exit_code == 1
    assert "Error: cannot load a mixscale law" in result.output


def test_a_class_that_lowers_accuracy_is_never_added() -> None:
    d = _synthetic("m0").to_dict()
    d["raw_params"][3:5] = [0.8, 0.5]  # w_n_c = 1 - 0.8 - 0.5 = -0.3
    d["params"] = dict(d["params"])
    law = ScalingLaw.from_dict(d)
    best = np.array([CAP[0], CAP[1], CUR[2]])
    assert _predict(law, best)[0] > _predict(law, CAP)[0]
    target = float(_predict(law, best)[0]) - 1e-6  # only reachable without class c's images
    plan = plan0(law, current=CUR, caps=CAP, costs=[1, 1, 0], target=target,
                       epochs=EPOCHS)
    assert plan.reachable and plan.added[2] == 0 and plan.marginal_gain[2] < 0
    plan = plan0(law, current=CUR, caps=CAP, costs=[1, 1, 1], target=target + 0.01,
                       epochs=EPOCHS)
    assert not plan.reachable
    np.testing.assert_array_equal(plan.counts, best)
