"""Report 000's LeNet-5 (`lenet5`), the small baseline against ResNet-9."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model


@register_model(
    "lenet5",
    report="000",
    description="LeNet-5 on RGB: conv 6@5x5, avgpool, conv 16@5x5, avgpool, 400 -> 120 -> 84 -> 10",
)
def lenet5(
    *,
    activation: Annotated[
        Literal["relu", "tanh", "sigmoid"], Field(description="the activation after every conv and hidden linear layer")
    ] = "relu",
) -> nn.Module:
    """(B,3,32,32) -conv5x5-> 6@28x28 -avgpool-> 6@14x14 -conv5x5-> 16@10x10 -avgpool-> 16@5x5
    -> flatten 400 -> 120 -> 84 -> 10, `activation` after every conv and hidden linear.
    tanh is LeCun's original (his 1998 network squashed with a scaled tanh; sigmoid units are the
    other classic); ReLU the common choice today (OPEN in the report). 62,006 params."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[activation]
    return nn.Sequential(
        nn.Conv2d(3, 6, 5),  # 32 -> 28
        act(),
        nn.AvgPool2d(2),  # 28 -> 14
        nn.Conv2d(6, 16, 5),  # 14 -> 10
        act(),
        nn.AvgPool2d(2),  # 10 -> 5
        nn.Flatten(),  # 16 * 5 * 5 = 400
        nn.Linear(400, 120),
        act(),
        nn.Linear(120, 84),
        act(),
        nn.Linear(84, NUM_CLASSES),
    )
