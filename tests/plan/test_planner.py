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
    uri = f"models:/{pipeline.model_name}@m4-s2"  # a total-count law
    result = CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", "plan-floor", "--model-uri", uri,
        "--floor", "6", "--target", "0.5", "--epochs", "12"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Warning: the law m4-s2 cannot tell the classes apart" in result.output
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


# ------------------------------------------------------------------ planning with risk
def _calibrated(law: ScalingLaw, *, noise: float = 0.01) -> ScalingLaw:
    """``law`` with a calibration whose error grows like r**1 beyond the design."""
    from mixscale.fit.calibration import Calibration

    rng = np.random.default_rng(1)
    ratio = rng.uniform(1.1, 3.0, 200)
    residuals = pd.DataFrame({"ratio": ratio, "residual": rng.normal(0, 0.01 * ratio)})
    return law.calibrate(Calibration.from_residuals(residuals, noise_sd=noise))


def _lower(law: ScalingLaw, counts: np.ndarray, level: float) -> np.ndarray:
    frame = pd.DataFrame(np.atleast_2d(counts), columns=law.class_columns_)
    frame["epoch"] = EPOCHS
    return law.predict_interval(frame, level)[0]


@pytest.mark.parametrize("target", [0.6, 0.68])  # inside the design, and beyond its total
def test_confidence_buys_more_and_its_lower_bound_reaches_the_target(target: float) -> None:
    law = _calibrated(_synthetic("m0"))
    caps = np.array([400, 400, 400])
    args = {"current": CUR, "caps": caps, "costs": [1.0, 2.0, 3.0], "target": target,
            "epochs": EPOCHS}
    point = plan0(law, **args)
    risky = plan0(law, **args, confidence=0.9)
    assert point.reachable and risky.reachable and point.confidence is None
    assert _lower(law, point.counts, 0.9)[0] < target  # the point plan is not safe at 90 %
    assert risky.cost > point.cost and risky.added.sum() > point.added.sum()
    lower = _lower(law, risky.counts, 0.9)[0]
    assert lower >= target - 1e-9
    assert risky.interval == pytest.approx((lower, risky.interval[1]))
    assert risky.interval_level == 0.9 and risky.calibrated and risky.confidence == 0.9
    assert risky.predicted > target  # its point prediction is above the target by the margin
    # cheapest: one image fewer of any added class drops the lower bound below the target
    fewer = risky.counts - np.eye(3)[risky.added > 0]
    assert np.all(_lower(law, fewer, 0.9) < target)
    saved = json.loads(json.dumps(risky.to_dict()))
    assert saved["confidence"] == 0.9 and saved["interval_level"] == 0.9
    assert saved["interval_calibrated"] is True
    # a higher confidence never buys less
    assert plan0(law, **args, confidence=0.95).cost >= risky.cost
    if target > 0.65:  # beyond the design: the calibrated width grows with the ratio
        assert law.extrapolation_ratio(risky.counts[None, :])[0] > 1.0


@pytest.mark.parametrize("confidence", [1.0, 0.995, -0.1, 1.5, True, "0.9"])
def test_a_confidence_outside_the_allowed_range_is_refused(confidence) -> None:
    law = _calibrated(_synthetic("m0"))
    with pytest.raises(MixscaleError, match=r"`confidence` must be 0 \(plan on the point "
                                            r"prediction\) or in \(0, 0\.99\]"):
        plan0(law, current=CUR, caps=CAP, costs=[1, 1, 1], target=0.5, epochs=EPOCHS,
              confidence=confidence)


def test_confidence_needs_a_law_with_an_interval_and_zero_is_the_point_plan() -> None:
    law = _synthetic("m0")  # no bootstrap, no calibration
    args = {"current": CUR, "caps": CAP, "costs": [1, 1, 1], "target": 0.5, "epochs": EPOCHS}
    with pytest.raises(MixscaleError, match="needs a law with a prediction interval"):
        plan0(law, **args, confidence=0.9)
    np.testing.assert_array_equal(plan0(law, **args, confidence=0).counts,
                                  plan0(law, **args).counts)


def test_verify_reports_each_seed_inside_or_outside_the_calibrated_interval() -> None:
    from mixscale.stages.verify import Verification, verification_lines

    law = _calibrated(_synthetic("m0"))
    plan = plan0(law, current=CUR, caps=CAP, costs=[1, 1, 1], target=0.5, epochs=EPOCHS,
                 confidence=0.9)
    lo, hi = plan.interval
    realised = np.array([(lo + hi) / 2, hi + 0.01, lo - 0.01])
    v = Verification(seeds=[0, 1, 2], run_ids=["r0", "r1", "r2"], realised=realised,
                     predicted=plan.predicted, mean=float(realised.mean()), std=0.01,
                     abs_error=0.0, within_interval=1 / 3)
    lines = verification_lines(plan, v)
    seeds = [ln for ln in lines if ln.lstrip().startswith("seed ")]
    assert [ln.split()[4] for ln in seeds] == ["inside", "OUTSIDE", "OUTSIDE"], seeds
    assert f"(90% calibrated interval {lo:.4f}-{hi:.4f})" in "\n".join(lines)
    assert "1/3 seed(s) inside the interval" in lines[-1]


@pytest.fixture(scope="module")
def calibrated_uri(store) -> str:
    """A registered calibrated synthetic law (no pipeline needed)."""
    from mixscale import track as tr
    from mixscale.serve import log_law

    law = _calibrated(_synthetic("m0"))
    frame = pd.DataFrame([[10, 10, 10, EPOCHS]], columns=[*CLASSES, "epoch"])
    run_id = tr.start_stage_run(store.client, store.new_experiment(), kind="fit", name="cal")
    version = log_law(law, run_id=run_id, name="law", registered_model_name="plan-calibrated",
                      input_example=frame)
    return f"models:/plan-calibrated/{version}"


def test_cli_plan_confidence_default_and_refusal(store, calibrated_uri: str) -> None:
    args = ["plan", "--tracking-uri", store.uri, "--model-uri", calibrated_uri,
            "--current", "3,5,2", "--caps", "400,400,400", "--target", "0.68",
            "--epochs", str(EPOCHS)]
    saved = {}
    for name, extra in (("default", []), ("point", ["--confidence", "0"])):
        result = CliRunner().invoke(cli, [*args, "--experiment", f"plan-conf-{name}", *extra],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        (run,) = _plan_runs(store, f"plan-conf-{name}")
        path = store.client.download_artifacts(run.info.run_id, "plan.json", str(store.root))
        with open(path) as fh:
            saved[name] = json.load(fh)
        saved[name]["output"] = result.output
    default, point = saved["default"], saved["point"]
    assert default["confidence"] == 0.9 and point["confidence"] is None  # the default is 0.9
    assert default["interval_calibrated"] is True and default["interval"][0] >= 0.68 - 1e-9
    assert default["cost"] > point["cost"]
    assert "by the lower bound of the 90% interval" in default["output"]
    assert "90% calibrated interval" in default["output"]
    result = CliRunner().invoke(cli, [*args, "--experiment", "plan-conf-bad",
                                      "--confidence", "1.5"])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "must be 0 (plan on the point prediction) or in (0, 0.99]" in (
        lines[0]), result.output
    assert _plan_runs(store, "plan-conf-bad") == []
