"""Row checkpoints in the tracking store: save, find, load and discard them.

With ``train --checkpoint-every N`` a row's training state (:mod:`mixscale.train.state`) is
saved every N epochs as the artifact ``checkpoint/state.pt`` of the row's run, overwritten
each time, so it works with any artifact store (a remote tracking server's included). Only
after the upload succeeded is the run tagged ``mixscale.checkpoint`` with the epoch, size and
SHA-256 of the file: a checkpoint whose upload a crash cut short is never taken for whole.

A row restarted with checkpoints on resumes its own run from there
(:func:`mixscale.tracking.claim_row`, :func:`mixscale.workers.run_row`): evaluations up to the
largest step already stored are not logged again, so every metric's steps stay strictly
increasing. A row that finishes discards its checkpoint (it is of no further use).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow import MlflowClient
from mlflow.entities import Run, RunTag

from mixscale import tracking as tr
from mixscale.errors import MixscaleError

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_PATH", "CheckpointInfo", "Resume", "checkpoint_info",
           "resumable_epoch", "save_checkpoint", "load_checkpoint", "prepare_resume",
           "discard_checkpoint"]

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_PATH = f"{CHECKPOINT_DIR}/state.pt"


@dataclass(frozen=True)
class CheckpointInfo:
    """What the ``mixscale.checkpoint`` tag says about the stored checkpoint."""

    epoch: int  # epochs done when it was taken
    size: int  # bytes of checkpoint/state.pt
    sha256: str  # of checkpoint/state.pt

    def to_tag(self) -> str:
        """The tag's value (JSON)."""
        return json.dumps({"epoch": self.epoch, "bytes": self.size, "sha256": self.sha256})


@dataclass(frozen=True)
class Resume:
    """How :func:`~mixscale.workers.run_row` starts a claimed row."""

    state: dict[str, Any] | None  # the checkpoint to continue from; None = train from scratch
    claim: str | None  # the run's mixscale.claim token at the start
    logged_epoch: int  # evaluations up to this epoch are already stored on the run


def checkpoint_info(run: Run) -> CheckpointInfo | None:
    """The run's checkpoint as its tag describes it; None without a (readable) tag."""
    text = run.data.tags.get(tr.CHECKPOINT)
    if not text:
        return None
    try:
        data = json.loads(text)
        return CheckpointInfo(epoch=int(data["epoch"]), size=int(data["bytes"]),
                              sha256=str(data["sha256"]))
    except (ValueError, KeyError, TypeError):
        return None


def resumable_epoch(client: MlflowClient, run: Run, recipe: Mapping[str, object] | None = None
                    ) -> tuple[int | None, str]:
    """The epoch ``run`` can resume from, or None and why not.

    A run can resume when its ``mixscale.checkpoint`` tag names a checkpoint, the stored file
    has the size the tag says (an upload cut short by a crash does not), and every param of
    ``recipe`` (the params this training logs) equals the run's.
    """
    info = checkpoint_info(run)
    if info is None:
        return None, ""
    run_id = run.info.run_id
    unused = f"the checkpoint at epoch {info.epoch} was not used"
    differ = [f"{k}: {run.data.params.get(k)} -> {v}" for k, v in (recipe or {}).items()
              if run.data.params.get(k) != str(v)]
    if differ:
        return None, f"{unused}: the recipe changed ({', '.join(differ)})"
    files = tr.with_retries(lambda: client.list_artifacts(run_id, CHECKPOINT_DIR),
                            what="listing a checkpoint")
    sizes = {Path(f.path).name: f.file_size for f in files}
    name = Path(CHECKPOINT_PATH).name
    if name not in sizes:
        return None, f"{unused}: {CHECKPOINT_PATH} is missing"
    if sizes[name] is not None and sizes[name] != info.size:
        return None, (f"{unused}: {CHECKPOINT_PATH} has {sizes[name]} bytes, its tag says "
                      f"{info.size} (an upload cut short)")
    return info.epoch, ""


def _still_ours(client: MlflowClient, run_id: str, claim: str | None) -> None:
    run = tr.with_retries(lambda: client.get_run(run_id), what="reading a row")
    token = run.data.tags.get(tr.CLAIM)
    if tr.SUPERSEDED_BY in run.data.tags or (claim is not None and token not in (None, claim)):
        raise MixscaleError(f"run {run_id} was taken over by another worker (this one was "
                            "presumed dead, see --stale-after); this worker stops training it.")


