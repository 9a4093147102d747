"""Networks build by name and map a batch of images to class logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixscale.errors import MixscaleError
from mixscale.train.nets import build_model, resolve_stem


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 32)])
def test_smallcnn_shapes(channels: int, size: int) -> None:
    model = build_model("smallcnn", num_classes=7, in_channels=channels, image_size=size)
    out = model(torch.randn(4, channels, size, size))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("size", "pools", "last_map"), [(8, 1, 4), (15, 1, 7), (16, 2, 4),
                                                         (28, 2, 7)])
def test_smallcnn_pools_early_only_on_images_of_16_px_or_more(size, pools, last_map) -> None:
    model = build_model("smallcnn", num_classes=10, in_channels=1, image_size=size)
    found = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(found) == pools
    # the feature map the average pool sees: digits keep 4x4, Fashion-MNIST's 28 px give 7x7
    trunk = nn.Sequential(*list(model.features)[:-2])
    assert trunk(torch.randn(2, 1, size, size)).shape[-1] == last_map
    # the same parameters either way: the early pool has none
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in build_model("smallcnn", num_classes=10, in_channels=1).parameters())


@pytest.mark.parametrize(("channels", "size", "stem"),
                         [(3, 32, "auto"), (1, 8, "cifar"), (1, 28, "imagenet"),
                          (3, 96, "auto")])
def test_resnet18_shapes(channels: int, size: int, stem: str) -> None:
    model = build_model("resnet18", num_classes=5, in_channels=channels, image_size=size,
                        stem=stem).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    assert model.conv1.in_channels == channels


def test_resnet18_stems() -> None:
    cifar = build_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    zoo = build_model("resnet18", num_classes=10, in_channels=3, stem="imagenet")
    assert zoo.conv1.kernel_size == (7, 7) and zoo.conv1.stride == (2, 2)
    assert isinstance(zoo.maxpool, nn.MaxPool2d)
    assert sum(p.numel() for p in zoo.parameters()) == pytest.approx(11.18e6, rel=0.01)


@pytest.mark.parametrize(("stem", "size", "resolved"),
                         [("auto", 8, "cifar"), ("auto", 64, "cifar"), ("auto", 65, "imagenet"),
                          ("auto", None, "cifar"), ("imagenet", 32, "imagenet"),
                          ("cifar", 224, "cifar")])
def test_resolve_stem(stem: str, size: int | None, resolved: str) -> None:
    assert resolve_stem(stem, size) == resolved


def test_unknown_model_and_stem() -> None:
    with pytest.raises(MixscaleError, match=r"unknown model 'vgg'; allowed: 'smallcnn', "
                                            r"'resnet18'"):
        build_model("vgg", num_classes=10, in_channels=1)
    with pytest.raises(MixscaleError, match=r"unknown stem 'wide'; allowed: 'auto'"):
        build_model("resnet18", num_classes=10, in_channels=3, stem="wide")
