"""Closed-loop verification of a plan: train the planned counts and compare with the law.

A registered law remembers where it came from: its model version carries the tag
``mixscale.fit_run``, the fit run names its designs (tag ``mixscale.design``) and every FINISHED
row of a design carries the training recipe as params (:func:`mixscale.stages.rows.row_params`).
:func:`resolve_recipe` follows that chain back to the dataset and a :class:`TrainConfig`
(refusing a law whose rows were trained with different recipes);
:func:`verify_plan` trains the plan's counts with it for a few seeds, each an ad-hoc run nested
under the plan run, and compares the realised test accuracy with the law's prediction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixscale import track as tr
from mixscale.config import MAX_SEEDS, Echo, TrainConfig, milestones_within
from mixscale.data import load_dataset
from mixscale.errors import MixscaleError
from mixscale.plan import Plan

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["FIT_RUN_TAG", "MAX_SEEDS", "Verification", "VerifySetup", "check_counts",
           "fit_run_of", "log_verification", "prepare_verification", "recipe_from_params",
           "resolve_recipe", "run_verification", "verification_lines", "verify_config",
           "verify_plan"]

FIT_RUN_TAG = "mixscale.fit_run"  # on every model version `mixscale fit` registers
_URI_FORMS = "models:/<name>@<alias>, models:/<name>/<version>, runs:/<fit run id>/<path>"
_NOT_RECIPE = ("data_dir",)  # TrainConfig fields rows may disagree on: where images are read


def _run(client: MlflowClient, run_id: str, what: str) -> Any:
    return tr.look_up(lambda: client.get_run(run_id), missing=lambda _: (
        f"{what} {run_id!r} does not exist in this tracking store."))


def fit_run_of(client: MlflowClient, model_uri: str) -> str:
    """The id of the fit run that produced the law at ``model_uri``.

    ``models:/<name>@<alias>``, ``models:/<name>/<version>`` (or ``/latest``): the model
    version's ``mixscale.fit_run`` tag; ``models:/<model id>``: the logged model's source run;
    ``runs:/<run id>/...``: that run.

    Raises
    ------
    MixscaleError
        For another URI form, an unknown model, alias or version, or a version without the tag.
    """
    uri = model_uri.strip()
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").strip("/").split("/")[0]
        if not run_id:
            raise MixscaleError(f"--model-uri {model_uri!r} names no run; allowed forms: "
                                f"{_URI_FORMS}.")
        return run_id
    if not uri.startswith("models:/") or not uri.removeprefix("models:/").strip("/"):
        raise MixscaleError(f"cannot trace --model-uri {model_uri!r} back to its fit run; "
                            f"allowed forms: {_URI_FORMS}.")
    path = uri.removeprefix("models:/").strip("/")
    name, _, version = path.partition("/")

    def find(call: Callable[[], Any]) -> Any:
        return tr.look_up(call, missing=lambda detail: (
            f"cannot find the model of --model-uri {model_uri!r} ({detail})."))

    if version:
        if version.lower() == "latest":
            found = find(lambda: client.search_model_versions(f"name = '{name}'"))
            if not found:
                raise MixscaleError(f"registered model {name!r} has no versions.")
            version = str(max(int(v.version) for v in found))
        elif not version.isdigit():
            raise MixscaleError(f"model version {version!r} in --model-uri {model_uri!r} "
                                f"is not a number (stages are not supported); allowed "
                                f"forms: {_URI_FORMS}.")
        mv = find(lambda: client.get_model_version(name, version))
    elif "@" in name:
        name, alias = name.rsplit("@", 1)
        mv = find(lambda: client.get_model_version_by_alias(name, alias))
    else:  # MLflow 3: models:/<model id> of a logged model
        source = find(lambda: client.get_logged_model(name)).source_run_id
        if not source:
            raise MixscaleError(f"logged model {name!r} has no source run.")
        return source
    fit_run = mv.tags.get(FIT_RUN_TAG)
    if not fit_run:
        raise MixscaleError(f"model version {mv.version} of {mv.name!r} has no tag "
                            f"{FIT_RUN_TAG}: it was not registered by `mixscale fit`, so its "
                            "training recipe is unknown.")
    return fit_run


# A row's recipe, rebuilt from its params: the one param contract lives in TrainConfig.
recipe_from_params = TrainConfig.from_params


def _recipe_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    return [f"{f.name}={getattr(a, f.name)!r} vs {getattr(b, f.name)!r}"
            for f in dataclasses.fields(TrainConfig)
            if f.name not in _NOT_RECIPE and getattr(a, f.name) != getattr(b, f.name)]


def resolve_recipe(client: MlflowClient, model_uri: str) -> tuple[str, TrainConfig, str]:
    """The dataset and training recipe a registered law was fitted on.

    Follows ``model_uri`` -> fit run (:func:`fit_run_of`) -> its designs (tag
    ``mixscale.design``) -> every FINISHED current row of each, whose params give its recipe
    (:func:`recipe_from_params`: ``device`` and ``precision`` are ``"auto"``, so a GPU is used
    when present whatever the rows trained on). The rows must agree on the recipe, field by
    field (``data_dir``, where the images were read from, may differ: the first row's is
    used), and the designs on the dataset; otherwise no single recipe is "the one the law was
    fitted on" and the law cannot be verified. The params of a design's rows come from one
    paged search per design.

    Returns
    -------
    dataset_name : str
        The design runs' ``dataset`` param.
    config : TrainConfig
        The recipe the rows were trained with.
    fit_run_id : str

    Raises
    ------
    MixscaleError
        Naming the missing link: no fit run (or a run not of `fit`), no ``mixscale.design``
        tag, no FINISHED row; or naming the disagreement: two designs of different datasets,
        two rows trained with different recipes (the field, both values and both row runs).
    """
    fit_run_id = fit_run_of(client, model_uri)
    fit = _run(client, fit_run_id, "fit run")
    if fit.data.tags.get(tr.KIND) != "fit":
        raise MixscaleError(f"run {fit_run_id} is not a run of `mixscale fit` (its {tr.KIND} tag "
                            f"is {fit.data.tags.get(tr.KIND)!r}); the law's recipe is unknown.")
    designs = [d.strip() for d in fit.data.tags.get(tr.DESIGN, "").split(",") if d.strip()]
    if not designs:
        raise MixscaleError(f"run {fit_run_id} has no tag {tr.DESIGN}: it is not a run of "
                            "`mixscale fit`, so the law's design and recipe are unknown.")
    dataset: tuple[str, str] | None = None  # (name, design run id)
    first: tuple[TrainConfig, str] | None = None  # (recipe, row run id)
    for design_id in designs:
        design = _run(client, design_id, "design run")
        rows = [r for r in tr.current_row_runs(client, design_id)
                if r.info.status == "FINISHED"]
        name = design.data.params.get("dataset") or (
            rows[0].data.tags.get(tr.DATASET) if rows else None)
        if not name:
            if rows:
                raise MixscaleError(f"design run {design_id} has no param `dataset`.")
            continue
        if dataset is not None and name != dataset[0]:
            raise MixscaleError(
                f"the law's designs are of different datasets: {dataset[0]!r} (design "
                f"{dataset[1]}) vs {name!r} (design {design_id}); a verification trains one "
                "dataset, so fit on designs of one dataset.")
        dataset = dataset or (name, design_id)
        for row in rows:
            source = f"row run {row.info.run_id}"
            config = recipe_from_params(row.data.params, source=source)
            if first is None:
                first = (config, row.info.run_id)
                continue
            differs = _recipe_differences(first[0], config)
            if differs:
                raise MixscaleError(
                    f"the law mixes training recipes: row run {first[1]} and row run "
                    f"{row.info.run_id} differ in {'; '.join(differs)}; a verification cannot "
                    "train \"the recipe the law was fitted on\". Fit on rows trained with one "
                    "recipe (one design, or designs trained with the same options).")
    if first is None or dataset is None:
        raise MixscaleError(f"design{'s' if len(designs) > 1 else ''} {', '.join(designs)} "
                            f"{'have' if len(designs) > 1 else 'has'} no FINISHED row to read "
                            "the training recipe from.")
    return dataset[0], first[0], fit_run_id


def verify_config(config: TrainConfig, epochs: int) -> TrainConfig:
    """``config`` trained for ``epochs``: later milestones dropped, the last epoch evaluated.

    The step schedule up to ``epochs`` is the recipe's own (a milestone after the end never
    acts), and ``eval_every`` is capped at ``epochs`` so the final epoch is evaluated.
    """
    return dataclasses.replace(
        config, epochs=int(epochs), eval_every=min(config.eval_every, int(epochs)),
        lr_milestones=milestones_within(config.lr_milestones, int(epochs)))


def check_counts(plan: Plan, dataset: Any) -> None:
    """Refuse a plan whose classes or counts the dataset cannot train.

    Raises
    ------
    MixscaleError
        If the law's classes are not the dataset's, or a planned count exceeds the images
        its class has (the message lists them, to pass as ``--caps``).
    """
    if list(plan.class_columns) != list(dataset.count_columns):
        raise MixscaleError(f"the law's classes ({', '.join(plan.class_columns)}) are not those "
                            f"of dataset {dataset.name!r} ({', '.join(dataset.count_columns)}).")
    over = np.flatnonzero(plan.counts > dataset.available)
    if over.size:
        listed = ", ".join(f"{plan.class_columns[i]}={int(plan.counts[i])}" for i in over)
        raise MixscaleError(
            f"cannot verify: the plan asks for more images than dataset {dataset.name!r} has "
            f"({listed}); pass --caps (and --current) no larger than its per-class counts "
            f"{','.join(map(str, dataset.available.astype(int)))}.")


@dataclass(frozen=True)
class Verification:
    """Realised accuracy of a plan's counts, one training run per seed."""

    seeds: list[int]
    run_ids: list[str]  # one ad-hoc run per seed
    realised: np.ndarray  # final test accuracy per seed
    predicted: float  # the plan's predicted accuracy
    mean: float  # mean realised accuracy
    std: float  # standard deviation across seeds (ddof=1; nan for one seed)
    abs_error: float  # |predicted - mean|
    within_interval: float | None  # share of seeds inside the plan's interval; None without

    def to_frame(self) -> pd.DataFrame:
        """``verify.csv``: seed, run_id, realised_accuracy, predicted_accuracy."""
        return pd.DataFrame({"seed": self.seeds, "run_id": self.run_ids,
                             "realised_accuracy": self.realised,
                             "predicted_accuracy": self.predicted})


