"""Optuna search of the SGD settings (lr, momentum, weight decay, batch size) for one dataset.

A study trains the recipe's network on a design row's subset (or on the whole training split)
and scores each trial by its accuracy on a validation split carved from the *training* data,
stratified and seeded (:func:`validation_split`); the test split is never looked at. Every
epoch's validation accuracy is reported to the pruner, so hopeless trials stop early.

The study lives in an Optuna RDB storage (SQLite by default, next to a SQLite tracking store;
PostgreSQL for several processes adding trials to one study). In MLflow a study is one parent
run (tag ``mixscale.kind=tune``) with one nested run per trial (``mixscale.kind=trial``; its
params, per-epoch ``val_accuracy``/``val_loss``/``train_loss`` and its final state as the tag
``mixscale.trial_state``). The parent ends with the study's best parameters as params
``best_lr``, ``best_momentum``, ``best_weight_decay``, ``best_batch_size`` (read back by
:func:`best_params_from_run` for ``--hparams-from``), ``best_val_accuracy`` and figures.
Only this module imports optuna.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from mixscale import track as tr
from mixscale.config import Echo, TrainConfig
from mixscale.errors import MixscaleError
from mixscale.train import resolve_settings, train_model
from mixscale.tune.space import (
    PRUNERS,
    SAMPLERS,
    SEARCHED,
    SearchSpace,
    TuneConfig,
    default_storage,
    masked_url,
    parse_choices,
    parse_range,
)
from mixscale.tune.trialdata import TrialData, load_trial_data, validation_split
from mixscale.tune.tuned import best_params_from_run, tuned_values

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["SEARCHED", "SAMPLERS", "PRUNERS", "TRIAL_STATE", "STUDY", "SearchSpace",
           "TuneConfig", "TuneSetup", "TuneResult", "parse_range", "parse_choices",
           "default_storage", "default_study_name", "masked_url", "prepare_tune",
           "validation_split", "run_tune", "best_params_from_run", "tuned_values"]

TRIAL_STATE = "mixscale.trial_state"  # COMPLETE | PRUNED | FAIL, on each trial run
STUDY = "mixscale.study"  # the study name, on the parent and on each trial run
_RECIPE_ATTR = "mixscale.recipe"  # user attr of the enqueued trial that tries the recipe
_FINGERPRINT_ATTR = "mixscale.fingerprint"  # what a study's objective is (refused on change)



def _open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect (creating Optuna's tables if needed); a bad URL or server is a MixscaleError."""
    shown = masked_url(url)
    if "://" not in url:
        raise MixscaleError(f"`storage` must be a database URL such as sqlite:///optuna.db or "
                            f"postgresql+psycopg2://user@host:5432/db, but got storage={url!r}.")
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(("postgresql", "mysql")):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    try:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:
            if "could not parse" in str(exc).lower() or "refused" in str(exc).lower():
                raise
            # Workers started together on a fresh database race to create Optuna's tables:
            # the loser sees "already exists"; by now the tables are there.
            time.sleep(1.0)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:  # sqlalchemy's ArgumentError, OperationalError, a missing driver
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
        detail = detail.split(" (Background on this error")[0][:300]
        raise MixscaleError(f"cannot open the Optuna storage {shown!r} "
                            f"({type(exc).__name__}: {detail}); pass --storage with a "
                            "reachable database URL (sqlite:///path/optuna.db, or "
                            "postgresql+psycopg2://user@host:5432/db).") from None


@dataclass(frozen=True)
class TuneSetup:
    """A study's settings, validated, with its storage open; nothing logged yet."""

    config: TuneConfig
    space: SearchSpace
    base: TrainConfig  # the recipe each trial trains with (its searched fields replaced)
    storage: optuna.storages.RDBStorage
    storage_url: str  # as given or defaulted (shown with its password masked)


def prepare_tune(config: TuneConfig, space: SearchSpace, base: TrainConfig, *,
                 tracking_uri: str) -> TuneSetup:
    """Resolve the storage URL and connect to it, before the caller logs anything.

    Raises
    ------
    MixscaleError
        If the storage URL is malformed or its database cannot be reached.
    """
    url = config.storage or default_storage(tracking_uri)
    return TuneSetup(config=config, space=space, base=base, storage=_open_storage(url),
                     storage_url=url)


