"""Report 001's lecture CNN (`cnn`); sizes, BatchNorm and dropout are OPEN (its open_choices runs)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model

_Width = Annotated[int, Field(ge=1)]  # channels or units of one layer


def _conv_bn_relu_pool(cin: int, cout: int, batchnorm: bool = True) -> nn.Sequential:
    # 3x3 pad 1 keeps H x W; max pool 2 halves it. No conv bias before BN (its shift replaces it).
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm),
        *([nn.BatchNorm2d(cout)] if batchnorm else []),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


@register_model(
    "cnn",
    report="001",
    description="lecture CNN: 3 x (conv3x3, BN, ReLU, maxpool 2) at 32/64/128 ch -> 2048 -> 256 -> 10 (sizes OPEN)",
)
def cnn(
    *,
    channels: Annotated[
        tuple[_Width, _Width, _Width], Field(description="output channels of the three conv layers")
    ] = (32, 64, 128),
    hidden: Annotated[_Width, Field(description="units of the hidden linear layer")] = 256,
    batchnorm: Annotated[
        bool, Field(description="BatchNorm2d after each conv (which then has no bias of its own)")
    ] = True,
    dropout: Annotated[
        float, Field(ge=0, lt=1, description="dropout probability before the last linear layer; 0: no dropout layer")
    ] = 0.0,
) -> nn.Module:
    """(B,3,32,32) -> c1@16x16 -> c2@8x8 -> c3@4x4 -> flatten c3*16 -> hidden -> ReLU [-> dropout] -> 10;
    by default 32/64/128 channels and 2048 -> 256.

    The report gives neither the layer sizes nor BatchNorm or dropout (OPEN); its runs of the
    table try them (open_choices). BatchNorm is the default because the recipe is SGD lr 0.1.
    """
    c1, c2, c3 = channels
    return nn.Sequential(
        _conv_bn_relu_pool(3, c1, batchnorm),  # 32x32 -> 16x16
        _conv_bn_relu_pool(c1, c2, batchnorm),  # 16x16 -> 8x8
        _conv_bn_relu_pool(c2, c3, batchnorm),  # 8x8 -> 4x4
        nn.Flatten(),  # c3 * 4 * 4 (2048 by default)
        nn.Linear(c3 * 16, hidden),
        nn.ReLU(),
        *([nn.Dropout(dropout)] if dropout else []),  # none at 0: the default's layers (and bytes) unchanged
        nn.Linear(hidden, NUM_CLASSES),
    )
