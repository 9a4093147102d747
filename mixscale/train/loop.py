"""The training loop: pure torch, reads top to bottom, reports metrics through a callback.

Images are normalised (and zero-padded for the random crop) once, then held as tensors on the
training device when they fit (else in CPU memory, moved batch by batch). Each epoch is a seeded
permutation sliced into batches; augmentation works on whole batches (one ``gather`` for the
crops, the flip folded into its index with ``torch.where``), so the hot loop has no per-sample
Python work. Evaluation is batched under ``torch.no_grad()``. On CUDA the network runs
channels-last under mixed precision (bf16 autocast, or fp16 with a ``GradScaler``); on CPU in
fp32. With ``checkpoint_every`` the loop hands its whole state to a callback every few epochs,
and a later call continues from such a state (``resume``) exactly where it stopped: on CPU the
result is bit-for-bit that of an uninterrupted run (see :mod:`mixscale.train.state`). This
module never imports mlflow.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mixscale.config import TrainConfig
from mixscale.errors import MixscaleError
from mixscale.train.checks import SUBSET_ACCURACY
from mixscale.train.nets import build_model, resolve_stem
from mixscale.train.state import capture_state, restore_state

__all__ = ["TrainResult", "TrainSettings", "resolve_device", "resolve_settings", "lr_at_epoch",
           "lr_at_step", "row_steps", "batch_bounds", "prepare_images", "random_crop_flip",
           "evaluate", "train_model", "set_threads"]

MetricsCallback = Callable[[int, dict[str, float]], None]
EpochCallback = Callable[[int], None]
CheckpointCallback = Callable[[int, dict[str, Any]], None]
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainSettings:
    """What a config's ``auto`` choices resolve to for one dataset on this machine."""

    device: str  # "cpu" or "cuda"
    augment: str  # "none" or "crop-flip"
    stem: str  # resnet18's stem, "cifar" or "imagenet"; "none" for smallcnn
    precision: str  # "fp32", "bf16" or "fp16" (always fp32 on CPU)
    channels_last: bool  # memory format of images and network (CUDA only)

    def as_params(self) -> dict[str, str]:
        """The resolved choices as tracking params (``augment``, ``stem``, ...)."""
        return {"device": self.device, "augment": self.augment, "stem": self.stem,
                "precision": self.precision}


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    history: list[tuple[int, dict[str, float]]]  # (epoch, metrics) at each evaluation
    # wall time of the whole loop, evaluations included (a resumed run: the time up to its
    # checkpoint plus this call's)
    seconds: float
    images_per_second: float  # training images processed per second (evaluation excluded)
    settings: TrainSettings | None = None  # what the config's auto choices resolved to
    # Where this call's time went (a resumed run: after its checkpoint), plain perf_counter sums
    data_seconds: float = 0.0  # images normalised and moved to the device (run_row: + subset)
    train_seconds: float = 0.0  # the epochs' batches (forward, backward, step)
    eval_seconds: float = 0.0  # the evaluations on the test split
    tracking_seconds: float = 0.0  # tracking calls of the caller (run_row fills it in)
    train_images: int = 0  # training images processed (subset size x epochs trained)
    eval_images: int = 0  # test images evaluated (test-set size x evaluations)

    @property
    def final(self) -> dict[str, float]:
        """Metrics of the last evaluation."""
        return self.history[-1][1]

    def time_metrics(self) -> dict[str, float]:
        """``time_data_s``, ``time_train_s``, ``time_eval_s``, ``time_tracking_s``,
        ``train_images_per_s`` and ``eval_images_per_s``, as logged at the end of a row."""
        return {"time_data_s": self.data_seconds, "time_train_s": self.train_seconds,
                "time_eval_s": self.eval_seconds, "time_tracking_s": self.tracking_seconds,
                "train_images_per_s": self.train_images / max(self.train_seconds, 1e-9),
                "eval_images_per_s": self.eval_images / max(self.eval_seconds, 1e-9)}


