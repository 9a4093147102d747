"""Checkpoints: a row resumes bit-for-bit from its last checkpoint, in its own run.

Unit tests of the loop (``train_model(on_checkpoint=..., resume=...)``), rows failed in-process
and resumed through ``train_rows`` (local and Ray), the fallbacks to a fresh run, and a real
``mixscale train`` killed with SIGKILL and run again. All training is real torch on digits;
every store is a real MLflow SQLite store.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from mixscale import track as tr
from mixscale.cli import cli
from mixscale.config import DesignSpec, TrainConfig
from mixscale.data import load_dataset, sample_subset
from mixscale.errors import MixscaleError
from mixscale.stages import checkpoints as ck
from mixscale.stages import rows as wk
from mixscale.stages.design import prepare_design, run_design
from mixscale.stages.rows import train_rows
from mixscale.stages.verify import recipe_from_params, verify_config
from mixscale.train import resolve_settings, train_model

MIXSCALE = str(Path(sys.executable).parent / "mixscale")
SPEC = DesignSpec(subset_sizes=(40,), rows_per_size=2, val_rows_per_size=0, iterations=50,
                  seed=3)
CONFIG = TrainConfig(epochs=6, eval_every=1, lr_milestones=(3,), batch_size=8, device="cpu",
                     checkpoint_every=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _reference(ds, counts: np.ndarray, seed: int, config: TrainConfig, **kw):
    """An uninterrupted training of one row's counts and seed."""
    idx = sample_subset(ds.train_labels, counts, seed=seed)
    return train_model(ds.train_images[idx], ds.train_labels[idx], ds.test_images,
                       ds.test_labels, config=config, class_keys=ds.class_keys, seed=seed,
                       mean=ds.mean, std=ds.std, **kw)


