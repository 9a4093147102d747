"""What a tuning study's trials train on and are scored on (used by :mod:`mixscale.tune.study`).

A validation split carved from the *training* data, stratified and seeded
(:func:`validation_split`), and the images each trial trains on: a design row's exact subset
(its validation images drawn from the rest) or the whole training split. No optuna here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mixscale import track as tr
from mixscale.config import TrainConfig
from mixscale.data import design_dataset as load_design_dataset
from mixscale.data import load_dataset, sample_subset
from mixscale.errors import MixscaleError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["VAL_SEED", "TRAIN_SEED", "TrialData", "load_trial_data", "validation_split"]

VAL_SEED = 0  # the validation split is fixed: every trial of every study scores on it
TRAIN_SEED = 0  # network initialisation and batch order on the full training set


def validation_split(labels: np.ndarray, *, fraction: float, seed: int,
                     exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of a training pool into (rest, validation) indices.

    Each class contributes ``round(fraction * its images)`` validation images, drawn from
    the images not in ``exclude`` (a row's training subset, which must not be scored on); the
    rest are the remaining non-excluded images. Both index arrays are sorted.
    """
    rng = np.random.default_rng(seed)
    excluded = np.zeros(len(labels), dtype=bool)
    if exclude is not None:
        excluded[np.asarray(exclude, dtype=np.int64)] = True
    rest, val = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        pool = rng.permutation(members[~excluded[members]])
        n_val = min(round(fraction * len(members)), len(pool))
        val.append(pool[:n_val])
        rest.append(pool[n_val:])
    return (np.sort(np.concatenate(rest)).astype(np.int64),
            np.sort(np.concatenate(val)).astype(np.int64))


@dataclass(frozen=True)
class TrialData:
    """What every trial of a study trains on and is scored on."""

    dataset: Any  # ImageDataset
    train_idx: np.ndarray  # into dataset.train_*: what each trial trains on
    val_idx: np.ndarray  # into dataset.train_*: what each trial is scored on
    seed: int  # training seed (the row's, or TRAIN_SEED)
    scope: str  # "full" or the row's run id


def load_trial_data(client: MlflowClient, *, dataset: str | None, row_run_id: str | None,
                    base: TrainConfig, fraction: float) -> TrialData:
    """The dataset, the training indices (a design row's subset, or the whole training split
    minus the validation images) and the validation indices a study uses.

    Raises
    ------
    MixscaleError
        If ``row_run_id`` is not a design row, its dataset differs from ``dataset``, or it
        leaves no image to validate on.
    """

    if not row_run_id:
        ds = load_dataset(dataset or "digits", data_dir=base.data_dir, download=base.download)
        train_idx, val_idx = validation_split(ds.train_labels, fraction=fraction,
                                              seed=VAL_SEED)
        return TrialData(ds, train_idx, val_idx, TRAIN_SEED, "full")
    try:
        run = client.get_run(row_run_id)
    except Exception:
        raise MixscaleError(f"no run with id {row_run_id!r} in this tracking store; pass a "
                            "design row's run id, or no --run-id for the full training set."
                            ) from None
    design_id = run.data.tags.get(tr.DESIGN)
    if run.data.tags.get(tr.KIND) != "row" or not design_id:
        raise MixscaleError(f"run {row_run_id!r} is not a design row (tag {tr.KIND}="
                            f"{run.data.tags.get(tr.KIND)!r}); pass a row's run id.")
    design_dataset = client.get_run(design_id).data.params["dataset"]
    if dataset and dataset != design_dataset:
        raise MixscaleError(f"--dataset {dataset!r} differs from the dataset of row "
                            f"{row_run_id!r}'s design ({design_dataset!r}); leave it out.")
    keys = tr.design_class_keys(client, design_id)
    counts = np.array([int(run.data.params[f"n_{k}"]) for k in keys], dtype=np.int64)
    seed = int(run.data.params["seed"])
    ds = load_design_dataset(client.get_run(design_id).data.params, data_dir=base.data_dir,
                             download=base.download)  # as the design read it
    subset = sample_subset(ds.train_labels, counts, seed=seed)  # exactly the row's images
    _, val_idx = validation_split(ds.train_labels, fraction=fraction, seed=VAL_SEED,
                                  exclude=subset)
    if len(val_idx) == 0:
        raise MixscaleError(f"row {row_run_id!r} uses every training image, so no validation "
                            "images are left; tune on the full training set instead.")
    return TrialData(ds, subset, val_idx, seed, row_run_id)