def _final_accuracy(client: MlflowClient, run_id: str) -> float:
    history = client.get_metric_history(run_id, "test_accuracy")
    if not history:
        raise MixscaleError(f"verification run {run_id} logged no test_accuracy.")
    return float(max(history, key=lambda m: (m.step, m.timestamp)).value)


def verify_plan(client: MlflowClient, experiment_id: str, plan: Plan, *, dataset_name: str,
                config: TrainConfig, seeds: int, parent_run_id: str | None = None,
                echo: Echo = print) -> Verification:
    """Train ``plan.counts`` once per seed ``0..seeds-1`` and compare with the prediction.

    Parameters
    ----------
    plan : Plan
        Its ``counts`` (current included) are trained for ``plan.epochs`` epochs
        (:func:`verify_config`); an unreachable plan's counts are its best reachable ones.
    dataset_name : str
        Dataset the law was fitted on.
    config : TrainConfig
        The law's recipe (:func:`resolve_recipe`).
    seeds : int
        Runs to train, 1..:data:`MAX_SEEDS`; seed ``s`` draws the subset and trains.
    parent_run_id : str, optional
        Nest each ad-hoc run under this run (the plan run).

    Returns
    -------
    Verification

    Raises
    ------
    MixscaleError
        For ``seeds`` out of range or counts the dataset cannot train (before any run starts).
    """
    from mixscale.stages.rows import train_counts  # torch, only when a plan is verified

    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise MixscaleError(f"`seeds` must be an integer in [1, {MAX_SEEDS}], but got "
                            f"seeds={seeds!r}.")
    check_counts(plan, load_dataset(dataset_name, data_dir=config.data_dir,
                                    download=config.download))
    run_config = verify_config(config, plan.epochs)
    counts = [int(c) for c in plan.counts]
    run_ids = [train_counts(client, experiment_id, dataset_name, counts, run_config, seed=s,
                            parent_run_id=parent_run_id, echo=echo) for s in range(seeds)]
    realised = np.array([_final_accuracy(client, r) for r in run_ids])
    mean = float(realised.mean())
    inside = None
    if plan.interval is not None:
        lo, hi = plan.interval
        inside = float(np.mean((realised >= lo) & (realised <= hi)))
    return Verification(seeds=list(range(seeds)), run_ids=run_ids, realised=realised,
                        predicted=plan.predicted, mean=mean,
                        std=float(realised.std(ddof=1)) if seeds > 1 else float("nan"),
                        abs_error=abs(plan.predicted - mean), within_interval=inside)


