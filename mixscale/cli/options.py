"""Option blocks, config builders and the tracking session shared by the CLI's commands.

Used by :mod:`mixscale.cli.commands`: every option is declared once here (with the defaults of
the config dataclasses) and applied to each command that takes it. The tracking store
(:mod:`mixscale.track`, which imports mlflow) and the tuner are imported inside the functions
that talk to them, so that option parsing stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import click

from mixscale.config import (
    AUGMENTS,
    DESIGN_METHODS,
    DEVICES,
    MODELS,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    STEMS,
    DesignSpec,
    TrainConfig,
    milestones_within,
    parse_int_list,
    parse_name_list,
    split_list,
)
from mixscale.errors import MixscaleError
from mixscale.fit.backtest import SELECTS
from mixscale.fit.laws import FAMILIES, PREDICTORS
from mixscale.fit.options import FitConfig

_D, T, _F = DesignSpec(), TrainConfig(), FitConfig()


def _options(*opts: Callable) -> Callable:
    def wrap(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f
    return wrap


def option(flag: str, kind: Any, default: Any, help: str = "") -> Callable:
    return click.option(flag, type=kind, default=default, show_default=True, help=help)


tracking_options = _options(
    click.option("--tracking-uri", default=None, metavar="URI",
                 help="Tracking store; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                      "in the working directory."),
    option("--experiment", str, "mixscale",
         "Experiment name (inside `mlflow run`, the project run's experiment)."),
)
def _once(name: str, option: Callable) -> Callable:
    """Add ``option`` unless the command already has parameter ``name`` (main = design + train)."""
    def wrap(f: Callable) -> Callable:
        if any(p.name == name for p in getattr(f, "__click_params__", [])):
            return f
        return option(f)
    return wrap


data_options = _options(
    _once("data_dir", option("--data-dir", str, T.data_dir,
                           "Folder of the torchvision datasets (<dir>/MNIST/raw, ...).")),
    _once("download", click.option(
        "--download", type=click.BOOL, default=False, is_flag=False, flag_value=True,
        show_default=True, help="Download a missing torchvision dataset into --data-dir "
                                "(`--download` alone = true; `--download false` = off).")),
)
design_options = _options(
    option("--dataset", str, _D.dataset,
         "digits, cifar10, cifar100, mnist, fashion-mnist, or imagefolder:<path> (one "
         "sub-folder per class; train/ and test/ sub-folders if you have a split)."),
    option("--subset-sizes", str, ",".join(map(str, _D.subset_sizes)),
         "Comma-separated training-subset sizes."),
    option("--rows-per-size", click.IntRange(1, 10_000), _D.rows_per_size,
         "Training-design rows per subset size."),
    option("--val-rows-per-size", click.IntRange(0, 10_000), _D.val_rows_per_size,
         "Validation-design rows per subset size (an independent design, own seed)."),
    option("--min-per-class", click.IntRange(0), _D.min_per_class,
         "Lower bound per class (1 keeps every class in every row)."),
    option("--min-share", click.FloatRange(0, 1), _D.min_share,
         "Lower bound per class as a share of the balanced count subset_size/n_classes "
         "(keeps rows away from near-single-class subsets); 0 = off."),
    option("--max-per-class", click.IntRange(0), 0,
         "Upper bound per class; 0 = the images each class has."),
    option("--iterations", click.IntRange(0, 10_000_000), _D.iterations,
         "Maximin exchange iterations per subset size."),
    option("--method", click.Choice(DESIGN_METHODS), _D.method,
         "Design optimiser (paper = the paper's Algorithm 1)."),
    option("--seed", click.IntRange(0, 2**31 - 2), _D.seed,
         "Seeds the design; row i trains with seed*10000 + i."),
    click.option("--skip-bad-images", type=click.BOOL, default=False, is_flag=False,
                 flag_value=True, show_default=True,
                 help="imagefolder: leave out images that cannot be read (listed in the design "
                      "run's skipped_images.txt) instead of refusing the folder."),
    data_options,
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
                  "batch_size", "schedule", "min_steps_per_epoch", "lr_milestones", "lr_gamma",
                  "augment", "stem")


def recipe_option(flag: str, kind: click.ParamType, help: str = "") -> Callable:
    """An option whose default comes from --recipe (explicit values override the recipe)."""
    def text(v: Any) -> str:
        return ",".join(map(str, v)) or "none" if isinstance(v, tuple) else str(v)

    field = flag[2:].replace("-", "_")
    defaults = "; ".join(f"{r}: {text(TrainConfig.recipe_values(r)[field])}" for r in RECIPES)
    return click.option(flag, type=_OrRecipe(kind), default=None,
                        help=f"{help} [recipe {defaults}]".strip())


train_options = _options(
    option("--recipe", click.Choice(RECIPES), "default",
         "Preset for the options marked [recipe ...]: default = the fast digits recipe, paper "
         "= the paper's CIFAR-10 recipe (resnet18, 195 epochs, ...). Options given explicitly "
         "override it."),
    recipe_option("--model", click.Choice(MODELS)),
    recipe_option("--epochs", click.IntRange(1, 100_000)),
    recipe_option("--eval-every", click.IntRange(1),
                "Evaluate on the test split every N epochs (and at the last)."),
    option("--eval-images", click.IntRange(0), T.eval_images,
         "Score every evaluation but the last on a fixed, seeded, stratified subset of N test "
         "images; 0 = 2,000 or the whole split if smaller. The last evaluation scores the "
         "whole split. Rows log both (params eval_images, eval_final_images)."),
    click.option("--eval-early", type=click.BOOL, default=False, is_flag=False, flag_value=True,
                 show_default=True,
                 help="Also evaluate the epochs below the fit's --min-epoch (10 for `train`), "
                      "which the fit drops; by default they are skipped (the last epoch is "
                      "always evaluated). `--eval-early` alone = true."),
    recipe_option("--lr", click.FloatRange(0, 10, min_open=True), "SGD learning rate."),
    recipe_option("--momentum", click.FloatRange(0, 0.999)),
    recipe_option("--weight-decay", click.FloatRange(0, 1)),
    recipe_option("--batch-size", click.IntRange(1, 65_536)),
    recipe_option("--schedule", click.Choice(SCHEDULES),
                "Learning-rate schedule: cosine = decays smoothly to 0 at the row's last step; "
                "step = x --lr-gamma at each of --lr-milestones."),
    recipe_option("--min-steps-per-epoch", click.IntRange(0, 1_000_000),
                "Fewest optimiser steps in an epoch: a subset of fewer batches draws more "
                "from further passes over its images (param steps_per_epoch); 0 = one pass "
                "per epoch."),
    recipe_option("--lr-milestones", click.STRING,
                "Comma-separated epochs where the learning rate is multiplied by --lr-gamma "
                "(--schedule step); empty for none. Recipe milestones past --epochs are "
                "dropped."),
    recipe_option("--lr-gamma", click.FloatRange(0, 1, min_open=True)),
    recipe_option("--augment", click.Choice(AUGMENTS),
                "Batch augmentation; auto = crop-flip for colour images, none for grey."),
    option("--crop-padding", click.IntRange(0, 64), T.crop_padding,
         "Zero padding (pixels) for the random crop."),
    recipe_option("--stem", click.Choice(STEMS),
                "resnet18 stem: cifar = 3x3 conv, no max-pool; imagenet = torchvision's; "
                "auto = cifar for images <= 64 px."),
    option("--precision", click.Choice(PRECISIONS), T.precision,
         "Mixed precision on CUDA (auto = bf16 where supported, else fp16); CPU is fp32."),
    option("--device", click.Choice(DEVICES), T.device, "auto = cuda when available."),
    option("--checkpoint-every", int, T.checkpoint_every,
         "Save each row's training state every N epochs (artifact checkpoint/state.pt of its "
         "run); a killed or failed row then resumes from it in the same run. 0 = off; at most "
         "--epochs."),
    option("--hparams-from", str, "",
         "A `mixscale tune` run id: its best lr, momentum, weight decay and batch size "
         "replace the recipe's (options given explicitly still win); empty = none."),
    data_options,
)

fit_options = _options(
    option("--families", str, ",".join(_F.families),
         f"Comma-separated law families or 'all' ({', '.join(FAMILIES)})."),
    option("--predictors", str, ",".join(_F.predictors),
         "Comma-separated linear predictors (the paper's models m0-m3) or 'all'."),
    option("--min-epoch", click.IntRange(0), _F.min_epoch, "Drop evaluations before this epoch."),
    option("--n-starts", click.IntRange(1, 10_000), _F.n_starts,
         "Least-squares starts per law."),
    option("--loss", click.Choice(["linear", "huber"]), _F.loss,
         "Least-squares loss; huber down-weights outlying evaluations."),
    option("--n-boot", click.IntRange(0, 100_000), _F.n_boot,
         "Run-bootstrap replicates for the champion's parameter intervals; 0 = none."),
    option("--extrapolate", click.BOOL, _F.extrapolate,
         "Also fit without the largest subset size and score the laws on it."),
    option("--class-law", click.BOOL, _F.class_law,
         "Also fit the per-class law with diminishing returns (perclass-own-total) from the "
         "rows' test_accuracy_<class> metrics."),
    option("--select", click.Choice(SELECTS), _F.select,
         "How the champion is chosen among the registered (bounded) laws: backtest = lowest "
         "backtest RMSE at 1-3x the fitted size; validation = lowest validation MSE."),
    option("--model-name", str, "", "Registered model; empty = mixscale-<dataset>."),
)


def design_spec_from(kw: dict[str, Any]) -> DesignSpec:
    return DesignSpec(
        dataset=kw["dataset"], subset_sizes=parse_int_list("subset_sizes", kw["subset_sizes"]),
        rows_per_size=kw["rows_per_size"], val_rows_per_size=kw["val_rows_per_size"],
        min_per_class=kw["min_per_class"], min_share=kw["min_share"],
        max_per_class=kw["max_per_class"] or None,
        iterations=kw["iterations"], method=kw["method"], seed=kw["seed"],
        skip_bad_images=bool(kw.get("skip_bad_images", False)))


def train_config_from(kw: dict[str, Any], tuned: dict[str, Any] | None = None) -> TrainConfig:
    """The recipe, then ``tuned`` (a tune run's best values), then the explicit options.

    The recipe's milestones past the epochs are dropped (``--recipe paper --epochs 120``
    decays once, at 100); an explicit ``--lr-milestones`` past ``--epochs``
    is refused, naming the option.
    """
    values = TrainConfig.recipe_values(kw.get("recipe") or "default")
    values.update(tuned or {})
    explicit = {f: kw[f] for f in _RECIPE_FIELDS if kw.get(f) is not None}
    values.update(explicit)
    epochs = values["epochs"]
    if "lr_milestones" in explicit:
        text = explicit["lr_milestones"]
        milestones = (tuple(text) if not isinstance(text, str) else
                      parse_int_list("lr_milestones", text) if text.strip() else ())
        bad = [m for m in milestones if not 1 <= m <= epochs]
        if bad:
            raise MixscaleError(
                f"--lr-milestones {text!r} must be epochs in 1..{epochs} (--epochs {epochs}), "
                f"but got {bad[0]}; leave --lr-milestones out (in `mlflow run`: at 'recipe') "
                "to drop the recipe's milestones past --epochs, or pass '' for none.")
        values["lr_milestones"] = milestones
    else:
        values["lr_milestones"] = milestones_within(tuple(values["lr_milestones"]), epochs)
    values["eval_every"] = min(values["eval_every"], epochs)
    # epochs the fit drops are not evaluated unless --eval-early (`main` passes its --min-epoch)
    values["eval_from"] = 0 if kw.get("eval_early") else kw.get("min_epoch", _F.min_epoch)
    values["eval_images"] = kw.get("eval_images", T.eval_images)
    for f in ("crop_padding", "precision", "device", "checkpoint_every", "data_dir",
              "download"):
        if f in kw:
            values[f] = kw[f]
    return TrainConfig(**values)


def fit_config_from(kw: dict[str, Any]) -> FitConfig:
    """The fit options of ``fit`` and ``main``, refused up front (before ``main`` trains a
    row) when they could register no law."""
    config = FitConfig(
        families=parse_name_list("families", kw["families"], tuple(FAMILIES)),
        predictors=parse_name_list("predictors", kw["predictors"], tuple(PREDICTORS)),
        min_epoch=kw["min_epoch"], n_starts=kw["n_starts"], model_name=kw["model_name"] or None,
        loss=kw["loss"], n_boot=kw["n_boot"], extrapolate=kw["extrapolate"],
        class_law=kw["class_law"], seed=kw.get("seed", 0),
        select=kw.get("select", _F.select))
    config.check_registrable()
    return config


def friendly(f: Callable) -> Callable:
    """Turn bad input into one clear line and exit status 1 (no traceback)."""
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except MixscaleError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


def mark_refused_project_run(run_id: str, entry_point: str, message: str) -> bool:
    """Label the run `mlflow run` created for a request that was refused; True if labelled.

    MLflow creates the project run (and logs the MLproject parameters on it) before our code
    sees the parameters, and after a non-zero exit it always ends that run FAILED: even a run
    already ended or deleted gets ``set_terminated`` (MLflow 3's ``_maybe_set_run_terminated``
    compares the status string with integer codes), which fails on a deleted run with a
    traceback. So the run cannot be avoided or deleted; instead, when it holds nothing but
    MLflow's own params and tags (no metrics, no artifacts, no nested runs, no mixscale tags
    beyond a launcher's), it is renamed ``refused-<entry point>`` and tagged
    ``mixscale.kind=refused`` with the message as ``mixscale.error``, so the runs table says
    what happened and ``tags."mixscale.kind" != 'refused'`` hides it. Best effort: any other
    run, or any error on the way, leaves the run to MLflow.
    """
    from mixscale import track as tr

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return False
    try:
        client = tr.open_client(uri)
        run = client.get_run(run_id)
        tags = run.data.tags
        if (tags.get("mlflow.source.type") != "PROJECT" or run.data.metrics
                or tags.get(tr.KIND, "launcher") != "launcher"
                or client.list_artifacts(run_id)):
            return False
        if tr.has_child_run(client, run_id, run.info.experiment_id):
            return False
        client.update_run(run_id, name=f"refused-{entry_point}")
        tr.log_params(client, run_id, {}, tags={tr.KIND: "refused",
                                                tr.ERROR: f"refused: {message}"[:5000]})
    except Exception:  # the store is unreachable or refuses: MLflow ends the run FAILED
        return False
    return True


class Session:
    """The tracking store, client and experiment a command works in."""

    def __init__(self, kw: dict[str, Any]) -> None:
        from mixscale import track as tr

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # `mlflow run` creates a run for the project and names it in MLFLOW_RUN_ID: adopt it.
        self.project_run_id = os.environ.pop("MLFLOW_RUN_ID", None)
        self.uri = tr.resolve_tracking_uri(kw.get("tracking_uri"))
        click.echo(f"tracking URI: {self.uri}")
        self.client = tr.open_client(self.uri)
        self.experiment_id = tr.experiment_for(self.client, kw["experiment"],
                                               run_id=self.project_run_id)
        exp = self.client.get_experiment(self.experiment_id)
        click.echo(f"experiment:   {exp.name} (id {self.experiment_id})")

    def mark_launcher(self, **tags: str) -> None:
        """Tag the project run of a `mlflow run` that only launches work on other runs."""
        from mixscale import track as tr

        if self.project_run_id:
            tr.log_params(self.client, self.project_run_id, {},
                          tags={tr.KIND: "launcher", **tags})


def with_tuned(kw: dict[str, Any], config: TrainConfig, session: Session) -> TrainConfig:
    """``config`` with the best values of the tune run named by ``--hparams-from``, if any.

    Precedence: options given explicitly > the tune run's best values > the recipe.
    """
    run_id = (kw.get("hparams_from") or "").strip()
    if not run_id:
        return config
    from mixscale.tune import best_params_from_run, tuned_values

    config = train_config_from(kw, best_params_from_run(session.client, run_id))
    click.echo(f"hparams from tune run {run_id}: {tuned_values(vars(config))}")
    return config


def tune_base(kw: dict[str, Any], epochs: int | None = None) -> TrainConfig:
    """The recipe each trial trains with; milestones past its epochs are dropped.

    ``epochs`` (``main --tune-epochs``) shortens the pipeline's recipe for the study's trials.
    """
    config = dataclasses.replace(train_config_from(kw), eval_from=0)  # the pruner: every epoch
    if epochs is None:
        return config
    return dataclasses.replace(
        config, epochs=epochs, eval_every=1, checkpoint_every=0,  # trials never resume
        lr_milestones=milestones_within(config.lr_milestones, epochs))


def tune_setup(kw: dict[str, Any], base: TrainConfig, **config: Any) -> Any:
    """Validate the study's settings and open its storage (before anything is logged)."""
    from mixscale import tune as tu
    from mixscale.track import resolve_tracking_uri

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


