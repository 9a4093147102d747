"""The stages — design, train, fit — and the main pipeline that chains them.

Each stage validates its whole input before it logs anything, takes an explicit
:class:`mlflow.MlflowClient`, and can adopt an existing run (the one ``mlflow run`` created) or
nest under a parent. Talking to the server goes through :mod:`mixscale.track` and
:mod:`mixscale.serve`; this module holds the order of things.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mixscale import track as tr
from mixscale.config import DesignSpec, FitConfig, TrainConfig
from mixscale.data import ImageDataset, design_dataset, load_dataset
from mixscale.errors import MixscaleError

__all__ = ["DesignResult", "FitResult", "PreparedDesign", "build_design_table", "class_ranges",
           "prepare_design",
           "run_design", "train_rows",
           "run_fit", "serve_command", "check_adhoc_counts", "train_counts"]

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DesignResult:
    """A logged design."""

    design_id: str  # the parent run
    row_run_ids: list[str]  # one child run per row, in row order
    table: pd.DataFrame  # row, role, subset_size, seed, n_<class>...


@dataclass(frozen=True)
class FitResult:
    """A logged fit."""

    fit_run_id: str
    model_name: str  # registered model holding one version per law
    versions: dict[str, str]  # "<family>-<predictor>" -> model version
    champion: str  # "<family>-<predictor>" of the champion
    summary: pd.DataFrame  # one row per law: train/validation MSE and r2

    @property
    def champion_uri(self) -> str:
        """``models:/<name>@champion``."""
        return f"models:/{self.model_name}@champion"


def _bounds(spec: DesignSpec, dataset: ImageDataset, size: int) -> tuple[np.ndarray, np.ndarray]:
    available = dataset.available
    upper = available if spec.max_per_class is None else np.minimum(available,
                                                                     spec.max_per_class)
    floor = max(spec.min_per_class, int(spec.min_share * size / dataset.n_classes))
    lower = np.minimum(np.full(dataset.n_classes, floor, dtype=np.int64),
                       np.maximum(upper, spec.min_per_class))
    if size > upper.sum():
        cap = "" if spec.max_per_class is None else f" with max_per_class={spec.max_per_class}"
        # the smallest size every class's lower bound fits in (the min_share part never binds)
        low, high = max(1, spec.min_per_class * dataset.n_classes), int(upper.sum())
        allowed = (f"the only subset size allowed is {high}" if low == high else
                   f"allowed subset sizes: {low} to {high}")
        raise MixscaleError(
            f"subset size {size} is more than the {high} training images "
            f"dataset {dataset.name!r} offers{cap}; {allowed}."
        )
    if size < lower.sum():
        raise MixscaleError(
            f"subset size {size} is below {int(lower.sum())} = min_per_class "
            f"({spec.min_per_class}) x {dataset.n_classes} classes; lower min_per_class or "
            "raise the subset size."
        )
    if (lower > upper).any():
        c = int(np.argmax(lower > upper))
        raise MixscaleError(
            f"min_per_class={spec.min_per_class} exceeds the {int(upper[c])} images of class "
            f"{dataset.class_names[c]!r}."
        )
    return lower, upper


def build_design_table(spec: DesignSpec, dataset: ImageDataset
                       ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Build the training and validation designs for every subset size (no tracking).

    The validation rows of each size come from an independent design with its own seed.

    Returns
    -------
    table : DataFrame
        Columns ``row, role, subset_size, seed`` and ``n_<class>`` for every class.
    quality : dict
        Per subset size and role: minimum pairwise distance (on counts / subset size), pairs at
        the minimum and mean nearest-neighbour distance.
    """
    from mixscale.design import design_quality, maximin_design

    bounds = {s: _bounds(spec, dataset, s) for s in spec.subset_sizes}  # validate all first
    parts, quality = [], {}
    for size in spec.subset_sizes:
        lower, upper = bounds[size]
        for role, n_rows, offset in (("train", spec.rows_per_size, 0),
                                     ("validation", spec.val_rows_per_size, 1)):
            if n_rows == 0:
                continue
            seed = int(np.random.SeedSequence([spec.seed + offset, size]).generate_state(1)[0])
            points = maximin_design(n_rows, size, lower, upper, method=spec.method,
                                    iterations=spec.iterations, seed=seed)
            part = pd.DataFrame(points, columns=list(dataset.count_columns))
            part.insert(0, "subset_size", size)
            part.insert(0, "role", role)
            parts.append(part)
            if n_rows > 1:
                q = design_quality(points, size)
                tag = f"s{size:04d}_{role}"
                quality[f"min_distance_{tag}"] = q.min_distance
                quality[f"pairs_at_min_{tag}"] = q.pairs_at_min
                quality[f"mean_nn_distance_{tag}"] = q.mean_nn_distance
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "row", np.arange(len(table)))
    table.insert(3, "seed", spec.seed * 10_000 + table["row"])
    return table, quality


