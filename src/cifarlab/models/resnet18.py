"""Report 004's CIFAR ResNet-18 (`resnet18`) with a pluggable activation (the report's ablation).

Shapes at (B, 3, 32, 32): stem conv3x3 64 + BN + act (B, 64, 32, 32), no max pool;
layer1 2 BasicBlocks 64@32x32; layer2 128@16x16; layer3 256@8x8; layer4 512@4x4 (stride 2 at
the first block of layers 2-4, 1x1 conv + BN projection shortcut); avg pool (B, 512); linear -> 10.
11,173,962 parameters (activations have none, so the count does not depend on `activation`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model
from cifarlab.models._blocks import Activation, CifarResNet


@register_model(
    "resnet18",
    report="004",
    description="CIFAR ResNet-18: 3x3 stem, BasicBlocks [2,2,2,2] at 64..512 ch, avg pool, linear 512 -> 10",
)
def resnet18(
    *,
    activation: Annotated[
        Activation,
        Field(description="the activation everywhere ResNet-18 has ReLU: the stem and both places in every block"),
    ] = "relu",
) -> nn.Module:
    return CifarResNet(blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), activation=activation, num_classes=NUM_CLASSES)
