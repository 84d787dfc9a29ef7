"""Report 000's ResNet-9 (`resnet9`), the widely used DAWNBench-style network."""

from __future__ import annotations

import torch
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model


def conv_block(in_channels: int, out_channels: int, pool: bool = False) -> nn.Sequential:
    """Conv 3x3 pad 1 (with bias, as in the widely used code) + BN + ReLU (+ MaxPool 2)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(nn.Module):
    """The widely used ResNet-9 (DAWNBench style); shapes at a (B, 3, 32, 32) input:

    conv1 3 -> 64                       (B,  64, 32, 32)
    conv2 64 -> 128 + pool              (B, 128, 16, 16)
    res1  [128 -> 128, 128 -> 128] + x  (B, 128, 16, 16)
    conv3 128 -> 256 + pool             (B, 256,  8,  8)
    conv4 256 -> 512 + pool             (B, 512,  4,  4)
    res2  [512 -> 512, 512 -> 512] + x  (B, 512,  4,  4)
    classifier MaxPool 4, flatten, linear 512 -> 10. 6,575,370 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_block(3, 64)
        self.conv2 = conv_block(64, 128, pool=True)
        self.res1 = nn.Sequential(conv_block(128, 128), conv_block(128, 128))
        self.conv3 = conv_block(128, 256, pool=True)
        self.conv4 = conv_block(256, 512, pool=True)
        self.res2 = nn.Sequential(conv_block(512, 512), conv_block(512, 512))
        self.classifier = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(512, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out = self.res1(out) + out
        out = self.conv4(self.conv3(out))
        out = self.res2(out) + out
        return self.classifier(out)


@register_model(
    "resnet9",
    report="000",
    description="the widely used ResNet-9: 4 conv blocks, 2 residual blocks, maxpool 4, linear 512 -> 10",
)
def resnet9() -> nn.Module:
    return ResNet9()
