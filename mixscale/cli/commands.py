"""The ``mixscale`` command line: one click group, one command per pipeline stage.

The MLproject entry points (``entrypoints/*.py``) call these same commands. Every option is
validated by click or by the stage's config dataclass before anything is logged; a
:class:`~mixscale.errors.MixscaleError` becomes one ``Error: ...`` line and exit status 1.

Each command imports the stages it runs inside its body (function-level imports, on purpose):
``mixscale --help`` and option parsing load no mlflow, torch or optuna.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from mixscale.cli.options import (
    CAP_FACTOR,
    Session,
    T,
    data_options,
    design_options,
    design_spec_from,
    fit_config_from,
    fit_options,
    friendly,
    log_plan,
    main_tune,
    main_tune_setup,
    mark_refused_project_run,
    option,
    plan_inputs,
    recipe_option,
    tracking_options,
    train_config_from,
    train_options,
    tune_base,
    tune_setup,
    with_tuned,
)
from mixscale.config import (
    AUGMENTS,
    DATASETS,
    DEVICES,
    MAX_SEEDS,
    MODELS,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    STEMS,
    parse_int_list,
    split_list,
)
from mixscale.errors import MixscaleError
from mixscale.tune import PRUNERS, SAMPLERS, SearchSpace, TuneConfig

__all__ = ["cli", "main", "design_cmd", "train_row_cmd", "train_cmd", "fit_cmd", "main_cmd",
           "tune_cmd", "plan_cmd", "status_cmd", "entry_point"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """mixscale: how much more data, of which class, and how long to train."""


@cli.command("design")
@tracking_options
@design_options
@friendly
def design_cmd(**kw: Any) -> None:
    """Create a maximin mixture design: a parent run with one SCHEDULED child run per row."""
    from mixscale.stages.design import prepare_design, run_design

    prepared = prepare_design(design_spec_from(kw), data_dir=kw["data_dir"],
                              download=kw["download"])  # validated before any logging
    session = Session(kw)
    result = run_design(prepared, session.client, session.experiment_id,
                        run_id=session.project_run_id, echo=click.echo)
    click.echo(f"next: mixscale train --design-id {result.design_id}")


@cli.command("train-row")
@tracking_options
@option("--run-id", str, "", "The row's child run (status SCHEDULED).")
@option("--counts", str, "",
      "Instead of --run-id: comma-separated images per class (label order) to train ad hoc "
      "in a new run, outside any design.")
@option("--dataset", str, "digits", "Dataset of --counts.")
@option("--seed", click.IntRange(0, 2**31 - 2), 0, "Seed of --counts (subset and training).")
@train_options
@friendly
def train_row_cmd(**kw: Any) -> None:
    """Train one design row and log its per-epoch metrics on the row's run (or ad-hoc counts).

    Inside `mlflow run` the project run is a launcher (it holds the parameters as given, e.g.
    ``model=recipe``); the ad-hoc counts train in their own run nested under it.
    """
    from mixscale import track as tr
    from mixscale.data import load_dataset
    from mixscale.stages.rows import check_adhoc_counts, resolve_eval, train_counts, train_rows

    if bool(kw["run_id"].strip()) == bool(kw["counts"].strip()):
        raise MixscaleError("train-row needs exactly one of --run-id (a design row) or "
                            "--counts (ad-hoc per-class counts).")
    counts = parse_int_list("counts", kw["counts"]) if kw["counts"].strip() else None
    config = train_config_from(kw)
    dataset = None
    if counts is not None:  # validated before any logging
        dataset = load_dataset(kw["dataset"], data_dir=config.data_dir, download=config.download)
        check_adhoc_counts(dataset, counts)
        resolve_eval(config, dataset)  # --eval-images fits the test split
    session = Session(kw)
    config = with_tuned(kw, config, session)
    if counts is not None:
        session.mark_launcher()
        train_counts(session.client, session.experiment_id, kw["dataset"], counts, config,
                     seed=kw["seed"], parent_run_id=session.project_run_id, dataset=dataset,
                     echo=click.echo)
        return
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
@tracking_options
@click.option("--design-id", required=True, help="The design's parent run id.")
@train_options
@option("--worker", str, "0",
      "This worker's index in [0, --workers), or 'env' to read $JOB_COMPLETION_INDEX "
      "(Kubernetes Indexed Job) or $SLURM_ARRAY_TASK_ID (Slurm array, --array=0-(N-1)).")
@option("--workers", click.IntRange(0, 100_000), 0,
      "Static partition: train only rows with row % workers == worker, restarting RUNNING "
      "ones (left by a dead earlier attempt of this index); 0 = every row.")
@option("--stale-after", click.FloatRange(0), 0.0,
      "Without --workers: restart RUNNING rows whose heartbeat (updated at every "
      "evaluation) is older than this many seconds; 0 = never.")
@option("--executor", click.Choice(["local", "ray"]), "local",
      "local = rows one after another here; ray = rows as Ray tasks (pip install "
      "'mixscale[ray]').")
@option("--ray-address", str, "",
      "Ray cluster address (e.g. ray://head:10001, auto); empty or 'local' = $RAY_ADDRESS, "
      "else a local Ray instance.")
@option("--ray-cpus", click.FloatRange(0.01, 1024), 1.0,
      "CPUs per Ray task (a task also gets 1 GPU with --device cuda).")
@option("--max-parallel", click.IntRange(1, 1024), 1,
      "Local worker processes, one static partition each; rerun with the same value to "
      "restart rows a killed run left RUNNING.")
@friendly
def train_cmd(**kw: Any) -> None:
    """Train every pending row of a design (or this worker's share of them)."""
    from mixscale.stages.rows import resolve_worker, train_rows
    from mixscale.track import DESIGN

    config = train_config_from(kw)
    worker = resolve_worker(kw["worker"], kw["workers"])  # validated before any logging
    session = Session(kw)
    config = with_tuned(kw, config, session)
    session.mark_launcher(**{DESIGN: kw["design_id"]})
    address = "" if kw["ray_address"].strip().lower() in ("", "local") else kw["ray_address"]
    if kw["max_parallel"] > 1:
        if kw["workers"] or kw["executor"] != "local":
            raise MixscaleError("--max-parallel runs its own local partitions; it cannot be "
                                "combined with --workers or --executor ray.")
        from mixscale.stages.rows import train_in_processes

        n = train_in_processes(session.uri, kw["design_id"], config,
                               max_parallel=kw["max_parallel"], echo=click.echo)
        click.echo(f"trained {n} row(s); next: mixscale fit --design-id {kw['design_id']}")
        return
    n = train_rows(session.client, kw["design_id"], config, worker=worker,
                   workers=kw["workers"], stale_after=kw["stale_after"],
                   executor=kw["executor"], ray_address=address, ray_cpus=kw["ray_cpus"],
                   tracking_uri=session.uri, echo=click.echo)
    click.echo(f"trained {n} row(s); next: mixscale fit --design-id {kw['design_id']}")


@cli.command("status")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="Tracking store; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in "
                   "the working directory.")
