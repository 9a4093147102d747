"""Training a network on one row's images (torch lives here and nowhere else in mixscale).

:mod:`~mixscale.train.nets` holds the networks, :mod:`~mixscale.train.loop` the training loop
(top to bottom, metrics through a callback, never mlflow) and :mod:`~mixscale.train.state`
the state a checkpoint holds.
"""

from __future__ import annotations

from mixscale.train.loop import (
    TrainResult,
    TrainSettings,
    evaluate,
    lr_at_epoch,
    prepare_images,
    random_crop_flip,
    resolve_device,
    resolve_settings,
    set_threads,
    train_model,
)

__all__ = ["TrainResult", "TrainSettings", "resolve_device", "resolve_settings", "lr_at_epoch",
           "prepare_images", "random_crop_flip", "evaluate", "train_model", "set_threads"]
