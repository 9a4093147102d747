"""Networks trained on each design row: ``smallcnn`` and torchvision's ``resnet18``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mixscale.config import MODELS, STEMS
from mixscale.errors import MixscaleError

__all__ = ["SmallCNN", "build_model", "resnet18", "resolve_stem"]

SMALL_IMAGE_PX = 64  # stem="auto" gives resnet18 the CIFAR stem for images up to this size
POOL_EARLY_PX = 16  # smallcnn pools after its first block for images of this size or more


class SmallCNN(nn.Module):
    """A small convolutional network for tiny images (8x8 digits up to 32x32).

    Two 3x3 conv blocks with batch norm, a max-pool, a third conv block, global average
    pooling and a linear classifier; about 60 k parameters. Images of :data:`POOL_EARLY_PX`
    pixels or more (Fashion-MNIST's 28x28, CIFAR's 32x32) are also max-pooled after the first
    block, so the wide second block runs at half the resolution: a quarter of the network's
    cost there, and a 7x7 map before the average pool instead of 14x14. Smaller images (8x8
    digits) keep their resolution.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32,
                 image_size: int | None = None) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        early = [nn.MaxPool2d(2)] if image_size is not None and image_size >= POOL_EARLY_PX else []
        self.features = nn.Sequential(
            block(in_channels, width),
            *early,
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


def resolve_stem(stem: str, image_size: int | None) -> Literal["cifar", "imagenet"]:
    """``auto`` -> ``cifar`` for images up to :data:`SMALL_IMAGE_PX` pixels (or unknown size),
    else ``imagenet``; ``cifar`` and ``imagenet`` stay as they are."""
    if stem not in STEMS:
        raise MixscaleError(f"unknown stem {stem!r}; allowed: "
                            f"{', '.join(repr(s) for s in STEMS)}.")
    if stem == "auto":
        return "cifar" if image_size is None or image_size <= SMALL_IMAGE_PX else "imagenet"
    return stem  # type: ignore[return-value]


def resnet18(num_classes: int, in_channels: int = 3, *,
             stem: Literal["cifar", "imagenet"] = "cifar") -> nn.Module:
    """torchvision's ResNet18 (``weights=None``), optionally with the CIFAR stem.

    The ``cifar`` stem replaces the 7x7 stride-2 convolution and the max-pool by one 3x3
    stride-1 convolution, so a 32x32 image keeps its resolution into the first stage (the
    usual choice for CIFAR; the paper used the model-zoo ``imagenet`` stem). A first
    convolution for ``in_channels`` other than 3 is built the same way, freshly initialised.
    """
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def build_model(name: str, *, num_classes: int, in_channels: int,
                image_size: int | None = None, stem: str = "auto") -> nn.Module:
    """Build a freshly initialised network by name.

    Parameters
    ----------
    name : str
        One of :data:`mixscale.config.MODELS`.
    num_classes : int
        Output classes.
    in_channels : int
        Image channels (1 for grey, 3 for colour).
    image_size : int, optional
        Image height/width in pixels; picks resnet18's stem when ``stem="auto"``, and whether
        smallcnn pools after its first block (:class:`SmallCNN`).
    stem : {"auto", "cifar", "imagenet"}
        resnet18's first layers (see :func:`resnet18`); ignored by smallcnn.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    MixscaleError
        For an unknown model or stem name.
    """
    if name == "smallcnn":
        return SmallCNN(num_classes, in_channels, image_size=image_size)
    if name == "resnet18":
        return resnet18(num_classes, in_channels, stem=resolve_stem(stem, image_size))
    raise MixscaleError(f"unknown model {name!r}; allowed: {', '.join(repr(m) for m in MODELS)}.")