@click.option("--design-id", required=True, help="The design's parent run id.")
@option("--stale-after", click.FloatRange(0), 0.0,
      "Mark RUNNING rows whose heartbeat is older than this many seconds; 0 = off.")
@friendly
def status_cmd(**kw: Any) -> None:
    """Where a design stands: rows by status, heartbeats, errors (logs nothing)."""
    from mixscale import track as tr
    from mixscale.stages.status import design_status, status_lines

    uri = tr.resolve_tracking_uri(kw["tracking_uri"])
    click.echo(f"tracking URI: {uri}")
    frame = design_status(tr.open_client(uri), kw["design_id"])
    for line in status_lines(kw["design_id"], frame, stale_after=kw["stale_after"]):
        click.echo(line)


@cli.command("fit")
@tracking_options
@click.option("--design-id", "design_ids", required=True,
              help="Design run id(s), comma-separated.")
@fit_options
@click.option("--seed", type=click.IntRange(0, 2**31 - 2), default=0, show_default=True)
@friendly
def fit_cmd(**kw: Any) -> None:
    """Fit scaling laws to a design's FINISHED rows; log, register, alias the champion."""
    from mixscale.stages.fit import run_fit, serve_command

    config = fit_config_from(kw)
    design_ids = split_list("design_id", kw["design_ids"])
    if not design_ids:
        raise MixscaleError("`design_id` must name at least one design run id, but got ''.")
    session = Session(kw)
    result = run_fit(config, session.client, session.experiment_id, design_ids,
                     run_id=session.project_run_id, echo=click.echo)
    click.echo(f"serve it:     {serve_command(result.champion_uri, session.uri)}")