def main_tune_setup(kw: dict[str, Any], dataset: str) -> tuple[Any, str]:
    """``main --tune``: the small study's settings, validated, its storage open."""
    if (kw.get("hparams_from") or "").strip():
        raise MixscaleError("--tune and --hparams-from exclude each other (--tune finds the "
                            "values --hparams-from would bring); pass one of them.")
    base = tune_base(kw, epochs=kw["tune_epochs"])
    return tune_setup(kw, base, trials=kw["tune_trials"], seed=kw["seed"]), dataset


def main_tune(kw: dict[str, Any], tuning: tuple[Any, str], session: Session,
               main_id: str) -> TrainConfig:
    """Run ``main``'s study under the pipeline run; the recipe with its best values."""
    from mixscale.tune import run_tune, tuned_values

    setup, dataset = tuning
    result = run_tune(setup, session.client, session.experiment_id, dataset=dataset,
                      parent_run_id=main_id, echo=click.echo)
    config = train_config_from(kw, {**result.best_params, "hparams_from": result.run_id})
    click.echo(f"training the design with {tuned_values(vars(config))}")
    return config


# --- plan: the cheapest per-class counts that reach a target accuracy (mixscale.plan) ------
CAP_FACTOR = 10  # default cap per class: this many times the law's count scale


