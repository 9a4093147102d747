"""Everything that talks to the tracking server about runs.

Stages hand data to each other through run ids, tags and named artifacts, all declared here:
a design is a parent run (``mixscale.kind=design``) with ``design.csv`` and one child run per
row (``mixscale.kind=row``, status SCHEDULED until trained); ``fit`` reads the FINISHED rows
back into one table. Every call goes through an explicit :class:`mlflow.MlflowClient` and run
id, never the fluent "active run", so stages compose in one process and inside ``mlflow run``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from mixscale.errors import MixscaleError

T = TypeVar("T")

__all__ = [
    "KIND", "DESIGN", "ROLE", "SUBSET_SIZE", "DATASET", "ROW", "ERROR", "SUPERSEDED_BY",
    "PARENT", "DESIGN_CSV", "FIT_TABLE_CSV", "FIT_SUMMARY_CSV",
    "RowSpec", "resolve_tracking_uri", "experiment_for", "start_stage_run", "end_run",
    "log_params", "log_metrics", "log_artifacts", "create_design_rows", "list_rows",
    "current_row_runs",
    "claim_row", "RowTaken", "CLAIMED", "log_eval", "EvalSender", "end_row", "assemble_table",
    "design_class_keys",
    "HEARTBEAT", "RESTART_OF", "CLAIM", "CHECKPOINT", "RESUMED_FROM", "RESUME_SKIPPED",
    "with_retries",
]

# Tags (searchable in the MLflow UI, e.g. `tags."mixscale.kind" = 'row'`).
KIND = "mixscale.kind"  # pipeline | design | row | fit | launcher
DESIGN = "mixscale.design"  # design run id, on the design run and on each of its rows
ROLE = "mixscale.role"  # train | validation
SUBSET_SIZE = "mixscale.subset_size"
DATASET = "mixscale.dataset"
ROW = "mixscale.row"
ERROR = "mixscale.error"  # the exception that failed a row
SUPERSEDED_BY = "mixscale.superseded_by"  # on a failed row run: the run that restarted it
RESTART_OF = "mixscale.restart_of"  # on a restarted row run: the run it supersedes
HEARTBEAT = "mixscale.heartbeat"  # on a RUNNING row: unix seconds of its last claim/evaluation
CLAIM = "mixscale.claim"  # on a row run: a token new at every claim (who trains it now)
CHECKPOINT = "mixscale.checkpoint"  # on a row run: its stored checkpoint (mixscale.checkpoint)
RESUMED_FROM = "mixscale.resumed_from_epoch"  # on a row run resumed from its checkpoint
RESUME_SKIPPED = "mixscale.resume_skipped"  # on a superseded run: why its checkpoint went unused
PARENT = "mlflow.parentRunId"
# Artifacts.
DESIGN_CSV = "design.csv"
FIT_TABLE_CSV = "fit_table.csv"
FIT_SUMMARY_CSV = "fit_summary.csv"

_MAX_TAG = 5000


@dataclass(frozen=True)
class RowSpec:
    """One design row as read back from its child run."""

    run_id: str
    design_id: str
    row: int  # row index within the design
    role: str  # train | validation
    subset_size: int
    seed: int
    counts: np.ndarray  # images per class, in the design's class order
    status: str  # MLflow run status: SCHEDULED, RUNNING, FINISHED, FAILED, KILLED
    heartbeat: float | None = None  # unix seconds of the last sign of life (tag, else start)
    claim: str | None = None  # the run's mixscale.claim token when listed (None: never claimed)


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Pick the tracking URI, make a relative SQLite path absolute, and activate it.

    Order: ``uri``, then ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working
    directory (MLflow's own default). The result is also exported as ``MLFLOW_TRACKING_URI`` so
    child processes use the same store.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:":
            uri = "sqlite:///" + str(Path(path).resolve())
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def experiment_for(client: MlflowClient, name: str, *, run_id: str | None = None) -> str:
    """The experiment id to log into: the given run's, else experiment ``name`` (created, or
    found when another process created it at the same moment)."""
    if run_id:
        return client.get_run(run_id).info.experiment_id
    env_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if env_id and not name:
        return env_id
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        # Workers started together race to create it: the loser finds the winner's.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def start_stage_run(client: MlflowClient, experiment_id: str, *, kind: str, name: str,
                    tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
                    run_id: str | None = None) -> str:
    """Create a stage run (or adopt ``run_id``, e.g. the run ``mlflow run`` made) and tag it."""
    all_tags = {KIND: kind, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT] = parent_run_id
    if run_id is None:
        run_id = client.create_run(experiment_id, tags=all_tags, run_name=name).info.run_id
    else:
        client.update_run(run_id, name=name)
        log_params(client, run_id, {}, tags=all_tags)
    return run_id


def end_run(client: MlflowClient, run_id: str, *, error: BaseException | None = None) -> None:
    """Mark a run FINISHED, or FAILED with the error as the ``mixscale.error`` tag."""
    if error is not None:
        client.set_tag(run_id, ERROR, f"{type(error).__name__}: {error}"[:_MAX_TAG])
    client.set_terminated(run_id, "FAILED" if error is not None else "FINISHED")


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, object], *,
               tags: Mapping[str, str] | None = None, skip_existing: bool = False) -> None:
    """Log params and tags in one request.

    With ``skip_existing``, keys the run already has are left as they are: ``mlflow run``
    logs the MLproject parameters on the run it creates, and MLflow refuses to change a param.
    """
    if skip_existing:
        existing = client.get_run(run_id).data.params
        params = {k: v for k, v in params.items() if k not in existing}
    client.log_batch(
        run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], *,
                step: int = 0) -> None:
    """Log many metrics at one step in one request (non-finite values are skipped)."""
    ts = int(time.time() * 1000)
    batch = [Metric(k, float(v), ts, step) for k, v in metrics.items() if np.isfinite(v)]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000])


def log_artifacts(client: MlflowClient, run_id: str, files: Mapping[str, object],
                  artifact_path: str | None = None) -> None:
    """Log named artifacts: DataFrames as CSV, str as text, matplotlib figures as PNG."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, obj in files.items():
            path = Path(tmp) / name
            if isinstance(obj, pd.DataFrame):
                obj.to_csv(path, index=False)
            elif isinstance(obj, str):
                path.write_text(obj)
            else:  # a matplotlib figure
                obj.savefig(path, dpi=110, bbox_inches="tight")
        client.log_artifacts(run_id, tmp, artifact_path)


