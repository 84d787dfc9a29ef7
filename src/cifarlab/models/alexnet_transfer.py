"""Report 003: transfer learning from ImageNet AlexNet (`alexnet_transfer`).

torchvision's AlexNet feature extractor, frozen (no gradients, always in eval mode), and a new
trainable head. The CIFAR image is upsized inside `forward` so the features are 256x6x6 = 9216:

    (B, 3, 32, 32) --bilinear--> (B, 3, 224, 224) --features--> (B, 256, 6, 6)
    --avgpool 6x6 (identity at 224)--> [+ skip] --flatten--> (B, 9216)
    --head: 9216 -> 4096, ReLU, 4096 -> 1024, ReLU, 1024 -> 10--> (B, 10)

Skip variant (the report's AlexNetWithSkip): the output of features[8] (conv4, (B, 256, 13, 13)
at 224, before its ReLU) goes through AdaptiveAvgPool2d((6, 6)) and is ADDED to the final
(B, 256, 6, 6) features. The report also defines a 1x1 conv for the skip but never applies it, so
there is none here: the skip adds no parameters.

Weights, in this order: `weights=<file>` (a local AlexNet state_dict); else `pretrained=True`:
torchvision's AlexNet_Weights.IMAGENET1K_V1 from the torch hub cache, downloaded into it when
missing (a clear WeightsError offline); else random features with a RandomFeaturesWarning.
The input is expected already normalized; ImageNet normalization is the training engine's job.
"""

from __future__ import annotations

import http.client
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.core.errors import WeightsError, one_line
from cifarlab.models import register_model

if TYPE_CHECKING:
    import torchvision

# torchvision is imported where it is used, not here: every stage validates params.yaml against
# the model registry (this module included), and `import torchvision` costs ~2 s of CPU
# (torchvision.ops pulls in torch._dynamo), most of a plot stage's run time.
WEIGHTS_FILE_NAME = "alexnet-owt-7be5be79.pth"  # imagenet_weights().url's file name (tests check it)
FEATURE_DIM = 256 * 6 * 6  # 9216
SKIP_INDEX = 8  # features[8] is conv4 (384 -> 256), 13x13 at 224 input
MIN_IMAGE_SIZE = 63  # smallest input for which AlexNet's last max pool still has a 1x1 output


def imagenet_weights() -> torchvision.models.WeightsEnum:
    """torchvision's AlexNet_Weights.IMAGENET1K_V1 (the weights API: URL, transforms, metadata)."""
    import torchvision

    return torchvision.models.AlexNet_Weights.IMAGENET1K_V1


class RandomFeaturesWarning(UserWarning):
    """alexnet_transfer was built with random (not ImageNet) frozen features."""


def hub_cache_path() -> Path:
    """Where torch hub keeps (and looks for) the ImageNet AlexNet file; honours TORCH_HOME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE_NAME


def _download_state_dict(weights: torchvision.models.WeightsEnum) -> dict[str, Any]:
    """The only place that touches the network: torchvision's normal download into the hub
    cache. Tests monkeypatch it (e.g. to raise urllib.error.URLError)."""
    return weights.get_state_dict(progress=True, map_location="cpu", weights_only=True)


def _one_line(err: BaseException) -> str:
    return one_line(f"{type(err).__name__}: {err}")


def _unpickling_reason(err: BaseException) -> str:
    """torch's weights_only refusal without its advice to load the file as an unrestricted pickle
    (never good advice for a file from elsewhere): the "WeightsUnpickler error" part only."""
    text = one_line(err)
    reason = text.partition("WeightsUnpickler error:")[2].strip() or text
    return reason.split(". ")[0][:200]


def _features_state(state: Any, source: str) -> dict[str, torch.Tensor]:
    """The `features.*` part of a full AlexNet state_dict (prefix stripped); a bare features
    state_dict ("0.weight", ...) is accepted as is."""
    if not isinstance(state, Mapping):
        raise WeightsError(f"{source}: expected an AlexNet state_dict, got {type(state).__name__}")
    if any(k.startswith("features.") for k in state):
        return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


def _load_features(features: nn.Sequential, state: Any, source: str) -> None:
    try:
        features.load_state_dict(_features_state(state, source), strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{source}: not AlexNet feature weights ({_one_line(err)[:300]})") from err


def _imagenet_state_dict() -> dict[str, Any]:
    cache = hub_cache_path()
    if cache.is_file():
        try:
            return imagenet_weights().get_state_dict(progress=True, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or corrupt cached file
            raise WeightsError(
                f"cannot read the cached AlexNet weights {cache} ({_one_line(err)[:200]}); delete it and retry"
            ) from err
    try:
        return _download_state_dict(imagenet_weights())
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, refused, disk full
        raise WeightsError(
            f"ImageNet AlexNet weights unavailable ({_one_line(err)[:200]}): put {WEIGHTS_FILE_NAME} at {cache} "
            f"(the torch hub cache) or set alexnet_transfer.weights=/path/to/{WEIGHTS_FILE_NAME} "
            f"(alexnet_transfer.pretrained=false gives random features, for tests only)"
        ) from err


def alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features` with PyTorch's default init, without paying for the
    58M-parameter ImageNet classifier we drop: the net is built on the meta device (no memory, no
    random draws), then only the features are materialized and initialized, in the same order as
    torchvision's constructor, so under a given seed the values equal
    `torchvision.models.alexnet(weights=None).features`."""
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.alexnet(weights=None)
    features = net.features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    return features


