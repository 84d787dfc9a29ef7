"""Report 001's custom ResNet (`custom_resnet`): a ResNet-50-shaped stack of Bottleneck blocks
on CIFAR, with a 7x7 stride-2 stem (32x32 -> 16x16) and dropout at the end of each block.

Shapes at a (B, 3, 32, 32) input:
    stem    conv7x7/2 pad 3, 3 -> 64, BN, ReLU (no max pool)   -> (B,  64, 16, 16)
    layer1  3 Bottlenecks, 64 ch                                -> (B,  64, 16, 16)
    layer2  4 Bottlenecks, first stride 2, 128 ch               -> (B, 128,  8,  8)
    layer3  6 Bottlenecks, first stride 2, 256 ch               -> (B, 256,  4,  4)
    layer4  3 Bottlenecks, first stride 2, 512 ch               -> (B, 512,  2,  2)
    adaptive avg pool 1x1, flatten                              -> (B, 512)
    linear 512 -> 10                                            -> (B, 10)
OPEN in the report: the bottleneck ratio (`expansion`, ResNet-50's 4 by default) and the
dropout probability (`dropout`, 0.1).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model

STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))  # (blocks, output channels) per layer


class Bottleneck(nn.Module):
    """1x1 (reduce to width) -> 3x3 (stride here, as in torchvision's ResNet v1.5) -> 1x1 (to out).

    Each conv is followed by BN; ReLU after the first two and after the residual add; then
    dropout. `out_channels` is the block's output (64..512, as the report counts channels), the
    inner width is out_channels // expansion. Shortcut: identity, or 1x1 conv (stride) + BN when
    the shape changes (first block of layers 2-4).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, dropout: float) -> None:
        super().__init__()
        width = out_channels // expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + self.shortcut(x))
        return self.dropout(out)


class CustomResNet(nn.Module):
    def __init__(self, expansion: int, dropout: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),  # 32x32 -> 16x16
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        in_channels = 64
        for i, (n, out_channels) in enumerate(STAGES, start=1):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 1 and j == 0) else 1
                blocks.append(Bottleneck(in_channels, out_channels, stride, expansion, dropout))
                in_channels = out_channels
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model(
    "custom_resnet",
    report="001",
    description="Bottleneck ResNet [3,4,6,3] at 64/128/256/512 ch, 7x7/2 stem, dropout per block",
)
def custom_resnet(
    *,
    # divides 64, the narrowest block's channels
    expansion: Annotated[
        Literal[1, 2, 4, 8, 16, 32, 64],
        Field(description="bottleneck ratio: a block's inner width is its output channels // expansion"),
    ] = 4,
    dropout: Annotated[float, Field(ge=0, lt=1, description="dropout probability at the end of each block")] = 0.1,
) -> nn.Module:
    return CustomResNet(expansion=expansion, dropout=dropout)
