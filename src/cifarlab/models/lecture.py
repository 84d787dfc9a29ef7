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
def cnn(*, channels: tuple[int, int, int] = (32, 64, 128), hidden: int = 256, batchnorm: bool = True,
        dropout: float = 0.0) -> nn.Module:
    """(B,3,32,32) -> c1@16x16 -> c2@8x8 -> c3@4x4 -> flatten c3*16 -> hidden -> ReLU [-> dropout] -> 10;
    by default 32/64/128 channels and 2048 -> 256.

    The report gives neither the layer sizes nor BatchNorm or dropout (OPEN); its runs of the
    table try them (open_choices). BatchNorm is the default because the recipe is SGD lr 0.1.
    """
    if len(channels) != 3 or any(c < 1 for c in channels) or hidden < 1:
        raise ParamsError(f"cnn: channels must be 3 sizes >= 1 and hidden >= 1, got {list(channels)} and {hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ParamsError(f"cnn.dropout: a probability in [0, 1), got {dropout}")
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
