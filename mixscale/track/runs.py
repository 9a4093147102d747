"""Stage runs: finding the experiment, starting, logging to and ending runs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from mixscale.track.names import ERROR, HEARTBEAT, KIND, MAX_TAG, PARENT, ROW_CHECK
from mixscale.track.store import with_retries

__all__ = ["experiment_for", "start_stage_run", "stage_run", "end_run", "has_child_run",
                  "log_params", "log_metrics", "tag_row_check", "log_artifacts", "log_eval",
           "log_row_inputs",
           "dataset_race"]


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


@contextlib.contextmanager
def stage_run(client: MlflowClient, experiment_id: str, *, kind: str, name: str,
              tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
              run_id: str | None = None) -> Iterator[str]:
    """A stage run for the ``with`` block (:func:`start_stage_run`): the block gets its id.

    If the block raises, the run ends FAILED with the error (:func:`end_run`) and the error
    goes on; else it ends FINISHED, unless it was adopted (``run_id``): whoever made an
    adopted run (``mlflow run``) ends it.
    """
    stage_id = start_stage_run(client, experiment_id, kind=kind, name=name, tags=tags,
                               parent_run_id=parent_run_id, run_id=run_id)
    try:
        yield stage_id
    except BaseException as exc:
        end_run(client, stage_id, error=exc)
        raise
    if run_id is None:
        end_run(client, stage_id)


def end_run(client: MlflowClient, run_id: str, *, error: BaseException | None = None) -> None:
    """Mark a run FINISHED, or FAILED with the error as the ``mixscale.error`` tag."""
    if error is not None:
        client.set_tag(run_id, ERROR, f"{type(error).__name__}: {error}"[:MAX_TAG])
    client.set_terminated(run_id, "FAILED" if error is not None else "FINISHED")


def has_child_run(client: MlflowClient, run_id: str, experiment_id: str) -> bool:
    """Whether any run of the experiment, deleted ones included, is nested under ``run_id``."""
    return bool(client.search_runs([experiment_id], filter_string=f"tags.`{PARENT}` = '{run_id}'",
                                   run_view_type=ViewType.ALL, max_results=1))


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


def tag_row_check(client: MlflowClient, run_id: str, verdict: str) -> None:
    """Set a row run's :data:`~mixscale.track.names.ROW_CHECK` tag (``ok`` or what is wrong)."""
    client.set_tag(run_id, ROW_CHECK, verdict[:MAX_TAG])


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


def _labels_profile(labels: np.ndarray, class_keys: tuple[str, ...]) -> str:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_keys))
    return json.dumps({"num_rows": int(counts.sum()),
                       "counts": dict(zip(class_keys, counts.tolist(), strict=True))})


def log_row_inputs(client: MlflowClient, run_id: str, *, dataset: str, source: str,
                   digest: str, train_labels: np.ndarray, test_labels: np.ndarray,
                   class_keys: tuple[str, ...], eval_digest: str | None = None) -> None:
    """Log a row's training subset and its test images as the run's MLflow dataset inputs.

    The UI's Dataset column then shows ``<dataset>-train-subset`` (context ``training``, digest
    ``digest``: the row's ``subset_hash``) and ``<dataset>-test`` (context ``evaluation``, digest
    of the test labels); each profile holds the images per class and the total. The store keeps
    one input per (name, digest) and run, so logging the same inputs again adds none. A row
    scored on an ``--eval-images`` subset logs ``<dataset>-test-subset`` instead, with the
    subset's own digest (``eval_digest``) and its labels.

    Parameters
    ----------
    dataset : str
        The dataset's name (``digits``, ``imagefolder:...``).
    source : str
        Where the images come from (the data dir, or the dataset name), kept as the source.
    digest : str
        The training subset's hash (:func:`mixscale.data.subset_hash`).
    train_labels, test_labels : numpy.ndarray
        The labels of the subset's images and of the test images scored.
    class_keys : tuple of str
        The class keys, in label order (the profile's count keys).
    eval_digest : str, optional
        The ``--eval-images`` subset's hash (:func:`mixscale.data.subset_hash` of its indices);
        None = the whole test split was scored.
    """
    src = json.dumps({"dataset": dataset, "source": source})
    test_name = f"{dataset}-test" if eval_digest is None else f"{dataset}-test-subset"
    test_digest = eval_digest or hashlib.sha256(np.ascontiguousarray(
        np.asarray(test_labels, dtype=np.int64)).tobytes()).hexdigest()[:12]
    inputs = [
        DatasetInput(Dataset(f"{dataset}-train-subset", digest, "local", src,
                             profile=_labels_profile(train_labels, class_keys)),
                     tags=[InputTag("mlflow.data.context", "training")]),
        DatasetInput(Dataset(test_name, test_digest, "local", src,
                             profile=_labels_profile(test_labels, class_keys)),
                     tags=[InputTag("mlflow.data.context", "evaluation")]),
    ]
    for attempt in range(_DATASET_RACE_TRIES):
        try:
            with_retries(lambda: client.log_inputs(run_id, datasets=inputs),
                         what=f"logging the dataset inputs of run {run_id}")
            return
        except MlflowException as exc:
            if not dataset_race(exc) or attempt == _DATASET_RACE_TRIES - 1:
                raise


_DATASET_RACE_TRIES = 3


def dataset_race(exc: BaseException) -> bool:
    """Whether ``exc`` is the store's refusal of a dataset another worker inserted a moment
    earlier (same experiment, name and digest).

    MLflow's ``log_inputs`` looks a dataset up and inserts it when missing, in one transaction
    but without a lock, so two workers logging the same test split at once (every row of a
    design has it) collide on the ``datasets`` key: PostgreSQL's ``duplicate key value violates
    unique constraint "dataset_pk"``, SQLite's ``UNIQUE constraint failed: datasets...``. The
    failed transaction is rolled back, and a repeat finds the dataset and only links it.
    """
    text = str(exc)
    return ("dataset_pk" in text or "UNIQUE constraint failed: datasets" in text
            or ("duplicate key" in text and "datasets" in text))
