"""A row's checkpoint as the stages use it: the training state (:mod:`mixscale.train.state`) in
the tracking store (:mod:`mixscale.track.checkpoints`), and how a claimed row starts from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mixscale.errors import MixscaleError, TrackingUnavailable
from mixscale.track.checkpoints import (
    CHECKPOINT_DIR,
    CHECKPOINT_PATH,
    CheckpointInfo,
    checkpoint_info,
    discard_checkpoint,
    fetch_checkpoint,
    resumable_epoch,
    store_checkpoint,
)
from mixscale.track.names import CHECKPOINT, CLAIM, RESUMED_FROM
from mixscale.track.store import with_retries
from mixscale.train.state import state_bytes, state_from_bytes

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["CHECKPOINT_DIR", "CheckpointInfo", "Resume", "checkpoint_info", "resumable_epoch",
           "save_checkpoint", "load_checkpoint", "prepare_resume", "discard_checkpoint"]


@dataclass(frozen=True)
class Resume:
    """How :func:`~mixscale.stages.rows.run_row` starts a claimed row."""

    state: dict[str, Any] | None  # the checkpoint to continue from; None = train from scratch
    claim: str | None  # the run's mixscale.claim token at the start
    logged_epoch: int  # evaluations up to this epoch are already stored on the run


def save_checkpoint(client: MlflowClient, run_id: str, state: dict[str, Any], *,
                    claim: str | None = None) -> CheckpointInfo:
    """Store a training state (:func:`mixscale.train.state.state_bytes`) as the checkpoint of
    run ``run_id``: :func:`mixscale.track.checkpoints.store_checkpoint`, ``claim`` and errors
    included."""
    return store_checkpoint(client, run_id, state_bytes(state), int(state["epoch"]), claim=claim)


def load_checkpoint(client: MlflowClient, run_id: str, info: CheckpointInfo) -> dict[str, Any]:
    """Download and load the checkpoint of run ``run_id``, checked against ``info``.

    Raises
    ------
    MixscaleError
        If the file's SHA-256 or epoch is not what the tag says.
    """
    state = state_from_bytes(fetch_checkpoint(client, run_id, info))
    if state.get("epoch") != info.epoch:
        raise MixscaleError(f"{CHECKPOINT_PATH} of run {run_id} holds epoch "
                            f"{state.get('epoch')!r}, its tag says {info.epoch}.")
    return state


def prepare_resume(client: MlflowClient, run_id: str, params: Mapping[str, object]
                   ) -> Resume:
    """How to start the claimed run ``run_id``: from its checkpoint when the claim resumed it.

    A resumed run (tag ``mixscale.resumed_from_epoch``) must carry exactly ``params`` (the
    params this training logs, settings resolved on this machine) and its checkpoint must
    load. If not, the checkpoint tag is removed, so that the next ``train`` restarts the row in
    a fresh run, and the reason is raised.

    Raises
    ------
    MixscaleError
        If a resumed run cannot continue here.
    """
    run = with_retries(lambda: client.get_run(run_id), what="reading a row")
    claim = run.data.tags.get(CLAIM)
    if RESUMED_FROM not in run.data.tags:
        return Resume(state=None, claim=claim, logged_epoch=0)
    info = checkpoint_info(run)
    try:
        differ = [f"{k}: {run.data.params.get(k)} there, {v} here" for k, v in params.items()
                  if run.data.params.get(k) != str(v)]
        if differ:
            raise MixscaleError(f"it was trained with other params ({', '.join(differ)})")
        if info is None:
            raise MixscaleError(f"it has no readable {CHECKPOINT} tag")
        state = load_checkpoint(client, run_id, info)
    except TrackingUnavailable:  # the store is down, not the checkpoint bad: keep it
        raise
    except MixscaleError as exc:
        if info is not None:
            with_retries(lambda: client.delete_tag(run_id, CHECKPOINT),
                            what="dropping an unusable checkpoint")
        raise MixscaleError(f"cannot resume run {run_id}: {exc}; its checkpoint is dropped, "
                            "so the next `train` restarts the row in a fresh run.") from None
    history = with_retries(lambda: client.get_metric_history(run_id, "test_accuracy"),
                              what="reading a row's history")
    return Resume(state=state, claim=claim,
                  logged_epoch=max((int(m.step) for m in history), default=0))
