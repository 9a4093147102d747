"""A tune run's best values, read back for ``--hparams-from`` (no optuna import, so
training with tuned values never loads it). Re-exported by :mod:`mixscale.tune`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mixscale import track as tr
from mixscale.errors import MixscaleError
from mixscale.tune.space import SEARCHED

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["best_params_from_run", "tuned_values"]


def best_params_from_run(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The best ``lr``, ``momentum``, ``weight_decay``, ``batch_size`` of a tune run.

    Returns
    -------
    dict
        Those four values (typed) and ``hparams_from`` = ``run_id``: fields of
        :class:`~mixscale.config.TrainConfig`.

    Raises
    ------
    MixscaleError
        If the run does not exist, is not a tune run, or holds no best parameters yet.
    """
    try:
        run = client.get_run(run_id)
    except Exception:
        raise MixscaleError(f"--hparams-from: no run with id {run_id!r} in this tracking "
                            "store; pass the id of a `mixscale tune` run.") from None
    kind = run.data.tags.get(tr.KIND)
    if kind != "tune":
        raise MixscaleError(f"--hparams-from: run {run_id!r} is not a tune run (tag "
                            f"{tr.KIND}={kind!r}); pass the id of a `mixscale tune` run.")
    params = run.data.params
    missing = [k for k in SEARCHED if f"best_{k}" not in params]
    if missing:
        raise MixscaleError(f"--hparams-from: tune run {run_id!r} has no best parameters "
                            f"(missing {', '.join('best_' + k for k in missing)}); it is "
                            "still running, or none of its trials completed.")
    out: dict[str, Any] = {k: float(params[f"best_{k}"]) for k in SEARCHED[:3]}
    out["batch_size"] = int(params["best_batch_size"])
    out["hparams_from"] = run_id
    return out


def tuned_values(params: Mapping[str, Any]) -> str:
    """``lr=0.0312, momentum=0.87, ...`` for a progress line."""
    return ", ".join(f"{k}={params[k]:.3g}" for k in SEARCHED if k in params)