@dataclass(frozen=True)
class TuneResult:
    """What a study (so far, over every process that added trials) found."""

    run_id: str  # the parent tune run
    study_name: str
    best_value: float  # validation accuracy of the best complete trial
    best_params: dict[str, Any]  # lr, momentum, weight_decay, batch_size
    recipe_value: float | None  # validation accuracy of the recipe's own values, if tried
    counts: dict[str, int]  # trials of the study per state: complete, pruned, fail, ...
    seconds: float  # wall time of this process's trials


def _study(setup: TuneSetup, name: str, fingerprint: dict[str, Any]) -> optuna.Study:
    cfg = setup.config
    seed_offset = 0
    if cfg.pruner == "median":
        pruner: optuna.pruners.BasePruner = optuna.pruners.MedianPruner(
            n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)
    elif cfg.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=max(1, cfg.warmup_epochs), max_resource=setup.base.epochs)
    else:
        pruner = optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for multivariate TPE
        study = optuna.create_study(storage=setup.storage, study_name=name,
                                    direction="maximize", load_if_exists=True)
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise MixscaleError(f"study {name!r} in {masked_url(setup.storage_url)} minimises; "
                                "it is not a mixscale study, pick another --study-name.")
        old = study.user_attrs.get(_FINGERPRINT_ATTR)
        if old is None:
            study.set_user_attr(_FINGERPRINT_ATTR, fingerprint)
        elif old != fingerprint:
            diff = ", ".join(f"{k}={old.get(k)!r} (now {fingerprint.get(k)!r})"
                             for k in sorted(set(old) | set(fingerprint))
                             if old.get(k) != fingerprint.get(k))
            raise MixscaleError(f"study {name!r} was created with {diff}; resume it with the "
                                "same settings, or pick another --study-name.")
        seed_offset = len(study.trials)  # a resumed study does not replay its random start
        if cfg.sampler == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                seed=cfg.seed + seed_offset, n_startup_trials=5, multivariate=True)
        else:
            sampler = optuna.samplers.RandomSampler(seed=cfg.seed + seed_offset)
        study.sampler, study.pruner = sampler, pruner
    return study


def default_study_name(dataset: str, model: str, scope: str, epochs: int) -> str:
    """``<dataset>-<model>-full-e<epochs>`` or ``...-row-<run id[:8]>-e<epochs>``."""
    where = "full" if scope == "full" else f"row-{scope[:8]}"
    return f"{dataset}-{model}-{where}-e{epochs}"


