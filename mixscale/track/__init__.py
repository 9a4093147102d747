"""Everything that talks to the tracking server about runs (with :mod:`mixscale.serve`, the
only mlflow importer).

Stages hand data to each other through run ids, tags and named artifacts, all named in
:mod:`~mixscale.track.names`. Every call goes through an explicit :class:`mlflow.MlflowClient`
and run id, never the fluent "active run", so stages compose in one process and inside
``mlflow run``. :mod:`~mixscale.track.store` reaches the store (URI, retries),
:mod:`~mixscale.track.runs` starts, logs and ends runs, :mod:`~mixscale.track.rows` creates and
reads a design's rows, :mod:`~mixscale.track.claims` claims and ends them,
:mod:`~mixscale.track.evalsender` sends a row's evaluations from a background thread,
:mod:`~mixscale.track.checkpoints` keeps a row's checkpoint and
:mod:`~mixscale.track.fittable` reads the fit table back.
"""

from __future__ import annotations

from mixscale.errors import RowTaken, TrackingUnavailable
from mixscale.track.claims import claim_link, claim_links, claim_row, end_row
from mixscale.track.evalsender import EvalSender
from mixscale.track.fittable import assemble_table
from mixscale.track.names import (
    CHECKPOINT,
    CLAIM,
    CLAIMED,
    DATASET,
    DESIGN,
    DESIGN_CSV,
    DESIGN_PARAMS,
    ERROR,
    FIT_SUMMARY_CSV,
    FIT_TABLE_CSV,
    HEARTBEAT,
    KIND,
    LEDGER,
    LINK,
    MAX_TAG,
    PARENT,
    RESTART_OF,
    RESUME_SKIPPED,
    RESUMED_FROM,
    ROLE,
    ROW,
    ROW_PARAMS,
    SKIPPED_IMAGES,
    SUBSET_SIZE,
    SUPERSEDED_BY,
)
from mixscale.track.rows import (
    RowSpec,
    create_design_rows,
    create_ledger,
    current_row_runs,
    design_class_keys,
    design_run,
    list_rows,
)
from mixscale.track.runs import (
    end_run,
    experiment_for,
    log_artifacts,
    log_eval,
    log_metrics,
    log_params,
    stage_run,
    start_stage_run,
)
from mixscale.track.store import (
    PROBE_TIMEOUT,
    check_tracking_uri,
    resolve_tracking_uri,
    tracking_schemes,
    with_retries,
)

__all__ = [
    "KIND",
    "DESIGN",
    "ROLE",
    "SUBSET_SIZE",
    "DATASET",
    "ROW",
    "ERROR",
    "SUPERSEDED_BY",
    "RESTART_OF",
    "HEARTBEAT",
    "CLAIM",
    "CHECKPOINT",
    "RESUMED_FROM",
    "RESUME_SKIPPED",
    "PARENT",
    "LEDGER",
    "LINK",
    "CLAIMED",
    "DESIGN_CSV",
    "FIT_TABLE_CSV",
    "FIT_SUMMARY_CSV",
    "SKIPPED_IMAGES",
    "MAX_TAG",
    "DESIGN_PARAMS",
    "ROW_PARAMS",
    "resolve_tracking_uri",
    "PROBE_TIMEOUT",
    "tracking_schemes",
    "check_tracking_uri",
    "with_retries",
    "RowSpec",
    "create_design_rows",
    "design_run",
    "design_class_keys",
    "current_row_runs",
    "list_rows",
    "create_ledger",
    "experiment_for",
    "start_stage_run",
    "stage_run",
    "end_run",
    "log_params",
    "log_metrics",
    "log_artifacts",
    "log_eval",
    "claim_link",
    "claim_links",
    "claim_row",
    "end_row",
    "EvalSender",
    "assemble_table",
    "RowTaken",
    "TrackingUnavailable",
]
