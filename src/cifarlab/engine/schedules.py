"""Optimizers and learning-rate schedules from a recipe (torch.optim's own classes).

multistep and onecycle are laid out over the epochs the run actually trains (`epochs`, the
recipe's count capped by train.max_epochs), so a capped run is a compressed copy of the full
recipe: a 2:1:1 multistep over 30 epochs steps at 15 and 22, not never. `step` keeps its
absolute step_size (report 001: "every 30 epochs").
"""

from __future__ import annotations

import inspect

import torch
from torch.optim.lr_scheduler import LRScheduler

from cifarlab.core.params import Recipe


def make_optimizer(params, recipe: Recipe, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer. fused=True: torch's fused kernels (CUDA; one launch updates every
    parameter) instead of the default foreach path; the same update, rounded differently."""
    cls = torch.optim.SGD if recipe.optimizer == "sgd" else torch.optim.Adam
    # torch's SGD gained `fused` after Adam (2.3 or so): older builds keep the foreach path
    kind = {"fused": True} if fused and "fused" in inspect.signature(cls).parameters else {}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, **kind)
    return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **kind)


def ratio_milestones(ratio, epochs: int) -> list[int]:
    """Epochs at which the lr drops, from a ratio of phase lengths.

    ratio (2, 1, 1) over 200 epochs -> [100, 150]; (5, 3, 2) -> [100, 160]; (5, 4, 1) -> [100, 180].
    Rounded to whole epochs; kept strictly increasing and inside (0, epochs).
    """
    total = float(sum(ratio))
    out, acc = [], 0.0
    for part in ratio[:-1]:
        acc += part
        m = max(1, min(epochs - 1, round(epochs * acc / total))) if epochs > 1 else 1
        if not out or m > out[-1]:
            out.append(m)
    return out


def make_scheduler(
    opt: torch.optim.Optimizer, recipe: Recipe, epochs: int, steps_per_epoch: int
) -> tuple[LRScheduler | None, str]:
    """Return (scheduler, when) where `when` is "batch" or "epoch": when to call .step()."""
    if recipe.schedule == "onecycle":
        # The common ResNet-9 recipe: OneCycleLR stepped every batch, peak lr = recipe.lr.
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, epochs=epochs, steps_per_epoch=steps_per_epoch
        )
        return sched, "batch"
    if recipe.schedule == "multistep":
        milestones = ratio_milestones(recipe.lr_ratio, epochs)
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=recipe.gamma), "epoch"
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=recipe.step_size, gamma=recipe.gamma), "epoch"
    return None, "epoch"