def save_checkpoint(client: MlflowClient, run_id: str, state: dict[str, Any], *,
                    claim: str | None = None) -> CheckpointInfo:
    """Store ``state`` as ``checkpoint/state.pt`` of run ``run_id``, then tag the run.

    Parameters
    ----------
    claim : str, optional
        The ``mixscale.claim`` token of the caller's claim: if the run carries another (or was
        superseded), another worker has taken it over and nothing is stored.

    Raises
    ------
    MixscaleError
        If the run was taken over.
    """
    _still_ours(client, run_id, claim)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(CHECKPOINT_PATH).name
        torch.save(state, path)
        data = path.read_bytes()
        tr.with_retries(lambda: client.log_artifact(run_id, str(path), CHECKPOINT_DIR),
                        what=f"uploading the checkpoint of run {run_id}")
    info = CheckpointInfo(epoch=int(state["epoch"]), size=len(data),
                          sha256=hashlib.sha256(data).hexdigest())
    tags = [RunTag(tr.CHECKPOINT, info.to_tag()), RunTag(tr.HEARTBEAT, f"{time.time():.3f}")]
    tr.with_retries(lambda: client.log_batch(run_id, tags=tags),
                    what=f"tagging the checkpoint of run {run_id}")
    return info


def load_checkpoint(client: MlflowClient, run_id: str, info: CheckpointInfo) -> dict[str, Any]:
    """Download and load the checkpoint of run ``run_id``, checked against ``info``.

    Raises
    ------
    MixscaleError
        If the file's SHA-256 or epoch is not what the tag says.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = tr.with_retries(lambda: client.download_artifacts(run_id, CHECKPOINT_PATH, tmp),
                                what=f"downloading the checkpoint of run {run_id}")
        data = Path(local).read_bytes()
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise MixscaleError(f"{CHECKPOINT_PATH} of run {run_id} is not the checkpoint its "
                                f"tag {tr.CHECKPOINT} describes (SHA-256 differs).")
        state = torch.load(local, map_location="cpu", weights_only=True)
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
    run = tr.with_retries(lambda: client.get_run(run_id), what="reading a row")
    claim = run.data.tags.get(tr.CLAIM)
    if tr.RESUMED_FROM not in run.data.tags:
        return Resume(state=None, claim=claim, logged_epoch=0)
    info = checkpoint_info(run)
    try:
        differ = [f"{k}: {run.data.params.get(k)} there, {v} here" for k, v in params.items()
                  if run.data.params.get(k) != str(v)]
        if differ:
            raise MixscaleError(f"it was trained with other params ({', '.join(differ)})")
        if info is None:
            raise MixscaleError(f"it has no readable {tr.CHECKPOINT} tag")
        state = load_checkpoint(client, run_id, info)
    except tr.TrackingUnavailable:  # the store is down, not the checkpoint bad: keep it
        raise
    except MixscaleError as exc:
        if info is not None:
            tr.with_retries(lambda: client.delete_tag(run_id, tr.CHECKPOINT),
                            what="dropping an unusable checkpoint")
        raise MixscaleError(f"cannot resume run {run_id}: {exc}; its checkpoint is dropped, "
                            "so the next `train` restarts the row in a fresh run.") from None
    history = tr.with_retries(lambda: client.get_metric_history(run_id, "test_accuracy"),
                              what="reading a row's history")
    return Resume(state=state, claim=claim,
                  logged_epoch=max((int(m.step) for m in history), default=0))


def discard_checkpoint(client: MlflowClient, run_id: str) -> bool:
    """Delete a finished row's checkpoint and its tag, best effort; return whether it went.

    Artifact stores that cannot delete (and servers without ``--serve-artifacts``) keep it.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        run = client.get_run(run_id)
        if tr.CHECKPOINT not in run.data.tags:
            return False
        uri = getattr(client._tracking_client, "tracking_uri", None)
        get_artifact_repository(run.info.artifact_uri, tracking_uri=uri).delete_artifacts(
            CHECKPOINT_DIR)
        client.delete_tag(run_id, tr.CHECKPOINT)
    except Exception:  # a leftover checkpoint is harmless
        return False
    return True