@cli.command("main")
@tracking_options
@design_options
@train_options
@fit_options
@click.option("--tune", type=click.BOOL, default=False, is_flag=False, flag_value=True,
              show_default=True, help="First run a small Optuna study on the full training "
              "split and train the design with its best values (`--tune` alone = true).")
@option("--tune-trials", int, 8, "With --tune: trials of the study.")
@option("--tune-epochs", click.IntRange(1, 100_000), 10, "With --tune: epochs per trial.")
@friendly
def main_cmd(**kw: Any) -> None:
    """The whole pipeline: design -> train every row -> fit, register and serve-ready."""
    from mixscale import track as tr
    from mixscale.stages.design import prepare_design, run_design
    from mixscale.stages.fit import run_fit, serve_command
    from mixscale.stages.rows import resolve_eval, train_rows

    spec, config, fit_config = design_spec_from(kw), train_config_from(kw), fit_config_from(kw)
    t0 = time.perf_counter()
    prepared = prepare_design(spec, data_dir=config.data_dir,
                              download=config.download)  # validated before any logging
    resolve_eval(config, prepared.dataset)  # --eval-images fits the test split
    planned = prepared.table[prepared.table["role"] == "train"]
    fit_config.check_design(train_runs=len(planned), sizes=planned["subset_size"].nunique())
    tuning = main_tune_setup(kw, spec.dataset) if kw["tune"] else None
    session = Session(kw)
    client = session.client
    config = with_tuned(kw, config, session)
    with tr.stage_run(client, session.experiment_id, kind="pipeline",
                      name=f"main-{spec.dataset}-s{spec.seed}",
                      tags={tr.DATASET: spec.dataset}, run_id=session.project_run_id) as main_id:
        if tuning is not None:
            config = main_tune(kw, tuning, session, main_id)
        design = run_design(prepared, client, session.experiment_id, parent_run_id=main_id,
                            echo=click.echo)
        train_rows(client, design.design_id, config, echo=click.echo)
        fit = run_fit(fit_config, client, session.experiment_id, [design.design_id],
                      parent_run_id=main_id, echo=click.echo)
        options = {k: v for k, v in kw.items()
                   if k not in ("tracking_uri", "experiment") and v is not None}
        options.update(config.to_params(omit=()))
        tr.log_params(client, main_id, {**options, "design_id": design.design_id,
                                        "fit_run_id": fit.fit_run_id,
                                        "champion_uri": fit.champion_uri}, skip_existing=True)
        tr.log_metrics(client, main_id, {"pipeline_seconds": time.perf_counter() - t0})
    click.echo("")
    click.echo(f"tracking URI: {session.uri}")
    click.echo(f"experiment:   {client.get_experiment(session.experiment_id).name}")
    click.echo(f"design run:   {design.design_id} ({len(design.table)} rows)")
    click.echo(f"fit run:      {fit.fit_run_id}")
    click.echo(f"champion:     {fit.champion_uri} ({fit.champion})")
    click.echo(f"serve it:     {serve_command(fit.champion_uri, session.uri)}")
    if "perclass-own-total" in fit.versions:
        click.echo(f"plan with it: mixscale plan --tracking-uri {session.uri} --model-uri "
                   f"'models:/{fit.model_name}@perclass-own-total' --target <accuracy> "
                   "--current <images per class> [--verify]")
    click.echo(f"done in {time.perf_counter() - t0:.0f} s")