def _float_list(name: str, text: str) -> list[float]:
    try:
        return [float(t) for t in split_list(name, text)]
    except ValueError:
        raise MixscaleError(f"`{name}` must be comma-separated numbers, but got "
                            f"{text!r}.") from None


def plan_inputs(kw: dict[str, Any], law: Any, available: Any = None
                 ) -> tuple[list[int], list[int], list[float], int]:
    """--current, --caps, --costs and --epochs of `plan`, empty ones filled in.

    Empty --caps: ``available`` (the dataset's images per class, when verifying), else
    ``CAP_FACTOR`` x the law's count scale; --current where that is larger.
    """
    n = len(law.class_columns_)
    current = (list(parse_int_list("current", kw["current"])) if kw["current"].strip()
               else [0] * n)
    if kw["caps"].strip():
        caps = list(parse_int_list("caps", kw["caps"]))
    else:
        caps = ([int(a) for a in available] if available is not None
                else [int(round(CAP_FACTOR * law.count_scale_))] * n)
        caps = ([max(c, d) for c, d in zip(current, caps, strict=True)]
                if len(current) == len(caps) else caps)
    costs = _float_list("costs", kw["costs"]) if kw["costs"].strip() else [1.0] * n
    return current, caps, costs, kw["epochs"] or int(round(law.epoch_scale_))


