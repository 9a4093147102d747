"""Claims live on the design's ledger run, not on the rows (a real SQLite tracking store).

The race itself (eight workers, one winner) is tested in test_tracking (SQLite threads) and
test_team (a PostgreSQL-backed server); here: where the links go, that the ledger is never a
row, and that designs made before the ledger (links on the row params) still train.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mixscale import track as tr
from mixscale.config import DesignSpec, TrainConfig
from mixscale.stages.design import prepare_design, run_design
from mixscale.stages.rows import train_rows
from mixscale.stages.status import design_status
from tests.support.claimrace import race_claims

SPEC = DesignSpec(subset_sizes=(30, 50), rows_per_size=3, val_rows_per_size=1, iterations=50,
                  seed=4)
N_ROWS = 8


@pytest.fixture()
def design(store) -> tuple[MlflowClient, str]:
    result = run_design(prepare_design(SPEC), store.client, store.new_experiment(),
                        echo=lambda _: None)
    return store.client, result.design_id


def _ledgers(client: MlflowClient, design_id: str) -> list:
    exp = client.get_run(design_id).info.experiment_id
    return client.search_runs([exp], f"tags.`{tr.DESIGN}` = '{design_id}' and "
                                     f"tags.`{tr.KIND}` = 'ledger'")


def _as_made_before_the_ledger(client: MlflowClient, design_id: str) -> None:
    """Turn a fresh design into one made before this change: no ledger, rows without the tag."""
    for ledger in _ledgers(client, design_id):
        client.delete_run(ledger.info.run_id)
    for r in tr.list_rows(client, design_id):
        client.delete_tag(r.run_id, tr.LEDGER)


def test_the_ledger_is_one_child_of_the_design_and_never_a_row(design) -> None:
    client, design_id = design
    ledgers = _ledgers(client, design_id)
    assert len(ledgers) == 1
    ledger = ledgers[0]
    assert ledger.data.tags[tr.PARENT] == design_id and ledger.info.status == "FINISHED"
    assert ledger.info.run_name == "claim-ledger"
    rows = tr.list_rows(client, design_id)
    assert len(rows) == N_ROWS
    assert {client.get_run(r.run_id).data.tags[tr.LEDGER] for r in rows} == {
        ledger.info.run_id}
    # Rows claimed, trained, failed and restarted: the ledger fills up, and stays no row.
    for r in rows[:3]:
        run_id = tr.claim_row(client, r)
        tr.log_eval(client, run_id, 1, {"test_accuracy": 0.5})
        tr.end_row(client, run_id, error=RuntimeError("boom") if r.row == 2 else None)
    restarted = tr.claim_row(client, tr.list_rows(client, design_id)[2])
    assert client.get_run(restarted).data.tags[tr.LEDGER] == ledger.info.run_id
    assert len(client.get_run(ledger.info.run_id).data.params) == 4  # one link per claim
    rows = tr.list_rows(client, design_id)
    assert len(rows) == N_ROWS and ledger.info.run_id not in {r.run_id for r in rows}
    status = design_status(client, design_id)
    assert len(status) == N_ROWS and ledger.info.run_id not in set(status["run_id"])
    assert list(status["status"][:3]) == ["FINISHED", "FINISHED", "RUNNING"]
    table = tr.assemble_table(client, [design_id])
    assert set(table["run_id"]) == {rows[0].run_id, rows[1].run_id}
    assert len(_ledgers(client, design_id)) == 1  # made once, at design time


def test_row_params_hold_only_what_the_row_trained_on(design) -> None:
    client, design_id = design
    listed = tr.list_rows(client, design_id)[0]
    before = set(client.get_run(listed.run_id).data.params)
    first = tr.claim_row(client, listed)
    running = tr.list_rows(client, design_id)[0]
    new_id = tr.claim_row(client, running, takeover=True)  # its worker presumed dead
    old, new = client.get_run(first), client.get_run(new_id)
    assert set(old.data.params) == before and set(new.data.params) == before
    assert not [k for k in before if "claim" in k]
    # The chain of the old run's two claims is on the ledger: first -> t1 -> t2.
    assert tr.claim_links(client, old) == {"first": running.claim,
                                           running.claim: new.data.tags[tr.CLAIM]}
    ledger = client.get_run(old.data.tags[tr.LEDGER])
    assert set(ledger.data.params) == {f"{tr.LINK}.{first}.first",
                                       f"{tr.LINK}.{first}.{running.claim}"}
    assert tr.claim_links(client, new) == {}  # never claimed itself yet


@pytest.mark.parametrize("made", ["with a ledger", "before the ledger"])
def test_racing_claims_on_every_row_have_one_winner_each(design, store, monkeypatch,
                                                         made) -> None:
    """Eight workers race for each row in turn; designs made before the ledger keep their links
    on the row params, where their workers always wrote. Eight races give a torn read (a status
    from before a claim, a token from after it: two winners) eight chances to show."""
    monkeypatch.setenv("MIXSCALE_TRACKING_BACKOFF", "0.05")
    client, design_id = design
    if made == "before the ledger":
        _as_made_before_the_ledger(client, design_id)
    for row in tr.list_rows(client, design_id):
        won, lost, errors = race_claims(store.uri, row)
        assert errors == [] and len(won) == 1 and len(lost) == 7, (row.row, won, lost, errors)
        run = client.get_run(won[0])
        assert tr.claim_links(client, run) == {"first": run.data.tags[tr.CLAIM]}
        on_row = [k for k in run.data.params if k.startswith(tr.CLAIMED)]
        assert on_row == ([f"{tr.CLAIMED}.first"] if made == "before the ledger" else [])


def test_a_design_made_before_the_ledger_still_trains(design) -> None:
    client, design_id = design
    _as_made_before_the_ledger(client, design_id)
    row = tr.list_rows(client, design_id)[3]
    config = TrainConfig(epochs=1, eval_every=1, lr_milestones=(), batch_size=16, device="cpu")
    assert train_rows(client, design_id, config, run_ids=[row.run_id],
                      echo=lambda _: None) == 1
    run = client.get_run(row.run_id)
    assert run.info.status == "FINISHED"
    assert tr.claim_links(client, run) == {"first": run.data.tags[tr.CLAIM]}
    assert _ledgers(client, design_id) == []  # no ledger is made behind the design's back