# --- tune: Optuna search of lr, momentum, weight decay and batch size (mixscale.tune) -------
# Defaults come from the study dataclasses (mixscale.tune.space imports no optuna).
_TC, _SS = TuneConfig(), SearchSpace()


def _pair(rng: tuple[float, float]) -> str:
    return f"{rng[0]:g},{rng[1]:g}"


@cli.command("tune")
@tracking_options
@option("--dataset", str, "",
      "Dataset (as for design); empty = digits, or with --run-id the row's design's dataset.")
@option("--run-id", str, "",
      "A design row's run: tune on exactly that row's images; empty = the full training split.")
@option("--trials", int, _TC.trials, "Trials this process adds to the study (>= 1).")
@option("--timeout", float, 0.0, "Seconds after which this process starts no new trial; 0 = none.")
@option("--sampler", click.Choice(SAMPLERS), _TC.sampler,
      "tpe = multivariate TPE (5 random start-up trials); random = uniform. Seeded by --seed.")
@option("--pruner", click.Choice(PRUNERS), _TC.pruner,
      "median = stop a trial whose validation accuracy is below the median of earlier trials "
      "at the same epoch; hyperband; none.")
@option("--pruner-startup-trials", int, _TC.startup_trials,
      "median: complete trials before any pruning.")
@option("--pruner-warmup-epochs", int, _TC.warmup_epochs,
      "median: no pruning before this epoch; hyperband: the fewest epochs a trial gets.")
@option("--storage", str, "",
      "Optuna database URL; empty = optuna.db next to a SQLite tracking store (else ./optuna.db)."
      " Processes given one PostgreSQL URL and --study-name add trials to one study.")
@option("--study-name", str, "",
      "Empty = <dataset>-<model>-<full|row-<run id>>-e<epochs>; an existing study is resumed.")
@option("--lr-range", str, _pair(_SS.lr), "Learning-rate range low,high (log scale).")
@option("--momentum-range", str, _pair(_SS.momentum), "Momentum range low,high.")
@option("--weight-decay-range", str, _pair(_SS.weight_decay),
      "Weight-decay range low,high (log scale).")
@option("--batch-sizes", str, ",".join(map(str, _SS.batch_size)),
      "Batch sizes to choose from, comma-separated.")
@option("--val-fraction", float, _TC.val_fraction,
      "Share of each class's training images held out (fixed seed) to score trials on; "
      "the test split is never used.")
@option("--seed", int, _TC.seed, "Seeds the sampler; give parallel workers different seeds.")
@option("--enqueue-recipe", click.BOOL, _TC.enqueue_recipe,
      "A new study's first trial tries the recipe's own lr, momentum, weight decay and batch "
      "size (a baseline to beat).")
@option("--recipe", click.Choice(RECIPES), "default", "Preset for the options marked [recipe].")
@recipe_option("--model", click.Choice(MODELS))
@recipe_option("--epochs", click.IntRange(1, 100_000), "Epochs per trial.")
@recipe_option("--schedule", click.Choice(SCHEDULES),
             "Learning-rate schedule: cosine = decays to 0 at the last step; step = "
             "x --lr-gamma at each of --lr-milestones.")
@recipe_option("--min-steps-per-epoch", click.IntRange(0, 1_000_000),
             "Fewest optimiser steps in an epoch (small subsets take further passes).")
