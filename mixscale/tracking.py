"""Everything that talks to the tracking server about runs.

Stages hand data to each other through run ids, tags and named artifacts, all declared here:
a design is a parent run (``mixscale.kind=design``) with ``design.csv`` and one child run per
row (``mixscale.kind=row``, status SCHEDULED until trained); ``fit`` reads the FINISHED rows
back into one table. Every call goes through an explicit :class:`mlflow.MlflowClient` and run
id, never the fluent "active run", so stages compose in one process and inside ``mlflow run``.
"""

from __future__ import annotations

import os
import re
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

from mixscale.errors import MixscaleError, TrackingUnavailable

T = TypeVar("T")

__all__ = [
    "KIND", "DESIGN", "ROLE", "SUBSET_SIZE", "DATASET", "ROW", "ERROR", "SUPERSEDED_BY",
    "PARENT", "DESIGN_CSV", "FIT_TABLE_CSV", "FIT_SUMMARY_CSV", "SKIPPED_IMAGES",
    "RowSpec", "resolve_tracking_uri", "check_tracking_uri", "tracking_schemes",
    "PROBE_TIMEOUT", "experiment_for", "start_stage_run", "end_run",
    "log_params", "log_metrics", "log_artifacts", "create_design_rows", "list_rows",
    "current_row_runs",
    "claim_row", "RowTaken", "CLAIMED", "LEDGER", "LINK", "create_ledger", "claim_link",
    "claim_links", "log_eval", "EvalSender", "end_row", "assemble_table",
    "design_class_keys", "design_run", "DESIGN_PARAMS", "ROW_PARAMS",
    "HEARTBEAT", "RESTART_OF", "CLAIM", "CHECKPOINT", "RESUMED_FROM", "RESUME_SKIPPED",
    "with_retries", "TrackingUnavailable",
]