def _roundtrip(state: dict) -> dict:
    """``state`` through torch.save / torch.load(weights_only=True), as the store keeps it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _history(client: MlflowClient, run_id: str, key: str = "test_accuracy") -> list:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


# --------------------------------------------------------------------------- config and CLI

@pytest.mark.parametrize("value", [-1, 7, 1.5, True])
def test_checkpoint_every_must_be_between_0_and_epochs(value) -> None:
    with pytest.raises(MixscaleError, match=r"`checkpoint_every` \(epochs between "
                                            r"checkpoints; 0 = off\) must be an integer in "
                                            r"\[0, epochs=6\], but got checkpoint_every="):
        TrainConfig(epochs=6, lr_milestones=(), checkpoint_every=value)
    assert TrainConfig(epochs=6, lr_milestones=(), checkpoint_every=6).checkpoint_every == 6
    assert TrainConfig().checkpoint_every == 0


@pytest.mark.parametrize("command", [["train", "--design-id", "x"], ["train-row", "--run-id", "x"],
                                     ["main"]])
@pytest.mark.parametrize(("value", "shown"), [("-1", "checkpoint_every=-1"),
                                              ("5", "epochs=4], but got checkpoint_every=5")])
def test_cli_refuses_bad_checkpoint_every_before_logging(tmp_path, monkeypatch, command, value,
                                                         shown) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(cli, [*command, "--epochs", "4", "--lr-milestones", "",
                                      "--checkpoint-every", value])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and shown in errors[0], result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no store, no mlruns: nothing was logged


def test_verification_recipe_never_carries_checkpoint_every() -> None:
    params = {"model": "smallcnn", "epochs": "12", "eval_every": "3", "lr": "0.05",
              "lr_milestones": "8", "device": "cpu", "augment": "none", "stem": "none",
              "precision": "fp32", "data_dir": "data", "hparams_from": ""}
    before = recipe_from_params(params)  # a row logged before checkpoint_every existed
    after = recipe_from_params({**params, "checkpoint_every": "12"})
    assert before == after and after.checkpoint_every == 0
    assert verify_config(after, 4).epochs == 4  # 12 > 4 epochs would be refused if kept


# ------------------------------------------------------------------------------ the loop

@pytest.mark.parametrize("augment", ["none", "crop-flip"])
def test_resume_continues_bit_for_bit(digits, augment) -> None:
    config = TrainConfig(epochs=6, eval_every=1, lr_milestones=(3,), batch_size=16,
                         device="cpu", augment=augment, crop_padding=1, checkpoint_every=2)
    counts = np.full(10, 15)
    plain = _reference(digits, counts, 7, config)
    events, states = [], {}

    def keep(epoch: int, state: dict) -> None:
        events.append(("checkpoint", epoch))
        states[epoch] = _roundtrip(state)

    saving = _reference(digits, counts, 7, config, on_checkpoint=keep,
                        callback=lambda e, _: events.append(("eval", e)))
    assert saving.history == plain.history  # checkpointing changes nothing
    # after epochs 2 and 4, each after its evaluation; never after the last epoch (6)
    assert events == [("eval", 1), ("eval", 2), ("checkpoint", 2), ("eval", 3), ("eval", 4),
                      ("checkpoint", 4), ("eval", 5), ("eval", 6)]
    assert states[2]["epoch"] == 2 and states[2]["device"] == "cpu"
    for epoch, state in states.items():
        seen = []
        resumed = _reference(digits, counts, 7, config, resume=state,
                             callback=lambda e, m, seen=seen: seen.append((e, m)))
        assert seen == plain.history[epoch:]  # exactly the later evaluations, equal
        assert resumed.history == plain.history
        assert resumed.final == plain.final
        assert resumed.seconds > state["seconds"] and resumed.images_per_second > 0


def test_resume_refuses_a_state_that_does_not_fit(digits) -> None:
    states = {}
    _reference(digits, np.full(10, 4), 1, CONFIG,
               on_checkpoint=lambda e, s: states.setdefault(e, s))
    with pytest.raises(MixscaleError, match=r"checkpoint epoch 4 does not fit a training of 4 "
                                            r"epochs; allowed: 1..3"):
        _reference(digits, np.full(10, 4), 1,
                   TrainConfig(epochs=4, eval_every=1, lr_milestones=(), device="cpu"),
                   resume=states[4])
    with pytest.raises(MixscaleError, match="made on device 'cuda', but this training runs on "
                                            "'cpu'"):
        _reference(digits, np.full(10, 4), 1, CONFIG, resume={**states[2], "device": "cuda"})


# ------------------------------------------------------------------ rows in a real store

def _fail_at(epoch: int):
    def on_eval(e: int, _: dict) -> None:
        if e == epoch:
            raise RuntimeError(f"crash at epoch {e}")
    return on_eval


def _failed_rows(client: MlflowClient, experiment_id: str, ds, config: TrainConfig = CONFIG,
                 fail_at: int = 5) -> tuple[str, list[tr.RowSpec]]:
    """A design whose rows all FAILED at ``fail_at``, after the checkpoint before it."""
    design_id = run_design(prepare_design(SPEC), client, experiment_id,
                           echo=lambda _: None).design_id
    config = wk.resolve_eval(config, ds)  # as train_rows logs it: the images each eval scores
    params = wk.row_params(config, resolve_settings(config, image_shape=ds.image_shape))
    for row in tr.list_rows(client, design_id):
        run_id = tr.claim_row(client, row, resume=True)
        with pytest.raises(RuntimeError, match="crash at epoch"):
            wk.run_row(client, row, run_id, dataset=ds, config=config, params=params,
                       on_eval=_fail_at(fail_at))
    rows = tr.list_rows(client, design_id)
    assert [r.status for r in rows] == ["FAILED", "FAILED"]
    for r in rows:
        run = client.get_run(r.run_id)
        assert ck.checkpoint_info(run).epoch == 4
        # the crash came after evaluation 5 was sent: it is stored, past the checkpoint
        assert [s for s, _ in _history(client, r.run_id)] == [1, 2, 3, 4, 5]
    return design_id, rows


def test_failed_row_resumes_in_its_own_run(store, digits) -> None:
    client = store.client
    design_id, failed = _failed_rows(client, store.new_experiment(), digits)
    row = failed[0]
    run_id = tr.claim_row(client, row, resume=True,
                          recipe=wk.claim_recipe(wk.resolve_eval(CONFIG, digits), resolve_settings(
                              CONFIG, image_shape=digits.image_shape)))
    assert run_id == row.run_id  # the same run, not a superseding one
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and tr.ERROR not in run.data.tags
    assert run.data.tags[tr.RESUMED_FROM] == "4"
    # A worker whose claim is older (presumed dead, alive after all) can neither store a
    # checkpoint nor end the run it lost.
    with pytest.raises(MixscaleError, match=f"run {run_id} was taken over by another worker"):
        ck.save_checkpoint(client, run_id, {"epoch": 5}, claim="an-older-claim")
    assert tr.end_row(client, run_id, claim="an-older-claim") is False
    assert client.get_run(run_id).info.status == "RUNNING"

    lines = []
    assert train_rows(client, design_id, CONFIG, echo=lines.append) == 1  # the other row
    resolved = wk.resolve_eval(CONFIG, digits)
    params = wk.row_params(resolved, resolve_settings(CONFIG, image_shape=digits.image_shape))
    wk.run_row(client, row, run_id, dataset=digits, config=CONFIG, params=params,
               echo=lines.append)
    assert any(f"row 1: resuming run {failed[1].run_id} from its checkpoint at epoch 4/6" in s
               for s in lines), lines
    assert f"row 0: resuming run {run_id} from its checkpoint at epoch 4/6" in lines

    rows = tr.list_rows(client, design_id)
    assert [(r.run_id, r.status) for r in rows] == [(r.run_id, "FINISHED") for r in failed]
    for r in rows:
        run = client.get_run(r.run_id)
        assert tr.SUPERSEDED_BY not in run.data.tags and tr.RESTART_OF not in run.data.tags
        assert tr.CHECKPOINT not in run.data.tags  # a finished row drops its checkpoint
        assert client.list_artifacts(r.run_id, ck.CHECKPOINT_DIR) == []
        reference = _reference(digits, r.counts, r.seed, CONFIG)
        for key in ("test_accuracy", "train_loss", f"test_accuracy_{digits.class_keys[3]}"):
            # steps 1..6 once each; 5 was stored by the failed attempt and not logged again
            assert _history(client, r.run_id, key) == [(e, m[key])
                                                       for e, m in reference.history]


def test_restart_supersedes_without_checkpoints_or_with_another_recipe(store, digits) -> None:
    client = store.client
    design_id, failed = _failed_rows(client, store.new_experiment(), digits)
    off = TrainConfig(**{**vars(CONFIG), "checkpoint_every": 0})
    assert train_rows(client, design_id, off, run_ids=[failed[0].run_id],
                      echo=lambda _: None) == 1
    other = TrainConfig(**{**vars(CONFIG), "lr": 0.04})
    assert train_rows(client, design_id, other, run_ids=[failed[1].run_id],
                      echo=lambda _: None) == 1
    rows = tr.list_rows(client, design_id)
    assert [r.status for r in rows] == ["FINISHED", "FINISHED"]
    for new, old, config in zip(rows, failed, (off, other), strict=True):
        assert new.run_id != old.run_id
        tags = client.get_run(new.run_id).data.tags
        assert tags[tr.RESTART_OF] == old.run_id
        assert tr.RESUMED_FROM not in tags and tr.CHECKPOINT not in tags
        assert client.get_run(old.run_id).data.tags[tr.SUPERSEDED_BY] == new.run_id
        reference = _reference(digits, new.counts, new.seed, config)
        assert _history(client, new.run_id) == [(e, m["test_accuracy"])
                                                for e, m in reference.history]
    skipped = client.get_run(failed[1].run_id).data.tags[tr.RESUME_SKIPPED]
    assert "the checkpoint at epoch 4 was not used: the recipe changed (lr: 0.05 -> 0.04)" \
        in skipped
    assert tr.RESUME_SKIPPED not in client.get_run(failed[0].run_id).data.tags


def test_a_checkpoint_cut_short_is_not_resumed(store, digits, tmp_path) -> None:
    client = store.client
    design_id, failed = _failed_rows(client, store.new_experiment(), digits)
    run_id = failed[0].run_id
    torn = tmp_path / "state.pt"  # what a crash in the middle of an upload leaves
    torn.write_bytes(b"PK\x03\x04 half a zip")
    client.log_artifact(run_id, str(torn), ck.CHECKPOINT_DIR)
    epoch, why = ck.resumable_epoch(client, client.get_run(run_id))
    assert epoch is None and "(an upload cut short)" in why
    assert ck.resumable_epoch(client, client.get_run(failed[1].run_id)) == (4, "")
    new_id = tr.claim_row(client, failed[0], resume=True)
    assert new_id != run_id
    assert client.get_run(new_id).data.tags[tr.RESTART_OF] == run_id
    assert "upload cut short" in client.get_run(run_id).data.tags[tr.RESUME_SKIPPED]


@pytest.mark.slow
def test_ray_task_resumes_a_failed_row(digits, tmp_path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mixscale[ray]')")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("ray-resume",
                                             artifact_location=(tmp_path / "a").as_uri())
    design_id, failed = _failed_rows(client, experiment_id, digits)
    done = train_rows(client, design_id, CONFIG, executor="ray", ray_cpus=1, tracking_uri=uri,
                      echo=lambda _: None)
    assert done == 2
    rows = tr.list_rows(client, design_id)
    assert [(r.run_id, r.status) for r in rows] == [(r.run_id, "FINISHED") for r in failed]
    for r in rows:
        assert client.get_run(r.run_id).data.tags[tr.RESUMED_FROM] == "4"
        reference = _reference(digits, r.counts, r.seed, CONFIG)
        assert _history(client, r.run_id) == [(e, m["test_accuracy"])
                                              for e, m in reference.history]


# ------------------------------------------------------------ `mixscale train`, SIGKILLed

KILL_SPEC = DesignSpec(subset_sizes=(300,), rows_per_size=2, val_rows_per_size=0,
                       iterations=50, seed=5)
KILL_CONFIG = TrainConfig(epochs=10, eval_every=1, lr_milestones=(), device="cpu",
                          checkpoint_every=2)
KILL_ARGS = ["--device", "cpu", "--epochs", "10", "--eval-every", "1", "--lr-milestones", "",
             "--checkpoint-every", "2", "--workers", "1", "--eval-early"]


def _checkpointed_past(client: MlflowClient, design_id: str) -> tr.RowSpec | None:
    """A RUNNING row with a checkpoint and an evaluation stored after it, if any."""
    for r in tr.list_rows(client, design_id):
        if r.status != "RUNNING":
            continue
        info = ck.checkpoint_info(client.get_run(r.run_id))
        steps = [m.step for m in client.get_metric_history(r.run_id, "test_accuracy")]
        if info is not None and steps and max(steps) > info.epoch:
            return r
    return None


@pytest.mark.slow
def test_killed_train_resumes_from_checkpoint_in_the_same_run(tmp_path, digits) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(f"kill-{uuid.uuid4().hex[:6]}",
                                             artifact_location=(tmp_path / "a").as_uri())
    design_id = run_design(prepare_design(KILL_SPEC), client, experiment_id,
                           echo=lambda _: None).design_id
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    args = [MIXSCALE, "train", "--design-id", design_id, "--tracking-uri", uri, *KILL_ARGS]
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline, victim = time.monotonic() + 180, None
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            victim = _checkpointed_past(client, design_id)
            time.sleep(0.02)
        assert victim is not None, f"no row was caught mid-training:\n{log.read_text()[-3000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert client.get_run(victim.run_id).info.status == "RUNNING"  # left behind by the kill
    before = [m.step for m in client.get_metric_history(victim.run_id, "test_accuracy")]
    epoch = ck.checkpoint_info(client.get_run(victim.run_id)).epoch
    # Usually an evaluation after the checkpoint is stored (caught that way), so the rerun
    # recomputes stored evaluations and none may repeat; a busy machine may let one more
    # checkpoint land before the kill (test_failed_row_resumes_in_its_own_run covers that
    # path deterministically).
    assert max(before) >= epoch

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (f"row {victim.row}: resuming run {victim.run_id} from its checkpoint at epoch "
            f"{epoch}/10") in rerun.stdout

    runs = client.search_runs([experiment_id], f"tags.`{tr.KIND}` = 'row'")
    assert sorted(int(r.data.params["row"]) for r in runs) == [0, 1]  # no superseding run
    assert {r.info.status for r in runs} == {"FINISHED"}  # exactly one FINISHED run per row
    run = client.get_run(victim.run_id)
    assert tr.SUPERSEDED_BY not in run.data.tags and tr.RESTART_OF not in run.data.tags
    assert run.data.tags[tr.RESUMED_FROM] == str(epoch)
    steps = [m.step for m in client.get_metric_history(victim.run_id, "test_accuracy")]
    assert steps == list(range(1, 11))  # strictly increasing, no duplicate, ends at the last
    reference = _reference(digits, victim.counts, victim.seed, KILL_CONFIG)
    assert _history(client, victim.run_id) == [(e, m["test_accuracy"])
                                               for e, m in reference.history]
    assert run.data.metrics["test_accuracy"] == reference.final["test_accuracy"]


@pytest.mark.slow
def test_resume_through_a_tracking_server(postgres, tmp_path, digits) -> None:
    """Checkpoints travel as artifacts of a real `mlflow server` (proxied artifact store)."""
    from tests.support.mlflowserver import MlflowServer

    server = MlflowServer(postgres.create_database(f"ckpt_{uuid.uuid4().hex[:8]}"),
                          tmp_path / "artifacts", tmp_path / "server.log")
    server.start()
    try:
        client = MlflowClient(server.url)
        design_id, failed = _failed_rows(client, client.create_experiment("ckpt"), digits)
        assert client.get_run(failed[0].run_id).info.artifact_uri.startswith("mlflow-artifacts:")
        assert train_rows(client, design_id, CONFIG, echo=lambda _: None) == 2
        rows = tr.list_rows(client, design_id)
        assert [(r.run_id, r.status) for r in rows] == [(r.run_id, "FINISHED") for r in failed]
        for r in rows:
            assert client.get_run(r.run_id).data.tags[tr.RESUMED_FROM] == "4"
            assert client.list_artifacts(r.run_id, ck.CHECKPOINT_DIR) == []  # discarded
            reference = _reference(digits, r.counts, r.seed, CONFIG)
            assert _history(client, r.run_id) == [(e, m["test_accuracy"])
                                                  for e, m in reference.history]
    finally:
        server.stop()
