"""Tests of mixscale.stages.verify and `mixscale plan --verify` (real store, real training)."""

from __future__ import annotations

import dataclasses
import json
import uuid

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mixscale import track as tr
from mixscale.cli import cli
from mixscale.cli.commands import MAX_SEEDS as _MAX_SEEDS
from mixscale.config import TrainConfig
from mixscale.errors import MixscaleError
from mixscale.plan import Plan
from mixscale.stages.verify import (
    MAX_SEEDS,
    recipe_from_params,
    resolve_recipe,
    verify_config,
    verify_plan,
)

TEN = 10  # digits has ten classes


def _csv(value: int) -> str:
    return ",".join([str(value)] * TEN)


# --------------------------------------------------------------------------- units
def test_verify_config_keeps_the_schedule_up_to_the_new_epochs() -> None:
    config = TrainConfig(epochs=30, eval_every=7, lr_milestones=(5, 20, 25))
    short = verify_config(config, 12)
    assert (short.epochs, short.eval_every, short.lr_milestones) == (12, 7, (5,))
    assert short.eval_epochs()[-1] == 12  # the last epoch is evaluated
    tiny = verify_config(config, 4)
    assert (tiny.epochs, tiny.eval_every, tiny.lr_milestones) == (4, 4, ())
    longer = verify_config(config, 60)
    assert (longer.epochs, longer.eval_every, longer.lr_milestones) == (60, 7, (5, 20, 25))
    assert verify_config(config, 20).lr_milestones == (5, 20)
    assert (longer.lr, longer.model, longer.batch_size) == (config.lr, config.model,
                                                            config.batch_size)


def test_recipe_from_params_parses_text_and_unpins_device() -> None:
    params = {"model": "smallcnn", "epochs": "12", "eval_every": "3", "lr": "0.02",
              "momentum": "0.8", "weight_decay": "0.0001", "batch_size": "16",
              "lr_milestones": "4,8", "lr_gamma": "0.5", "device": "cpu", "augment": "none",
              "crop_padding": "2", "stem": "cifar", "precision": "fp32", "data_dir": "d",
              "hparams_from": "", "total_n": "40", "n_0": "4"}
    config = recipe_from_params(params)
    assert config == TrainConfig(epochs=12, eval_every=3, lr=0.02, momentum=0.8,
                                 weight_decay=1e-4, batch_size=16, lr_milestones=(4, 8),
                                 lr_gamma=0.5, augment="none", crop_padding=2, stem="cifar",
                                 data_dir="d", device="auto", precision="auto")
    assert recipe_from_params({**params, "lr_milestones": ""}).lr_milestones == ()
    assert recipe_from_params({**params, "stem": "none"}).stem == "auto"  # smallcnn's
    with pytest.raises(MixscaleError, match=r"param epochs='twelve' of row run x"):
        recipe_from_params({**params, "epochs": "twelve"}, source="row run x")
    with pytest.raises(MixscaleError, match=r"recipe of the row is not valid.*eval_every"):
        recipe_from_params({**params, "eval_every": "50"})


def test_verify_plan_refuses_bad_seeds_before_training() -> None:
    plan = Plan(class_columns=["n_0"], current=np.zeros(1), caps=np.ones(1), costs=np.ones(1),
                counts=np.ones(1), target=0.5, epochs=3, predicted=0.4, interval=None,
                reachable=False, marginal_gain=np.zeros(1), floor=np.zeros(1))
    for bad in (0, MAX_SEEDS + 1, 2.0, True):
        with pytest.raises(MixscaleError, match=rf"`seeds` must be an integer in \[1, 100\].*"
                                                rf"seeds={bad!r}"):
            verify_plan(None, "0", plan, dataset_name="digits", config=TrainConfig(),
                        seeds=bad)
    assert _MAX_SEEDS == MAX_SEEDS


# --------------------------------------------------------------------------- the recipe
def _row_params(store, pipeline) -> dict[str, str]:
    row = next(r for r in tr.list_rows(store.client, pipeline.design_id)
               if r.status == "FINISHED")
    return store.client.get_run(row.run_id).data.params


