"""Report 001's lecture MLP (`dnn`); its layer sizes are OPEN in the report (params.yaml `dnn`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model


@register_model(
    "dnn",
    report="001",
    description="lecture MLP: flatten 3072 -> 1024 -> 512 -> 256 -> 10, BatchNorm + ReLU (sizes OPEN)",
)
def dnn(
    *,
    hidden: Annotated[
        tuple[Annotated[int, Field(ge=1)], ...],
        Field(description="the hidden layers' widths, input side first; `[]`: one linear layer 3072 -> 10"),
    ] = (1024, 512, 256),
    batchnorm: Annotated[
        bool, Field(description="BatchNorm1d after each hidden linear layer (which then has no bias of its own)")
    ] = True,
) -> nn.Module:
    """Flatten (B, 3, 32, 32) -> (B, 3072), then Linear [+ BatchNorm1d] + ReLU per hidden size,
    then Linear -> 10.

    BatchNorm by default: measured on the full (JPEG-derived) set, the plain MLP under the
    report's SGD lr 0.1 / momentum 0.9 never rose above ~29% test top-1 in 5 epochs (it
    oscillates), while the report's MLP reached above 50%; `batchnorm: false` gives the plain MLP.
    """
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
