"""Networks trained on each design row."""

from __future__ import annotations

import torch
from torch import nn

from mixscale.config import MODELS
from mixscale.errors import MixscaleError

__all__ = ["SmallCNN", "build_model"]


class SmallCNN(nn.Module):
    """A small convolutional network for tiny images (8x8 digits up to 32x32).

    Two 3x3 conv blocks with batch norm, a max-pool, a third conv block, global average
    pooling and a linear classifier; about 60 k parameters.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, width),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch ``x`` of shape (B, C, H, W)."""
        return self.classifier(self.features(x))


def build_model(name: str, *, num_classes: int, in_channels: int) -> nn.Module:
    """Build a freshly initialised network by name.

    Parameters
    ----------
    name : str
        One of :data:`mixscale.config.MODELS`.
    num_classes : int
        Output classes.
    in_channels : int
        Image channels (1 for grey, 3 for colour).

    Returns
    -------
    torch.nn.Module
    """
    if name == "smallcnn":
        return SmallCNN(num_classes, in_channels)
    raise MixscaleError(f"unknown model {name!r}; allowed: {', '.join(repr(m) for m in MODELS)}.")
