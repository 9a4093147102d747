"""Claiming and ending design rows (re-exported by :mod:`mixscale.track`).

A claim is atomic, so any number of workers may pull rows from one design at once. MLflow keeps
no lock, but it refuses to change a param: a run's params are keyed by (run, key) in the
database and a second, different value for a key is rejected. Each claim therefore first
writes one param, a *link*, = its new token: ``claim.<R>.<T>`` on the design's **ledger**, where
``<R>`` is the row's run id and ``<T>`` the run's ``mixscale.claim`` tag as the claimer read it
(``first`` when the run was never claimed). Workers that read the same state write the same
key; exactly one value is stored, and the others learn they lost (:class:`RowTaken`).

The ledger is a child run of the design (``mixscale.kind=ledger``, named ``claim-ledger``),
made once with the design's rows (:func:`~mixscale.track.rows.create_ledger`); every row run
names it in its tag ``mixscale.ledger``. It is no row: every search for rows asks for
``mixscale.kind=row``. So a row's params hold only what the row trained on, and the ledger's
params are the chains of
every row's claims, one link per claim. Rows of designs made before the ledger existed have no
``mixscale.ledger`` tag: their links stay where they always were, the param
``mixscale.claimed.<T>`` on the row's own run (:func:`claim_link` decides, from the row run
alone, so every worker of one design writes the same key in the same place).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from mixscale.errors import RowTaken
from mixscale.track.checkpoints import resumable_epoch
from mixscale.track.names import (
    CHECKPOINT,
    CLAIM,
    CLAIMED,
    ERROR,
    HEARTBEAT,
    LEDGER,
    LINK,
    MAX_TAG,
    PARENT,
    RESTART_OF,
    RESUME_SKIPPED,
    RESUMED_FROM,
    ROW_PARAMS,
    SUPERSEDED_BY,
)
from mixscale.track.rows import RowSpec
from mixscale.track.runs import log_params
from mixscale.track.store import with_retries

__all__ = ["claim_link", "claim_links", "claim_row", "end_row"]



def claim_link(run: Run) -> tuple[str, str]:
    """Where the next claim of row run ``run`` writes its link: (run id, param key).

    On the design's ledger when the run names one (tag ``mixscale.ledger``), else (designs made
    before the ledger) on the row's own run.
    """
    holder, prefix = _chain(run)
    return holder, prefix + (run.data.tags.get(CLAIM) or "first")


def claim_links(client: MlflowClient, run: Run) -> dict[str, str]:
    """The chain of claims of row run ``run``: each previous token (``first``) -> the next."""
    holder, prefix = _chain(run)
    params = run.data.params if holder == run.info.run_id else with_retries(
        lambda: client.get_run(holder), what="reading a claim ledger").data.params
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _chain(run: Run) -> tuple[str, str]:
    """The run that holds the links of row run ``run``, and their key prefix."""
    ledger = run.data.tags.get(LEDGER)
    if ledger:
        return ledger, f"{LINK}.{run.info.run_id}."
    return run.info.run_id, f"{CLAIMED}."


def claim_row(client: MlflowClient, row: RowSpec, *, takeover: bool = False,
              resume: bool = False, recipe: Mapping[str, object] | None = None) -> str:
    """Mark a row RUNNING and return the run id to log into.

    The row's run is read afresh, so a list of rows made a while ago never leads to a row
    trained twice. A SCHEDULED row is trained in its own run. A FAILED or KILLED row is
    restarted in a fresh child run with the same params (created with the tag
    ``mixscale.restart_of`` naming the old run, which is then tagged
    ``mixscale.superseded_by``), so its partial metric history never mixes with the new one. A
    FINISHED row is refused. A RUNNING row is refused unless ``takeover``: the caller has
    decided its worker is dead (it owns the row's partition, or the row's heartbeat is stale)
    from ``row`` as listed, so the old run is ended KILLED and the row restarts like a failed
    one, provided nobody claimed it since it was listed.

    With ``resume`` (checkpoints are on), a row to restart whose run holds a complete checkpoint
    (:func:`mixscale.track.checkpoints.resumable_epoch`) made under ``recipe`` (params the run must
    carry, if given) is not superseded: the same run is marked RUNNING again, its error tag
    cleared and tagged ``mixscale.resumed_from_epoch``, and its id returned; the trainer
    continues from the checkpoint. Otherwise the superseded run is tagged
    ``mixscale.resume_skipped`` with the reason. Every claim sets a new ``mixscale.claim``
    token, by which a worker presumed dead learns that its run was taken over.

    Raises
    ------
    RowTaken
        If the row is FINISHED, RUNNING (without a valid ``takeover``), was restarted
        meanwhile, or another worker claimed it at the same moment.
    """
    # The token is read before the status: one get_run reads the status first and the tags
    # after (separate queries), so alone it can pair a status from before another worker's
    # claim with that claim's new token, whose link nobody holds yet: two winners. Read again,
    # a status read after the token that the link is keyed by is never older than it.
    seen = with_retries(lambda: client.get_run(row.run_id), what="reading a row"
                           ).data.tags.get(CLAIM)
    old = with_retries(lambda: client.get_run(row.run_id), what="reading a row")
    status = old.info.status
    where = f"row {row.row} (run {row.run_id})"
    if SUPERSEDED_BY in old.data.tags:
        raise RowTaken(f"{where} was restarted meanwhile as run "
                       f"{old.data.tags[SUPERSEDED_BY]}; that run is the row's now.")
    if status == "FINISHED":
        raise RowTaken(f"{where} is already FINISHED; a finished row is never trained twice.")
    if status == "RUNNING" and not takeover:
        raise RowTaken(f"{where} is RUNNING, probably in another process; wait for it, or mark "
                       "that run FAILED to restart the row.")
    if old.data.tags.get(CLAIM) != seen:
        raise RowTaken(f"{where} was claimed by another worker at the same moment; left to it.")
    if status == "RUNNING" and (row.status != "RUNNING" or seen != row.claim):
        raise RowTaken(f"{where} was claimed by another worker since it was listed; left to it.")
    token = uuid.uuid4().hex
    _take(client, where, *claim_link(old), token)
    run_id = row.run_id
    tags = {CLAIM: token}
    if status in ("FAILED", "KILLED", "RUNNING"):
        epoch, why = None, ""
        if resume:
            epoch, why = resumable_epoch(client, old, recipe)
        if epoch is None:
            run_id = _supersede(client, row, old, why)
        else:
            tags[RESUMED_FROM] = str(epoch)
            if ERROR in old.data.tags:
                with_retries(lambda: client.delete_tag(run_id, ERROR),
                                what="clearing an error")
    with_retries(lambda: client.update_run(run_id, status="RUNNING"), what="claiming a row")
    tags[HEARTBEAT] = f"{time.time():.3f}"
    with_retries(lambda: log_params(client, run_id, {}, tags=tags), what="claiming a row")
    return run_id


def _take(client: MlflowClient, where: str, run_id: str, key: str, token: str) -> None:
    """Write the claim link ``key`` = ``token`` on run ``run_id`` (the ledger, or the row of a
    design made before it), or raise RowTaken if another value won."""
    try:
        with_retries(lambda: client.log_param(run_id, key, token), what="claiming a row")
        return
    except MlflowException as exc:
        error = exc
    held = with_retries(lambda: client.get_run(run_id), what="reading a row"
                           ).data.params.get(key)
    if held == token:  # ours landed; only its answer was lost
        return
    if held is not None:
        raise RowTaken(f"{where} was claimed by another worker at the same moment; left to it.")
    raise error


def _supersede(client: MlflowClient, row: RowSpec, old: Run, resume_skipped: str) -> str:
    """Restart ``row`` in a fresh run that supersedes its run ``old``; return the new id."""
    keep = {k: v for k, v in old.data.tags.items() if not k.startswith("mlflow.")}
    for k in (ERROR, HEARTBEAT, SUPERSEDED_BY, CLAIM, CHECKPOINT, RESUMED_FROM,
              RESUME_SKIPPED):
        keep.pop(k, None)
    tags = {**keep, PARENT: old.data.tags[PARENT], RESTART_OF: row.run_id}
    new = with_retries(lambda: client.create_run(old.info.experiment_id, tags=tags,
                                                    run_name=old.info.run_name),
                          what="restarting a row")
    run_id = new.info.run_id
    row_params = {k: v for k, v in old.data.params.items()
                  if k in _ROW_PARAMS or k.startswith("n_")}
    with_retries(lambda: log_params(client, run_id, row_params), what="logging row params")
    old_tags = {SUPERSEDED_BY: run_id}
    if resume_skipped:
        old_tags[RESUME_SKIPPED] = resume_skipped[:MAX_TAG]
    if old.info.status == "RUNNING":
        old_tags[ERROR] = f"presumed dead (no heartbeat since {row.heartbeat}); restarted"
    with_retries(lambda: log_params(client, row.run_id, {}, tags=old_tags),
                    what="tagging the superseded run")
    if old.info.status == "RUNNING":
        with_retries(lambda: client.set_terminated(row.run_id, "KILLED"),
                        what="ending the superseded run")
    return run_id


_ROW_PARAMS = {"total_n", *ROW_PARAMS}  # what a restarted run copies, beside n_<class>


def end_row(client: MlflowClient, run_id: str, *, error: BaseException | None = None,
            claim: str | None = None) -> bool:
    """End a row run FINISHED, or FAILED with the error as a tag.

    A run that was superseded meanwhile (its worker was presumed dead and the row restarted)
    is ended KILLED instead, so a row never gets two FINISHED runs. With ``claim`` (the
    ``mixscale.claim`` token the caller's claim set), a run whose token changed since was taken
    over and resumed by another worker: it is left as it is. Returns whether the run was ended
    as asked.
    """
    run = with_retries(lambda: client.get_run(run_id), what="reading a row")
    if claim is not None and run.data.tags.get(CLAIM, claim) != claim:
        return False
    if SUPERSEDED_BY in run.data.tags:
        with_retries(lambda: client.set_terminated(run_id, "KILLED"), what="ending a row")
        return False
    if error is not None:
        message = f"{type(error).__name__}: {error}"[:MAX_TAG]
        with_retries(lambda: client.set_tag(run_id, ERROR, message), what="tagging a row")
    with_retries(lambda: client.set_terminated(run_id, "FAILED" if error else "FINISHED"),
                    what="ending a row")
    return True
