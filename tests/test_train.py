"""The training loop learns, reports through its callback, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from mixscale.config import TrainConfig
from mixscale.data import load_dataset, sample_subset
from mixscale.train import lr_at_epoch, train_model


@pytest.fixture(scope="module")
def subset():
    ds = load_dataset("digits")
    idx = sample_subset(ds.train_labels, np.full(10, 20), seed=3)
    return ds, idx


def _train(ds, idx, seed=1, callback=None, **overrides):
    config = TrainConfig(**{"epochs": 8, "eval_every": 3, "lr_milestones": (), "device": "cpu",
                            **overrides})
    return train_model(ds.train_images[idx], ds.train_labels[idx], ds.test_images,
                       ds.test_labels, config=config, class_keys=ds.class_keys, seed=seed,
                       callback=callback)


def test_learns_well_above_chance_and_reports_every_eval(subset) -> None:
    ds, idx = subset
    seen = []
    result = _train(ds, idx, callback=lambda epoch, m: seen.append((epoch, m)))
    assert [e for e, _ in seen] == [3, 6, 8]
    assert seen == result.history
    final = result.final
    assert final["test_accuracy"] > 0.6  # chance is 0.1
    assert set(final) >= {"train_loss", "train_accuracy", "test_loss", "test_accuracy",
                          *[f"test_accuracy_{k}" for k in ds.class_keys]}
    per_class = np.array([final[f"test_accuracy_{k}"] for k in ds.class_keys])
    weights = np.bincount(ds.test_labels) / len(ds.test_labels)
    assert final["test_accuracy"] == pytest.approx(float(per_class @ weights), abs=1e-6)
    assert result.images_per_second > 0


def test_same_seed_same_history(subset) -> None:
    ds, idx = subset
    a = _train(ds, idx, seed=5, epochs=3)
    b = _train(ds, idx, seed=5, epochs=3)
    c = _train(ds, idx, seed=6, epochs=3)
    assert a.history == b.history
    assert a.history != c.history


def test_single_leftover_image_does_not_break_batch_norm(subset) -> None:
    ds, idx = subset
    result = _train(ds, idx[:65], batch_size=32, epochs=2, eval_every=2)  # 65 = 2*32 + 1
    assert np.isfinite(result.final["train_loss"])


def test_step_schedule() -> None:
    kw = {"lr": 0.1, "milestones": (100, 150), "gamma": 0.1}
    assert lr_at_epoch(0, **kw) == pytest.approx(0.1)
    assert lr_at_epoch(100, **kw) == pytest.approx(0.01)
    assert lr_at_epoch(194, **kw) == pytest.approx(0.001)
