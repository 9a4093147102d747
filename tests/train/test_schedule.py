"""The default recipe's step floor and cosine schedule: a small subset gets the steps it needs,
the rate anneals to zero at the last step, and the paper's recipe is untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixscale.config import TrainConfig
from mixscale.data import load_dataset, sample_subset
from mixscale.errors import MixscaleError
from mixscale.train import batch_bounds, lr_at_step, row_steps, train_model
from mixscale.train.loop import epoch_batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cosine_starts_at_lr_and_ends_near_zero() -> None:
    total = 300
    rates = [lr_at_step(s, total, lr=0.05) for s in range(total)]
    assert rates[0] == pytest.approx(0.05)
    assert rates[-1] < 0.05 * 1e-4  # the last step is taken at a rate near zero
    assert rates[total // 2] == pytest.approx(0.025, rel=1e-2)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # never rises


@pytest.mark.parametrize(("n", "batch", "floor", "expected"), [
    (60, 32, 30, 30),  # 2 batches per pass: 30 from further passes
    (960, 32, 30, 30),  # exactly one pass
    (1600, 32, 30, 50),  # one pass is more than the floor
    (60, 32, 0, 2),  # no floor: one pass (the paper's recipe)
    (33, 32, 0, 1),  # a one-image last batch is folded in
])
def test_steps_per_epoch_is_one_pass_or_the_floor(n, batch, floor, expected) -> None:
    config = TrainConfig(epochs=10, batch_size=batch, min_steps_per_epoch=floor)
    assert row_steps(config, n) == (expected, 10 * expected)
    assert config.steps_per_epoch(len(batch_bounds(n, batch))) == expected


def test_extra_passes_draw_every_image_once_per_pass() -> None:
    gen = torch.Generator().manual_seed(0)
    order, bounds = epoch_batches(50, 16, 10, gen)
    assert len(bounds) == 10 and all(hi - lo == 16 for lo, hi in bounds)
    assert len(order) == 160
    for p in range(3):  # the first three full passes are permutations of the subset
        assert sorted(order[p * 50:(p + 1) * 50].tolist()) == list(range(50))
    one, one_bounds = epoch_batches(50, 16, 3, gen)  # one pass suffices: batch_bounds
    assert sorted(one.tolist()) == list(range(50)) and one_bounds == batch_bounds(50, 16)


def test_paper_recipe_keeps_its_step_schedule_and_one_pass() -> None:
    paper = TrainConfig.from_recipe("paper")
    assert paper.schedule == "step" and paper.min_steps_per_epoch == 0
    assert paper.lr_milestones == (100, 150)
    default = TrainConfig()
    assert default.schedule == "cosine" and default.min_steps_per_epoch == 30


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("schedule", "linear", "'cosine', 'step'"),
    ("min_steps_per_epoch", -1, "min_steps_per_epoch` must be in [0, 1000000]"),
])
def test_bad_schedule_settings_are_refused(field, value, allowed) -> None:
    with pytest.raises(MixscaleError, match=repr(value) if field == "schedule" else "-1") as exc:
        TrainConfig(**{field: value})
    assert allowed in str(exc.value)


@pytest.fixture(scope="module")
def small():
    ds = load_dataset("digits")
    return ds, sample_subset(ds.train_labels, np.full(10, 6), seed=3)


def test_a_small_subset_trains_the_floor_of_steps_and_learns(small) -> None:
    ds, idx = small  # 60 images: 2 batches per pass
    config = TrainConfig(epochs=6, eval_every=3, device="cpu", min_steps_per_epoch=20)
    result = train_model(ds.train_images[idx], ds.train_labels[idx], ds.test_images,
                         ds.test_labels, config=config, class_keys=ds.class_keys, seed=1,
                         mean=ds.mean, std=ds.std)
    assert result.train_images == 6 * 20 * 32  # 20 full batches per epoch
    bare = train_model(ds.train_images[idx], ds.train_labels[idx], ds.test_images,
                       ds.test_labels, config=TrainConfig(epochs=6, eval_every=3, device="cpu",
                                                          min_steps_per_epoch=0),
                       class_keys=ds.class_keys, seed=1, mean=ds.mean, std=ds.std)
    assert bare.train_images == 6 * 60
    # 12 steps leave the network near chance; 120 steps learn the 60 images
    assert result.final["test_accuracy"] > bare.final["test_accuracy"] + 0.2
    assert result.final["test_accuracy"] > 0.7


def test_intermediate_evaluations_score_the_subset_and_the_last_the_whole_split(small) -> None:
    ds, idx = small
    from mixscale.data import eval_subset
    from mixscale.train import SUBSET_ACCURACY

    sub = eval_subset(ds.test_labels, 100, n_classes=10)
    config = TrainConfig(epochs=4, eval_every=2, device="cpu", min_steps_per_epoch=10)
    result = train_model(ds.train_images[idx], ds.train_labels[idx], ds.test_images,
                         ds.test_labels, config=config, class_keys=ds.class_keys, seed=2,
                         mean=ds.mean, std=ds.std, eval_index=sub)
    (_, first), (_, last) = result.history
    assert SUBSET_ACCURACY not in first and SUBSET_ACCURACY in last
    assert result.eval_images == 100 + len(ds.test_labels)  # the last pass scores both
    # accuracies are counts over their own images: 100 for the subset, 450 for the split
    assert math.isclose(first["test_accuracy"] * 100, round(first["test_accuracy"] * 100),
                        abs_tol=1e-4)
    assert math.isclose(last[SUBSET_ACCURACY] * 100, round(last[SUBSET_ACCURACY] * 100),
                        abs_tol=1e-4)
    assert math.isclose(last["test_accuracy"] * 450, round(last["test_accuracy"] * 450),
                        abs_tol=1e-4)