def log_verification(client: MlflowClient, run_id: str, v: Verification) -> None:
    """Log a verification on the plan run: metrics, per-seed accuracy, ``verify.csv``."""
    tr.log_params(client, run_id, {"verify_seeds": len(v.seeds)}, skip_existing=True)
    metrics = {"realised_accuracy": v.mean, "realised_accuracy_std": v.std,
               "abs_error": v.abs_error}
    if v.within_interval is not None:
        metrics["realised_in_interval"] = v.within_interval
    tr.log_metrics(client, run_id, metrics)
    for seed, acc in zip(v.seeds, v.realised, strict=True):
        tr.log_metrics(client, run_id, {"realised_accuracy_seed": float(acc)}, step=seed)
    tr.log_artifacts(client, run_id, {"verify.csv": v.to_frame()})


def verification_lines(plan: Plan, v: Verification) -> list[str]:
    """The short report ``mixscale plan --verify`` prints."""
    n = len(v.seeds)
    std = "n/a" if not np.isfinite(v.std) else f"{v.std:.4f}"
    lines = [f"verification: {n} seed(s) of the planned counts, {plan.epochs} epochs"]
    if not plan.reachable:
        lines.append("              (target out of reach: verifying the best reachable counts)")
    where = [""] * n
    if plan.interval is not None:  # each seed: inside the plan's (calibrated) interval?
        lo, hi = plan.interval
        where = ["  inside" if lo <= a <= hi else "  OUTSIDE" for a in v.realised]
    lines += [f"  seed {s}: test_accuracy {a:.4f}{w} (run {r})"
              for s, a, w, r in zip(v.seeds, v.realised, where, v.run_ids, strict=True)]
    band = ("" if plan.interval is None else
            f" ({plan.interval_level:.0%} {'calibrated ' if plan.calibrated else ''}interval "
            f"{plan.interval[0]:.4f}-{plan.interval[1]:.4f})")
    lines.append(f"predicted:    {v.predicted:.4f}{band}")
    lines.append(f"realised:     {v.mean:.4f} +/- {std} (mean +/- std over {n} seed(s))")
    inside = ("" if v.within_interval is None else
              f"; {round(v.within_interval * n)}/{n} seed(s) inside the interval")
    lines.append(f"|error|:      {v.abs_error:.4f}{inside}")
    return lines