def create_design_rows(client: MlflowClient, design_id: str, table: pd.DataFrame, *,
                       count_columns: Iterable[str], dataset: str) -> list[str]:
    """Create one SCHEDULED child run per row of ``table`` under the design run.

    ``table`` has columns ``row, role, subset_size, seed`` and the count columns. Each child run
    gets params ``n_<class>`` for every class, ``total_n``, ``subset_size``, ``row``, ``role``
    and ``seed``, and a name like ``s0060-r03-train``.
    """
    experiment_id = client.get_run(design_id).info.experiment_id
    count_columns = list(count_columns)
    run_ids = []
    for rec in table.to_dict("records"):
        counts = {c: int(rec[c]) for c in count_columns}
        tags = {PARENT: design_id, KIND: "row", DESIGN: design_id, ROLE: rec["role"],
                SUBSET_SIZE: str(rec["subset_size"]), ROW: str(rec["row"]), DATASET: dataset}
        name = f"s{rec['subset_size']:04d}-r{rec['row']:02d}-{rec['role']}"
        run = client.create_run(experiment_id, tags=tags, run_name=name)
        params = {**counts, "total_n": sum(counts.values()), "subset_size": rec["subset_size"],
                  "row": rec["row"], "role": rec["role"], "seed": rec["seed"]}
        log_params(client, run.info.run_id, params)
        client.update_run(run.info.run_id, status="SCHEDULED")
        run_ids.append(run.info.run_id)
    return run_ids


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def design_class_keys(client: MlflowClient, design_id: str) -> list[str]:
    """The design's class keys in label order (the ``class_keys`` param of the design run)."""
    try:
        run = client.get_run(design_id)
    except MlflowException:
        raise MixscaleError(f"no run with id {design_id!r} in this tracking store.") from None
    if run.data.tags.get(KIND) != "design":
        raise MixscaleError(
            f"run {design_id!r} is not a design (its {KIND} tag is "
            f"{run.data.tags.get(KIND)!r}); pass the id of a `design` run."
        )
    return run.data.params["class_keys"].split(",")


def _transient(exc: BaseException) -> bool:
    """Whether a failed tracking call is worth repeating (connection trouble, server 5xx)."""
    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    try:
        import sqlalchemy.exc
    except ImportError:  # pragma: no cover - mlflow depends on sqlalchemy
        return False
    return isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)


_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                    "DEADLINE_EXCEEDED"}


