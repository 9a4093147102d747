"""Training a network on one row's images (torch lives here and nowhere else in mixscale).

:mod:`~mixscale.train.nets` holds the networks, :mod:`~mixscale.train.loop` the training loop
(top to bottom, metrics through a callback, never mlflow), :mod:`~mixscale.train.state`
the state a checkpoint holds and :mod:`~mixscale.train.checks` whether a row measured its data
(converged, and better than 1-NN on its pixels).
"""

from __future__ import annotations

from mixscale.train.checks import (
    RISING_POINTS,
    SUBSET_ACCURACY,
    RowCheck,
    baseline_accuracy,
    check_row,
    last_third_gain,
)
from mixscale.train.loop import (
    TrainResult,
    TrainSettings,
    batch_bounds,
    evaluate,
    lr_at_epoch,
    lr_at_step,
    prepare_images,
    random_crop_flip,
    resolve_device,
    resolve_settings,
    row_steps,
    set_threads,
    train_model,
)

__all__ = ["TrainResult", "TrainSettings", "resolve_device", "resolve_settings", "lr_at_epoch",
           "lr_at_step", "row_steps", "batch_bounds", "prepare_images", "random_crop_flip",
           "evaluate", "train_model", "set_threads", "RISING_POINTS", "SUBSET_ACCURACY",
           "RowCheck", "baseline_accuracy", "check_row", "last_third_gain"]