# Tags (searchable in the MLflow UI, e.g. `tags."mixscale.kind" = 'row'`).
KIND = "mixscale.kind"  # pipeline | design | row | ledger | fit | launcher
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
SKIPPED_IMAGES = "skipped_images.txt"  # on a design run: unreadable images left out, one a line

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
    """Pick the tracking URI, make a relative SQLite path absolute, check it, and activate it.

    Order: ``uri``, then ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working
    directory (MLflow's own default). The result is also exported as ``MLFLOW_TRACKING_URI`` so
    child processes use the same store.

    Raises
    ------
    MixscaleError
        From :func:`check_tracking_uri`: an unknown scheme, a SQLite file in a missing folder,
        or a tracking server that does not answer. Nothing is created or logged then.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        if path and not path.startswith(":memory:"):
            uri = "sqlite:///" + str(Path(path).resolve())
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


PROBE_TIMEOUT = 5.0  # seconds to connect, and again to answer, on first contact with a server
_SERVER_UP = {200, 401, 403}  # /health statuses of a running server (with auth: 401, 403)
# Schemes named when MLflow's registry cannot be read (it is private API; MLflow 3.x has it).
_FALLBACK_SCHEMES = ("file", "http", "https", "mssql", "mysql", "postgresql", "sqlite")


def tracking_schemes() -> list[str]:
    """The URI schemes MLflow can open as a tracking store (``""``, a plain path, aside).

    Read from MLflow's own store registry, so schemes that plugins register count too; the
    Unity Catalog schemes it registers only to refuse them (``uc``, ``databricks-uc``) are left
    out.
    """
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        schemes = set(_tracking_store_registry._registry)
    except (ImportError, AttributeError):  # pragma: no cover - a future MLflow
        schemes = set(_FALLBACK_SCHEMES)
    return sorted(s for s in schemes if s and s not in ("uc", "databricks-uc"))


def check_tracking_uri(uri: str) -> None:
    """Refuse a tracking URI that cannot work, in one line, before anything touches it.

    - The scheme must be one MLflow registers (:func:`tracking_schemes`; ``postgresql+driver``
      counts as ``postgresql``), or none (a local folder).
    - A SQLite file may be new, but its folder must exist: MLflow would silently create the
      folders and a new, empty store (a typo in the path would go unseen).
    - An ``http(s)`` server must answer one probe of ``<uri>/health`` within
      :data:`PROBE_TIMEOUT` seconds as an MLflow server does (200, or 401/403 behind auth).
      The probe has none of MLflow's retries, which hold an unreachable server for minutes;
      a server that answered once gets them, and the backoff of :func:`with_retries` for
      every row-lifecycle call, should it go away later.

    Raises
    ------
    MixscaleError
        Naming the URI and what is allowed.
    """
    from mlflow.utils.uri import get_uri_scheme

    raw = uri.split(":", 1)[0] if "://" in uri else ""
    try:
        scheme = get_uri_scheme(uri)
    except MlflowException:  # e.g. sqlitex://: MLflow's own "invalid database engine"
        scheme = raw
    allowed = tracking_schemes()
    if scheme not in allowed and scheme != "":
        raise MixscaleError(
            f"tracking URI {uri!r} has the unknown scheme {raw or scheme!r}; allowed: "
            f"{', '.join(allowed)} (a database may name its driver, e.g. postgresql+psycopg2),"
            " or a local folder path."
        )
    if scheme == "sqlite":
        _check_sqlite_path(uri)
    elif scheme in ("http", "https"):
        _probe_server(uri)


def _check_sqlite_path(uri: str) -> None:
    if ":///" not in uri:
        return  # sqlite:// is an in-memory database
    path = uri.split(":///", 1)[1].split("?", 1)[0]
    if not path or path.startswith(":memory:"):
        return
    file = Path(path)
    if file.is_dir():
        raise MixscaleError(f"tracking URI {uri!r} names the folder {file}, not a SQLite file; "
                            f"name a file in it, e.g. sqlite:///{file / 'mlflow.db'}.")
    if not file.parent.is_dir():
        raise MixscaleError(
            f"tracking URI {uri!r}: the folder {file.parent} does not exist; create it first "
            "(a missing file in an existing folder is fine: it becomes a new store), or fix "
            "the path."
        )


def _probe_server(uri: str) -> None:
    import requests

    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true")
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    health = uri.rstrip("/") + "/health"
    try:
        status = requests.get(health, timeout=PROBE_TIMEOUT, verify=verify).status_code
    except requests.exceptions.RequestException as exc:
        if isinstance(exc, requests.exceptions.Timeout):
            reason = f"no answer within {PROBE_TIMEOUT:g} s"
        else:
            found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
            reason = found.group(1).strip() if found else type(exc).__name__
        raise MixscaleError(
            f"the tracking server {uri} cannot be reached ({reason}); start it (mlflow "
            "server ...), check the host and port, or pass another --tracking-uri "
            "($MLFLOW_TRACKING_URI)."
        ) from None
    if status not in _SERVER_UP:
        raise MixscaleError(
            f"{uri} answered HTTP {status} to {health}, where an MLflow tracking server "
            f"answers {' or '.join(map(str, sorted(_SERVER_UP)))}: is it an MLflow server "
            "(mlflow server ...), and is the URI its root?"
        )




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
    and ``seed``, and a name like ``s0060-r03-train``. The design's claim ledger is made first
    (:func:`create_ledger`); each row names it in its tag ``mixscale.ledger``.
    """
    experiment_id = client.get_run(design_id).info.experiment_id
    ledger = create_ledger(client, design_id, experiment_id)
    count_columns = list(count_columns)
    run_ids = []
    for rec in table.to_dict("records"):
        counts = {c: int(rec[c]) for c in count_columns}
        tags = {PARENT: design_id, KIND: "row", DESIGN: design_id, ROLE: rec["role"],
                SUBSET_SIZE: str(rec["subset_size"]), ROW: str(rec["row"]), DATASET: dataset,
                LEDGER: ledger}
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


DESIGN_PARAMS = ("class_keys", "dataset")  # what the stages read from a design run
ROW_PARAMS = ("row", "role", "subset_size", "seed")  # and from each row run, beside n_<class>


def design_run(client: MlflowClient, design_id: str) -> Run:
    """The run ``design_id``, checked to be a design that ``mixscale design`` made.

    Raises
    ------
    MixscaleError
        If no such run exists, its ``mixscale.kind`` tag is not ``design``, or it lacks a
        param of :data:`DESIGN_PARAMS` (a run made by hand or by another tool).
    """
    try:
        run = client.get_run(design_id)
    except MlflowException:
        raise MixscaleError(f"no run with id {design_id!r} in this tracking store.") from None
    kind = run.data.tags.get(KIND)
    if kind != "design":
        raise MixscaleError(
            f"run {design_id!r} is not a mixscale design run: its {KIND} tag is {kind!r}, "
            f"expected 'design'; pass the id that `mixscale design` printed."
        )
    missing = [p for p in DESIGN_PARAMS if p not in run.data.params]
    if missing:
        raise MixscaleError(
            f"run {design_id!r} is tagged {KIND}=design but lacks the param(s) "
            f"{', '.join(missing)} that `mixscale design` logs (expected "
            f"{', '.join(DESIGN_PARAMS)}); it was not made by mixscale: pass the id that "
            "`mixscale design` printed."
        )
    return run


