"""The ``mixscale`` command line: one click group, one command per pipeline stage.

The MLproject entry points (``entrypoints/*.py``) call these same commands. Every option is
validated by click or by the stage's config dataclass before anything is logged; a
:class:`~mixscale.errors.MixscaleError` becomes one ``Error: ...`` line and exit status 1.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import click

from mixscale.config import (
    DATASETS,
    DESIGN_METHODS,
    DEVICES,
    FAMILIES,
    MODELS,
    PREDICTORS,
    DesignSpec,
    FitConfig,
    TrainConfig,
    parse_int_list,
    parse_name_list,
)
from mixscale.errors import MixscaleError

_D, _T, _F = DesignSpec(), TrainConfig(), FitConfig()

__all__ = ["cli", "main", "design_cmd", "train_row_cmd", "train_cmd", "fit_cmd", "main_cmd"]


def _options(*opts: Callable) -> Callable:
    def wrap(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f
    return wrap


def _opt(flag: str, kind: Any, default: Any, help: str = "") -> Callable:
    return click.option(flag, type=kind, default=default, show_default=True, help=help)


_tracking = _options(
    click.option("--tracking-uri", default=None, metavar="URI",
                 help="Tracking store; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                      "in the working directory."),
    _opt("--experiment", str, "mixscale",
         "Experiment name (inside `mlflow run`, the project run's experiment)."),
)
_design = _options(
    _opt("--dataset", click.Choice(DATASETS), _D.dataset),
    _opt("--subset-sizes", str, ",".join(map(str, _D.subset_sizes)),
         "Comma-separated training-subset sizes."),
    _opt("--rows-per-size", click.IntRange(1, 10_000), _D.rows_per_size,
         "Training-design rows per subset size."),
    _opt("--val-rows-per-size", click.IntRange(0, 10_000), _D.val_rows_per_size,
         "Validation-design rows per subset size (an independent design, own seed)."),
    _opt("--min-per-class", click.IntRange(0), _D.min_per_class,
         "Lower bound per class (1 keeps every class in every row)."),
    _opt("--min-share", click.FloatRange(0, 1), _D.min_share,
         "Lower bound per class as a share of the balanced count subset_size/n_classes "
         "(keeps rows away from near-single-class subsets); 0 = off."),
    _opt("--max-per-class", click.IntRange(0), 0,
         "Upper bound per class; 0 = the images each class has."),
    _opt("--iterations", click.IntRange(0, 10_000_000), _D.iterations,
         "Maximin exchange iterations per subset size."),
    _opt("--method", click.Choice(DESIGN_METHODS), _D.method,
         "Design optimiser (paper = the paper's Algorithm 1)."),
    _opt("--seed", click.IntRange(0, 2**31 - 2), _D.seed,
         "Seeds the design; row i trains with seed*10000 + i."),
)
_train = _options(
    _opt("--model", click.Choice(MODELS), _T.model),
    _opt("--epochs", click.IntRange(1, 100_000), _T.epochs),
    _opt("--eval-every", click.IntRange(1), _T.eval_every,
         "Evaluate on the test split every N epochs (and at the last)."),
    _opt("--lr", click.FloatRange(0, 10, min_open=True), _T.lr, "SGD learning rate."),
    _opt("--momentum", click.FloatRange(0, 0.999), _T.momentum),
    _opt("--weight-decay", click.FloatRange(0, 1), _T.weight_decay),
    _opt("--batch-size", click.IntRange(1, 65_536), _T.batch_size),
    _opt("--lr-milestones", str, ",".join(map(str, _T.lr_milestones)),
         "Comma-separated epochs where the learning rate is multiplied by --lr-gamma; "
         "empty for none."),
    _opt("--lr-gamma", click.FloatRange(0, 1, min_open=True), _T.lr_gamma),
    _opt("--device", click.Choice(DEVICES), _T.device, "auto = cuda when available."),
)
_fit = _options(
    _opt("--families", str, ",".join(_F.families),
         f"Comma-separated law families or 'all' ({', '.join(FAMILIES)})."),
    _opt("--predictors", str, ",".join(_F.predictors),
         "Comma-separated linear predictors (the paper's models m0-m3) or 'all'."),
    _opt("--min-epoch", click.IntRange(0), _F.min_epoch, "Drop evaluations before this epoch."),
    _opt("--n-starts", click.IntRange(1, 10_000), _F.n_starts,
         "Least-squares starts per law."),
    _opt("--model-name", str, "", "Registered model; empty = mixscale-<dataset>."),
)


def _design_spec(kw: dict[str, Any]) -> DesignSpec:
    return DesignSpec(
        dataset=kw["dataset"], subset_sizes=parse_int_list("subset_sizes", kw["subset_sizes"]),
        rows_per_size=kw["rows_per_size"], val_rows_per_size=kw["val_rows_per_size"],
        min_per_class=kw["min_per_class"], min_share=kw["min_share"],
        max_per_class=kw["max_per_class"] or None,
        iterations=kw["iterations"], method=kw["method"], seed=kw["seed"])


def _train_config(kw: dict[str, Any]) -> TrainConfig:
    milestones = kw["lr_milestones"].strip()
    return TrainConfig(
        model=kw["model"], epochs=kw["epochs"], eval_every=min(kw["eval_every"], kw["epochs"]),
        lr=kw["lr"], momentum=kw["momentum"], weight_decay=kw["weight_decay"],
        batch_size=kw["batch_size"], lr_gamma=kw["lr_gamma"], device=kw["device"],
        lr_milestones=parse_int_list("lr_milestones", milestones) if milestones else ())


def _fit_config(kw: dict[str, Any]) -> FitConfig:
    return FitConfig(
        families=parse_name_list("families", kw["families"], FAMILIES),
        predictors=parse_name_list("predictors", kw["predictors"], PREDICTORS),
        min_epoch=kw["min_epoch"], n_starts=kw["n_starts"], model_name=kw["model_name"] or None,
        seed=kw.get("seed", 0))


def _friendly(f: Callable) -> Callable:
    """Turn bad input into one clear line and exit status 1 (no traceback)."""
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except MixscaleError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


class _Session:
    """The tracking store, client and experiment a command works in."""

    def __init__(self, kw: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        from mixscale import tracking as tr

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # `mlflow run` creates a run for the project and names it in MLFLOW_RUN_ID: adopt it.
        self.project_run_id = os.environ.pop("MLFLOW_RUN_ID", None)
        self.uri = tr.resolve_tracking_uri(kw.get("tracking_uri"))
        click.echo(f"tracking URI: {self.uri}")
        self.client = MlflowClient(self.uri)
        self.experiment_id = tr.experiment_for(self.client, kw["experiment"],
                                               run_id=self.project_run_id)
        exp = self.client.get_experiment(self.experiment_id)
        click.echo(f"experiment:   {exp.name} (id {self.experiment_id})")

    def mark_launcher(self, **tags: str) -> None:
        """Tag the project run of a `mlflow run` that only launches work on other runs."""
        from mixscale import tracking as tr

        if self.project_run_id:
            tr.log_params(self.client, self.project_run_id, {},
                          tags={tr.KIND: "launcher", **tags})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """mixscale: how much more data, of which class, and how long to train."""


@cli.command("design")
@_tracking
@_design
@_friendly
def design_cmd(**kw: Any) -> None:
    """Create a maximin mixture design: a parent run with one SCHEDULED child run per row."""
    from mixscale.pipeline import prepare_design, run_design

    prepared = prepare_design(_design_spec(kw))  # validated and computed before any logging
    session = _Session(kw)
    result = run_design(prepared, session.client, session.experiment_id,
                        run_id=session.project_run_id, echo=click.echo)
    click.echo(f"next: mixscale train --design-id {result.design_id}")


@cli.command("train-row")
@_tracking
@click.option("--run-id", required=True, help="The row's child run (status SCHEDULED).")
@_train
@_friendly
def train_row_cmd(**kw: Any) -> None:
    """Train one design row and log its per-epoch metrics on the row's run."""
    from mixscale import tracking as tr
    from mixscale.pipeline import train_rows

    config = _train_config(kw)
    session = _Session(kw)
    try:
        run = session.client.get_run(kw["run_id"])
    except Exception:
        raise MixscaleError(f"no run with id {kw['run_id']!r} in {session.uri}.") from None
    design_id = run.data.tags.get(tr.DESIGN)
    if run.data.tags.get(tr.KIND) != "row" or not design_id:
        raise MixscaleError(f"run {kw['run_id']!r} is not a design row (tag {tr.KIND}="
                            f"{run.data.tags.get(tr.KIND)!r}); pass a row's run id.")
    session.mark_launcher(**{"mixscale.row_run": kw["run_id"]})
    train_rows(session.client, design_id, config, run_ids=[kw["run_id"]], echo=click.echo)