@pytest.mark.parametrize("form", ["alias", "version", "latest", "runs", "model-id"])
def test_resolve_recipe_returns_what_the_rows_trained_with(store, pipeline, form: str) -> None:
    client = store.client
    champion = client.get_model_version_by_alias(pipeline.model_name, "champion")
    uri = {"alias": f"models:/{pipeline.model_name}@champion",
           "version": f"models:/{pipeline.model_name}/{champion.version}",
           "latest": f"models:/{pipeline.model_name}/latest",
           "runs": f"runs:/{pipeline.fit_run_id}/law",
           "model-id": champion.source}[form]  # MLflow 3: models:/m-<logged model id>
    dataset, config, fit_run_id = resolve_recipe(client, uri)
    assert (dataset, fit_run_id) == ("digits", pipeline.fit_run_id)
    params = _row_params(store, pipeline)
    for field in TrainConfig.__dataclass_fields__:
        value = getattr(config, field)
        if field in ("device", "precision"):
            assert value == "auto"  # a GPU is used when present
        elif field == "stem" and params[field] == "none":
            assert value == "auto"  # smallcnn has no stem
        elif field == "lr_milestones":
            assert ",".join(map(str, value)) == params[field]
        elif field != "download":
            assert str(value) == params[field], field
    assert (config.epochs, config.eval_every, config.lr_milestones) == (12, 3, ())


def test_a_version_not_registered_by_fit_is_refused(store, pipeline) -> None:
    client = store.client
    champion = client.get_model_version_by_alias(pipeline.model_name, "champion")
    name = f"untagged-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, champion.source).version
    match = rf"model version {version} of '{name}' has no tag mixscale.fit_run: it was not " \
            r"registered by `mixscale fit`"
    with pytest.raises(MixscaleError, match=match):
        resolve_recipe(client, f"models:/{name}/{version}")
    result = CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", "verify-bad", "--model-uri",
        f"models:/{name}/{version}", "--target", "0.5", "--verify"])
    assert result.exit_code == 1 and "has no tag mixscale.fit_run" in result.output
    assert "Traceback" not in result.output
    assert _runs(store, "verify-bad") == []


@pytest.mark.parametrize(("uri", "match"), [
    ("runs:/{design}/law", r"is not a run of `mixscale fit` \(its mixscale.kind tag is "
                           r"'design'\)"),
    ("runs:/{missing}/law", r"fit run '0+' does not exist"),
    ("models:/{model}/Production", r"'Production'.*is not a number"),
    ("models:/{model}@no-such-alias", r"cannot find the model"),
    ("s3://bucket/law", r"allowed forms: models:/<name>@<alias>"),
])
def test_resolve_recipe_names_the_missing_link(store, pipeline, uri: str, match: str) -> None:
    uri = uri.format(design=pipeline.design_id, missing="0" * 32, model=pipeline.model_name)
    with pytest.raises(MixscaleError, match=match):
        resolve_recipe(store.client, uri)


# --------------------------------------------------------------------------- one recipe
def _recipe_params(config: TrainConfig) -> dict[str, str]:
    """``config`` as a row logs it (all text; ``download`` left out)."""
    params = {f: str(getattr(config, f)) for f in TrainConfig.__dataclass_fields__
              if f != "download"}
    return {**params, "lr_milestones": ",".join(map(str, config.lr_milestones))}


def _design(store, experiment_id: str, recipes: list[TrainConfig], *,
            dataset: str = "digits") -> tuple[str, list[str]]:
    """A design run of two classes with one FINISHED row per recipe; its id and row run ids."""
    client = store.client
    design_id = client.create_run(experiment_id, tags={tr.KIND: "design"}).info.run_id
    tr.log_params(client, design_id, {"class_keys": "a,b", "dataset": dataset})
    table = pd.DataFrame({"row": range(len(recipes)), "role": "train", "subset_size": 8,
                          "seed": range(len(recipes)), "n_a": 4, "n_b": 4})
    row_ids = tr.create_design_rows(client, design_id, table, count_columns=["n_a", "n_b"],
                                    dataset=dataset)
    for run_id, config in zip(row_ids, recipes, strict=True):
        tr.log_params(client, run_id, _recipe_params(config))
        client.set_terminated(run_id, "FINISHED")
    return design_id, row_ids


def _fit(store, experiment_id: str, design_ids: list[str]) -> str:
    tags = {tr.KIND: "fit", tr.DESIGN: ",".join(design_ids)}
    return store.client.create_run(experiment_id, tags=tags).info.run_id


RECIPE = TrainConfig(epochs=12, eval_every=3, lr_milestones=(6,))