def log_plan(client: Any, run_id: str, kw: dict[str, Any], plan: Any) -> None:
    """Log a plan on its run: params, metrics, plan.json, plan.csv and plan.png."""
    from mixscale import track as tr
    from mixscale.plots import close, plan_figure

    tr.log_params(client, run_id, {
        "model_uri": kw["model_uri"], "target": kw["target"], "epochs": plan.epochs,
        "current": ",".join(map(str, plan.current.astype(int))),
        "caps": ",".join(map(str, plan.caps.astype(int))),
        "costs": ",".join(f"{c:g}" for c in plan.costs),
        "floor": ",".join(map(str, plan.floor.astype(int)))}, skip_existing=True)
    if plan.warnings:
        client.set_tag(run_id, "mixscale.plan_warning", " ".join(plan.warnings)[:5000])
    metrics = {"predicted_accuracy": plan.predicted, "cost": plan.cost,
               "reachable": float(plan.reachable), "added": float(plan.added.sum())}
    if plan.interval is not None:
        metrics.update(predicted_lower=plan.interval[0], predicted_upper=plan.interval[1])
    tr.log_metrics(client, run_id, metrics)
    fig = plan_figure(plan)
    tr.log_artifacts(client, run_id, {"plan.json": json.dumps(plan.to_dict(), indent=1),
                                      "plan.csv": plan.to_frame(), "plan.png": fig})
    close(fig)