def resolve_device(device: str) -> torch.device:
    """Turn ``auto|cpu|cuda`` into a :class:`torch.device` (auto = cuda when available)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise MixscaleError("device 'cuda' was asked for, but torch sees no CUDA device; "
                            "use --device auto or cpu.")
    return torch.device(device)


def resolve_settings(config: TrainConfig, *, image_shape: Sequence[int]) -> TrainSettings:
    """Resolve ``device``, ``augment``, ``stem`` and ``precision`` for images of ``(C, H, W)``.

    ``augment="auto"`` is crop-flip for colour (3-channel) images and none for grey ones;
    ``stem="auto"`` is the CIFAR stem for images up to 64 px; ``precision="auto"`` is bf16 on a
    GPU that supports it, else fp16; the CPU always trains in fp32.
    """
    device = resolve_device(config.device)
    channels, height, width = (int(s) for s in image_shape)
    augment = config.augment
    if augment == "auto":
        augment = "crop-flip" if channels == 3 else "none"
    precision = "fp32"
    if device.type == "cuda":
        precision = config.precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise MixscaleError("precision 'bf16' was asked for, but this GPU does not support "
                                "bfloat16; use --precision auto, fp16 or fp32.")
    stem = resolve_stem(config.stem, max(height, width)) if config.model == "resnet18" else "none"
    return TrainSettings(device=device.type, augment=augment, stem=stem,
                         precision=precision, channels_last=device.type == "cuda")


def lr_at_epoch(epoch: int, *, lr: float, milestones: Sequence[int], gamma: float) -> float:
    """Step schedule: ``lr * gamma ** (number of milestones <= epoch)`` (epoch is 0-based)."""
    return lr * gamma ** sum(1 for m in milestones if epoch >= m)


def lr_at_step(step: int, total: int, *, lr: float) -> float:
    """Cosine schedule: ``lr * (1 + cos(pi * step / total)) / 2`` (step is 0-based), from
    ``lr`` at the first step to 0 after the last (its last step has a rate near 0)."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def row_steps(config: TrainConfig, n_images: int) -> tuple[int, int]:
    """``(optimiser steps per epoch, steps in all)`` of a row of ``n_images`` images: one pass
    per epoch, or ``config.min_steps_per_epoch`` when one pass has fewer
    (:meth:`TrainConfig.steps_per_epoch`)."""
    per_epoch = config.steps_per_epoch(len(batch_bounds(n_images, config.batch_size)))
    return per_epoch, config.epochs * per_epoch


def epoch_batches(n: int, batch_size: int, steps: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """One epoch's image order and its batches' ``(start, stop)`` in it.

    With ``steps`` no more than one pass takes, one random permutation in
    :func:`batch_bounds`' batches; with more, ``steps`` batches of ``min(batch_size, n)`` from
    consecutive random permutations (an image recurs only in a later pass).
    """
    bounds = batch_bounds(n, batch_size)
    if steps <= len(bounds):
        return torch.randperm(n, generator=generator), bounds
    size = min(batch_size, n)
    passes = math.ceil(steps * size / n)
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])
    return order[:steps * size], [(i * size, (i + 1) * size) for i in range(steps)]