def test_resolve_recipe_accepts_rows_and_designs_that_agree(store) -> None:
    experiment_id = store.new_experiment()
    longer = dataclasses.replace(RECIPE, epochs=30)
    first, rows = _design(store, experiment_id, [RECIPE, RECIPE, RECIPE, longer])
    other = dataclasses.replace(RECIPE, data_dir="elsewhere")  # where images are read: not recipe
    second, _ = _design(store, experiment_id, [RECIPE, other])
    client = store.client
    # rows that are not current or not FINISHED do not count, whatever their recipe
    stale = client.create_run(experiment_id, tags={
        tr.KIND: "row", tr.DESIGN: first, tr.SUPERSEDED_BY: rows[0]}).info.run_id
    tr.log_params(client, stale, {"row": 0, "role": "train", "subset_size": 8, "seed": 0,
                                  "n_a": 4, "n_b": 4, **_recipe_params(
                                      dataclasses.replace(RECIPE, lr=0.5))})
    client.set_terminated(stale, "FINISHED")
    client.set_terminated(rows[-1], "FAILED")
    fit_id = _fit(store, experiment_id, [first, second])
    dataset, config, fit_run_id = resolve_recipe(client, f"runs:/{fit_id}/law")
    assert (dataset, fit_run_id) == ("digits", fit_id)
    assert config == RECIPE  # the first row's, data_dir included
    third_id = _fit(store, experiment_id, [first, _design(store, experiment_id, [])[0]])
    assert resolve_recipe(client, f"runs:/{third_id}/law")[1] == RECIPE  # an empty design


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("lr", 0.02, "lr=0.05 vs 0.02"),
    ("lr_milestones", (4, 8), "lr_milestones=(6,) vs (4, 8)"),
    ("model", "resnet18", "model='smallcnn' vs 'resnet18'"),
])
@pytest.mark.parametrize("across", [False, True])
def test_resolve_recipe_refuses_a_law_that_mixes_recipes(store, field: str, value, shown: str,
                                                         across: bool) -> None:
    experiment_id = store.new_experiment()
    other = dataclasses.replace(RECIPE, **{field: value})
    if across:  # the second design trained with another recipe
        first, (a, _) = _design(store, experiment_id, [RECIPE, RECIPE])
        second, (b,) = _design(store, experiment_id, [other])
        designs = [first, second]
    else:  # one design whose rows disagree
        first, (a, _, b) = _design(store, experiment_id, [RECIPE, RECIPE, other])
        designs = [first]
    fit_id = _fit(store, experiment_id, designs)
    with pytest.raises(MixscaleError) as info:
        resolve_recipe(store.client, f"runs:/{fit_id}/law")
    message = str(info.value)
    assert f"the law mixes training recipes: row run {a} and row run {b} differ in {shown};" \
        in message
    assert '"the recipe the law was fitted on"' in message
    assert "Fit on rows trained with one recipe" in message


def test_resolve_recipe_refuses_designs_of_different_datasets(store) -> None:
    experiment_id = store.new_experiment()
    first, _ = _design(store, experiment_id, [RECIPE])
    second, _ = _design(store, experiment_id, [RECIPE], dataset="cifar10")
    fit_id = _fit(store, experiment_id, [first, second])
    match = (rf"the law's designs are of different datasets: 'digits' \(design {first}\) vs "
             rf"'cifar10' \(design {second}\); a verification trains one dataset")
    with pytest.raises(MixscaleError, match=match):
        resolve_recipe(store.client, f"runs:/{fit_id}/law")
    empty = _fit(store, experiment_id, [_design(store, experiment_id, [])[0]])
    with pytest.raises(MixscaleError, match=r"design \w+ has no FINISHED row to read the "
                                            r"training recipe from"):
        resolve_recipe(store.client, f"runs:/{empty}/law")


# --------------------------------------------------------------------------- CLI, end to end
def _runs(store, experiment: str, kind: str | None = None) -> list:
    exp = store.client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = f"tags.`{tr.KIND}` = '{kind}'" if kind else ""
    return store.client.search_runs([exp.experiment_id], query)


def _plan(store, pipeline, experiment: str, *args: str):
    return CliRunner().invoke(cli, [
        "plan", "--tracking-uri", store.uri, "--experiment", experiment, "--model-uri",
        f"models:/{pipeline.model_name}@champion", "--epochs", "12", *args])


def _final(store, run_id: str) -> float:
    history = store.client.get_metric_history(run_id, "test_accuracy")
    return max(history, key=lambda m: m.step).value