@dataclass(frozen=True)
class PreparedDesign:
    """A design computed and validated, not yet logged."""

    spec: DesignSpec
    dataset: ImageDataset
    table: pd.DataFrame  # row, role, subset_size, seed, n_<class>...
    quality: dict[str, float]  # design criteria per subset size and role
    seconds: float  # time spent optimising


def class_ranges(table: pd.DataFrame) -> pd.DataFrame:
    """Per subset size, role and class: the smallest and largest count in the design."""
    counts = [c for c in table.columns if c.startswith("n_")]
    long = table.melt(id_vars=["subset_size", "role"], value_vars=counts, var_name="class",
                      value_name="count")
    out = long.groupby(["subset_size", "role", "class"], sort=False)["count"].agg(["min", "max"])
    return out.reset_index()


def prepare_design(spec: DesignSpec, *, data_dir: str = "data",
                   download: bool = False) -> PreparedDesign:
    """Validate ``spec`` against its dataset and compute the design, without any tracking.

    ``data_dir`` and ``download`` locate a torchvision dataset (see
    :func:`mixscale.data.load_dataset`).

    Raises
    ------
    MixscaleError
        For an unknown dataset, a subset size the dataset cannot fill, bounds that cannot be
        met, or more rows than distinct feasible points.
    """
    dataset = load_dataset(spec.dataset, data_dir=data_dir, download=download,
                           skip_bad_images=spec.skip_bad_images)
    t0 = time.perf_counter()
    table, quality = build_design_table(spec, dataset)
    return PreparedDesign(spec=spec, dataset=dataset, table=table, quality=quality,
                          seconds=time.perf_counter() - t0)


def run_design(prepared: PreparedDesign, client: MlflowClient, experiment_id: str, *,
               run_id: str | None = None, parent_run_id: str | None = None,
               echo: Echo = print) -> DesignResult:
    """Log a prepared design: a parent run with ``design.csv`` and one child run per row.

    Parameters
    ----------
    prepared : PreparedDesign
        From :func:`prepare_design` (which validates everything before the first request).
    run_id : str, optional
        Adopt this run as the design run (the run ``mlflow run -e design`` created).
    parent_run_id : str, optional
        Nest the design run under this run (the pipeline run of ``main``).
    """
    from mixscale import plots

    spec, dataset, table = prepared.spec, prepared.dataset, prepared.table
    quality, seconds = prepared.quality, prepared.seconds
    name = f"design-{spec.dataset}-s{spec.seed}"
    design_id = tr.start_stage_run(client, experiment_id, kind="design", name=name,
                                   tags={tr.DATASET: spec.dataset}, run_id=run_id,
                                   parent_run_id=parent_run_id)
    try:
        client.set_tag(design_id, tr.DESIGN, design_id)
        params = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
        params["subset_sizes"] = ",".join(map(str, spec.subset_sizes))
        params["class_keys"] = ",".join(dataset.class_keys)
        params["n_rows"] = len(table)
        tr.log_params(client, design_id, params, skip_existing=True)
        tr.log_metrics(client, design_id, {**quality, "design_seconds": seconds})
        fig = plots.design_heatmap(table, dataset.count_columns)
        skipped = {tr.SKIPPED_IMAGES: "".join(f"{p}\n" for p in dataset.skipped)
                   } if dataset.skipped else {}
        tr.log_artifacts(client, design_id, {tr.DESIGN_CSV: table, "design.png": fig,
                                             "class_ranges.csv": class_ranges(table),
                                             **skipped})
        plots.close(fig)
        row_ids = tr.create_design_rows(client, design_id, table,
                                        count_columns=dataset.count_columns,
                                        dataset=spec.dataset)
    except BaseException as exc:
        tr.end_run(client, design_id, error=exc)
        raise
    if run_id is None:
        tr.end_run(client, design_id)
    if dataset.skipped:
        echo(f"skipped {len(dataset.skipped)} unreadable image(s) (listed in the design run's "
             f"{tr.SKIPPED_IMAGES})")
    echo(f"design {design_id}: {len(table)} rows ({spec.rows_per_size} train + "
         f"{spec.val_rows_per_size} validation per size, sizes "
         f"{', '.join(map(str, spec.subset_sizes))}) in {seconds:.1f} s")
    return DesignResult(design_id=design_id, row_run_ids=row_ids, table=table)


