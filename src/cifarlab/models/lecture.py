"""Report 001's lecture models: `dnn`, `cnn`, `resnet`.

The report does not give the lecture's layer sizes (OPEN); these are the common textbook
choices, written down in params.yaml/README. All three are trained with plain SGD lr 0.1,
momentum 0.9, weight decay 5e-4 for 100 epochs with normalization only.
"""
from __future__ import annotations

from torch import nn

from cifarlab.core.errors import ParamsError
from cifarlab.models import NUM_CLASSES, register_model
from cifarlab.models.blocks import CifarResNet


@register_model(
    "dnn",
    report="001",
    description="lecture MLP: flatten 3072 -> 1024 -> 512 -> 256 -> 10, BatchNorm + ReLU (sizes OPEN)",
)
def dnn(*, hidden: tuple[int, ...] = (1024, 512, 256), batchnorm: bool = True) -> nn.Module:
    """Flatten (B, 3, 32, 32) -> (B, 3072), then Linear [+ BatchNorm1d] + ReLU per hidden size,
    then Linear -> 10.

    BatchNorm by default: measured on the full (JPEG-derived) set, the plain MLP under the
    report's SGD lr 0.1 / momentum 0.9 never rose above ~29% test top-1 in 5 epochs (it
    oscillates), while the report's MLP reached above 50%; `batchnorm: false` gives the plain MLP.
    """
    if any(h < 1 for h in hidden):
        raise ParamsError(f"dnn.hidden: every size must be >= 1, got {list(hidden)}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = 3 * 32 * 32
    for h in hidden:
        # No Linear bias before BatchNorm: BN's shift replaces it.
        layers += [nn.Linear(width, h, bias=not batchnorm)]
        layers += [nn.BatchNorm1d(h)] if batchnorm else []
        layers += [nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def _conv_bn_relu_pool(cin: int, cout: int) -> nn.Sequential:
    # 3x3 pad 1 keeps H x W; max pool 2 halves it. No conv bias: BN follows.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


@register_model(
    "cnn",
    report="001",
    description="lecture CNN: 3 x (conv3x3, BN, ReLU, maxpool 2) at 32/64/128 ch -> 2048 -> 256 -> 10 (sizes OPEN)",
)
def cnn() -> nn.Module:
    """(B,3,32,32) -> 32@16x16 -> 64@8x8 -> 128@4x4 -> flatten 2048 -> 256 -> ReLU -> 10.

    BatchNorm is there because the recipe is SGD lr 0.1, which a plain CNN does not survive.
    """
    return nn.Sequential(
        _conv_bn_relu_pool(3, 32),  # 32x32 -> 16x16
        _conv_bn_relu_pool(32, 64),  # 16x16 -> 8x8
        _conv_bn_relu_pool(64, 128),  # 8x8 -> 4x4
        nn.Flatten(),  # 128 * 4 * 4 = 2048
        nn.Linear(2048, 256),
        nn.ReLU(),
        nn.Linear(256, NUM_CLASSES),
    )


@register_model(
    "resnet",
    report="001",
    description="lecture ResNet: conv3x3 64 stem, BasicBlocks [2,2,2] at 64/128/256 ch, avg pool, linear 256 -> 10 (OPEN)",
)
def resnet() -> nn.Module:
    """(B,3,32,32) -> stem 64@32x32 -> layer1 64@32x32 -> layer2 128@16x16 -> layer3 256@8x8
    -> global avg pool (B, 256) -> linear 10. The report's custom ResNet "adds one more layer
    of blocks" to this three-stage net."""
    return CifarResNet(blocks=(2, 2, 2), widths=(64, 128, 256), activation="relu", num_classes=NUM_CLASSES)
