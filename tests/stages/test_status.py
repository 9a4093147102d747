"""`mixscale status`: rows by status, heartbeats, errors, and whether to fit (SQLite store)."""

from __future__ import annotations

from click.testing import CliRunner

from mixscale import track as tr
from mixscale.cli import cli
from mixscale.config import DesignSpec
from mixscale.stages.design import prepare_design, run_design
from mixscale.stages.status import design_status, status_lines

SPEC = DesignSpec(subset_sizes=(30, 50), rows_per_size=2, val_rows_per_size=1, iterations=20,
                  seed=5)


def _design(store) -> str:
    return run_design(prepare_design(SPEC), store.client, store.new_experiment(),
                      echo=lambda _: None).design_id


def test_status_lists_what_is_not_finished_and_says_when_to_fit(store) -> None:
    client = store.client
    design_id = _design(store)
    rows = tr.list_rows(client, design_id)
    running = tr.claim_row(client, rows[0])
    tr.log_eval(client, running, 1, {"test_accuracy": 0.2})
    tr.end_row(client, tr.claim_row(client, rows[1]), error=RuntimeError("out of memory"))
    for r in rows[2:]:
        tr.end_row(client, tr.claim_row(client, r))
    beat = float(client.get_run(running).data.tags[tr.HEARTBEAT])
    frame = design_status(client, design_id, now=beat + 700)
    assert list(frame["status"]) == ["RUNNING", "FAILED", "FINISHED", "FINISHED", "FINISHED",
                                     "FINISHED"]
    assert frame.loc[0, "heartbeat_age_s"] == 700 and frame.loc[1, "error"] == (
        "RuntimeError: out of memory")
    lines = status_lines(design_id, frame, stale_after=600)
    assert lines[0] == f"design {design_id}: 6 rows: 4 FINISHED, 1 RUNNING, 1 FAILED"
    assert lines[1].endswith("heartbeat 12 min ago (stale: train --stale-after 600 restarts it)")
    assert f"run {running}" in lines[1]
    assert lines[2].endswith("RuntimeError: out of memory")
    assert lines[-1].startswith("2 row(s) not FINISHED yet")

    tr.end_row(client, running)
    tr.end_row(client, tr.claim_row(client, tr.list_rows(client, design_id)[1]))
    result = CliRunner().invoke(cli, ["status", "--tracking-uri", store.uri,
                                      "--design-id", design_id])
    assert result.exit_code == 0, result.output
    assert f"design {design_id}: 6 rows: 6 FINISHED" in result.output
    assert f"every row is FINISHED: mixscale fit --design-id {design_id}" in result.output


def test_status_of_an_unknown_run_is_a_clear_error(store) -> None:
    result = CliRunner().invoke(cli, ["status", "--tracking-uri", store.uri,
                                      "--design-id", "deadbeef"])
    assert result.exit_code == 1
    assert "Error: no run with id 'deadbeef' in this tracking store." in result.output
    assert "Traceback" not in result.output