def train_rows(client: MlflowClient, design_id: str, config: TrainConfig, *,
               run_ids: Sequence[str] | None = None, worker: int = 0, workers: int = 0,
               stale_after: float = 0.0, executor: str = "local", ray_address: str = "",
               ray_cpus: float = 1.0, tracking_uri: str | None = None,
               echo: Echo = print) -> int:
    """Train rows of a design; return how many were trained.

    Parameters
    ----------
    run_ids : sequence of str, optional
        Train only these row runs (``train_row``); by default every pending row (SCHEDULED,
        or FAILED/KILLED, which restart in a fresh run, or with ``config.checkpoint_every``
        resume from their run's checkpoint). FINISHED rows are never retrained.
    worker, workers : int
        Static partition: with ``workers >= 1`` only rows with ``row % workers == worker``,
        and RUNNING rows among them (left by a dead earlier attempt) restart. See
        :mod:`mixscale.workers` for the rules.
    stale_after : float
        Un-partitioned: restart RUNNING rows whose heartbeat is older than this (seconds);
        0 = never.
    executor : {"local", "ray"}
        ``local`` trains rows one after another in this process; ``ray`` runs them as Ray
        tasks (``ray_address``, ``ray_cpus`` CPUs per task) with this process as the driver.
    tracking_uri : str, optional
        The store Ray tasks log into; default ``$MLFLOW_TRACKING_URI``.
    """
    from mixscale import workers as wk
    from mixscale.progress import Progress
    from mixscale.train import resolve_settings

    if executor not in wk.EXECUTORS:
        raise MixscaleError(f"unknown executor {executor!r}; allowed: "
                            f"{', '.join(repr(e) for e in wk.EXECUTORS)}.")
    wk.resolve_worker(worker, workers)  # validates the pair
    wk.configure_http_retries()
    rows = tr.list_rows(client, design_id)
    if run_ids is not None:
        wanted = set(run_ids)
        unknown = wanted - {r.run_id for r in rows}
        if unknown:
            raise MixscaleError(f"run(s) {sorted(unknown)} are not current rows of design "
                                f"{design_id}.")
        rows = [r for r in rows if r.run_id in wanted]
        for r in rows:
            if r.status in ("FINISHED", "RUNNING"):
                tr.claim_row(client, r)  # raises the clear "already FINISHED/RUNNING" error
        assignments = [wk.Assignment(r, takeover=False) for r in rows]
    else:
        assignments = wk.select_rows(rows, worker=worker, workers=workers,
                                     stale_after=stale_after)
    if workers:
        echo(f"worker {worker} of {workers}: {len(assignments)} row(s) to train")
    if executor == "ray":
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise MixscaleError("--executor ray needs a tracking URI the tasks can reach "
                                "(--tracking-uri or $MLFLOW_TRACKING_URI); none is set.")
        return wk.train_with_ray(client, design_id, assignments, config, tracking_uri=uri,
                                 address=ray_address, num_cpus=ray_cpus, echo=echo)
    dataset = design_dataset(client.get_run(design_id).data.params,
                             data_dir=config.data_dir, download=config.download)
    settings = resolve_settings(config, image_shape=dataset.image_shape)
    params = wk.row_params(config, settings)
    recipe = wk.claim_recipe(config, settings)
    progress = Progress([a.row.subset_size for a in assignments], echo=echo)
    trained = 0
    for a in assignments:
        row = a.row
        try:
            run_id = tr.claim_row(client, row, takeover=a.takeover,
                                  resume=config.checkpoint_every > 0, recipe=recipe)
        except tr.RowTaken as exc:  # another worker got there first (our list is older)
            progress.skip_row(f"skipped: {exc}")
            continue
        t0 = time.perf_counter()
        label = f"row {row.row:>3} {row.role:<10} n={row.subset_size:<5}"
        progress.start_row(label, config.epochs)
        try:
            result = wk.run_row(client, row, run_id, dataset=dataset, config=config,
                                params=params, on_eval=progress.on_eval,
                                on_epoch=progress.on_epoch, echo=progress.log)
        except BaseException as exc:
            progress.log(f"row {row.row} ({run_id}) FAILED: {type(exc).__name__}: {exc}")
            raise
        progress.finish_row(f"{label} test_accuracy={result.final['test_accuracy']:.3f} "
                            f"({time.perf_counter() - t0:.1f} s)")
        trained += 1
    if trained < len(assignments):
        echo(f"{len(assignments) - trained} row(s) were taken by other workers: fit once every "
             "row of the design is FINISHED.")
    return trained


