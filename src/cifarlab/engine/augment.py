"""Batched augmentation on the device the model runs on.

Images stay uint8 NCHW (B, 3, 32, 32) until the last step, so a whole epoch of CIFAR-10
(150 MB) lives on the device and each batch costs one gather and one fused multiply-add,
instead of 128 PIL round-trips per batch in DataLoader workers.

All randomness comes from the `torch.Generator` passed in (on the same device), so a seed
fixes every crop offset, flip and jitter factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The constants most public CIFAR-10 recipes hard-code (kuangliu/pytorch-cifar and its many
# descendants, the ResNet-9 lecture notebook among them). The means are the training set's; the
# "stds" (~0.20) are not its per-pixel std (~0.25 here, stats.json): inputs come out ~1.25x wider.
CIFAR10_COMMON_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_COMMON_STD = (0.2023, 0.1994, 0.2010)

# Report 004 leaves blur and colour-jitter strengths open; these are torchvision's common
# choices: GaussianBlur(kernel 3, sigma in [0.1, 2.0]) and ColorJitter(0.2, 0.2, 0.2).
BLUR_SIGMA = (0.1, 2.0)
JITTER = 0.2


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4, padding: str = "zeros") -> torch.Tensor:
    """Random crop (padding `pad` pixels: "zeros" or "reflect") + horizontal flip, per sample,
    as ONE gather.

    x: uint8 (B, C, H, W). Returns the same shape and dtype.
    """
    b, c, h, w = x.shape
    # (B, C, H+2p, W+2p): zeros outside, or the image mirrored at its edge (edge pixel not repeated)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if padding == "reflect" else "constant")
    hp, wp = h + 2 * pad, w + 2 * pad
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=dev)
    flip = torch.rand((b, 1), generator=gen, device=dev) < 0.5
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy + ar_h  # (B, H) source row of each output row
    cols = ox + torch.where(flip, w - 1 - ar_w, ar_w)  # (B, W) flipped column order where chosen
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, index).view(b, c, h, w)


def _gaussian_blur(x: torch.Tensor, gen: torch.Generator, k: int = 3) -> torch.Tensor:
    """Per-sample Gaussian blur with sigma ~ U(BLUR_SIGMA), separable, reflect padding. x float."""
    b, c, h, w = x.shape
    lo, hi = BLUR_SIGMA
    sigma = lo + (hi - lo) * torch.rand((b, 1), generator=gen, device=x.device, dtype=x.dtype)
    r = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    kern = torch.exp(-(r**2) / (2 * sigma**2))
    kern = kern / kern.sum(1, keepdim=True)  # (B, k)
    kern = kern.repeat_interleave(c, 0)  # (B*C, k): one kernel per (sample, channel) group
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern.view(b * c, 1, 1, k), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern.view(b * c, 1, k, 1), groups=b * c)
    return y.view(b, c, h, w)


def _color_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation each x U(1-JITTER, 1+JITTER) per sample. x float in [0, 1]."""
    b = x.shape[0]

    def factor() -> torch.Tensor:
        u = torch.rand((b, 1, 1, 1), generator=gen, device=x.device, dtype=x.dtype)
        return 1 - JITTER + 2 * JITTER * u

    gray_w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x * factor()).clamp(0, 1)  # brightness
    mean = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = ((x - mean) * factor() + mean).clamp(0, 1)  # contrast
    gray = (x * gray_w).sum(1, keepdim=True)
    return ((x - gray) * factor() + gray).clamp(0, 1)  # saturation


class BatchPipeline:
    """uint8 NCHW batch -> augmented, normalized float batch, all on one device.

    mode: "none" | "crop_flip" | "crop_flip_blur_color"; mean/std per channel in [0, 1]
    units (None = no normalization, inputs just scaled to [0, 1], as report 004 did);
    padding: the crop's padding, "zeros" or "reflect".
    """

    def __init__(self, mode: str, mean, std, device: torch.device, dtype=torch.float32, padding: str = "zeros"):
        self.mode = mode
        self.padding = padding
        self.dtype = dtype
        # Fold /255, -mean, /std into one multiply-add: y = x * scale + bias.
        m = torch.tensor(mean if mean is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        s = torch.tensor(std if std is not None else (1.0, 1.0, 1.0), dtype=torch.float32)
        self.scale = (1.0 / (255.0 * s)).view(1, 3, 1, 1).to(device)
        self.bias = (-m / s).view(1, 3, 1, 1).to(device)
        self.mean = m.view(1, 3, 1, 1).to(device)
        self.std = s.view(1, 3, 1, 1).to(device)

    def normalize(self, x_u8: torch.Tensor) -> torch.Tensor:
        # In place on one fresh buffer: `x * scale + bias` made three temporaries per batch,
        # and on CPU the allocator returned and re-faulted them each time (measured: ~3x
        # fewer images/s; benchmarks/README.md).
        y = x_u8.to(torch.float32, copy=True)
        return y.mul_(self.scale).add_(self.bias).to(self.dtype)

    def __call__(self, x_u8: torch.Tensor, gen: torch.Generator | None, train: bool = True) -> torch.Tensor:
        if not train or self.mode == "none":
            return self.normalize(x_u8)
        x_u8 = crop_flip(x_u8, gen, padding=self.padding)
        if self.mode == "crop_flip":
            return self.normalize(x_u8)
        x = x_u8.to(torch.float32) / 255.0
        x = _color_jitter(_gaussian_blur(x, gen), gen)
        return x.sub_(self.mean).div_(self.std).to(self.dtype)


def normalization(kind: str, dataset_mean, dataset_std):
    """(mean, std) for a recipe's `normalize` choice; (None, None) means plain [0, 1] scaling."""
    if kind == "dataset":
        return tuple(dataset_mean), tuple(dataset_std)
    if kind == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if kind == "cifar10_common":
        return CIFAR10_COMMON_MEAN, CIFAR10_COMMON_STD
    return None, None


def pipeline_for(recipe, stats: dict, device: torch.device) -> BatchPipeline:
    """The batch pipeline of a recipe: its augmentation and normalization (stats: prepared/stats.json)."""
    mean, std = normalization(recipe.normalize, stats["mean"], stats["std"])
    return BatchPipeline(recipe.augment, mean, std, device, padding=recipe.crop_padding)
