"""Row checkpoints in the tracking store: store, find, fetch and discard them (as bytes).

With ``train --checkpoint-every N`` a row's training state (:mod:`mixscale.train.state`) is
saved every N epochs as the artifact ``checkpoint/state.pt`` of the row's run, overwritten
each time, so it works with any artifact store (a remote tracking server's included). Only
after the upload succeeded is the run tagged ``mixscale.checkpoint`` with the epoch, size and
SHA-256 of the file: a checkpoint whose upload a crash cut short is never taken for whole.

A row restarted with checkpoints on resumes its own run from there
(:func:`mixscale.track.claim_row`, :func:`mixscale.stages.rows.run_row`): evaluations up to the
largest step already stored are not logged again, so every metric's steps stay strictly
increasing. A row that finishes discards its checkpoint (it is of no further use). The state
inside the file is :mod:`mixscale.train.state`'s; :mod:`mixscale.stages.checkpoints` joins the
two.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from mixscale.errors import MixscaleError
from mixscale.track.names import CHECKPOINT, CLAIM, HEARTBEAT, SUPERSEDED_BY
from mixscale.track.store import with_retries

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_PATH", "CheckpointInfo", "checkpoint_info",
           "resumable_epoch", "store_checkpoint", "fetch_checkpoint", "discard_checkpoint"]

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


def checkpoint_info(run: Run) -> CheckpointInfo | None:
    """The run's checkpoint as its tag describes it; None without a (readable) tag."""
    text = run.data.tags.get(CHECKPOINT)
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
    files = with_retries(lambda: client.list_artifacts(run_id, CHECKPOINT_DIR),
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
    run = with_retries(lambda: client.get_run(run_id), what="reading a row")
    token = run.data.tags.get(CLAIM)
    if SUPERSEDED_BY in run.data.tags or (claim is not None and token not in (None, claim)):
        raise MixscaleError(f"run {run_id} was taken over by another worker (this one was "
                            "presumed dead, see --stale-after); this worker stops training it.")


def store_checkpoint(client: MlflowClient, run_id: str, data: bytes, epoch: int, *,
                     claim: str | None = None) -> CheckpointInfo:
    """Store ``data`` (a ``state.pt`` file taken after ``epoch`` epochs) as
    ``checkpoint/state.pt`` of run ``run_id``, then tag the run.

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
        path.write_bytes(data)
        with_retries(lambda: client.log_artifact(run_id, str(path), CHECKPOINT_DIR),
                     what=f"uploading the checkpoint of run {run_id}")
    info = CheckpointInfo(epoch=int(epoch), size=len(data),
                          sha256=hashlib.sha256(data).hexdigest())
    tags = [RunTag(CHECKPOINT, info.to_tag()), RunTag(HEARTBEAT, f"{time.time():.3f}")]
    with_retries(lambda: client.log_batch(run_id, tags=tags),
                 what=f"tagging the checkpoint of run {run_id}")
    return info


def fetch_checkpoint(client: MlflowClient, run_id: str, info: CheckpointInfo) -> bytes:
    """Download the checkpoint file of run ``run_id``, checked against ``info``.

    Raises
    ------
    MixscaleError
        If the file's SHA-256 is not what the tag says.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = with_retries(lambda: client.download_artifacts(run_id, CHECKPOINT_PATH, tmp),
                             what=f"downloading the checkpoint of run {run_id}")
        data = Path(local).read_bytes()
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise MixscaleError(f"{CHECKPOINT_PATH} of run {run_id} is not the checkpoint its "
                            f"tag {CHECKPOINT} describes (SHA-256 differs).")
    return data


def discard_checkpoint(client: MlflowClient, run_id: str) -> bool:
    """Delete a finished row's checkpoint and its tag, best effort; return whether it went.

    Artifact stores that cannot delete (and servers without ``--serve-artifacts``) keep it.
    """
    try:
        run = client.get_run(run_id)
        if CHECKPOINT not in run.data.tags:
            return False
        uri = getattr(client._tracking_client, "tracking_uri", None)
        get_artifact_repository(run.info.artifact_uri, tracking_uri=uri).delete_artifacts(
            CHECKPOINT_DIR)
        client.delete_tag(run_id, CHECKPOINT)
    except Exception:  # a leftover checkpoint is harmless
        return False
    return True
