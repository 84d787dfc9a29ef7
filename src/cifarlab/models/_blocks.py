"""Building blocks shared by the CIFAR ResNets (`resnet` from the lecture and `resnet18`).

Both are the CIFAR variant of He et al.'s ResNet: a 3x3 stem (no 7x7, no max pool, since a
32x32 image has no pixels to spare), stages of BasicBlocks, global average pooling, one linear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid"]  # the builders' signatures check it
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),  # PyTorch's default negative slope
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: Activation) -> nn.Module:
    """A fresh activation module."""
    return ACTIVATIONS[name]()


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual: act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x)).

    (B, in_planes, H, W) -> (B, planes, H/stride, W/stride). The shortcut is the identity when
    the shape is kept, else a 1x1 conv (stride `stride`) + BN ("option B" of the ResNet paper).
    Convs have no bias: the BN right after each one has its own shift.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, activation: str = "relu") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3x3(3 -> widths[0]) + BN + act, then one stage of BasicBlocks per width.

    Stage i has `blocks[i]` blocks; every stage after the first starts with stride 2, so at
    32x32 input the stages run at 32, 16, 8, 4 pixels. Then adaptive avg pool to 1x1 (equal to
    the paper's avg pool 4 on the 4x4 map of ResNet-18, and size-agnostic), flatten, linear -> 10.
    """

    def __init__(
        self, blocks: tuple[int, ...], widths: tuple[int, ...], activation: str = "relu", num_classes: int = 10
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError("blocks and widths must have the same length")
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            make_activation(activation),
        )
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, (n, planes) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_planes, planes, stride if j == 0 else 1, activation))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        # Named layer1, layer2, ... like torchvision's ResNet (readable state_dict keys).
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.num_stages = len(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))
