"""Report 002's 3-layer 5x5 CNN (`hw2_cnn`), as in its code listing (convs keep their bias)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model


def _layer(cin: int, cout: int) -> nn.Sequential:
    # 5x5 pad 2 stride 1 keeps H x W; the assignment's 2x2 max pool halves it.
    return nn.Sequential(nn.Conv2d(cin, cout, 5, stride=1, padding=2), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


class HW2CNN(nn.Module):
    """(B,3,32,32) -> 32@16x16 -> 64@8x8 -> 128@4x4 -> flatten 2048 -> 100 -> 50 -> 10."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.layer1 = _layer(3, 32)
        self.layer2 = _layer(32, 64)
        self.layer3 = _layer(64, 128)
        self.fc1 = nn.Linear(4 * 4 * 128, 100)
        self.dropout1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(100, 50)
        self.dropout2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(50, NUM_CLASSES)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.layer3(self.layer2(self.layer1(x))), 1)
        x = self.dropout1(self.relu(self.fc1(x)))
        x = self.dropout2(self.relu(self.fc2(x)))
        return self.fc3(x)


@register_model(
    "hw2_cnn",
    report="002",
    description="3 x (conv5x5 pad 2, BN, ReLU, maxpool 2) at 32/64/128 ch -> 100 -> 50 -> 10 with dropout",
)
def hw2_cnn(
    *,
    dropout: Annotated[
        float, Field(ge=0, lt=1, description="dropout probability after each of the two hidden linear layers")
    ] = 0.3,
) -> nn.Module:
    return HW2CNN(dropout)