def run_tune(setup: TuneSetup, client: MlflowClient, experiment_id: str, *,
             dataset: str | None = None, row_run_id: str | None = None,
             run_id: str | None = None, parent_run_id: str | None = None,
             echo: Echo = print) -> TuneResult:
    """Run (or resume) a study and log it: one parent run, one nested run per trial.

    Parameters
    ----------
    setup : TuneSetup
        From :func:`prepare_tune` (settings validated, storage reachable).
    dataset : str, optional
        The dataset (default digits); with ``row_run_id`` it must match the design's, or be
        None.
    row_run_id : str, optional
        Tune on this design row's subset; None = the full training split.
    run_id : str, optional
        Adopt this run as the parent (the run ``mlflow run -e tune`` created).
    parent_run_id : str, optional
        Nest the parent under this run (``main --tune``).

    Raises
    ------
    MixscaleError
        Before anything is logged: an unknown row, dataset or study whose settings differ.
        After the study: when no trial of the study completed.
    """
    cfg, space, base = setup.config, setup.space, setup.base
    data = load_trial_data(client, dataset=dataset, row_run_id=row_run_id, base=base,
                      fraction=cfg.val_fraction)
    ds = data.dataset
    settings = resolve_settings(base, image_shape=ds.image_shape)
    fingerprint = {"dataset": ds.name, "scope": data.scope, "model": base.model,
                   "epochs": base.epochs, "val_fraction": cfg.val_fraction,
                   "lr_milestones": list(base.lr_milestones), "lr_gamma": base.lr_gamma,
                   "augment": settings.augment, "stem": settings.stem}
    name = cfg.study_name or default_study_name(ds.name, base.model, data.scope, base.epochs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(setup, name, fingerprint)
    recipe = {k: getattr(base, k) for k in SEARCHED}
    n_before = len(study.trials)
    if cfg.enqueue_recipe and not n_before:
        if recipe["batch_size"] in space.batch_size:  # (lr ... may lie outside their ranges)
            study.enqueue_trial(recipe, user_attrs={_RECIPE_ATTR: True}, skip_if_exists=True)
        else:
            echo(f"the recipe's batch size {recipe['batch_size']} is not among --batch-sizes: "
                 "the recipe's values are not tried as the first trial")

    with tr.stage_run(client, experiment_id, kind="tune", name=f"tune-{name}",
                      tags={tr.DATASET: ds.name, STUDY: name}, run_id=run_id,
                      parent_run_id=parent_run_id) as parent:
        t0 = time.perf_counter()
        params = base.to_params(settings.as_params(), omit=(
            *SEARCHED, "download", "hparams_from", "eval_every", "checkpoint_every"))
        params.update(space.as_params(), dataset=ds.name, row_run_id=row_run_id or "",
                      study_name=name, storage=masked_url(setup.storage_url), trials=cfg.trials,
                      timeout=cfg.timeout or 0, sampler=cfg.sampler, pruner=cfg.pruner,
                      pruner_startup_trials=cfg.startup_trials,
                      pruner_warmup_epochs=cfg.warmup_epochs, val_fraction=cfg.val_fraction,
                      seed=cfg.seed, n_train=len(data.train_idx), n_val=len(data.val_idx))
        tr.log_params(client, parent, params, skip_existing=True)
        echo(f"study {name}: {n_before} trial(s) so far; training on "
             f"{len(data.train_idx)} images, scoring on {len(data.val_idx)} validation images "
             f"({base.epochs} epoch(s) per trial)")
        objective = _objective(client, parent, experiment_id, setup, data, name, echo)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recipe values outside the ranges, experimental
            study.optimize(objective, n_trials=cfg.trials, timeout=cfg.timeout,
                           catch=(Exception,), gc_after_trial=False)
        result = _summarise(client, parent, study, name, time.perf_counter() - t0, echo)
    return result


def _objective(client: MlflowClient, parent: str, experiment_id: str, setup: TuneSetup,
               data: TrialData, name: str, echo: Echo) -> Callable[[optuna.Trial], float]:
    ds = data.dataset
    x_train, y_train = ds.train_images[data.train_idx], ds.train_labels[data.train_idx]
    x_val, y_val = ds.train_images[data.val_idx], ds.train_labels[data.val_idx]

    def objective(trial: optuna.Trial) -> float:
        run_id = tr.start_stage_run(client, experiment_id, kind="trial",
                                    name=f"trial-{trial.number:03d}",
                                    tags={STUDY: name, "mixscale.trial": str(trial.number)},
                                    parent_run_id=parent)
        trial.set_user_attr("mlflow_run_id", run_id)
        state, error, last, hp = "FAIL", None, (0, math.nan), {}
        t0 = time.perf_counter()

        def on_eval(epoch: int, metrics: dict[str, float]) -> None:
            nonlocal last
            last = (epoch, metrics["test_accuracy"])
            tr.log_metrics(client, run_id, {
                "val_accuracy": metrics["test_accuracy"], "val_loss": metrics["test_loss"],
                "train_loss": metrics["train_loss"],
                "train_accuracy": metrics["train_accuracy"]}, step=epoch)
            trial.report(metrics["test_accuracy"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val_accuracy {last[1]:.3f} at epoch {epoch}")

        try:
            hp = setup.space.suggest(trial)
            config = dataclasses.replace(setup.base, **hp, eval_every=1)
            tr.log_params(client, run_id, {**hp, "trial_number": trial.number,
                                           "recipe": bool(trial.user_attrs.get(_RECIPE_ATTR))})
            result = train_model(x_train, y_train, x_val, y_val, config=config,
                                 class_keys=ds.class_keys, seed=data.seed, mean=ds.mean,
                                 std=ds.std, callback=on_eval)
            value = float(result.final["test_accuracy"])
            if not math.isfinite(value):
                raise FloatingPointError(f"validation accuracy is {value}")
            state = "COMPLETE"
            return value
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            tr.log_params(client, run_id, {}, tags={TRIAL_STATE: state})
            tr.end_run(client, run_id, error=error)
            shown = ", ".join(f"{k}={v:.3g}" for k, v in hp.items())
            why = f" ({type(error).__name__}: {error})" if error is not None else ""
            echo(f"trial {trial.number:>3} {state:<8} epoch {last[0]:>3} val_accuracy "
                 f"{last[1]:.3f}  {shown}  ({time.perf_counter() - t0:.1f} s){why}")

    return objective


def _summarise(client: MlflowClient, parent: str, study: optuna.Study, name: str,
               seconds: float, echo: Echo) -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for t in trials:
        counts[t.state.name.lower()] += 1
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    metrics = {f"trials_{k}": v for k, v in counts.items()
               if k in ("complete", "pruned", "fail", "running")}
    metrics["tune_seconds"] = seconds
    if not complete:
        tr.log_metrics(client, parent, metrics)
        raise MixscaleError(f"no trial of study {name!r} completed ({counts['pruned']} pruned, "
                            f"{counts['fail']} failed); see the trial runs' mixscale.error "
                            "tags, widen the search ranges or add --trials.")
    best = study.best_trial
    best_params = {k: best.params[k] for k in SEARCHED if k in best.params}
    recipe = [t for t in complete if t.user_attrs.get(_RECIPE_ATTR)]
    recipe_value = recipe[0].value if recipe else None
    metrics["best_val_accuracy"] = float(best.value)
    if recipe_value is not None:
        metrics["recipe_val_accuracy"] = float(recipe_value)
    tr.log_params(client, parent, {**{f"best_{k}": v for k, v in best_params.items()},
                                   "best_trial": best.number,
                                   "best_trial_run_id": best.user_attrs.get("mlflow_run_id",
                                                                            "")})
    tr.log_metrics(client, parent, metrics)
    files: dict[str, object] = {
        "best_params.json": json.dumps({"value": best.value, "trial": best.number,
                                        "params": best_params}, indent=2),
        "trials.csv": study.trials_dataframe(),
        **_figures(study, echo),
    }
    tr.log_artifacts(client, parent, files)
    for obj in files.values():
        if hasattr(obj, "savefig"):
            import matplotlib.pyplot as plt

            plt.close(obj)
    shown = ", ".join(f"{k}={v:.3g}" for k, v in best_params.items())
    base = "" if recipe_value is None else f" (recipe's values: {recipe_value:.4f})"
    echo(f"study {name}: {len(trials)} trials ({counts['complete']} complete, "
         f"{counts['pruned']} pruned, {counts['fail']} failed); this process {seconds:.0f} s")
    echo(f"best val_accuracy {best.value:.4f}{base}, trial {best.number}: {shown}")
    return TuneResult(run_id=parent, study_name=name, best_value=float(best.value),
                      best_params=best_params, recipe_value=recipe_value, counts=counts,
                      seconds=seconds)


def _figures(study: optuna.Study, echo: Echo) -> dict[str, object]:
    """Optimisation history, learning curves, and (>= 2 complete trials) importances."""
    from optuna.visualization import matplotlib as ovm

    import mixscale.plots  # noqa: F401  (selects the Agg backend)

    figures: dict[str, object] = {}
    n_complete = len(study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.COMPLETE,)))
    plots = [("optimization_history.png", ovm.plot_optimization_history),
             ("intermediate_values.png", ovm.plot_intermediate_values)]
    if n_complete >= 2:
        plots.append(("param_importances.png", ovm.plot_param_importances))
    else:
        echo("param_importances.png left out: importances need >= 2 complete trials")
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                figures[name] = plot(study).figure
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                echo(f"{name} left out: {type(exc).__name__}: {exc}")
    return figures
