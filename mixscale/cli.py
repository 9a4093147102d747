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
    AUGMENTS,
    DESIGN_METHODS,
    DEVICES,
    FAMILIES,
    MODELS,
    PRECISIONS,
    PREDICTORS,
    RECIPES,
    STEMS,
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
def _once(name: str, option: Callable) -> Callable:
    """Add ``option`` unless the command already has parameter ``name`` (main = design + train)."""
    def wrap(f: Callable) -> Callable:
        if any(p.name == name for p in getattr(f, "__click_params__", [])):
            return f
        return option(f)
    return wrap


_data = _options(
    _once("data_dir", _opt("--data-dir", str, _T.data_dir,
                           "Folder of the torchvision datasets (<dir>/MNIST/raw, ...).")),
    _once("download", click.option(
        "--download", type=click.BOOL, default=False, is_flag=False, flag_value=True,
        show_default=True, help="Download a missing torchvision dataset into --data-dir "
                                "(`--download` alone = true; `--download false` = off).")),
)
_design = _options(
    _opt("--dataset", str, _D.dataset,
         "digits, cifar10, cifar100, mnist, fashion-mnist, or imagefolder:<path> (one "
         "sub-folder per class; train/ and test/ sub-folders if you have a split)."),
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
    _data,
)
class _OrRecipe(click.ParamType):
    """A value of ``inner``'s type, or ``recipe`` (or no option) for the value of --recipe."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def get_metavar(self, *args: Any, **kwargs: Any) -> str | None:
        return self.inner.get_metavar(*args, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "recipe"):
            return None
        return self.inner.convert(value, param, ctx)


_RECIPE_FIELDS = ("model", "epochs", "eval_every", "lr", "momentum", "weight_decay",
                  "batch_size", "lr_milestones", "lr_gamma", "augment", "stem")


def _recipe_opt(flag: str, kind: click.ParamType, help: str = "") -> Callable:
    """An option whose default comes from --recipe (explicit values override the recipe)."""
    def text(v: Any) -> str:
        return ",".join(map(str, v)) or "none" if isinstance(v, tuple) else str(v)

    field = flag[2:].replace("-", "_")
    defaults = "; ".join(f"{r}: {text(TrainConfig.recipe_values(r)[field])}" for r in RECIPES)
    return click.option(flag, type=_OrRecipe(kind), default=None,
                        help=f"{help} [recipe {defaults}]".strip())


_train = _options(
    _opt("--recipe", click.Choice(RECIPES), "default",
         "Preset for the options marked [recipe ...]: default = the fast digits recipe, paper "
         "= the paper's CIFAR-10 recipe (resnet18, 195 epochs, ...). Options given explicitly "
         "override it."),
    _recipe_opt("--model", click.Choice(MODELS)),
    _recipe_opt("--epochs", click.IntRange(1, 100_000)),
    _recipe_opt("--eval-every", click.IntRange(1),
                "Evaluate on the test split every N epochs (and at the last)."),
    _recipe_opt("--lr", click.FloatRange(0, 10, min_open=True), "SGD learning rate."),
    _recipe_opt("--momentum", click.FloatRange(0, 0.999)),
    _recipe_opt("--weight-decay", click.FloatRange(0, 1)),
    _recipe_opt("--batch-size", click.IntRange(1, 65_536)),
    _recipe_opt("--lr-milestones", click.STRING,
                "Comma-separated epochs where the learning rate is multiplied by --lr-gamma; "
                "empty for none."),
    _recipe_opt("--lr-gamma", click.FloatRange(0, 1, min_open=True)),
    _recipe_opt("--augment", click.Choice(AUGMENTS),
                "Batch augmentation; auto = crop-flip for colour images, none for grey."),
    _opt("--crop-padding", click.IntRange(0, 64), _T.crop_padding,
         "Zero padding (pixels) for the random crop."),
    _recipe_opt("--stem", click.Choice(STEMS),
                "resnet18 stem: cifar = 3x3 conv, no max-pool; imagenet = torchvision's; "
                "auto = cifar for images <= 64 px."),
    _opt("--precision", click.Choice(PRECISIONS), _T.precision,
         "Mixed precision on CUDA (auto = bf16 where supported, else fp16); CPU is fp32."),
    _opt("--device", click.Choice(DEVICES), _T.device, "auto = cuda when available."),
    _opt("--hparams-from", str, "",
         "A `mixscale tune` run id: its best lr, momentum, weight decay and batch size "
         "replace the recipe's (options given explicitly still win); empty = none."),
    _data,
)

_fit = _options(
    _opt("--families", str, ",".join(_F.families),
         f"Comma-separated law families or 'all' ({', '.join(FAMILIES)})."),
    _opt("--predictors", str, ",".join(_F.predictors),
         "Comma-separated linear predictors (the paper's models m0-m3) or 'all'."),
    _opt("--min-epoch", click.IntRange(0), _F.min_epoch, "Drop evaluations before this epoch."),
    _opt("--n-starts", click.IntRange(1, 10_000), _F.n_starts,
         "Least-squares starts per law."),
    _opt("--loss", click.Choice(["linear", "huber"]), _F.loss,
         "Least-squares loss; huber down-weights outlying evaluations."),
    _opt("--n-boot", click.IntRange(0, 100_000), _F.n_boot,
         "Run-bootstrap replicates for the champion's parameter intervals; 0 = none."),
    _opt("--extrapolate", click.BOOL, _F.extrapolate,
         "Also fit without the largest subset size and score the laws on it."),
    _opt("--model-name", str, "", "Registered model; empty = mixscale-<dataset>."),
)


def _design_spec(kw: dict[str, Any]) -> DesignSpec:
    return DesignSpec(
        dataset=kw["dataset"], subset_sizes=parse_int_list("subset_sizes", kw["subset_sizes"]),
        rows_per_size=kw["rows_per_size"], val_rows_per_size=kw["val_rows_per_size"],
        min_per_class=kw["min_per_class"], min_share=kw["min_share"],
        max_per_class=kw["max_per_class"] or None,
        iterations=kw["iterations"], method=kw["method"], seed=kw["seed"])


def _train_config(kw: dict[str, Any], tuned: dict[str, Any] | None = None) -> TrainConfig:
    """The recipe, then ``tuned`` (a tune run's best values), then the explicit options."""
    values = TrainConfig.recipe_values(kw.get("recipe") or "default")
    values.update(tuned or {})
    values.update({f: kw[f] for f in _RECIPE_FIELDS if kw.get(f) is not None})
    if isinstance(values["lr_milestones"], str):
        text = values["lr_milestones"].strip()
        values["lr_milestones"] = parse_int_list("lr_milestones", text) if text else ()
    values["eval_every"] = min(values["eval_every"], values["epochs"])
    for f in ("crop_padding", "precision", "device", "data_dir", "download"):
        if f in kw:
            values[f] = kw[f]
    return TrainConfig(**values)


def _fit_config(kw: dict[str, Any]) -> FitConfig:
    return FitConfig(
        families=parse_name_list("families", kw["families"], FAMILIES),
        predictors=parse_name_list("predictors", kw["predictors"], PREDICTORS),
        min_epoch=kw["min_epoch"], n_starts=kw["n_starts"], model_name=kw["model_name"] or None,
        loss=kw["loss"], n_boot=kw["n_boot"], extrapolate=kw["extrapolate"],
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
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
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

    prepared = prepare_design(_design_spec(kw), data_dir=kw["data_dir"],
                              download=kw["download"])  # validated before any logging
    session = _Session(kw)
    result = run_design(prepared, session.client, session.experiment_id,
                        run_id=session.project_run_id, echo=click.echo)
    click.echo(f"next: mixscale train --design-id {result.design_id}")


@cli.command("train-row")
@_tracking
@_opt("--run-id", str, "", "The row's child run (status SCHEDULED).")
@_opt("--counts", str, "",
      "Instead of --run-id: comma-separated images per class (label order) to train ad hoc "
      "in a new run, outside any design.")
@_opt("--dataset", str, "digits", "Dataset of --counts.")
@_opt("--seed", click.IntRange(0, 2**31 - 2), 0, "Seed of --counts (subset and training).")
@_train
@_friendly
def train_row_cmd(**kw: Any) -> None:
    """Train one design row and log its per-epoch metrics on the row's run (or ad-hoc counts)."""
    from mixscale import tracking as tr
    from mixscale.pipeline import train_counts, train_rows

    config = _train_config(kw)
    if bool(kw["run_id"].strip()) == bool(kw["counts"].strip()):
        raise MixscaleError("train-row needs exactly one of --run-id (a design row) or "
                            "--counts (ad-hoc per-class counts).")
    counts = parse_int_list("counts", kw["counts"]) if kw["counts"].strip() else None
    session = _Session(kw)
    config = _with_tuned(kw, config, session)
    if counts is not None:
        train_counts(session.client, session.experiment_id, kw["dataset"], counts, config,
                     seed=kw["seed"], run_id=session.project_run_id, echo=click.echo)
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
@_tracking
@click.option("--design-id", required=True, help="The design's parent run id.")
@_train
@_opt("--worker", str, "0",
      "This worker's index in [0, --workers), or 'env' to read $JOB_COMPLETION_INDEX "
      "(Kubernetes Indexed Job) or $SLURM_ARRAY_TASK_ID (Slurm array, --array=0-(N-1)).")
@_opt("--workers", click.IntRange(0, 100_000), 0,
      "Static partition: train only rows with row % workers == worker, restarting RUNNING "
      "ones (left by a dead earlier attempt of this index); 0 = every row.")
@_opt("--stale-after", click.FloatRange(0), 0.0,
      "Without --workers: restart RUNNING rows whose heartbeat (updated at every "
      "evaluation) is older than this many seconds; 0 = never.")
@_opt("--executor", click.Choice(["local", "ray"]), "local",
      "local = rows one after another here; ray = rows as Ray tasks (pip install "
      "'mixscale[ray]').")
@_opt("--ray-address", str, "",
      "Ray cluster address (e.g. ray://head:10001, auto); empty or 'local' = $RAY_ADDRESS, "
      "else a local Ray instance.")
@_opt("--ray-cpus", click.FloatRange(0.01, 1024), 1.0,
      "CPUs per Ray task (a task also gets 1 GPU with --device cuda).")
@_opt("--max-parallel", click.IntRange(1, 1024), 1,
      "Local worker processes, one static partition each; rerun with the same value to "
      "restart rows a killed run left RUNNING.")
@_friendly
def train_cmd(**kw: Any) -> None:
    """Train every pending row of a design (or this worker's share of them)."""
    from mixscale.pipeline import train_rows
    from mixscale.tracking import DESIGN
    from mixscale.workers import resolve_worker

    config = _train_config(kw)
    worker = resolve_worker(kw["worker"], kw["workers"])  # validated before any logging
    session = _Session(kw)
    config = _with_tuned(kw, config, session)
    session.mark_launcher(**{DESIGN: kw["design_id"]})
    address = "" if kw["ray_address"].strip().lower() in ("", "local") else kw["ray_address"]
    if kw["max_parallel"] > 1:
        if kw["workers"] or kw["executor"] != "local":
            raise MixscaleError("--max-parallel runs its own local partitions; it cannot be "
                                "combined with --workers or --executor ray.")
        from mixscale.workers import train_in_processes

        n = train_in_processes(session.uri, kw["design_id"], config,
                               max_parallel=kw["max_parallel"], echo=click.echo)
        click.echo(f"trained {n} row(s); next: mixscale fit --design-id {kw['design_id']}")
        return
    n = train_rows(session.client, kw["design_id"], config, worker=worker,
                   workers=kw["workers"], stale_after=kw["stale_after"],
                   executor=kw["executor"], ray_address=address, ray_cpus=kw["ray_cpus"],
                   tracking_uri=session.uri, echo=click.echo)
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
@click.option("--tune", type=click.BOOL, default=False, is_flag=False, flag_value=True,
              show_default=True, help="First run a small Optuna study on the full training "
              "split and train the design with its best values (`--tune` alone = true).")
@_opt("--tune-trials", int, 8, "With --tune: trials of the study.")
@_opt("--tune-epochs", click.IntRange(1, 100_000), 10, "With --tune: epochs per trial.")
@_friendly
def main_cmd(**kw: Any) -> None:
    """The whole pipeline: design -> train every row -> fit, register and serve-ready."""
    from mixscale import tracking as tr
    from mixscale.pipeline import prepare_design, run_design, run_fit, serve_command, train_rows

    spec, config, fit_config = _design_spec(kw), _train_config(kw), _fit_config(kw)
    t0 = time.perf_counter()
    prepared = prepare_design(spec, data_dir=config.data_dir,
                              download=config.download)  # validated before any logging
    tuning = _main_tune_setup(kw, spec.dataset) if kw["tune"] else None
    session = _Session(kw)
    client = session.client
    config = _with_tuned(kw, config, session)
    main_id = tr.start_stage_run(client, session.experiment_id, kind="pipeline",
                                 name=f"main-{spec.dataset}-s{spec.seed}",
                                 tags={tr.DATASET: spec.dataset}, run_id=session.project_run_id)
    try:
        if tuning is not None:
            config = _main_tune(kw, tuning, session, main_id)
        design = run_design(prepared, client, session.experiment_id, parent_run_id=main_id,
                            echo=click.echo)
        train_rows(client, design.design_id, config, echo=click.echo)
        fit = run_fit(fit_config, client, session.experiment_id, [design.design_id],
                      parent_run_id=main_id, echo=click.echo)
        options = {k: v for k, v in kw.items()
                   if k not in ("tracking_uri", "experiment") and v is not None}
        options.update({f: getattr(config, f) for f in config.__dataclass_fields__})
        options["lr_milestones"] = ",".join(map(str, config.lr_milestones))
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


# --- tune: Optuna search of lr, momentum, weight decay and batch size (mixscale.tune) -------
# Defaults mirror mixscale.tune.TuneConfig / SearchSpace (not imported here: the CLI stays
# cheap to import; tests/test_tune.py checks that they agree).
_TUNE_SAMPLERS, _TUNE_PRUNERS = ("tpe", "random"), ("median", "hyperband", "none")


def _with_tuned(kw: dict[str, Any], config: TrainConfig, session: _Session) -> TrainConfig:
    """``config`` with the best values of the tune run named by ``--hparams-from``, if any.

    Precedence: options given explicitly > the tune run's best values > the recipe.
    """
    run_id = (kw.get("hparams_from") or "").strip()
    if not run_id:
        return config
    from mixscale.tune import best_params_from_run, tuned_values

    config = _train_config(kw, best_params_from_run(session.client, run_id))
    click.echo(f"hparams from tune run {run_id}: {tuned_values(vars(config))}")
    return config


def _tune_base(kw: dict[str, Any], epochs: int | None = None) -> TrainConfig:
    """The recipe each trial trains with; recipe milestones past its epochs are dropped."""
    import dataclasses

    if epochs is not None:
        config = _train_config(kw)
        return dataclasses.replace(
            config, epochs=epochs, eval_every=1,
            lr_milestones=tuple(m for m in config.lr_milestones if m <= epochs))
    kw = dict(kw)
    if kw.get("lr_milestones") is None:
        recipe = TrainConfig.recipe_values(kw.get("recipe") or "default")
        last = kw.get("epochs") or recipe["epochs"]
        kw["lr_milestones"] = ",".join(str(m) for m in recipe["lr_milestones"] if m <= last)
    return _train_config(kw)


def _tune_setup(kw: dict[str, Any], base: TrainConfig, **config: Any) -> Any:
    """Validate the study's settings and open its storage (before anything is logged)."""
    from mixscale import tune as tu
    from mixscale.tracking import resolve_tracking_uri

    space = tu.SearchSpace(
        lr=tu.parse_range("lr_range", kw.get("lr_range", "0.001,0.3"), log=True),
        momentum=tu.parse_range("momentum_range", kw.get("momentum_range", "0.5,0.99"),
                                log=False),
        weight_decay=tu.parse_range("weight_decay_range",
                                    kw.get("weight_decay_range", "1e-06,0.01"), log=True),
        batch_size=tu.parse_choices("batch_sizes", kw.get("batch_sizes", "16,32,64,128")))
    setup = tu.prepare_tune(tu.TuneConfig(**config), space, base,
                            tracking_uri=resolve_tracking_uri(kw.get("tracking_uri")))
    click.echo(f"optuna storage: {tu.masked_url(setup.storage_url)}")
    return setup


@cli.command("tune")
@_tracking
@_opt("--dataset", str, "",
      "Dataset (as for design); empty = digits, or with --run-id the row's design's dataset.")
@_opt("--run-id", str, "",
      "A design row's run: tune on exactly that row's images; empty = the full training split.")
@_opt("--trials", int, 20, "Trials this process adds to the study (>= 1).")
@_opt("--timeout", float, 0.0, "Seconds after which this process starts no new trial; 0 = none.")
@_opt("--sampler", click.Choice(_TUNE_SAMPLERS), "tpe",
      "tpe = multivariate TPE (5 random start-up trials); random = uniform. Seeded by --seed.")
@_opt("--pruner", click.Choice(_TUNE_PRUNERS), "median",
      "median = stop a trial whose validation accuracy is below the median of earlier trials "
      "at the same epoch; hyperband; none.")
@_opt("--pruner-startup-trials", int, 4, "median: complete trials before any pruning.")
@_opt("--pruner-warmup-epochs", int, 3,
      "median: no pruning before this epoch; hyperband: the fewest epochs a trial gets.")
@_opt("--storage", str, "",
      "Optuna database URL; empty = optuna.db next to a SQLite tracking store (else ./optuna.db)."
      " Processes given one PostgreSQL URL and --study-name add trials to one study.")
@_opt("--study-name", str, "",
      "Empty = <dataset>-<model>-<full|row-<run id>>-e<epochs>; an existing study is resumed.")
@_opt("--lr-range", str, "0.001,0.3", "Learning-rate range low,high (log scale).")
@_opt("--momentum-range", str, "0.5,0.99", "Momentum range low,high.")
@_opt("--weight-decay-range", str, "1e-06,0.01", "Weight-decay range low,high (log scale).")
@_opt("--batch-sizes", str, "16,32,64,128", "Batch sizes to choose from, comma-separated.")
@_opt("--val-fraction", float, 0.2,
      "Share of each class's training images held out (fixed seed) to score trials on; "
      "the test split is never used.")
@_opt("--seed", int, 0, "Seeds the sampler; give parallel workers different seeds.")
@_opt("--enqueue-recipe", click.BOOL, True,
      "A new study's first trial tries the recipe's own lr, momentum, weight decay and batch "
      "size (a baseline to beat).")
@_opt("--recipe", click.Choice(RECIPES), "default", "Preset for the options marked [recipe].")
@_recipe_opt("--model", click.Choice(MODELS))
@_recipe_opt("--epochs", click.IntRange(1, 100_000), "Epochs per trial.")
@_recipe_opt("--lr-milestones", click.STRING,
             "Epochs where the learning rate is multiplied by --lr-gamma; recipe milestones "
             "past --epochs are dropped.")
@_recipe_opt("--lr-gamma", click.FloatRange(0, 1, min_open=True))
@_recipe_opt("--augment", click.Choice(AUGMENTS))
@_opt("--crop-padding", click.IntRange(0, 64), _T.crop_padding)
@_recipe_opt("--stem", click.Choice(STEMS))
@_opt("--precision", click.Choice(PRECISIONS), _T.precision)
@_opt("--device", click.Choice(DEVICES), _T.device, "auto = cuda when available.")
@_data
@_friendly
def tune_cmd(**kw: Any) -> None:
    """Search lr, momentum, weight decay and batch size with Optuna on a validation split."""
    from mixscale.config import DATASETS
    from mixscale.tune import run_tune

    if kw["dataset"] and kw["dataset"] not in DATASETS:
        raise MixscaleError(f"unknown dataset {kw['dataset']!r}; allowed: "
                            f"{', '.join(repr(d) for d in DATASETS)}.")
    setup = _tune_setup(
        kw, _tune_base(kw), trials=kw["trials"], timeout=kw["timeout"] or None,
        sampler=kw["sampler"], pruner=kw["pruner"], startup_trials=kw["pruner_startup_trials"],
        warmup_epochs=kw["pruner_warmup_epochs"], val_fraction=kw["val_fraction"],
        seed=kw["seed"], enqueue_recipe=kw["enqueue_recipe"], storage=kw["storage"] or None,
        study_name=kw["study_name"] or None)
    session = _Session(kw)
    result = run_tune(setup, session.client, session.experiment_id,
                      dataset=kw["dataset"] or None, row_run_id=kw["run_id"] or None,
                      run_id=session.project_run_id, echo=click.echo)
    click.echo(f"tune run:     {result.run_id}")
    click.echo(f"next: mixscale train --design-id <design id> --hparams-from {result.run_id}")


def _main_tune_setup(kw: dict[str, Any], dataset: str) -> tuple[Any, str]:
    """``main --tune``: the small study's settings, validated, its storage open."""
    if (kw.get("hparams_from") or "").strip():
        raise MixscaleError("--tune and --hparams-from exclude each other (--tune finds the "
                            "values --hparams-from would bring); pass one of them.")
    base = _tune_base(kw, epochs=kw["tune_epochs"])
    return _tune_setup(kw, base, trials=kw["tune_trials"], seed=kw["seed"]), dataset


def _main_tune(kw: dict[str, Any], tuning: tuple[Any, str], session: _Session,
               main_id: str) -> TrainConfig:
    """Run ``main``'s study under the pipeline run; the recipe with its best values."""
    from mixscale.tune import run_tune, tuned_values

    setup, dataset = tuning
    result = run_tune(setup, session.client, session.experiment_id, dataset=dataset,
                      parent_run_id=main_id, echo=click.echo)
    config = _train_config(kw, {**result.best_params, "hparams_from": result.run_id})
    click.echo(f"training the design with {tuned_values(vars(config))}")
    return config


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="mixscale")
