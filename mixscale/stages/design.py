"""The design stage: the design table from a dataset's bounds, then a design run and its rows.

Each stage (here and in the other modules of :mod:`mixscale.stages`) validates its whole input
before it logs anything, takes an explicit :class:`mlflow.MlflowClient` (opened by
:func:`mixscale.track.open_client`), and can adopt an existing run (the one ``mlflow run``
created) or nest under a parent. Talking to the server goes through :mod:`mixscale.track` and
:mod:`mixscale.serve`, the only mlflow importers (here mlflow is named in annotations only);
these modules hold the order of things.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixscale import plots
from mixscale import track as tr
from mixscale.config import DesignSpec, Echo
from mixscale.data import ImageDataset, load_dataset
from mixscale.design import design_quality, maximin_design
from mixscale.errors import MixscaleError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["DesignResult", "PreparedDesign", "build_design_table", "class_ranges",
           "prepare_design", "run_design"]



@dataclass(frozen=True)
class DesignResult:
    """A logged design."""

    design_id: str  # the parent run
    row_run_ids: list[str]  # one child run per row, in row order
    table: pd.DataFrame  # row, role, subset_size, seed, n_<class>...




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
    spec, dataset, table = prepared.spec, prepared.dataset, prepared.table
    quality, seconds = prepared.quality, prepared.seconds
    name = f"design-{spec.dataset}-s{spec.seed}"
    with tr.stage_run(client, experiment_id, kind="design", name=name,
                      tags={tr.DATASET: spec.dataset}, run_id=run_id,
                      parent_run_id=parent_run_id) as design_id:
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
    if dataset.skipped:
        echo(f"skipped {len(dataset.skipped)} unreadable image(s) (listed in the design run's "
             f"{tr.SKIPPED_IMAGES})")
    echo(f"design {design_id}: {len(table)} rows ({spec.rows_per_size} train + "
         f"{spec.val_rows_per_size} validation per size, sizes "
         f"{', '.join(map(str, spec.subset_sizes))}) in {seconds:.1f} s")
    return DesignResult(design_id=design_id, row_run_ids=row_ids, table=table)










