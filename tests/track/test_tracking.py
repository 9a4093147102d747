"""Design runs, row lifecycle and the fit table against a real SQLite tracking store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixscale import track as tr
from mixscale.config import DesignSpec
from mixscale.errors import MixscaleError
from mixscale.stages.design import prepare_design, run_design
from tests.support.claimrace import race_claims


@pytest.fixture()
def design(store):
    experiment_id = store.new_experiment()
    spec = DesignSpec(subset_sizes=(30, 50), rows_per_size=3, val_rows_per_size=1,
                      iterations=50, seed=4)
    result = run_design(prepare_design(spec), store.client, experiment_id, echo=lambda _: None)
    return store.client, result


def test_design_parent_and_children(design) -> None:
    client, result = design
    parent = client.get_run(result.design_id)
    assert parent.data.tags[tr.KIND] == "design"
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "design-digits-s4"
    assert "min_distance_s0030_train" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.design_id)}
    assert {tr.DESIGN_CSV, "design.png", "class_ranges.csv"} <= artifacts
    ranges = pd.read_csv(client.download_artifacts(result.design_id, "class_ranges.csv"))
    assert len(ranges) == 2 * 2 * 10  # sizes x roles x classes
    assert (ranges["min"] <= ranges["max"]).all() and (ranges["min"] >= 1).all()
    rows = tr.list_rows(client, result.design_id)
    assert [r.row for r in rows] == list(range(8))
    assert [r.role for r in rows] == ["train"] * 3 + ["validation"] + ["train"] * 3 + [
        "validation"]
    for r in rows:
        run = client.get_run(r.run_id)
        assert run.info.status == "SCHEDULED"
        assert run.data.tags[tr.PARENT] == result.design_id
        assert run.info.run_name == f"s{r.subset_size:04d}-r{r.row:02d}-{r.role}"
        params = run.data.params
        counts = [int(params[f"n_{k}"]) for k in range(10)]
        assert sum(counts) == int(params["total_n"]) == r.subset_size
        assert min(counts) >= 1
        assert {"row", "role", "seed", "subset_size"} <= set(params)


def test_claim_refuses_finished_and_restarts_failed(design) -> None:
    client, result = design
    first = tr.list_rows(client, result.design_id)[0]
    run_id = tr.claim_row(client, first)
    assert run_id == first.run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    tr.log_eval(client, run_id, 3, {"test_accuracy": 0.5})
    tr.end_row(client, run_id, error=RuntimeError("out of memory"))
    failed = client.get_run(run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[tr.ERROR] == "RuntimeError: out of memory"

    row = tr.list_rows(client, result.design_id)[0]
    new_id = tr.claim_row(client, row)  # restart in a fresh run
    assert new_id != run_id
    assert client.get_run(run_id).data.tags[tr.SUPERSEDED_BY] == new_id
    new = client.get_run(new_id)
    assert new.data.params["n_0"] == failed.data.params["n_0"]
    assert new.data.tags[tr.PARENT] == result.design_id
    assert client.get_metric_history(new_id, "test_accuracy") == []
    tr.end_row(client, new_id)
    rows = tr.list_rows(client, result.design_id)
    assert len(rows) == 8 and rows[0].run_id == new_id and rows[0].status == "FINISHED"
    with pytest.raises(MixscaleError, match="already FINISHED; a finished row is never trained"):
        tr.claim_row(client, rows[0])


def test_assemble_table_takes_finished_rows_only(design) -> None:
    client, result = design
    rows = tr.list_rows(client, result.design_id)
    for r in rows[:3]:
        run_id = tr.claim_row(client, r)
        for epoch in (5, 10):
            tr.log_eval(client, run_id, epoch, {"test_accuracy": epoch / 100 + r.row})
        tr.end_row(client, run_id)
    table = tr.assemble_table(client, [result.design_id])
    assert list(table.columns[:2]) == ["accuracy", "n_0"]
    assert len(table) == 6
    assert set(table["run_id"]) == {r.run_id for r in rows[:3]}
    first = table[table["run_id"] == rows[0].run_id]
    np.testing.assert_allclose(first["accuracy"], [0.05, 0.10])
    assert list(first["epoch"]) == [5, 10]
    np.testing.assert_array_equal(first[[f"n_{k}" for k in range(10)]].iloc[0], rows[0].counts)
    assert (table["total_n"] == table[[f"n_{k}" for k in range(10)]].sum(axis=1)).all()


def test_assemble_refuses_unknown_and_untrained(design, store) -> None:
    client, result = design
    with pytest.raises(MixscaleError, match="no FINISHED rows"):
        tr.assemble_table(client, [result.design_id])
    with pytest.raises(MixscaleError, match="no run with id 'deadbeef'"):
        tr.assemble_table(client, ["deadbeef"])
    row = tr.list_rows(client, result.design_id)[0]
    with pytest.raises(MixscaleError, match="is not a mixscale design run: its mixscale.kind "
                                            "tag is 'row', expected 'design'"):
        tr.assemble_table(client, [row.run_id])


def test_resolve_tracking_uri_makes_sqlite_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        assert tr.resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
        with pytest.raises(MixscaleError, match=f"the folder {tmp_path}/sub does not exist"):
            tr.resolve_tracking_uri("sqlite:///sub/x.db")
        (tmp_path / "sub").mkdir()
        assert tr.resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path}/sub/x.db"
    finally:
        monkeypatch.undo()
        tr.resolve_tracking_uri()  # back to the session store


def test_concurrent_assembly_equals_sequential(design) -> None:
    client, result = design
    for r in tr.list_rows(client, result.design_id):
        run_id = tr.claim_row(client, r)
        tr.log_eval(client, run_id, 4, {"test_accuracy": 0.1 * (r.row + 1) % 1})
        tr.log_eval(client, run_id, 8, {"test_accuracy": 0.05 * r.row})
        tr.end_row(client, run_id)
    one = tr.assemble_table(client, [result.design_id], max_workers=1)
    many = tr.assemble_table(client, [result.design_id], max_workers=8)
    pd.testing.assert_frame_equal(one, many)
    assert len(one) == 16


@pytest.mark.parametrize(("dataset", "name"), [
    ("digits", "mixscale-digits"), ("fashion-mnist", "mixscale-fashion-mnist"),
    ("imagefolder:/data/my pets/", "mixscale-imagefolder-my-pets"),
])
def test_default_model_name_is_registry_safe(dataset: str, name: str) -> None:
    from mixscale.stages.fit import default_model_name

    assert default_model_name(dataset) == name


def test_eval_sender_stores_every_step_in_order_and_raises_at_flush(store) -> None:
    client = store.client
    run_id = client.create_run(store.new_experiment()).info.run_id
    with tr.EvalSender(client, run_id) as sender:
        for epoch in (3, 6, 9, 12):
            sender.log(epoch, {"test_accuracy": epoch / 100, "test_accuracy_0": 0.5})
        sender.flush()  # stored now, before the sender closes
        history = client.get_metric_history(run_id, "test_accuracy")
        assert [m.step for m in history] == [3, 6, 9, 12]
        assert [m.value for m in history] == [0.03, 0.06, 0.09, 0.12]
        assert float(client.get_run(run_id).data.tags[tr.HEARTBEAT]) > 0
    broken = tr.EvalSender(client, "0" * 32)  # no such run: the store refuses every request
    broken.log(1, {"test_accuracy": 0.1})
    with pytest.raises(Exception, match="0" * 32):
        broken.close()


def test_eval_sender_calls_run_behind_the_evaluations_one_at_a_time(store) -> None:
    import threading

    client = store.client
    run_id = client.create_run(store.new_experiment()).info.run_id
    seen, release = [], threading.Event()

    def first_call() -> None:  # e.g. a checkpoint upload: sees every evaluation before it
        seen.append([m.step for m in client.get_metric_history(run_id, "test_accuracy")])
        release.wait(timeout=60)

    with tr.EvalSender(client, run_id) as sender:
        sender.log(1, {"test_accuracy": 0.1})
        sender.log(2, {"test_accuracy": 0.2})
        sender.call(first_call)
        second = threading.Thread(target=sender.call, args=(lambda: seen.append("second"),))
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waits while the first call is in flight
        release.set()
        second.join(timeout=60)
        sender.flush()
    assert seen == [[1, 2], "second"]


def test_eval_sender_drops_the_rest_after_a_failure_and_stops_the_caller(store) -> None:
    client = store.client
    run_id = client.create_run(store.new_experiment()).info.run_id
    sender = tr.EvalSender(client, run_id)
    sender.log(1, {"test_accuracy": 0.1})
    sender.call(lambda: (_ for _ in ()).throw(MixscaleError("run taken over")))
    try:
        sender.log(2, {"test_accuracy": 0.2})  # queued before the failure is known: dropped
    except MixscaleError:
        pass  # or refused at once, when the failure was known already
    with pytest.raises(MixscaleError, match="run taken over"):
        sender.flush()
    with pytest.raises(MixscaleError, match="run taken over"):  # training stops here
        sender.log(3, {"test_accuracy": 0.3})
    with pytest.raises(MixscaleError, match="run taken over"):
        sender.close()
    assert [m.step for m in client.get_metric_history(run_id, "test_accuracy")] == [1]


def test_experiment_created_by_another_process_meanwhile_is_found(store, monkeypatch) -> None:
    client = store.client
    name = f"race-{store.new_experiment()}"
    winner = client.create_experiment(name)  # another worker created it ...
    real = client.get_experiment_by_name
    calls = []

    def stale_lookup(n: str):  # ... just after this worker looked and found nothing
        calls.append(n)
        return None if len(calls) == 1 else real(n)

    monkeypatch.setattr(client, "get_experiment_by_name", stale_lookup)
    assert tr.experiment_for(client, name) == winner
    assert calls == [name, name]


# ------------------------------------------------------------ claims are atomic across workers

def test_claim_lost_to_a_write_at_the_same_moment_leaves_the_row_alone(design) -> None:
    """Another worker wrote the claim link first but has not marked the run RUNNING yet."""
    client, result = design
    row = tr.list_rows(client, result.design_id)[0]
    client.log_param(*tr.claim_link(client.get_run(row.run_id)), "someone-else")
    with pytest.raises(tr.RowTaken, match="claimed by another worker at the same moment"):
        tr.claim_row(client, row)
    run = client.get_run(row.run_id)
    assert run.info.status == "SCHEDULED" and tr.CLAIM not in run.data.tags


def test_claim_reads_the_row_afresh(design) -> None:
    """A worker's list of rows is older than another worker's claim or takeover."""
    client, result = design
    listed = tr.list_rows(client, result.design_id)
    first = tr.claim_row(client, listed[0])  # another worker, after our list was made
    with pytest.raises(tr.RowTaken, match="is RUNNING, probably in another process"):
        tr.claim_row(client, listed[0])
    running = tr.list_rows(client, result.design_id)[0]
    assert running.claim == client.get_run(first).data.tags[tr.CLAIM]
    # Two workers judge the row dead from the same listing; the first takes it over ...
    new_id = tr.claim_row(client, running, takeover=True)
    # ... the second finds it restarted, not a second fresh run.
    with pytest.raises(tr.RowTaken, match=f"restarted meanwhile as run {new_id}"):
        tr.claim_row(client, running, takeover=True)
    # A takeover judged on a claim that has changed since (resumed elsewhere) is refused too.
    again = tr.list_rows(client, result.design_id)[0]
    client.set_tag(new_id, tr.CLAIM, "resumed-by-another-worker")
    with pytest.raises(tr.RowTaken, match="claimed by another worker since it was listed"):
        tr.claim_row(client, again, takeover=True)
    links = tr.claim_links(client, client.get_run(first))
    assert set(links) == {"first", running.claim}  # the chain of its two claims


@pytest.mark.parametrize("status", ["SCHEDULED", "FAILED"])
def test_racing_claims_have_exactly_one_winner(design, store, monkeypatch, status) -> None:
    """Eight workers (threads, each with its own client) claim one row at the same moment."""
    monkeypatch.setenv("MIXSCALE_TRACKING_BACKOFF", "0.05")
    client, result = design
    row = tr.list_rows(client, result.design_id)[1]
    if status == "FAILED":
        tr.end_row(client, tr.claim_row(client, row), error=RuntimeError("boom"))
        row = tr.list_rows(client, result.design_id)[1]
    assert row.status == status
    won, lost, errors = race_claims(store.uri, row)
    assert errors == [] and len(won) == 1 and len(lost) == 7, (won, lost, errors)
    current = tr.list_rows(client, result.design_id)[1]
    assert current.run_id == won[0] and current.status == "RUNNING"
    exp = client.get_run(result.design_id).info.experiment_id
    runs = client.search_runs([exp], f"tags.`{tr.DESIGN}` = '{result.design_id}' and "
                                     f"params.row = '1'")
    assert len(runs) == (1 if status == "SCHEDULED" else 2)  # one restart at most
