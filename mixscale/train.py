"""The training loop: pure torch, reads top to bottom, reports metrics through a callback.

Data stay as tensors on the training device; each epoch is a seeded permutation sliced into
batches, so the hot loop has no per-sample Python work. This module never imports mlflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mixscale.config import TrainConfig
from mixscale.models import build_model

__all__ = ["TrainResult", "resolve_device", "lr_at_epoch", "evaluate", "train_model"]

MetricsCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    history: list[tuple[int, dict[str, float]]]  # (epoch, metrics) at each evaluation
    seconds: float  # wall time of the whole loop, evaluations included
    images_per_second: float  # training images processed per second (evaluation excluded)

    @property
    def final(self) -> dict[str, float]:
        """Metrics of the last evaluation."""
        return self.history[-1][1]


def resolve_device(device: str) -> torch.device:
    """Turn ``auto|cpu|cuda`` into a :class:`torch.device` (auto = cuda when available)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from mixscale.errors import MixscaleError

        raise MixscaleError("device 'cuda' was asked for, but torch sees no CUDA device.")
    return torch.device(device)


def lr_at_epoch(epoch: int, *, lr: float, milestones: Sequence[int], gamma: float) -> float:
    """Step schedule: ``lr * gamma ** (number of milestones <= epoch)`` (epoch is 0-based)."""
    return lr * gamma ** sum(1 for m in milestones if epoch >= m)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             n_classes: int, batch_size: int = 1024) -> tuple[float, float, np.ndarray]:
    """Loss, accuracy and per-class accuracy of ``model`` on a labelled set.

    Returns
    -------
    loss : float
        Mean cross-entropy.
    accuracy : float
        Share of correct predictions.
    per_class : ndarray, shape (n_classes,)
        Accuracy within each true class (nan for a class absent from ``labels``).
    """
    model.eval()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros(n_classes, device=images.device)
    for start in range(0, len(images), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
        correct += torch.bincount(y[logits.argmax(1) == y], minlength=n_classes)
    totals = torch.bincount(labels, minlength=n_classes).clamp_min(1)
    per_class = (correct / totals).cpu().numpy()
    per_class[torch.bincount(labels, minlength=n_classes).cpu().numpy() == 0] = np.nan
    return (loss_sum / len(images)).item(), (correct.sum() / len(images)).item(), per_class


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
) -> TrainResult:
    """Train a fresh network on one subset and evaluate it on the test split.

    Parameters
    ----------
    train_images, train_labels : ndarray
        The row's subset, (N, C, H, W) float32 and (N,) int64.
    test_images, test_labels : ndarray
        The dataset's test split.
    config : TrainConfig
        The recipe (model, epochs, SGD settings, schedule, evaluation cadence, device).
    class_keys : sequence of str
        MLflow-safe class keys, used to name ``test_accuracy_<class>``.
    seed : int
        Seeds initialisation and batch order.
    callback : callable, optional
        Called as ``callback(epoch, metrics)`` after each evaluation, with ``train_loss``,
        ``train_accuracy`` (running over that epoch), ``test_loss``, ``test_accuracy`` and
        ``test_accuracy_<class>`` for every class.

    Returns
    -------
    TrainResult
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = resolve_device(config.device)
    n_classes = len(class_keys)
    x_train = torch.as_tensor(train_images, device=device)
    y_train = torch.as_tensor(train_labels, device=device)
    x_test = torch.as_tensor(test_images, device=device)
    y_test = torch.as_tensor(test_labels, device=device)
    model = build_model(config.model, num_classes=n_classes,
                        in_channels=x_train.shape[1]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    eval_epochs = set(config.eval_epochs())
    n = len(x_train)
    # A last batch of one image would break batch norm: fold it into the previous batch.
    starts = list(range(0, n, config.batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    bounds = list(zip(starts, starts[1:] + [n], strict=True))

    history: list[tuple[int, dict[str, float]]] = []
    train_seconds = 0.0
    t_start = time.perf_counter()
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at_epoch(epoch, lr=config.lr, milestones=config.lr_milestones,
                                      gamma=config.lr_gamma)
        t_epoch = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for lo, hi in bounds:
            idx = order[lo:hi]
            x, y = x_train[idx], y_train[idx]
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
        train_seconds += time.perf_counter() - t_epoch

        if epoch + 1 in eval_epochs:
            test_loss, test_acc, per_class = evaluate(model, x_test, y_test, n_classes=n_classes)
            metrics = {
                "train_loss": (loss_sum / n).item(),
                "train_accuracy": (correct / n).item(),
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
            for key, acc in zip(class_keys, per_class, strict=True):
                if np.isfinite(acc):
                    metrics[f"test_accuracy_{key}"] = float(acc)
            history.append((epoch + 1, metrics))
            if callback is not None:
                callback(epoch + 1, metrics)
    seconds = time.perf_counter() - t_start
    return TrainResult(history=history, seconds=seconds,
                       images_per_second=n * config.epochs / max(train_seconds, 1e-9))
