"""A design's rows in the tracking store: creating them, reading them back, the current run of
each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from mixscale.errors import MixscaleError
from mixscale.track.names import (
    CLAIM,
    DATASET,
    DESIGN,
    DESIGN_PARAMS,
    HEARTBEAT,
    KIND,
    LEDGER,
    PARENT,
    RESTART_OF,
    ROLE,
    ROW,
    ROW_CHECK,
    ROW_PARAMS,
    SUBSET_SIZE,
    SUPERSEDED_BY,
)
from mixscale.track.runs import log_params
from mixscale.track.store import look_up, with_retries

__all__ = ["RowSpec", "create_design_rows", "design_run", "design_class_keys", "current_row_runs",
           "list_rows", "create_ledger"]


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
    eval_images: int | None = None  # test images each evaluation scored (None: not logged yet)
    # test images the last evaluation scored (None: as every other, eval_images)
    eval_final_images: int | None = None
    check: str | None = None  # the row's tag mixscale.row_check (None: rows before the checks)


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


def design_run(client: MlflowClient, design_id: str) -> Run:
    """The run ``design_id``, checked to be a design that ``mixscale design`` made.

    Raises
    ------
    MixscaleError
        If no such run exists, its ``mixscale.kind`` tag is not ``design``, or it lacks a
        param of :data:`DESIGN_PARAMS` (a run made by hand or by another tool).
    """
    run = look_up(lambda: client.get_run(design_id),
                  missing=lambda _: f"no run with id {design_id!r} in this tracking store.")
    kind = run.data.tags.get(KIND)
    if kind != "design":
        raise MixscaleError(
            f"run {design_id!r} is not a mixscale design run: its {KIND} tag is {kind!r}, "
            f"expected 'design'; pass the id that `mixscale design` printed."
        )
    _check_params(run.data.params, DESIGN_PARAMS,
                  run=f"run {design_id!r} is tagged {KIND}=design",
                  expected=", ".join(DESIGN_PARAMS),
                  fix="pass the id that `mixscale design` printed")
    return run


def design_class_keys(client: MlflowClient, design_id: str) -> list[str]:
    """The design's class keys in label order (the ``class_keys`` param of the design run)."""
    return design_run(client, design_id).data.params["class_keys"].split(",")


def _row_params(run: Run, design_id: str, keys: Iterable[str] = ()) -> Mapping[str, str]:
    """A row run's params, checked to hold what every stage reads from a row."""
    params = run.data.params
    _check_params(params, (*ROW_PARAMS, *(f"n_{k}" for k in keys)),
                  run=f"run {run.info.run_id!r} is tagged as a row of design {design_id!r}",
                  on=" on every row",
                  expected=f"{', '.join(ROW_PARAMS)} and n_<class> for each class",
                  fix="delete it or fix its tags")
    return params


def _check_params(params: Mapping[str, str], wanted: Iterable[str], *, run: str, expected: str,
                  fix: str, on: str = "") -> None:
    """Refuse a run that lacks params `mixscale design` logs (one message for every kind)."""
    missing = [p for p in wanted if p not in params]
    if missing:
        raise MixscaleError(
            f"{run} but lacks the param(s) {', '.join(missing)} that `mixscale design` logs{on} "
            f"(expected {expected}); it was not made by mixscale: {fix}."
        )


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
            claim=r.data.tags.get(CLAIM),
            eval_images=int(params["eval_images"]) if "eval_images" in params else None,
            eval_final_images=(int(params["eval_final_images"])
                               if "eval_final_images" in params else None),
            check=r.data.tags.get(ROW_CHECK)))
    return rows


def create_ledger(client: MlflowClient, design_id: str, experiment_id: str) -> str:
    """Create the claim ledger of a design and return its run id (once, before its rows).

    A child run of the design tagged ``mixscale.kind=ledger`` and ``mixscale.design``, ended
    FINISHED at once (MLflow takes params on a finished run; only deleted runs refuse them).
    """
    tags = {PARENT: design_id, KIND: "ledger", DESIGN: design_id}
    run_id = client.create_run(experiment_id, tags=tags, run_name="claim-ledger").info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id