def with_retries(call: Callable[[], T], *, what: str = "tracking call",
                 attempts: int | None = None, base_delay: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``, repeating it with exponential backoff while it fails transiently.

    This sits on top of MLflow's own HTTP retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
    ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``), for the failures those give up on or do not cover:
    a tracking server down longer than its retries last, or a database URI used directly.

    Parameters
    ----------
    call : callable
        The request; it must be safe to repeat (every row-lifecycle call is: metrics carry
        fixed timestamps, so a repeated batch is deduplicated by the store).
    what : str
        Names the call in the final error.
    attempts : int, optional
        Tries in all; default ``$MIXSCALE_TRACKING_RETRIES`` or 4.
    base_delay : float, optional
        Seconds before the first repeat, doubled each time; default
        ``$MIXSCALE_TRACKING_BACKOFF`` or 2.
    sleep : callable
        Replaceable in tests.
    """
    attempts = attempts or int(os.environ.get("MIXSCALE_TRACKING_RETRIES", "4"))
    if base_delay is None:
        base_delay = float(os.environ.get("MIXSCALE_TRACKING_BACKOFF", "2"))
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not _transient(exc):
                raise
            delay = base_delay * 2**attempt
            print(f"{what} failed ({type(exc).__name__}: {str(exc)[:200]}); retrying in "
                  f"{delay:.0f} s ({attempt + 2}/{attempts})", file=sys.stderr, flush=True)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def current_row_runs(client: MlflowClient, design_id: str) -> list[Run]:
    """The current run of every row of a design (any status, params and tags included), in
    row order.

    Runs superseded by a restart (tagged ``mixscale.superseded_by``, or named by another run's
    ``mixscale.restart_of``) are left out, so each row appears exactly once. Should a crash
    have left two current runs for a row, the FINISHED one wins, else the latest started.
    """
    experiment_id = client.get_run(design_id).info.experiment_id
    runs = with_retries(lambda: _search_all(
        client, experiment_id, f"tags.`{DESIGN}` = '{design_id}' and tags.`{KIND}` = 'row'"),
        what="searching the design's rows")
    replaced = {r.data.tags[RESTART_OF] for r in runs if RESTART_OF in r.data.tags}
    current: dict[int, tuple[tuple, Run]] = {}
    for r in runs:
        if SUPERSEDED_BY in r.data.tags or r.info.run_id in replaced:
            continue
        row = int(r.data.params["row"])
        rank = (r.info.status == "FINISHED", r.info.start_time or 0, r.info.run_id)
        if row not in current or rank > current[row][0]:
            current[row] = (rank, r)
    return [current[k][1] for k in sorted(current)]


def list_rows(client: MlflowClient, design_id: str) -> list[RowSpec]:
    """The current row of a design (:func:`current_row_runs`) as RowSpecs, by row index."""
    keys = design_class_keys(client, design_id)
    rows = []
    for r in current_row_runs(client, design_id):
        beat = r.data.tags.get(HEARTBEAT)
        rows.append(RowSpec(
            run_id=r.info.run_id, design_id=design_id, row=int(r.data.params["row"]),
            role=r.data.params["role"], subset_size=int(r.data.params["subset_size"]),
            seed=int(r.data.params["seed"]), status=r.info.status,
            counts=np.array([int(r.data.params[f"n_{k}"]) for k in keys], dtype=np.int64),
            heartbeat=float(beat) if beat else (r.info.start_time or 0) / 1000 or None,
            claim=r.data.tags.get(CLAIM)))
    return rows


def log_eval(client: MlflowClient, run_id: str, epoch: int, metrics: Mapping[str, float]
             ) -> None:
    """Log one evaluation's metrics at step ``epoch`` and the heartbeat, in one request.

    The batch is built once, so a repeat after a lost response carries the same timestamps and
    the store drops it as a duplicate: no step is logged twice.
    """
    now = time.time()
    ts = int(now * 1000)
    batch = [Metric(k, float(v), ts, epoch) for k, v in metrics.items() if np.isfinite(v)]
    beat = [RunTag(HEARTBEAT, f"{now:.3f}")]
    with_retries(lambda: client.log_batch(run_id, metrics=batch, tags=beat),
                 what=f"logging epoch {epoch} of run {run_id}")


# Three jobs of this module live in private modules of their own (re-exported here): claiming
# and ending rows, sending a row's evaluations from a background thread, and assembling the fit
# table.
from mixscale._claim import CLAIMED, RowTaken, claim_row, end_row  # noqa: E402
from mixscale._evalsender import EvalSender  # noqa: E402
from mixscale._fittable import assemble_table  # noqa: E402
