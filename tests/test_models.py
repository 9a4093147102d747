"""Networks build by name and map a batch of images to class logits."""

from __future__ import annotations

import pytest
import torch

from mixscale.errors import MixscaleError
from mixscale.models import build_model


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32)])
def test_smallcnn_shapes(channels: int, size: int) -> None:
    model = build_model("smallcnn", num_classes=7, in_channels=channels)
    out = model(torch.randn(4, channels, size, size))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


def test_unknown_model() -> None:
    with pytest.raises(MixscaleError, match=r"unknown model 'vgg'; allowed: 'smallcnn'"):
        build_model("vgg", num_classes=10, in_channels=1)
