"""Frozen features computed once: report 003's AlexNet runs train only a head.

`alexnet_transfer` upsizes every 32x32 image to 224x224 and runs it through a frozen AlexNet:
88% of its FLOPs per image, recomputed on every step and every test pass although the recipe
has no augmentation, so the features of an image never change. With augment "none" the train
stage computes them once per run (eval mode, `train.eval_batch_size` images a batch, bf16 on CUDA
as the model would run them) and trains the head on them; the test passes of every epoch use
them too. For the full set that is 60,000 x 9,216 values: 1.1 GB in bf16 on a GPU, 2.2 GB in
fp32 on a CPU.

Exact in the sense that matters: the same weights, the same inputs and the same eval-mode
forward; only the batch size under which the features are computed differs (32 -> 500), which
can move the last bits of a convolution. The evaluate stage still runs the whole model on the
images, so the published metrics are those of the saved checkpoint, cache or not.

Why per run and not a DVC output shared by the four AlexNet runs: every train stage of the
run table has the same deps (a DVC `foreach`), so a shared features stage would sit upstream of
`dvc repro plot@lenet5` too, and make it fetch ImageNet weights. Computing them costs one
forward pass over the data: about 80 TFLOP, an estimated second or less on an H200 (not measured
yet; benchmarks/bench_gpu.py measures it).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cifarlab.engine.augment import BatchPipeline


class FeaturePipeline:
    """The batch pipeline of cached features: nothing to augment or normalize, no random draws
    (as BatchPipeline("none"), so the epoch's shuffle order is the same with or without a cache)."""

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None, train: bool = True) -> torch.Tensor:
        return x


def cacheable(model: nn.Module, recipe) -> bool:
    """True when `model` declares frozen features (`frozen_embed`: its `embed` has no trainable
    parameter, is in eval mode and `forward` of a 2-D input is the head alone) and the recipe
    augments nothing, so each image's features are the same on every step."""
    return bool(getattr(model, "frozen_embed", False)) and recipe.augment == "none"


@torch.no_grad()
def embed_all(model: nn.Module, x_u8: torch.Tensor, pipe: BatchPipeline, rt) -> torch.Tensor:
    """Features (N, D) of uint8 images (N, 3, 32, 32) on rt.device: `model.embed` of each
    normalized batch of `rt.eval_batch_size`, under the runtime's autocast (bf16 on CUDA)."""
    if x_u8.shape[0] == 0:  # an empty split (no validation images): no features, no forward
        return torch.zeros((0, 0), device=x_u8.device)
    return torch.cat(rt.eval_batches(model, x_u8, pipe, lambda m, x: m.embed(x)))


def cached_inputs(model: nn.Module, recipe, pipe: BatchPipeline, rt, *images: torch.Tensor | None):
    """(features of each of `images` (None stays None), FeaturePipeline()) when the model and
    recipe allow a cache (`cacheable`); else None. `model` must already be on rt.device."""
    if not cacheable(model, recipe):
        return None
    feats = [None if x is None else embed_all(model, x, pipe, rt) for x in images]
    return feats, FeaturePipeline()