def prepare_images(images: np.ndarray, *, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, pad: int = 0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Float32 images on ``device``: scaled to 0..1 (uint8 / 255), zero-padded by ``pad``
    pixels (black, as torchvision's ``RandomCrop(padding=...)``), then normalised per channel.

    ``mean``/``std`` of None leave the 0..1 values as they are.
    """
    if not (images.flags.writeable and images.flags.c_contiguous):
        images = np.array(images, order="C")  # torch wants writable memory; copy read-only data
    x = torch.from_numpy(images).to(device)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if pad:
        x = nn.functional.pad(x, (pad, pad, pad, pad))
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / s
    return x


def random_crop_flip(x: torch.Tensor, size: tuple[int, int], *, generator: torch.Generator,
                     flip: bool = True) -> torch.Tensor:
    """Random ``size`` crops of a padded batch, each image flipped left-right with p = 1/2.

    One ``gather`` does every crop: per image a random row and column offset, the flip folded
    into the column index with ``torch.where`` on a random mask. ``generator`` must live on
    ``x``'s device.
    """
    b, c, hp, wp = x.shape
    h, w = size
    dev = x.device
    dy = torch.randint(0, hp - h + 1, (b, 1), device=dev, generator=generator)
    dx = torch.randint(0, wp - w + 1, (b, 1), device=dev, generator=generator)
    rows = dy + torch.arange(h, device=dev)  # (B, H)
    cols = dx + torch.arange(w, device=dev)  # (B, W)
    if flip:
        mirror = torch.rand((b, 1), device=dev, generator=generator) < 0.5
        cols = torch.where(mirror, cols.flip(1), cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, hp * wp).gather(2, index).view(b, c, h, w)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and precision in _AMP_DTYPES:
        return torch.autocast(device_type="cuda", dtype=_AMP_DTYPES[precision])
    return contextlib.nullcontext()


def _fits(device: torch.device, n_bytes: int) -> bool:
    """Whether ``n_bytes`` of images can live on ``device`` (CUDA: under half its free memory)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes < free // 2


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             n_classes: int, batch_size: int = 1024, precision: str = "fp32",
             channels_last: bool = False, subset: torch.Tensor | None = None
             ) -> tuple[float, float, np.ndarray, float]:
    """Loss, accuracy and per-class accuracy of ``model`` on a labelled set, in batches, and
    its accuracy on the positions ``subset`` of that set (one pass scores both).

    ``images`` are ready for the network (see :func:`prepare_images`); ``labels`` and
    ``subset`` on the same device as the model.

    Returns
    -------
    loss : float
        Mean cross-entropy.
    accuracy : float
        Share of correct predictions.
    per_class : ndarray, shape (n_classes,)
        Accuracy within each true class (nan for a class absent from ``labels``).
    subset_accuracy : float
        Share of correct predictions among the images at ``subset`` (nan without one).
    """
    model.eval()
    device = labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros(n_classes, device=device)
    hits = torch.zeros(len(labels), dtype=torch.bool, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device, non_blocking=True)
        y = labels[start:start + batch_size]
        with _autocast(device, precision):
            logits = model(x.contiguous(memory_format=fmt))
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        right = logits.argmax(1) == y
        hits[start:start + len(y)] = right
        correct += torch.bincount(y[right], minlength=n_classes)
    counts = torch.bincount(labels, minlength=n_classes)
    per_class = (correct / counts.clamp_min(1)).cpu().numpy()
    per_class[counts.cpu().numpy() == 0] = np.nan
    sub = float("nan") if subset is None else hits[subset].float().mean().item()
    return (loss_sum / len(images)).item(), (correct.sum() / len(images)).item(), per_class, sub


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of an epoch over ``n`` images.

    A last batch of one image would break batch norm: it is folded into the previous batch.
    """
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    return list(zip(starts, starts[1:] + [n], strict=True))


def train_model(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    config: TrainConfig,
    class_keys: Sequence[str],
    seed: int,
    callback: MetricsCallback | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    on_epoch: EpochCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    resume: dict[str, Any] | None = None,
    eval_index: np.ndarray | None = None,
) -> TrainResult:
    """Train a fresh network on one subset (or continue one) and evaluate it on the test split.

    Parameters
    ----------
    train_images, train_labels : ndarray
        The row's subset: (N, C, H, W) uint8 (0..255) or float (0..1, or already normalised
        when ``mean``/``std`` are None), and (N,) int64.
    test_images, test_labels : ndarray
        The dataset's test split, in the same form.
    config : TrainConfig
        The recipe (model, epochs, SGD settings, schedule, augmentation, evaluation cadence,
        device, precision).
    class_keys : sequence of str
        MLflow-safe class keys, used to name ``test_accuracy_<class>``.
    seed : int
        Seeds initialisation, batch order and augmentation.
    callback : callable, optional
        Called as ``callback(epoch, metrics)`` after each evaluation, with ``train_loss``,
        ``train_accuracy`` (running over that epoch, on augmented images), ``test_loss``,
        ``test_accuracy`` and ``test_accuracy_<class>`` for every class present in the test set.
    mean, std : sequence of float, optional
        Per-channel normalisation on the 0..1 scale (:attr:`ImageDataset.mean`/``std``).
    on_epoch : callable, optional
        Called as ``on_epoch(epoch)`` after every epoch (1-based), e.g. for a progress line.
    on_checkpoint : callable, optional
        Called as ``on_checkpoint(epoch, state)`` after every ``config.checkpoint_every``-th
        epoch but the last (after that epoch's ``callback``, if it is evaluated). ``state``
        holds CPU copies of everything the loop needs to go on (model, optimizer, GradScaler,
        the batch-order, augmentation and global generators, the history so far); it can be
        kept or saved with :func:`torch.save`.
    resume : dict, optional
        A ``state`` from ``on_checkpoint`` of a call with the same data, config and seed:
        training continues after its epoch. ``callback`` and ``on_epoch`` see the later epochs
        only; the result's history holds the earlier evaluations too. On CPU the result equals
        that of an uninterrupted run (with the same torch thread count).
    eval_index : ndarray of int, optional
        Positions in the test split that every evaluation but the last scores (a fixed subset,
        :func:`mixscale.data.eval_subset`); the last scores the whole split and also reports
        its accuracy on the subset as ``subset_test_accuracy``
        (:data:`mixscale.train.checks.SUBSET_ACCURACY`). None = every evaluation scores the
        whole split.

    Returns
    -------
    TrainResult

    Raises
    ------
    MixscaleError
        If ``resume`` comes from another device type or does not fit ``config.epochs``.
    """
    settings = resolve_settings(config, image_shape=train_images.shape[1:])
    device = torch.device(settings.device)
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)  # batch order, drawn on the CPU
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)  # crops and flips
    n_classes, n = len(class_keys), len(train_labels)
    crop = settings.augment == "crop-flip"
    pad = config.crop_padding if crop else 0
    size = (int(train_images.shape[2]), int(train_images.shape[3]))
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format

    # Images normalised once; kept on the device when they fit, else in CPU memory.
    t_data = time.perf_counter()
    c, h, w = train_images.shape[1:]
    n_bytes = 4 * c * ((h + 2 * pad) * (w + 2 * pad) * n + h * w * len(test_labels))
    store = device if _fits(device, n_bytes) else torch.device("cpu")
    x_train = prepare_images(train_images, mean=mean, std=std, pad=pad, device=store)
    x_test = prepare_images(test_images, mean=mean, std=std, device=store)
    y_train = torch.from_numpy(np.array(train_labels, dtype=np.int64)).to(device)
    y_test = torch.from_numpy(np.array(test_labels, dtype=np.int64)).to(device)
    partial = eval_index is not None and len(eval_index) < len(test_labels)
    sub = None
    if partial:
        sub = torch.from_numpy(np.asarray(eval_index, dtype=np.int64)).to(device)
        x_sub, y_sub = x_test[sub.to(x_test.device)], y_test[sub]
    else:
        x_sub, y_sub = x_test, y_test
    data_seconds = time.perf_counter() - t_data

    model = build_model(config.model, num_classes=n_classes, in_channels=int(c),
                        image_size=max(size), stem=settings.stem)
    model = model.to(device, memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.precision == "fp16")
    eval_epochs = set(config.eval_epochs())
    per_epoch, total_steps = row_steps(config, n)
    one_pass = per_epoch == len(batch_bounds(n, config.batch_size))
    epoch_images = n if one_pass else per_epoch * min(config.batch_size, n)
    cosine = config.schedule == "cosine"

    history: list[tuple[int, dict[str, float]]] = []
    first_epoch, seconds_before, train_seconds = 0, 0.0, 0.0
    train_before, eval_seconds, n_scored = 0.0, 0.0, 0
    loop: dict[str, Any] = {"device": device, "model": model, "optimizer": optimizer,
                            "scaler": scaler, "order_gen": order_gen, "aug_gen": aug_gen}
    if resume is not None:
        first_epoch = restore_state(resume, epochs=config.epochs, **loop)
        history = [(e, dict(m)) for e, m in resume["history"]]
        seconds_before, train_seconds = resume["seconds"], resume["train_seconds"]
        train_before = train_seconds
    every = config.checkpoint_every if on_checkpoint is not None else 0
    t_start = time.perf_counter()
    for epoch in range(first_epoch, config.epochs):
        if not cosine:
            for group in optimizer.param_groups:
                group["lr"] = lr_at_epoch(epoch, lr=config.lr, milestones=config.lr_milestones,
                                          gamma=config.lr_gamma)
        step = epoch * per_epoch
        t_epoch = time.perf_counter()
        model.train()
        # a small subset takes further passes within the epoch (config.min_steps_per_epoch)
        order, bounds = epoch_batches(n, config.batch_size, per_epoch, order_gen)
        order_store, order_dev = order.to(store), order.to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for lo, hi in bounds:
            if cosine:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at_step(step, total_steps, lr=config.lr)
            step += 1
            x = x_train[order_store[lo:hi]].to(device, non_blocking=True)
            y = y_train[order_dev[lo:hi]]
            if crop:
                x = random_crop_flip(x, size, generator=aug_gen)
            with _autocast(device, settings.precision):
                logits = model(x.contiguous(memory_format=fmt))
                loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().float() * (hi - lo)
            correct += (logits.argmax(1) == y).sum()
        seen = epoch_images  # images this epoch trained on (train_loss/accuracy average them)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - t_epoch
        if on_epoch is not None:
            on_epoch(epoch + 1)

        if epoch + 1 in eval_epochs:
            t_eval = time.perf_counter()
            last = epoch + 1 == config.epochs
            x_eval, y_eval = (x_test, y_test) if last else (x_sub, y_sub)
            # the last scores the whole split and, in the same pass, the subset the others
            # scored: the row's gain over its last third compares the same images
            test_loss, test_acc, per_class, sub_acc = evaluate(
                model, x_eval, y_eval, n_classes=n_classes, precision=settings.precision,
                channels_last=settings.channels_last, subset=sub if last and partial else None)
            metrics = {
                "train_loss": (loss_sum / seen).item(),
                "train_accuracy": (correct / seen).item(),
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
            n_scored += len(y_eval)
            if last and partial:
                metrics[SUBSET_ACCURACY] = sub_acc
            eval_seconds += time.perf_counter() - t_eval
            for key, acc in zip(class_keys, per_class, strict=True):
                if np.isfinite(acc):
                    metrics[f"test_accuracy_{key}"] = float(acc)
            history.append((epoch + 1, metrics))
            if callback is not None:
                callback(epoch + 1, metrics)
        if every and (epoch + 1) % every == 0 and epoch + 1 < config.epochs:
            on_checkpoint(epoch + 1, capture_state(
                epoch + 1, history=history, train_seconds=train_seconds,
                seconds=seconds_before + time.perf_counter() - t_start, **loop))
    seconds = seconds_before + time.perf_counter() - t_start
    return TrainResult(history=history, seconds=seconds,
                       images_per_second=epoch_images * config.epochs / max(train_seconds, 1e-9),
                       settings=settings, data_seconds=data_seconds,
                       train_seconds=train_seconds - train_before, eval_seconds=eval_seconds,
                       train_images=epoch_images * (config.epochs - first_epoch),
                       eval_images=n_scored)


def set_threads(n: int) -> None:
    """Let torch use ``n`` CPU threads (at least 1) in this process."""
    torch.set_num_threads(max(1, n))