def test_cli_plan_verify_trains_the_plan_per_seed(store, pipeline) -> None:
    result = _plan(store, pipeline, "verify-e2e", "--current", _csv(4), "--target", "0.8",
                   "--verify", "--seeds", "2")
    assert result.exit_code == 0, result.output
    (plan_run,) = _runs(store, "verify-e2e", "plan")
    client, plan_id = store.client, plan_run.info.run_id
    assert plan_run.info.status == "FINISHED"
    # with --verify and no --caps, the caps are the images digits has per class
    from mixscale.data import load_dataset

    available = load_dataset("digits").available
    assert plan_run.data.params["caps"] == ",".join(map(str, available))
    saved = json.load(open(client.download_artifacts(plan_id, "plan.json", str(store.root))))
    children = client.search_runs([plan_run.info.experiment_id],
                                  f"tags.`{tr.PARENT}` = '{plan_id}'")
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags[tr.KIND] == "adhoc"
        counts = [int(child.data.params[f"n_{k}"]) for k in range(TEN)]
        assert counts == saved["counts"]
        assert child.data.params["epochs"] == "12"
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    metrics = plan_run.data.metrics
    # every summary is recomputed from the seeds' own runs (their last test_accuracy)
    by_seed = {int(c.data.params["seed"]): _final(store, c.info.run_id) for c in children}
    acc = np.array([by_seed[0], by_seed[1]])
    assert metrics["realised_accuracy"] == pytest.approx(acc.mean(), abs=1e-12)
    assert metrics["realised_accuracy_std"] == pytest.approx(acc.std(ddof=1), abs=1e-12)
    assert metrics["abs_error"] == pytest.approx(abs(metrics["predicted_accuracy"] - acc.mean()))
    lo, hi = metrics["predicted_lower"], metrics["predicted_upper"]  # the champion's interval
    assert saved["interval"] == [lo, hi] and lo < hi
    inside = float(np.mean((lo <= acc) & (acc <= hi)))
    assert metrics["realised_in_interval"] == inside
    assert f"{round(inside * 2)}/2 seed(s) inside the interval" in result.output
    seeds = client.get_metric_history(plan_id, "realised_accuracy_seed")
    assert {m.step: m.value for m in seeds} == pytest.approx({0: acc[0], 1: acc[1]})
    assert plan_run.data.params["verify_seeds"] == "2"
    path = client.download_artifacts(plan_id, "verify.csv", str(store.root))
    table = pd.read_csv(path)
    assert list(table.columns) == ["seed", "run_id", "realised_accuracy", "predicted_accuracy"]
    assert set(table["run_id"]) == {c.info.run_id for c in children}
    assert "realised:" in result.output and "|error|:" in result.output


def test_cli_plan_verify_an_unreachable_plan_trains_its_best_counts(store, pipeline) -> None:
    result = _plan(store, pipeline, "verify-unreachable", "--current", _csv(3), "--caps",
                   _csv(4), "--target", "0.99", "--verify", "true", "--seeds", "1")
    assert result.exit_code == 0, result.output
    assert "reachable:    NO" in result.output and "target out of reach" in result.output
    (plan_run,) = _runs(store, "verify-unreachable", "plan")
    (child,) = _runs(store, "verify-unreachable", "adhoc")
    assert child.data.tags[tr.PARENT] == plan_run.info.run_id
    assert plan_run.data.params["caps"] == _csv(4)
    assert plan_run.data.metrics["realised_accuracy"] == pytest.approx(
        _final(store, child.info.run_id))
    assert "realised_accuracy_std" not in plan_run.data.metrics  # one seed: no spread


@pytest.mark.parametrize(("args", "match", "code"), [
    (["--seeds", "0"], "Invalid value for '--seeds': 0 is not in the range 1<=x<=100", 2),
    (["--seeds", "101"], "101 is not in the range 1<=x<=100", 2),
    (["--current", _csv(150), "--caps", _csv(500)],
     "cannot verify: the plan asks for more images than dataset 'digits' has (n_0=150, ", 1),
    (["--current", _csv(150), "--caps", _csv(500)],
     "pass --caps (and --current) no larger than its per-class counts "
     "134,136,133,137,136,136,136,134,130,135", 1),
    (["--current", _csv(150)], "cannot verify: the plan asks for more images", 1),
])
def test_cli_plan_verify_bad_input_logs_nothing(store, pipeline, args: list, match: str,
                                                code: int) -> None:
    experiment = f"verify-bad-{uuid.uuid4().hex[:6]}"
    result = _plan(store, pipeline, experiment, "--target", "0.5", "--verify", *args)
    assert result.exit_code == code, result.output
    assert match in result.output and "Traceback" not in result.output
    assert _runs(store, experiment) == []


def test_cli_plan_no_verify_wins(store, pipeline) -> None:
    result = _plan(store, pipeline, "verify-off", "--current", _csv(4), "--target", "0.45",
                   "--verify", "--no-verify")
    assert result.exit_code == 0, result.output
    assert "realised:" not in result.output
    assert len(_runs(store, "verify-off", "plan")) == 1
    assert _runs(store, "verify-off", "adhoc") == []