def check_adhoc_counts(dataset: ImageDataset, counts: Sequence[int]) -> np.ndarray:
    """Validate ad-hoc per-class counts against ``dataset``; return them as an int array.

    Raises
    ------
    MixscaleError
        If the number of counts differs from the number of classes, a count is negative or
        above what its class has, or the counts add up to fewer than 2 images.
    """
    counts = [int(n) for n in counts]
    if len(counts) != dataset.n_classes:
        raise MixscaleError(
            f"--counts needs one count per class of {dataset.name!r} ({dataset.n_classes}: "
            f"{', '.join(dataset.class_keys)}), but got {len(counts)}."
        )
    for c, (n, have) in enumerate(zip(counts, dataset.available.tolist(), strict=True)):
        if not 0 <= n <= have:  # checked as Python ints: 10**20 must not overflow int64
            raise MixscaleError(
                f"count of class {dataset.class_names[c]!r} must be in 0..{have} "
                f"(images available), but got {n}."
            )
    counts_arr = np.asarray(counts, dtype=np.int64)
    if counts_arr.sum() < 2:
        raise MixscaleError(f"--counts must add up to >= 2 images, but got {counts_arr.sum()}.")
    return counts_arr


def train_counts(client: MlflowClient, experiment_id: str, dataset_name: str,
                 counts: Sequence[int], config: TrainConfig, *, seed: int = 0,
                 run_id: str | None = None, parent_run_id: str | None = None,
                 dataset: ImageDataset | None = None, echo: Echo = print) -> str:
    """Train ad-hoc per-class counts (no design) in a new run tagged ``mixscale.kind=adhoc``.

    The run carries the same params and metrics as a design row, but it is not a row of any
    design, so ``fit`` never mixes it in. ``run_id`` adopts an existing run instead of creating
    one; ``parent_run_id`` nests the run under another (the launcher run of ``mlflow run -e
    train_row``, or a plan run's verification). ``dataset`` is ``dataset_name`` already loaded
    (by a caller that validated the counts first). Returns the run id.

    Raises
    ------
    MixscaleError
        As :func:`check_adhoc_counts` (checked before the run is created).
    """
    from mixscale import workers as wk
    from mixscale.train import resolve_settings

    config = dataclasses.replace(config, checkpoint_every=0)  # an ad-hoc run never resumes
    if dataset is None:
        dataset = load_dataset(dataset_name, data_dir=config.data_dir, download=config.download)
    counts_arr = check_adhoc_counts(dataset, counts)
    settings = resolve_settings(config, image_shape=dataset.image_shape)  # validates device
    total = int(counts_arr.sum())
    run_id = tr.start_stage_run(client, experiment_id, kind="adhoc",
                                name=f"adhoc-{dataset_name}-n{total}",
                                tags={tr.DATASET: dataset_name}, run_id=run_id,
                                parent_run_id=parent_run_id)
    params = {**{f"n_{k}": int(n) for k, n in zip(dataset.class_keys, counts_arr, strict=True)},
              "total_n": total, "seed": seed, "dataset": dataset_name}
    tr.log_params(client, run_id, params, skip_existing=True)
    row = tr.RowSpec(run_id=run_id, design_id="", row=-1, role="adhoc", subset_size=total,
                     seed=seed, counts=counts_arr, status="RUNNING")
    result = wk.run_row(client, row, run_id, dataset=dataset, config=config,
                        params=wk.row_params(config, settings))
    echo(f"ad-hoc run {run_id}: {total} images, test_accuracy="
         f"{result.final['test_accuracy']:.3f}")
    return run_id


def serve_command(model_uri: str, tracking_uri: str, port: int = 5001) -> str:
    """The exact shell command that serves ``model_uri`` from this tracking store."""
    return (f"MLFLOW_TRACKING_URI={tracking_uri} mlflow models serve -m '{model_uri}' "
            f"--env-manager local --port {port}")


def run_fit(config: FitConfig, client: MlflowClient, experiment_id: str,
            design_ids: Sequence[str], *, run_id: str | None = None,
            parent_run_id: str | None = None, echo: Echo = print) -> FitResult:
    """Fit every requested law to the designs' FINISHED rows, log, register, pick a champion."""
    from mixscale.fitstage import fit_and_log

    return fit_and_log(config, client, experiment_id, list(design_ids), run_id=run_id,
                       parent_run_id=parent_run_id, echo=echo)
