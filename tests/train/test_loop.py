"""The training loop learns, reports through its callbacks, augments whole batches correctly,
and is deterministic; recipes resolve with explicit options winning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixscale.config import TrainConfig
from mixscale.data import load_dataset, sample_subset
from mixscale.errors import MixscaleError
from mixscale.train import (
    lr_at_epoch,
    prepare_images,
    random_crop_flip,
    resolve_settings,
    train_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
                       callback=callback, mean=ds.mean, std=ds.std)


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
    assert result.settings.augment == "none" and result.settings.precision == "fp32"


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


def test_resnet18_with_crop_flip_on_colour_uint8_images() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8)
    y = np.arange(12) % 3
    config = TrainConfig(model="resnet18", epochs=2, eval_every=1, batch_size=6,
                         lr_milestones=(), device="cpu")
    epochs, evals = [], []
    result = train_model(x, y, x[:6], y[:6], config=config, class_keys=("a", "b", "c"),
                         seed=0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         callback=lambda e, m: evals.append(e), on_epoch=epochs.append)
    assert epochs == [1, 2] and evals == [1, 2]
    assert result.settings.augment == "crop-flip" and result.settings.stem == "cifar"
    assert all(np.isfinite(v) for v in result.final.values())


# --- batch augmentation and image preparation ------------------------------------------------

def test_random_crop_flip_takes_windows_of_the_padded_batch() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, (4, 4), generator=gen)
    assert out.shape == (2, 3, 4, 4)
    for b in range(2):
        windows = [x[b, :, i:i + 4, j:j + 4] for i in range(5) for j in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[b], w) for w in windows)
    again = random_crop_flip(x, (4, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_crop_flip_covers_every_offset_and_both_orientations() -> None:
    x = torch.zeros(4000, 1, 3, 3)
    x[:, 0, 0, 0] = 1.0  # top-left marker of the padded image
    x[:, 0, 0, 2] = 2.0  # top-right marker
    out = random_crop_flip(x, (2, 2), generator=torch.Generator().manual_seed(1))
    # offsets (0,0) and (0,1) bring a marker into the crop's top row; the flip mirrors it
    top = out[:, 0, 0]
    seen = {tuple(row.tolist()) for row in top}
    assert {(1.0, 0.0), (0.0, 1.0), (0.0, 2.0), (2.0, 0.0), (0.0, 0.0)} <= seen
    flipped_share = ((top[:, 0] == 2.0) | (top[:, 1] == 1.0)).float().mean()
    assert 0.1 < flipped_share < 0.4  # offset (0, 1) or (0, 0) happen 1/2 of rows x 1/2 flips


def test_random_crop_without_flip_or_padding_is_identity() -> None:
    x = torch.randn(5, 3, 6, 6)
    out = random_crop_flip(x, (6, 6), generator=torch.Generator(), flip=False)
    assert torch.equal(out, x)


def test_prepare_images_scales_pads_black_and_normalises() -> None:
    x = np.full((2, 3, 4, 4), 255, dtype=np.uint8)
    x.setflags(write=False)  # as ImageDataset holds them
    out = prepare_images(x, mean=(0.5, 0.5, 0.0), std=(0.5, 0.25, 1.0), pad=2)
    assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float32
    assert out[0, :, 4, 4].tolist() == [1.0, 2.0, 1.0]  # (1 - mean) / std
    assert out[0, :, 0, 0].tolist() == [-1.0, -2.0, 0.0]  # black padding: (0 - mean) / std
    np.testing.assert_array_equal(prepare_images(np.ones((1, 1, 2, 2), np.float32)).numpy(), 1)


@pytest.mark.parametrize(("model", "shape", "augment", "stem"),
                         [("smallcnn", (1, 8, 8), "none", "none"),
                          ("resnet18", (3, 32, 32), "crop-flip", "cifar"),
                          ("resnet18", (1, 28, 28), "none", "cifar"),
                          ("resnet18", (3, 128, 128), "crop-flip", "imagenet")])
def test_resolve_settings(model, shape, augment, stem) -> None:
    s = resolve_settings(TrainConfig(model=model, device="cpu"), image_shape=shape)
    assert (s.augment, s.stem, s.precision, s.device) == (augment, stem, "fp32", "cpu")
    assert not s.channels_last
    forced = resolve_settings(TrainConfig(augment="none", stem="imagenet", model=model,
                                          device="cpu"), image_shape=shape)
    assert forced.augment == "none" and forced.stem in ("imagenet", "none")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused() -> None:
    with pytest.raises(MixscaleError, match="device 'cuda' was asked for"):
        resolve_settings(TrainConfig(device="cuda"), image_shape=(1, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_mixed_precision_channels_last(precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    y = np.arange(64) % 4
    config = TrainConfig(model="resnet18", epochs=2, eval_every=2, batch_size=16,
                         lr_milestones=(), device="cuda", precision=precision)
    result = train_model(x, y, x, y, config=config, class_keys=tuple("abcd"), seed=0,
                         mean=(0.5,) * 3, std=(0.25,) * 3)
    assert result.settings.channels_last and result.settings.precision == precision
    assert np.isfinite(result.final["test_loss"])


# --- recipes --------------------------------------------------------------------------------

def test_paper_recipe_and_overrides() -> None:
    paper = TrainConfig.from_recipe("paper")
    assert (paper.model, paper.epochs, paper.eval_every, paper.lr, paper.momentum,
            paper.weight_decay, paper.lr_milestones, paper.lr_gamma, paper.augment) == (
        "resnet18", 195, 5, 0.1, 0.9, 1e-4, (100, 150), 0.1, "crop-flip")
    assert TrainConfig.from_recipe("default") == TrainConfig()
    assert TrainConfig.from_recipe("paper", lr=0.05).lr == 0.05
    with pytest.raises(MixscaleError, match=r"unknown recipe 'fast'; allowed: 'default'"):
        TrainConfig.from_recipe("fast")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], {"model": "smallcnn", "epochs": 30, "eval_every": 3, "lr": 0.05,
              "batch_size": 32, "schedule": "cosine", "min_steps_per_epoch": 30,
              "lr_milestones": (), "augment": "auto"}),
        (["--recipe", "paper"], {"model": "resnet18", "epochs": 195, "lr": 0.1,
                                 "schedule": "step", "min_steps_per_epoch": 0,
                                 "lr_milestones": (100, 150), "augment": "crop-flip"}),
        (["--schedule", "step", "--min-steps-per-epoch", "0", "--lr-milestones", "10"],
         {"schedule": "step", "min_steps_per_epoch": 0, "lr_milestones": (10,)}),
        (["--recipe", "paper", "--schedule", "cosine"], {"schedule": "cosine",
                                                         "min_steps_per_epoch": 0}),
        (["--recipe", "paper", "--epochs", "40", "--lr-milestones", "20,30", "--lr", "0.2",
          "--model", "recipe"], {"model": "resnet18", "epochs": 40, "eval_every": 5,
                                 "lr_milestones": (20, 30), "lr": 0.2}),
        # without --lr-milestones: the recipe's milestones past --epochs are dropped
        (["--epochs", "2"], {"lr_milestones": (), "eval_every": 2}),
        (["--recipe", "paper", "--epochs", "150"], {"lr_milestones": (100, 150),
                                                    "eval_every": 5}),
        (["--recipe", "paper", "--epochs", "120"], {"lr_milestones": (100,), "epochs": 120}),
        (["--lr-milestones", "", "--epochs", "25"], {"lr_milestones": ()}),
        (["--data-dir", "/d", "--download"], {"data_dir": "/d", "download": True}),
    ],
)
def test_cli_recipe_precedence(args: list[str], expected: dict) -> None:
    from mixscale.cli import cli
    from mixscale.cli.options import train_config_from as _train_config

    ctx = cli.commands["train"].make_context("train", ["--design-id", "x", *args])
    config = _train_config(ctx.params)
    assert {k: getattr(config, k) for k in expected} == expected


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "3", "--lr-milestones", "20"],
     r"--lr-milestones '20' must be epochs in 1\.\.3 \(--epochs 3\), but got 20"),
    (["--recipe", "paper", "--epochs", "120", "--lr-milestones", "100,150"],
     r"--lr-milestones '100,150' must be epochs in 1\.\.120 .* but got 150"),
    (["--lr-milestones", "0"], r"--lr-milestones '0' must be epochs in 1\.\.30"),
])
def test_cli_explicit_milestones_past_epochs_are_refused(args: list[str], message: str) -> None:
    from mixscale.cli import cli
    from mixscale.cli.options import train_config_from as _train_config

    ctx = cli.commands["train"].make_context("train", ["--design-id", "x", *args])
    with pytest.raises(MixscaleError, match=message):
        _train_config(ctx.params)
