"""The training state a checkpoint holds, captured from and restored into a running loop.

Private to :mod:`mixscale.train`. A state is a plain dict of tensors, numbers and lists (it
loads with ``torch.load(..., weights_only=True)``), every tensor a CPU copy, so it is safe to
keep after the loop has moved on and to save with :func:`torch.save`:

``version``, ``epoch`` (epochs done), ``device`` (``cpu``/``cuda``), ``model`` and
``optimizer`` (state dicts), ``scaler`` (the GradScaler's state, empty when it is off),
``order_gen`` and ``aug_gen`` (the batch-order and augmentation generators), ``torch_rng``
(the global CPU generator), ``cuda_rng`` (the device's generator, on CUDA only), ``history``
(the evaluations so far), ``seconds`` and ``train_seconds`` (loop and training time so far).

This module never imports mlflow.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mixscale.errors import MixscaleError

__all__ = ["STATE_VERSION", "capture_state", "restore_state", "state_bytes", "state_from_bytes"]

STATE_VERSION = 1


def _cpu_copy(obj: Any) -> Any:
    """``obj`` with every tensor in it replaced by a detached CPU copy."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def capture_state(epoch: int, *, device: torch.device, model: nn.Module,
                  optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  order_gen: torch.Generator, aug_gen: torch.Generator,
                  history: list[tuple[int, dict[str, float]]], seconds: float,
                  train_seconds: float) -> dict[str, Any]:
    """Everything needed to continue training after ``epoch`` (1-based, epochs done)."""
    state = {
        "version": STATE_VERSION,
        "epoch": int(epoch),
        "device": device.type,
        "model": _cpu_copy(model.state_dict()),
        "optimizer": _cpu_copy(optimizer.state_dict()),
        "scaler": _cpu_copy(scaler.state_dict()),
        "order_gen": order_gen.get_state(),
        "aug_gen": aug_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": [(int(e), dict(m)) for e, m in history],
        "seconds": float(seconds),
        "train_seconds": float(train_seconds),
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_state(state: dict[str, Any], *, epochs: int, device: torch.device, model: nn.Module,
                  optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  order_gen: torch.Generator, aug_gen: torch.Generator) -> int:
    """Load ``state`` into a freshly built loop of ``epochs`` epochs; return the epochs done.

    Raises
    ------
    MixscaleError
        If the state is of another version, was made on another device type (the generators'
        states differ between CPU and CUDA), or its epoch is not in ``[1, epochs)``.
    """
    version, epoch = state.get("version"), state.get("epoch")
    if version != STATE_VERSION:
        raise MixscaleError(f"checkpoint state version {version!r} is not supported; "
                            f"allowed: {STATE_VERSION}.")
    if state.get("device") != device.type:
        raise MixscaleError(f"the checkpoint was made on device {state.get('device')!r}, but "
                            f"this training runs on {device.type!r}; resume it on "
                            f"{state.get('device')!r} (--device), or restart the row.")
    if not isinstance(epoch, int) or not 1 <= epoch < epochs:
        raise MixscaleError(f"checkpoint epoch {epoch!r} does not fit a training of {epochs} "
                            f"epochs; allowed: 1..{epochs - 1}.")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    order_gen.set_state(state["order_gen"])
    aug_gen.set_state(state["aug_gen"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return epoch


def state_bytes(state: dict[str, Any]) -> bytes:
    """A captured state as the bytes of a ``state.pt`` file (:func:`torch.save`)."""
    with tempfile.TemporaryDirectory() as tmp:  # a file, so the archive inside is named "state"
        path = Path(tmp) / "state.pt"
        torch.save(state, path)
        return path.read_bytes()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """The state that :func:`state_bytes` wrote, on the CPU, tensors and plain types only."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