def design_class_keys(client: MlflowClient, design_id: str) -> list[str]:
    """The design's class keys in label order (the ``class_keys`` param of the design run)."""
    return design_run(client, design_id).data.params["class_keys"].split(",")


def _row_params(run: Run, design_id: str, keys: Iterable[str] = ()) -> Mapping[str, str]:
    """A row run's params, checked to hold what every stage reads from a row."""
    params = run.data.params
    missing = [p for p in (*ROW_PARAMS, *(f"n_{k}" for k in keys)) if p not in params]
    if missing:
        raise MixscaleError(
            f"run {run.info.run_id!r} is tagged as a row of design {design_id!r} but lacks the "
            f"param(s) {', '.join(missing)} that `mixscale design` logs on every row (expected "
            f"{', '.join(ROW_PARAMS)} and n_<class> for each class); it was not made by "
            "mixscale: delete it or fix its tags."
        )
    return params


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


def _describe(exc: BaseException) -> tuple[str, str]:
    """A failed call's error in one short line, and ``" <server>"`` if it names one."""
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)  # e.g. "Connection refused"
    server = re.search(r"https?://[^/\s'\"]+", text)
    return (f"{type(exc).__name__}: {errno.group(1).strip() if errno else text[:200]}",
            f" {server.group(0)}" if server else "")


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

    Raises
    ------
    TrackingUnavailable
        When the last try failed transiently too, after ``base_delay * (2**(attempts-1) - 1)``
        seconds of backoff in all (plus MLflow's own retries within each try); one line that
        names the call, the tries, the time and the last error. Other errors at once, as is.
    """
    attempts = attempts or int(os.environ.get("MIXSCALE_TRACKING_RETRIES", "4"))
    if base_delay is None:
        base_delay = float(os.environ.get("MIXSCALE_TRACKING_BACKOFF", "2"))
    start = time.monotonic()
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if not _transient(exc):
                raise
            last, server = _describe(exc)
            if attempt == attempts - 1:
                raise TrackingUnavailable(
                    f"{what} failed {attempts} times in {time.monotonic() - start:.0f} s, the "
                    f"tracking store{server} did not answer ({last}); rerun once it does (rows "
                    "left RUNNING restart as the README's Team set-up says); more patience: "
                    "$MIXSCALE_TRACKING_RETRIES, $MIXSCALE_TRACKING_BACKOFF."
                ) from exc
            delay = base_delay * 2**attempt
            print(f"{what} failed ({last}); retrying in {delay:g} s ({attempt + 2}/{attempts})",
                  file=sys.stderr, flush=True)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def current_row_runs(client: MlflowClient, design_id: str) -> list[Run]:
    """The current run of every row of a design (any status, params and tags included), in
    row order.

    Runs superseded by a restart (tagged ``mixscale.superseded_by``, or named by another run's
    ``mixscale.restart_of``) are left out, so each row appears exactly once. Should a crash
    have left two current runs for a row, the FINISHED one wins, else the latest started.

    Raises
    ------
    MixscaleError
        If ``design_id`` is not a mixscale design run (:func:`design_run`), or a current row
        run lacks a param of :data:`ROW_PARAMS` or an ``n_<class>``.
    """
    design = design_run(client, design_id)
    keys = design.data.params["class_keys"].split(",")
    experiment_id = design.info.experiment_id
    runs = with_retries(lambda: _search_all(
        client, experiment_id, f"tags.`{DESIGN}` = '{design_id}' and tags.`{KIND}` = 'row'"),
        what="searching the design's rows")
    replaced = {r.data.tags[RESTART_OF] for r in runs if RESTART_OF in r.data.tags}
    current: dict[int, tuple[tuple, Run]] = {}
    for r in runs:
        if SUPERSEDED_BY in r.data.tags or r.info.run_id in replaced:
            continue
        row = int(_row_params(r, design_id, keys)["row"])
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
        params = r.data.params  # checked by current_row_runs
        rows.append(RowSpec(
            run_id=r.info.run_id, design_id=design_id, row=int(params["row"]),
            role=params["role"], subset_size=int(params["subset_size"]),
            seed=int(params["seed"]), status=r.info.status,
            counts=np.array([int(params[f"n_{k}"]) for k in keys], dtype=np.int64),
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
from mixscale._claim import (  # noqa: E402
    CLAIMED,
    LEDGER,
    LINK,
    RowTaken,
    claim_link,
    claim_links,
    claim_row,
    create_ledger,
    end_row,
)
from mixscale._evalsender import EvalSender  # noqa: E402
from mixscale._fittable import assemble_table  # noqa: E402