@dataclass(frozen=True)
class VerifySetup:
    """What verifying plans of one law needs, resolved before anything is logged."""

    dataset_name: str
    config: TrainConfig  # the law's recipe (device and precision "auto")
    fit_run_id: str
    dataset: Any  # the loaded ImageDataset: its ``available`` images cap what can be verified


def prepare_verification(client: MlflowClient, model_uri: str) -> VerifySetup:
    """Resolve the law's recipe (:func:`resolve_recipe`) and load its dataset.

    Raises
    ------
    MixscaleError
        For a broken link from the law to its rows, or a dataset that cannot be loaded.
    """
    dataset_name, config, fit_run_id = resolve_recipe(client, model_uri)
    dataset = load_dataset(dataset_name, data_dir=config.data_dir, download=config.download)
    return VerifySetup(dataset_name=dataset_name, config=config, fit_run_id=fit_run_id,
                       dataset=dataset)


def run_verification(client: MlflowClient, experiment_id: str, plan: Plan, setup: VerifySetup,
                     *, seeds: int, plan_run_id: str,
                     echo: Echo = print) -> Verification:
    """:func:`verify_plan` under the plan run, then :func:`log_verification` and the report."""
    c = setup.config
    echo(f"verifying with the recipe of fit run {setup.fit_run_id}: {setup.dataset_name}, "
         f"{c.model}, lr {c.lr:g}, batch {c.batch_size}, {plan.epochs} epochs, {seeds} seed(s)")
    v = verify_plan(client, experiment_id, plan, dataset_name=setup.dataset_name, config=c,
                    seeds=seeds, parent_run_id=plan_run_id, echo=echo)
    log_verification(client, plan_run_id, v)
    for line in verification_lines(plan, v):
        echo(line)
    return v