class AlexNetTransfer(nn.Module):
    """Frozen AlexNet features (+ optional conv4 skip) and a trainable 3-layer head.

    `forward` takes images (B, 3, H, W) or, as the training engine's feature cache passes them,
    features (B, 9216) already computed by `embed` (engine/features.py)."""

    frozen_embed = True  # embed() has no trainable parameters and stays in eval mode

    def __init__(self, features: nn.Sequential, skip: bool, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.skip = skip
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))  # as torchvision's AlexNet; identity at 224
        self.skip_pool = nn.AdaptiveAvgPool2d((6, 6))  # (B, 256, 13, 13) -> (B, 256, 6, 6)
        self.head = nn.Sequential(
            nn.Linear(FEATURE_DIM, 4096),
            nn.ReLU(),
            nn.Linear(4096, 1024),
            nn.ReLU(),
            nn.Linear(1024, NUM_CLASSES),
        )
        self.features.requires_grad_(False)
        self.features.eval()

    def train(self, mode: bool = True) -> AlexNetTransfer:
        # The feature extractor is frozen: it stays in eval mode whatever the head does.
        super().train(mode)
        self.features.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the frozen features (B, 9216), skip sum included when skip=True."""
        size = (self.image_size, self.image_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        skip = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if self.skip and i == SKIP_INDEX:
                # A new tensor, so the in-place ReLU at features[9] does not alter it.
                skip = self.skip_pool(x)
        x = self.avgpool(x)
        if skip is not None:
            x = x + skip
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # cached features (B, 9216)
            return self.head(x)
        return self.head(self.embed(x))


@register_model(
    "alexnet_transfer",
    report="003",
    description="frozen ImageNet AlexNet features (input upsized to 224, 9216-d), optional conv4 skip, "
    "head 9216 -> 4096 -> 1024 -> 10",
    embedding=True,
)
def alexnet_transfer(
    *,
    skip: Annotated[
        bool, Field(description="add conv4's output, pooled to 6x6, to the final features (report 003's skip variant)")
    ] = False,
    pretrained: Annotated[
        bool,
        Field(
            description="ImageNet weights from the torch hub cache, downloaded there when missing; false (and no "
            "`weights`): random frozen features, for tests and CI only (it warns)"
        ),
    ] = True,
    weights: Annotated[
        str | None,
        Field(
            description="a local AlexNet state_dict file, used instead of the hub cache and `pretrained`; "
            "null: none ([pretrained AlexNet weights](runs.md#pretrained-alexnet-weights))"
        ),
    ] = None,
    image_size: Annotated[
        int,
        Field(
            ge=MIN_IMAGE_SIZE,
            description="the side the 32x32 input is upsized to "
            "before the features (224 gives AlexNet's 6x6 feature map natively)",
        ),
    ] = 224,
) -> nn.Module:
    # Find the weights first, so a missing file fails before any network is built.
    state, source = None, ""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"alexnet_transfer.weights: no such file '{path}'")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # weights_only refused a class: a whole pickled model
            if "Unsupported global" in str(err) or "GLOBAL" in str(err):
                raise WeightsError(
                    f"alexnet_transfer.weights: '{path}' is a pickled module, not a state_dict: save "
                    "`model.state_dict()` (torchvision AlexNet keys: features.0.weight, ...) and pass that file"
                ) from err
            raise WeightsError(
                f"alexnet_transfer.weights: cannot load '{path}' ({_unpickling_reason(err)}): "
                "pass a state_dict saved with torch.save(model.state_dict(), path)"
            ) from err
        except Exception as err:
            raise WeightsError(
                f"alexnet_transfer.weights: cannot load '{path}' ({_one_line(err)[:200]}): "
                "pass a state_dict saved with torch.save(model.state_dict(), path)"
            ) from err
        source = f"alexnet_transfer.weights '{path}'"
    elif pretrained:
        state, source = _imagenet_state_dict(), f"ImageNet AlexNet weights {hub_cache_path()}"
    features = alexnet_features()
    if state is not None:
        _load_features(features, state, source)
    else:
        warnings.warn(
            "alexnet_transfer: pretrained=false and no weights file, so the frozen AlexNet features are RANDOM; "
            "results mean nothing (use this for tests only)",
            RandomFeaturesWarning,
            stacklevel=2,
        )
    return AlexNetTransfer(features, skip=skip, image_size=image_size)
