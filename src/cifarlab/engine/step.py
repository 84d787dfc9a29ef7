"""One training step of a recipe (compiled or eager), and its timing: the one timing loop, used by
`cifarlab estimate`, train's start-of-run estimate and the benchmarks."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cifarlab.core.errors import CifarlabError, one_line
from cifarlab.core.params import Recipe
from cifarlab.engine.augment import BatchPipeline
from cifarlab.engine.device import Runtime, synchronize
from cifarlab.engine.schedules import make_optimizer, make_scheduler


class TrainStep:
    """One optimisation step of a recipe: augment, forward, loss, backward, clip, step, schedule.

    Owns the optimizer and lr scheduler, so `fit`, the run estimate and the benchmark all time
    and train exactly the same step.
    """

    def __init__(
        self, model: nn.Module, recipe: Recipe, pipe: BatchPipeline, rt: Runtime, epochs: int, steps_per_epoch: int
    ):
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
        self.forward_loss = (
            torch.compile(self._forward_loss, backend=rt.compile_backend, dynamic=False, **mode)
            if rt.compile
            else self._forward_loss
        )
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
                raise CifarlabError(
                    f"torch.compile failed ({type(err).__name__}: {one_line(err, 300)}); "
                    "set train.compile=false to train eagerly"
                ) from err
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


@dataclass
class StepTiming:
    """What time_steps measured, in seconds."""

    first_s: float | None  # the first warm-up step: compilation included (None without warm-up)
    step_s: list[float]  # each timed step on its own (each=True); empty when timed together
    total_s: float  # the timed steps: the sum of step_s (each=True), else their wall time
    steps: int  # how many were timed
    loss: torch.Tensor  # the last step's loss, detached

    def images_per_s(self, batch: int) -> float:
        """Training images per second over all timed steps of `batch` images."""
        return batch * self.steps / self.total_s


Batch = tuple[torch.Tensor, torch.Tensor]


def time_steps(
    step: TrainStep,
    batch: Batch | Callable[[int], Batch],
    gen: torch.Generator,
    *,
    warmup: int,
    steps: int,
    min_seconds: float = 0.0,
    max_steps: int | None = None,
    each: bool = True,
) -> StepTiming:
    """Time `step` on `batch`: (x, y), or a function of the step's index (warm-ups counted) giving
    them. First `warmup` untimed steps, each synchronised with the device (the first one's seconds
    kept apart: compilation, if any, allocator growth, oneDNN primitives, the optimizer's state;
    CUDA graphs are recorded on the first replays), then the timed steps:

    each=True: each one synchronised and timed on its own, at least `steps` of them and, up to
    `max_steps` (None: no limit), for at least `min_seconds`. each=False: exactly `steps` steps,
    synchronised once after the last, so the host queues a step while the GPU runs the one
    before, as training does (`min_seconds` and `max_steps` unused).
    """
    if steps < 1:
        raise ValueError(f"time_steps: steps={steps}, needs at least one timed step")
    device = step.rt.device
    inputs = batch if callable(batch) else (lambda i: batch)
    first_s = None
    for i in range(warmup):
        t = time.perf_counter()
        step(*inputs(i), gen)
        synchronize(device)
        if i == 0:
            first_s = time.perf_counter() - t
    step_s: list[float] = []
    start = time.perf_counter()
    if each:
        while len(step_s) < steps or (
            time.perf_counter() - start < min_seconds and (max_steps is None or len(step_s) < max_steps)
        ):
            t = time.perf_counter()
            loss, _ = step(*inputs(warmup + len(step_s)), gen)
            synchronize(device)
            step_s.append(time.perf_counter() - t)
        total_s = sum(step_s)
    else:
        for i in range(steps):
            loss, _ = step(*inputs(warmup + i), gen)
        synchronize(device)
        total_s = time.perf_counter() - start
    return StepTiming(first_s, step_s, total_s, len(step_s) if each else steps, loss)


WARMUP_STEPS = 2  # untimed: allocator growth, oneDNN primitive creation, the optimizer's state
MIN_TIMED_S = 1.0  # a small model's step is ~1 ms: time it for at least this long
MAX_STEPS = 200


def time_model_steps(
    model: nn.Module, recipe: Recipe, pipe: BatchPipeline, rt: Runtime, batch: int, steps: int, min_seconds: float
):
    """time_steps on a copy of `model` (the real model and optimizer state stay untouched), fed one
    fixed random uint8 batch of `batch` images: WARMUP_STEPS untimed, then at least `steps` steps
    and `min_seconds` of them, up to MAX_STEPS."""
    model = rt.prepare_model(copy.deepcopy(model))
    step = TrainStep(model, recipe, pipe, rt, epochs=1, steps_per_epoch=MAX_STEPS + WARMUP_STEPS)
    g = torch.Generator(device=rt.device).manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, 32, 32), generator=g, device=rt.device, dtype=torch.uint8)
    y = torch.randint(0, 10, (batch,), generator=g, device=rt.device)
    return time_steps(step, (x, y), g, warmup=WARMUP_STEPS, steps=steps, min_seconds=min_seconds, max_steps=MAX_STEPS)


def time_train_step(
    model: nn.Module, recipe: Recipe, pipe: BatchPipeline, rt: Runtime, batch: int = 64, steps: int = 2
) -> float:
    """Seconds per training image: the fastest timed step on random data (time_model_steps, at
    least MIN_TIMED_S seconds, so a millisecond step is not judged on three samples). The fastest
    is the one least disturbed by other load."""
    return min(time_model_steps(model, recipe, pipe, rt, batch, steps, MIN_TIMED_S).step_s) / batch
