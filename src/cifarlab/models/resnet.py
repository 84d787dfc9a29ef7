"""Report 001's lecture ResNet (`resnet`), the three-stage net the custom ResNet extends."""

from __future__ import annotations

from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model
from cifarlab.models._blocks import CifarResNet


@register_model(
    "resnet",
    report="001",
    description=(
        "lecture ResNet: conv3x3 64 stem, BasicBlocks [2,2,2] at 64/128/256 ch, avg pool, linear 256 -> 10 (OPEN)"
    ),
)
def resnet() -> nn.Module:
    """(B,3,32,32) -> stem 64@32x32 -> layer1 64@32x32 -> layer2 128@16x16 -> layer3 256@8x8
    -> global avg pool (B, 256) -> linear 10. The report's custom ResNet "adds one more layer
    of blocks" to this three-stage net."""
    return CifarResNet(blocks=(2, 2, 2), widths=(64, 128, 256), activation="relu", num_classes=NUM_CLASSES)
