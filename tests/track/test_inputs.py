"""Dataset inputs: each row's training subset and the test split, as MLflow dataset inputs.

Real tiny digits rows on a real SQLite store; one row fails after its checkpoint and resumes in
its own run, which must not add a second copy of its inputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from mixscale import track as tr
from mixscale.config import DesignSpec, TrainConfig
from mixscale.data import load_dataset, sample_subset, subset_hash
from mixscale.stages import rows as wk
from mixscale.stages.design import prepare_design, run_design
from mixscale.train import resolve_settings

SPEC = DesignSpec(subset_sizes=(40,), rows_per_size=2, val_rows_per_size=0, iterations=50,
                  seed=3)
CONFIG = TrainConfig(epochs=2, eval_every=1, lr_milestones=(), batch_size=8, device="cpu",
                     checkpoint_every=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(client: MlflowClient, run_id: str) -> dict[str, list]:
    """The run's dataset inputs by their ``mlflow.data.context`` tag."""
    out: dict[str, list] = {}
    for di in client.get_run(run_id).inputs.dataset_inputs:
        context = {t.key: t.value for t in di.tags}["mlflow.data.context"]
        out.setdefault(context, []).append(di.dataset)
    return out


def _crash_at(epoch: int):
    def on_eval(e: int, _: dict) -> None:
        if e == epoch:
            raise RuntimeError(f"crash at epoch {e}")
    return on_eval


def test_rows_log_their_subset_and_the_test_split_once(store) -> None:
    client = store.client
    ds = load_dataset("digits")
    design_id = run_design(prepare_design(SPEC), client, store.new_experiment(),
                           echo=lambda _: None).design_id
    settings = resolve_settings(CONFIG, image_shape=ds.image_shape)
    params = wk.row_params(CONFIG, settings)
    first, second = tr.list_rows(client, design_id)

    # row 0 fails after its checkpoint at epoch 1, then resumes in the same run
    run_id = tr.claim_row(client, first, resume=True)
    with pytest.raises(RuntimeError, match="crash at epoch 2"):
        wk.run_row(client, first, run_id, dataset=ds, config=CONFIG, params=params,
                   on_eval=_crash_at(2))
    failed = tr.list_rows(client, design_id)[0]
    again = tr.claim_row(client, failed, resume=True,
                         recipe=wk.claim_recipe(CONFIG, settings))
    assert again == run_id  # resumed in its own run
    lines: list[str] = []
    wk.run_row(client, failed, again, dataset=ds, config=CONFIG, params=params,
               echo=lines.append)
    assert lines == [f"row 0: resuming run {run_id} from its checkpoint at epoch 1/2"]
    assert wk.train_rows(client, design_id, CONFIG, echo=lambda _: None) == 1  # row 1

    digests = []
    for row in (first, second):
        got = _inputs(client, row.run_id)
        assert sorted(got) == ["evaluation", "training"]
        assert len(got["training"]) == 1 and len(got["evaluation"]) == 1  # no duplicates
        train, test = got["training"][0], got["evaluation"][0]
        idx = sample_subset(ds.train_labels, row.counts, seed=row.seed)
        assert train.digest == subset_hash(idx)
        assert train.digest == client.get_run(row.run_id).data.params["subset_hash"]
        assert train.name == "digits-train-subset" and test.name == "digits-test"
        profile = json.loads(train.profile)
        assert profile["num_rows"] == row.subset_size == 40
        assert list(profile["counts"].values()) == row.counts.tolist()
        assert list(profile["counts"]) == list(ds.class_keys)
        assert json.loads(test.profile)["num_rows"] == len(ds.test_labels)
        digests.append((train.digest, test.digest))
    assert not np.array_equal(first.counts, second.counts)
    assert digests[0][0] != digests[1][0]  # different subsets, different digests
    assert digests[0][1] == digests[1][1]  # one test split

    # logging the same inputs again adds none: the store keeps one per (name, digest) and run
    row = second
    idx = sample_subset(ds.train_labels, row.counts, seed=row.seed)
    tr.log_row_inputs(client, row.run_id, dataset=ds.name, source=CONFIG.data_dir,
                      digest=subset_hash(idx), train_labels=ds.train_labels[idx],
                      test_labels=ds.test_labels, class_keys=ds.class_keys)
    assert len(client.get_run(row.run_id).inputs.dataset_inputs) == 2


class _RacingClient(MlflowClient):
    """The real client of a real store whose first ``log_inputs`` loses the race another worker
    won: the server's answer as CI saw it (PostgreSQL, two workers logging the test split)."""

    def __init__(self, uri: str, code: str, error: str) -> None:
        super().__init__(uri)
        self.code, self.error, self.calls = code, error, 0

    def log_inputs(self, run_id, datasets=None, models=None):  # noqa: ANN001 - MLflow's own
        self.calls += 1
        if self.calls == 1:  # what the REST store raises for the server's JSON answer
            raise RestException({"error_code": self.code, "message": self.error})
        return super().log_inputs(run_id, datasets=datasets, models=models)


RACE = ('(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
        '"dataset_pk" DETAIL: Key (experiment_id, name, digest)=(2, digits-test, 298691e25877) '
        'already exists.')


def test_a_dataset_another_worker_just_inserted_is_logged_on_a_repeat(store) -> None:
    """Two workers logging the same test split at once collide on the store's datasets key
    (MLflow looks the dataset up and inserts it without a lock); the loser repeats and links
    it. Any other refusal is raised at once."""
    ds = load_dataset("digits")
    exp = store.new_experiment()
    run_id = store.client.create_run(exp).info.run_id
    kw = dict(dataset=ds.name, source="data", digest="abc", train_labels=ds.train_labels[:20],
              test_labels=ds.test_labels, class_keys=ds.class_keys)
    racing = _RacingClient(store.uri, "BAD_REQUEST", RACE)
    tr.log_row_inputs(racing, run_id, **kw)
    assert racing.calls == 2 and sorted(_inputs(store.client, run_id)) == ["evaluation",
                                                                            "training"]
    assert tr.dataset_race(MlflowException("UNIQUE constraint failed: datasets.experiment_id, "
                                           "datasets.name, datasets.digest"))
    other = _RacingClient(store.uri, "INVALID_PARAMETER_VALUE", "bad dataset name")
    other_run = store.client.create_run(exp).info.run_id
    with pytest.raises(MlflowException, match="bad dataset name"):
        tr.log_row_inputs(other, other_run, **kw)
    assert other.calls == 1 and not store.client.get_run(other_run).inputs.dataset_inputs
