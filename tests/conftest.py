"""Shared fixtures: a real SQLite tracking store and one tiny end-to-end pipeline run.

The store is created once per session (one process) before anything else touches it; each test
works in its own experiment. ``pipeline`` runs the real ``mixscale main`` command with tiny
settings (real design, real torch training, real fit and registry) and is shared by the
end-to-end, tracking and serving tests.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

TINY_MAIN = [
    "--subset-sizes", "40,80,160", "--rows-per-size", "4", "--val-rows-per-size", "2",
    "--iterations", "200", "--epochs", "12", "--eval-every", "3", "--lr-milestones", "",
    "--min-epoch", "6", "--n-starts", "3", "--n-boot", "20", "--seed", "1",
]


@dataclass(frozen=True)
class Store:
    uri: str
    root: Path
    client: MlflowClient

    def new_experiment(self) -> str:
        return self.client.create_experiment(f"test-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        # MLflow puts a SQLite store's artifacts in ./mlruns of the working directory at the
        # time an experiment is created: keep them in the store's folder, not the checkout
        mp.chdir(root)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        client.search_experiments()  # create the schema once, from this one process
        yield Store(uri=uri, root=root, client=client)


@dataclass(frozen=True)
class PipelineRun:
    output: str
    experiment_id: str
    design_id: str
    fit_run_id: str
    model_name: str


@pytest.fixture(scope="session")
def pipeline(store: Store) -> PipelineRun:
    experiment = "e2e-main"
    result = CliRunner().invoke(
        __import__("mixscale.cli", fromlist=["cli"]).cli,
        ["main", "--tracking-uri", store.uri, "--experiment", experiment,
         "--model-name", "mixscale-e2e", *TINY_MAIN],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = result.output
    exp = store.client.get_experiment_by_name(experiment)
    design_id = re.search(r"design run:\s+(\w+)", out).group(1)
    fit_id = re.search(r"fit run:\s+(\w+)", out).group(1)
    assert os.environ["MLFLOW_TRACKING_URI"] == store.uri
    return PipelineRun(output=out, experiment_id=exp.experiment_id, design_id=design_id,
                       fit_run_id=fit_id, model_name="mixscale-e2e")


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster on a free loopback port (see tests/postgres.py)."""
    import shutil

    from tests.support.postgres import start_cluster

    cluster = start_cluster()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module: tiny networks gain nothing from more on a shared
    2-core machine, and float sums run in one fixed order, so a reference run in this process
    equals rows trained in subprocesses (started with OMP_NUM_THREADS=1) bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
