"""Where a design stands: each row's status, the age of a RUNNING row's heartbeat, a FAILED row's
error, and whether ``fit`` can run. What ``mixscale status`` prints, for teams whose workers pull
rows on several machines (nothing is logged or changed).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd

from mixscale import track as tr

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["STATUSES", "design_status", "status_lines"]

STATUSES = ("FINISHED", "RUNNING", "FAILED", "KILLED", "SCHEDULED")  # in the summary's order


def design_status(client: MlflowClient, design_id: str, *, now: float | None = None
                  ) -> pd.DataFrame:
    """One line per current row of the design.

    Returns
    -------
    pandas.DataFrame
        ``row, role, subset_size, status, run_id, heartbeat_age_s`` (seconds since a RUNNING
        row's last claim or evaluation; NaN otherwise) and ``error`` (the ``mixscale.error`` tag
        of a FAILED or KILLED row, else empty).

    Raises
    ------
    MixscaleError
        If ``design_id`` is not a design run of this store.
    """
    now = time.time() if now is None else now
    records = []
    for r in tr.list_rows(client, design_id):
        error = ""
        if r.status in ("FAILED", "KILLED"):
            error = client.get_run(r.run_id).data.tags.get(tr.ERROR, "")
        age = now - r.heartbeat if r.status == "RUNNING" and r.heartbeat else float("nan")
        records.append({"row": r.row, "role": r.role, "subset_size": r.subset_size,
                        "status": r.status, "run_id": r.run_id, "heartbeat_age_s": age,
                        "error": error})
    return pd.DataFrame(records, columns=["row", "role", "subset_size", "status", "run_id",
                                          "heartbeat_age_s", "error"])


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def status_lines(design_id: str, frame: pd.DataFrame, *, stale_after: float = 0.0
                 ) -> list[str]:
    """The summary, one line per row that is not FINISHED, and what to do next.

    ``stale_after`` (seconds, 0 = off) marks RUNNING rows whose heartbeat is older, the rows
    ``train --stale-after`` would restart.
    """
    counts = frame["status"].value_counts()
    summary = ", ".join(f"{int(counts[s])} {s}" for s in STATUSES if s in counts)
    lines = [f"design {design_id}: {len(frame)} rows: {summary}"]
    pending = frame[frame["status"] != "FINISHED"]
    for r in pending.itertuples():
        detail = ""
        if r.status == "RUNNING" and r.heartbeat_age_s == r.heartbeat_age_s:  # not NaN
            detail = f"heartbeat {_age(r.heartbeat_age_s)}"
            if stale_after and r.heartbeat_age_s > stale_after:
                detail += f" (stale: train --stale-after {stale_after:g} restarts it)"
        elif r.error:
            detail = r.error.splitlines()[0][:160]
        lines.append(f"  row {r.row:>4} {r.role:<10} n={r.subset_size:<6} {r.status:<9} "
                     f"run {r.run_id}  {detail}".rstrip())
    if pending.empty:
        lines.append(f"every row is FINISHED: mixscale fit --design-id {design_id}")
    else:
        lines.append(f"{len(pending)} row(s) not FINISHED yet; fit once they are "
                     f"(mixscale train --design-id {design_id} trains the pending ones).")
    return lines
