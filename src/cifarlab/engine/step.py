"""One training step of a recipe (compiled or eager), and its timing on random data."""
from __future__ import annotations

import copy
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from cifarlab.core.errors import CifarlabError, one_line
from cifarlab.core.params import Recipe
from cifarlab.engine.augment import BatchPipeline
from cifarlab.engine.device import Runtime
from cifarlab.engine.schedules import make_optimizer, make_scheduler


class TrainStep:
    """One optimisation step of a recipe: augment, forward, loss, backward, clip, step, schedule.

    Owns the optimizer and lr scheduler, so `fit`, the run estimate and the benchmark all time
    and train exactly the same step.
    """

    def __init__(self, model: nn.Module, recipe: Recipe, pipe: BatchPipeline, rt: Runtime,
                 epochs: int, steps_per_epoch: int):
        self.model, self.recipe, self.pipe, self.rt = model, recipe, pipe, rt
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.opt = make_optimizer(self.trainable, recipe, fused=rt.fused_optimizer)
        self.sched, self.sched_when = make_scheduler(self.opt, recipe, epochs, steps_per_epoch)
        # Forward + loss as one compiled graph (its backward compiled with it). Augmentation stays
        # eager, outside: its draws from the epoch's generator are then exactly those of an eager
        # run. dynamic=False: one static graph per batch shape (the recipe's batch and, at most,
        # the epoch's remainder batch), no dynamic-shape guards.
        if rt.compile:
            # Every TrainStep compiles the same code object, and dynamo stops recompiling it after
            # 8 models (its recompile limit), silently running eager: each step starts afresh
            # (a no-op for a stage, which builds one).
            torch._dynamo.reset()
            # Random ops (dropout) through torch's generator, as eager: inductor's own RNG would
            # draw other masks, and a compiled run would no longer follow the eager one
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True
        mode = {"mode": rt.compile_mode} if rt.compile_backend == "inductor" else {}
        self.forward_loss = (torch.compile(self._forward_loss, backend=rt.compile_backend, dynamic=False, **mode)
                             if rt.compile else self._forward_loss)
        self._compiled_shapes: set[tuple[int, ...]] = set()

    def _forward_loss(self, xb: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.rt.autocast():
            logits = self.model(xb)
            loss = F.cross_entropy(logits.float(), y)
        return loss, logits

    def __call__(self, x_u8: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """x_u8: uint8 (B, 3, 32, 32) (or cached features (B, D), see engine.features), y: int64 (B,).
        Returns (loss, logits), detached."""
        xb = self.rt.prepare_input(self.pipe(x_u8, gen, train=True))
        if self.rt.compile:
            # A new iteration for CUDA-graph replays: the previous step's outputs were consumed
            torch.compiler.cudagraph_mark_step_begin()
        if self.rt.compile and tuple(xb.shape) not in self._compiled_shapes:
            # The first step of a batch shape compiles its forward, then (lazily, in backward())
            # its backward: a failure there is the compiler's, named with the way out. Later
            # steps' errors (out of memory, ...) pass through as they are.
            try:
                loss, logits = self.forward_loss(xb, y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
            except torch.cuda.OutOfMemoryError:  # not the compiler's: as it is
                raise
            except Exception as err:  # inductor/triton missing or failing: say so, name the way out
                raise CifarlabError(f"torch.compile failed ({type(err).__name__}: {one_line(err, 300)}); "
                                    "set train.compile=false to train eagerly") from err
            self._compiled_shapes.add(tuple(xb.shape))
        else:
            loss, logits = self.forward_loss(xb, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        if self.recipe.grad_clip is not None:
            nn.utils.clip_grad_value_(self.trainable, self.recipe.grad_clip)
        self.opt.step()
        if self.sched is not None and self.sched_when == "batch":
            self.sched.step()
        return loss.detach(), logits.detach()

    def end_epoch(self) -> None:
        if self.sched is not None and self.sched_when == "epoch":
            self.sched.step()

    @property
    def lr(self) -> float:
        return self.opt.param_groups[0]["lr"]


WARMUP_STEPS = 2  # untimed: allocator growth, oneDNN primitive creation, the optimizer's state
MIN_TIMED_S = 1.0  # a small model's step is ~1 ms: time it for at least this long
MAX_STEPS = 200


def time_train_step(model: nn.Module, recipe: Recipe, pipe: BatchPipeline, rt: Runtime, batch: int = 64,
                    steps: int = 2) -> float:
    """Seconds per training image: the fastest timed step on random data, after WARMUP_STEPS;
    at least `steps` steps and MIN_TIMED_S seconds of them (up to MAX_STEPS), so a millisecond
    step is not judged on three samples. The fastest is the one least disturbed by other load.

    Works on a copy so the real model and optimizer state are untouched.
    """
    model = rt.prepare_model(copy.deepcopy(model))
    step = TrainStep(model, recipe, pipe, rt, epochs=1, steps_per_epoch=MAX_STEPS + WARMUP_STEPS)
    g = torch.Generator(device=rt.device).manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, 32, 32), generator=g, device=rt.device, dtype=torch.uint8)
    y = torch.randint(0, 10, (batch,), generator=g, device=rt.device)

    def timed_step() -> float:
        t0 = time.perf_counter()
        step(x, y, g)
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(WARMUP_STEPS):
        timed_step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < steps or (time.perf_counter() - start < MIN_TIMED_S and len(times) < MAX_STEPS):
        times.append(timed_step())
    return min(times) / batch