@recipe_option("--lr-milestones", click.STRING,
             "Epochs where the learning rate is multiplied by --lr-gamma; recipe milestones "
             "past --epochs are dropped.")
@recipe_option("--lr-gamma", click.FloatRange(0, 1, min_open=True))
@recipe_option("--augment", click.Choice(AUGMENTS))
@option("--crop-padding", click.IntRange(0, 64), T.crop_padding)
@recipe_option("--stem", click.Choice(STEMS))
@option("--precision", click.Choice(PRECISIONS), T.precision)
@option("--device", click.Choice(DEVICES), T.device, "auto = cuda when available.")
@data_options
@friendly
def tune_cmd(**kw: Any) -> None:
    """Search lr, momentum, weight decay and batch size with Optuna on a validation split."""
    from mixscale.tune import run_tune

    if kw["dataset"] and kw["dataset"] not in DATASETS:
        raise MixscaleError(f"unknown dataset {kw['dataset']!r}; allowed: "
                            f"{', '.join(repr(d) for d in DATASETS)}.")
    setup = tune_setup(
        kw, tune_base(kw), trials=kw["trials"], timeout=kw["timeout"] or None,
        sampler=kw["sampler"], pruner=kw["pruner"], startup_trials=kw["pruner_startup_trials"],
        warmup_epochs=kw["pruner_warmup_epochs"], val_fraction=kw["val_fraction"],
        seed=kw["seed"], enqueue_recipe=kw["enqueue_recipe"], storage=kw["storage"] or None,
        study_name=kw["study_name"] or None)
    session = Session(kw)
    result = run_tune(setup, session.client, session.experiment_id,
                      dataset=kw["dataset"] or None, row_run_id=kw["run_id"] or None,
                      run_id=session.project_run_id, echo=click.echo)
    click.echo(f"tune run:     {result.run_id}")
    click.echo(f"next: mixscale train --design-id <design id> --hparams-from {result.run_id}")


@cli.command("plan")
@tracking_options
@option("--model-uri", str, "models:/mixscale-digits@perclass-own-total",
      "Registered law to plan with (models:/<name>@<alias>, models:/<name>/<version>, "
      "runs:/...); default: the per-class law, whose returns diminish per class.")
@option("--current", str, "",
      "Comma-separated images per class you have now (label order); empty = zeros.")
@option("--caps", str, "",
      f"Comma-separated most images per class you can get; empty = {CAP_FACTOR} x the law's "
      "count scale (its largest training class count), with --verify the images the dataset "
      "has per class; --current where larger.")
@option("--costs", str, "", "Comma-separated cost of one more image per class; empty = all 1.")
@option("--floor", str, "", "Fewest images of each class a plan may have: one value, or one per "
      "class; empty = the smallest per-class count of the law's training rows.")
@click.option("--target", type=float, required=True, help="Target test accuracy, in (0, 1).")
@option("--epochs", int, 0,
      "Epochs of training the prediction is for; 0 = the law's largest training epoch.")
@option("--confidence", str, "",
      "Plan with risk: the cheapest counts whose LOWER bound of the law's central C interval "
      "(calibrated on the backtest when the law has a calibration) reaches --target; 0 = on "
      "the point prediction; empty = 0.9 for a law with an interval, else 0.")
@click.option("--verify", type=click.BOOL, default=False, is_flag=False, flag_value=True,
              show_default=True, help="Then train the planned counts --seeds times with the "
              "law's own recipe and log the realised accuracy (`--verify` alone = true).")