@cli.command("train")
@_tracking
@click.option("--design-id", required=True, help="The design's parent run id.")
@_train
@_friendly
def train_cmd(**kw: Any) -> None:
    """Train every pending row of a design, one after another."""
    from mixscale.pipeline import train_rows
    from mixscale.tracking import DESIGN

    config = _train_config(kw)
    session = _Session(kw)
    session.mark_launcher(**{DESIGN: kw["design_id"]})
    n = train_rows(session.client, kw["design_id"], config, echo=click.echo)
    click.echo(f"trained {n} row(s); next: mixscale fit --design-id {kw['design_id']}")


@cli.command("fit")
@_tracking
@click.option("--design-id", "design_ids", required=True,
              help="Design run id(s), comma-separated.")
@_fit
@click.option("--seed", type=click.IntRange(0, 2**31 - 2), default=0, show_default=True)
@_friendly
def fit_cmd(**kw: Any) -> None:
    """Fit scaling laws to a design's FINISHED rows; log, register, alias the champion."""
    from mixscale.pipeline import run_fit, serve_command

    config = _fit_config(kw)
    design_ids = [d.strip() for d in kw["design_ids"].split(",") if d.strip()]
    session = _Session(kw)
    result = run_fit(config, session.client, session.experiment_id, design_ids,
                     run_id=session.project_run_id, echo=click.echo)
    click.echo(f"serve it:     {serve_command(result.champion_uri, session.uri)}")