@click.option("--no-verify", is_flag=True, help="Same as `--verify false`.")
@option("--seeds", click.IntRange(1, MAX_SEEDS), 3, "With --verify: training runs (seeds 0..N-1).")
@friendly
def plan_cmd(**kw: Any) -> None:
    """The cheapest per-class image counts a registered law predicts to reach --target.

    With --verify, then train those counts with the law's own recipe, one ad-hoc run per seed
    nested under the plan run, and log the realised accuracy beside the predicted one. Inside
    `mlflow run` the project run is a launcher holding the parameters as given (``caps=''``,
    ``epochs=0``); the plan run, nested under it, logs the resolved values.
    """
    from mixscale import track as tr
    from mixscale.plan import plan_counts
    from mixscale.plan.planner import confidence_from_text
    from mixscale.serve import load_law
    from mixscale.stages.verify import check_counts, prepare_verification, run_verification

    session = Session(kw)
    law = load_law(kw["model_uri"], session.uri)
    verify = kw["verify"] and not kw["no_verify"]
    setup = prepare_verification(session.client, kw["model_uri"]) if verify else None
    available = None if setup is None else setup.dataset.available  # default caps
    current, caps, costs, epochs = plan_inputs(kw, law, available)
    floor = list(parse_int_list("floor", kw["floor"])) if kw["floor"].strip() else None
    plan = plan_counts(law, current=current, caps=caps, costs=costs, target=kw["target"],
                       epochs=epochs, floor=floor,  # validated before any logging
                       confidence=confidence_from_text(kw["confidence"], law))
    if setup is not None:
        check_counts(plan, setup.dataset)
    click.echo(f"law:          {kw['model_uri']} ({law.family}-{law.predictor})")
    for note in plan.warnings:
        click.echo(f"Warning: {note}", err=True)
    click.echo(plan.to_frame().drop(columns=["cap"]).to_string(
        index=False, float_format="{:.4g}".format))
    interval = ("" if plan.interval is None else
                f" ({plan.interval_level:.0%} {'calibrated ' if plan.calibrated else ''}"
                f"interval {plan.interval[0]:.4f}-{plan.interval[1]:.4f})")
    click.echo(f"predicted accuracy: {plan.predicted:.4f}{interval} at {plan.epochs} epochs")
    click.echo(f"cost:         {plan.cost:g} ({int(plan.added.sum())} image(s) added)")
    planned_on = ("the point prediction" if plan.confidence is None else
                  f"the lower bound of the {plan.confidence:.0%} interval")
    reached = plan.predicted if plan.confidence is None else plan.interval[0]
    if plan.reachable:
        click.echo(f"reachable:    yes (target {plan.target:g}, by {planned_on})")
    else:
        click.echo(f"reachable:    NO - the best counts within the caps reach only "
                   f"{reached:.4f} < target {plan.target:g} ({planned_on}); the table shows "
                   "them")
    session.mark_launcher()
    with tr.stage_run(session.client, session.experiment_id, kind="plan",
                      name=f"plan-{law.family}-{law.predictor}",
                      parent_run_id=session.project_run_id) as run_id:
        log_plan(session.client, run_id, kw, plan)
        if setup is not None:  # the plan run is the parent of the verification runs
            run_verification(session.client, session.experiment_id, plan, setup,
                             seeds=kw["seeds"], plan_run_id=run_id, echo=click.echo)
    click.echo(f"plan run:     {run_id}")


def entry_point(command: click.Command, name: str) -> None:
    """Run ``command`` as the MLproject entry point ``name`` (the process `mlflow run` starts).

    As on the command line, a refused request (a click usage error or a mixscale error) prints
    one ``Error:`` line and exits non-zero. MLflow then ends its project run FAILED, which we
    cannot prevent; if that run holds nothing of ours it is first renamed ``refused-<name>``
    and tagged ``mixscale.kind=refused`` (:func:`mark_refused_project_run`).

    Parameters
    ----------
    command : click.Command
        One of the commands above, e.g. :func:`design_cmd`.
    name : str
        The entry point's name, shown in usage messages and in the refused run's name.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    try:
        code = command.main(prog_name=name, standalone_mode=False)
    except click.ClickException as exc:
        if run_id:
            mark_refused_project_run(run_id, name, exc.format_message())
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mixscale")