@cli.command("main")
@_tracking
@_design
@_train
@_fit
@_friendly
def main_cmd(**kw: Any) -> None:
    """The whole pipeline: design -> train every row -> fit, register and serve-ready."""
    from mixscale import tracking as tr
    from mixscale.pipeline import prepare_design, run_design, run_fit, serve_command, train_rows

    spec, config, fit_config = _design_spec(kw), _train_config(kw), _fit_config(kw)
    t0 = time.perf_counter()
    prepared = prepare_design(spec)  # validated and computed before any logging
    session = _Session(kw)
    client = session.client
    main_id = tr.start_stage_run(client, session.experiment_id, kind="pipeline",
                                 name=f"main-{spec.dataset}-s{spec.seed}",
                                 tags={tr.DATASET: spec.dataset}, run_id=session.project_run_id)
    try:
        design = run_design(prepared, client, session.experiment_id, parent_run_id=main_id,
                            echo=click.echo)
        train_rows(client, design.design_id, config, echo=click.echo)
        fit = run_fit(fit_config, client, session.experiment_id, [design.design_id],
                      parent_run_id=main_id, echo=click.echo)
        options = {k: v for k, v in kw.items() if k not in ("tracking_uri", "experiment")}
        tr.log_params(client, main_id, {**options, "design_id": design.design_id,
                                        "fit_run_id": fit.fit_run_id,
                                        "champion_uri": fit.champion_uri}, skip_existing=True)
        tr.log_metrics(client, main_id, {"pipeline_seconds": time.perf_counter() - t0})
    except BaseException as exc:
        tr.end_run(client, main_id, error=exc)
        raise
    if session.project_run_id is None:
        tr.end_run(client, main_id)
    click.echo("")
    click.echo(f"tracking URI: {session.uri}")
    click.echo(f"experiment:   {client.get_experiment(session.experiment_id).name}")
    click.echo(f"design run:   {design.design_id} ({len(design.table)} rows)")
    click.echo(f"fit run:      {fit.fit_run_id}")
    click.echo(f"champion:     {fit.champion_uri} ({fit.champion})")
    click.echo(f"serve it:     {serve_command(fit.champion_uri, session.uri)}")
    click.echo(f"done in {time.perf_counter() - t0:.0f} s")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mixscale")
