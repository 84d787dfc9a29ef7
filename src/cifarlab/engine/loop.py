"""The training loop: `fit` for all nine recipes and its per-epoch records; the state it carries
from epoch to epoch, saved for resume, is engine/resume.py's `TrainState`.

Data: uint8 tensors (N, 3, 32, 32) already on `device`; each batch is gathered by index,
augmented and normalized there (augment.BatchPipeline). No DataLoader, no PIL.

Determinism: every random draw of epoch e (shuffle order, augmentation, dropout) comes from
generators seeded with (seed, e), so the same params and data give the same numbers bit for
bit on CPU, and an epoch's randomness does not depend on how the previous ones ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from cifarlab.core.durations import format_duration
from cifarlab.core.params import Recipe
from cifarlab.engine.augment import BatchPipeline
from cifarlab.engine.device import Runtime
from cifarlab.engine.resume import TrainState, cpu_state
from cifarlab.engine.step import TrainStep

# Without a terminal (a logged `dvc repro`, CI, a queued experiment) the progress bar is off; a
# line this often (seconds) says the epoch is moving: a CPU epoch of resnet9 takes ~5 minutes.
TICK_SECONDS = 60.0


class EpochTicker:
    """Progress lines within an epoch when no progress bar shows: at most one per TICK_SECONDS,
    from the step count and the wall clock only (no device sync: on a GPU the count is of steps
    queued, a little ahead of those done)."""

    def __init__(
        self,
        what: str,
        steps: int,
        log: Callable[[str], None],
        every: float = TICK_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.what, self.steps, self.log, self.every, self.clock = what, steps, log, every, clock
        self.start = self.last = clock()

    def __call__(self, done: int) -> None:
        """`done` steps of the epoch have been issued."""
        now = self.clock()
        if now - self.last < self.every or not done:
            return
        self.last = now
        spent = now - self.start
        left = spent * (self.steps - done) / done
        self.log(
            f"{self.what}: step {done} of {self.steps} ({done / self.steps:.0%}), {format_duration(spent)} in, "
            f"~{format_duration(left)} left in the epoch"
        )


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from (seed, epoch, stream): no collisions between e.g. seed 1 epoch 0 and seed 0 epoch 1."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float | None  # None: not finite (the epoch diverged)
    train_acc: float
    test_loss: float | None  # None: not tested (the epoch diverged)
    test_acc: float | None
    lr: float  # lr at the start of the epoch
    seconds: float  # wall time of the epoch (training + test pass); not a metric, varies run to run
    val_loss: float | None = None  # on the held-out validation split (data.val_split > 0)
    val_acc: float | None = None


@dataclass
class FitResult:
    history: list[EpochStats]
    final_state: dict
    best_state: dict
    best_epoch: int  # epoch with the highest test accuracy (the reports' "best")
    val_best_state: dict | None  # epoch with the highest validation accuracy (None: no val split)
    val_best_epoch: int | None
    stopped_early: bool
    train_images: int  # images seen in training steps (for images/s)
    train_seconds: float
    diverged: dict | None = None  # {"epoch", "step", "lr", "train_loss"} when training diverged
    resumed_after: list[int] = field(default_factory=list)  # TrainState.resumed_after: [] = never stopped


# An epoch whose mean training cross-entropy is above this (nats; chance is ln 10 = 2.3) has
# diverged as surely as one whose loss is inf or nan: e^-10000 is no classifier's probability.
DIVERGED_LOSS = 1e4


@torch.no_grad()
def predict(model: nn.Module, x_u8: torch.Tensor, pipe: BatchPipeline, rt: Runtime, flip: bool = False) -> torch.Tensor:
    """Logits (N, 10) float32 for uint8 images (N, 3, 32, 32) on rt.device; eval mode, no augmentation.

    flip: test-time augmentation, the mean of the logits of each image and its horizontal mirror."""

    def logits(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        y = m(x).float()
        return (y + m(torch.flip(x, dims=(3,))).float()) / 2 if flip else y

    out = rt.eval_batches(model, x_u8, pipe, logits)
    return torch.cat(out) if out else torch.zeros((0, 10), device=x_u8.device)


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    parts = list(torch.split(perm, batch_size))
    # BatchNorm cannot train on a batch of one; drop such a remainder (at most 1 image an epoch).
    if len(parts) > 1 and parts[-1].numel() == 1:
        parts.pop()
    return parts


def time_left(history: list[EpochStats], epochs: int, stops_in: int | None = None) -> str:
    """' | 1h20m left' for the epoch log: the epochs still to run times the mean seconds of the
    last 5 (the first epoch left out once there are others: it pays for compilation); '' after
    the last epoch. With early stopping, `stops_in` is the epochs the run still trains if its
    watched loss never improves again (patience minus the epochs since its best): a range, from
    that early stop to the recipe's last epoch, and the epoch it would stop at."""
    last = history[-1].epoch
    left = epochs - last
    if left <= 0 or (stops_in is not None and stops_in <= 0):  # the last epoch, or stopping now
        return ""
    recent = [h.seconds for h in (history[1:] or history)[-5:]]
    per_epoch = sum(recent) / len(recent)
    if stops_in is None or stops_in >= left:
        return f" | {format_duration(left * per_epoch)} left"
    return (
        f" | {format_duration(stops_in * per_epoch)}-{format_duration(left * per_epoch)} left "
        f"(stops at epoch {last + stops_in} without a new best loss)"
    )


def fit(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    recipe: Recipe,
    epochs: int,
    seed: int,
    pipe: BatchPipeline,
    rt: Runtime,
    log: Callable[[str], None] = print,
    desc: str = "train",
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    resume: dict | None = None,
    on_epoch_end: Callable[[int, Callable[[], dict]], None] | None = None,
) -> FitResult:
    """Train `model` with `recipe` for up to `epochs`, testing after each epoch.

    train_x/test_x/val_x: uint8 (N, 3, 32, 32) on rt.device; *_y: int64 (N,) on rt.device.
    With a (non-empty) validation split, early stopping watches the validation loss and a
    second "best" is picked on validation accuracy: the honest counterpart of best-on-test.
    Returns the history, the final, best-on-test and best-on-val weights (CPU copies).

    on_epoch_end(epoch, snapshot) is called after every finished epoch; snapshot() returns the
    full training state (see `resume.TrainState`; CPU copies, taken when called), so a caller saving
    only every few minutes pays for the copy only then. Passing such a state back as `resume`
    continues after its epoch and gives the same numbers, bit for bit on CPU, as a run that was
    never interrupted: epoch e's randomness is seeded from (seed, e) alone, so nothing else
    needs replaying.
    """
    use_val = val_x is not None and val_x.shape[0] > 0
    device = rt.device
    model = rt.prepare_model(model)
    n = train_x.shape[0]
    step = TrainStep(model, recipe, pipe, rt, epochs, len(_batches(torch.arange(n), recipe.batch_size)))

    st = TrainState.fresh() if resume is None else TrainState.restore(resume, model, step, EpochStats)
    for epoch in range(st.epoch + 1, epochs + 1):
        if st.stopped_early or st.diverged:
            break
        t0 = time.perf_counter()
        gen = torch.Generator(device=device).manual_seed(derive_seed(seed, epoch, 0))
        torch.manual_seed(derive_seed(seed, epoch, 1))  # dropout and any other global-RNG draw
        lr = step.lr
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        batches = _batches(perm, recipe.batch_size)
        # The first step whose loss is not finite, tracked on the device (-1: none): read once,
        # at the end of the epoch, so divergence costs no per-step host sync.
        step_ids = torch.arange(len(batches), device=device)
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        bar = tqdm(batches, desc=f"{desc} {epoch}/{epochs}", leave=False, disable=None, unit="batch")
        ticker = None if not bar.disable else EpochTicker(f"{desc} epoch {epoch}/{epochs}", len(batches), log)
        for i, idx in enumerate(bar):
            if ticker is not None:
                ticker(i)
            # index_select, not train_x[idx]: ~20% faster gather on CPU (benchmarks/README.md)
            yb = train_y.index_select(0, idx)
            loss, logits = step(train_x.index_select(0, idx), yb, gen)
            loss_sum += loss * idx.numel()
            correct += (logits.argmax(1) == yb).sum()
            seen += idx.numel()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), step_ids[i], bad_step)
        step.end_epoch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        st.train_seconds += time.perf_counter() - t0
        st.images += seen

        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss) or train_loss > DIVERGED_LOSS:
            first_bad = int(bad_step.item())
            st.diverged = {
                "epoch": epoch,
                "step": (first_bad + 1) if first_bad >= 0 else None,
                "lr": lr,
                "train_loss": train_loss if math.isfinite(train_loss) else None,
            }
            where = f"step {first_bad + 1} of {len(batches)}" if first_bad >= 0 else f"mean loss {train_loss:.3g}"
            log(
                f"diverged: {desc} epoch {epoch}, {where}: training loss not finite or above {DIVERGED_LOSS:g} "
                f"at lr {lr:.3g}; training stopped, recorded as diverged (check the lr)"
            )
            st.history.append(
                EpochStats(
                    epoch=epoch,
                    train_loss=st.diverged["train_loss"],
                    train_acc=correct.item() / seen,
                    test_loss=None,
                    test_acc=None,
                    lr=lr,
                    seconds=time.perf_counter() - t0,
                )
            )
            st.epoch = epoch
            if on_epoch_end is not None:
                on_epoch_end(epoch, lambda: st.snapshot(model, step))
            break

        test_loss, test_acc = _loss_acc(predict(model, test_x, pipe, rt), test_y)
        val_loss, val_acc = _loss_acc(predict(model, val_x, pipe, rt), val_y) if use_val else (None, None)
        stats = EpochStats(
            epoch=epoch,
            train_loss=train_loss,
            train_acc=correct.item() / seen,
            test_loss=test_loss,
            test_acc=test_acc,
            lr=lr,
            seconds=time.perf_counter() - t0,
            val_loss=val_loss,
            val_acc=val_acc,
        )
        st.history.append(stats)
        if test_acc > st.best_acc:
            st.best_acc, st.best_epoch = test_acc, epoch
            st.best_state = cpu_state(model)
        if use_val and val_acc > st.val_best_acc:
            st.val_best_acc, st.val_best_epoch = val_acc, epoch
            st.val_best_state = cpu_state(model)
        stops_in = None
        if recipe.early_stopping_patience is not None:
            watched = val_loss if use_val else test_loss
            if watched < st.best_loss:
                st.best_loss, st.since_best_loss = watched, 0
            else:
                st.since_best_loss += 1
            stops_in = recipe.early_stopping_patience - st.since_best_loss
        val_text = f"val loss {val_loss:.4f} acc {val_acc:.4f} | " if use_val else ""
        log(
            f"{desc} epoch {epoch}/{epochs}: train loss {stats.train_loss:.4f} acc {stats.train_acc:.4f} | "
            f"{val_text}test loss {test_loss:.4f} acc {test_acc:.4f} | lr {lr:.3g} | {stats.seconds:.1f}s"
            + time_left(st.history, epochs, stops_in)
        )
        if stops_in is not None and stops_in <= 0:
            split = "validation" if use_val else "test"
            log(f"{desc}: early stop at epoch {epoch}: no {split}-loss gain for {st.since_best_loss} epochs")
            st.stopped_early = True
        st.epoch = epoch
        if on_epoch_end is not None:
            on_epoch_end(epoch, lambda: st.snapshot(model, step))
    return FitResult(
        history=st.history,
        final_state=cpu_state(model),
        best_state=st.best_state,
        best_epoch=st.best_epoch,
        val_best_state=st.val_best_state,
        val_best_epoch=st.val_best_epoch,
        stopped_early=st.stopped_early,
        train_images=st.images,
        train_seconds=st.train_seconds,
        diverged=st.diverged,
        resumed_after=st.resumed_after,
    )


def _loss_acc(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def build_model(name: str, arch: dict, seed: int) -> nn.Module:
    """Model `name` with its initial weights fixed by `seed`."""
    from cifarlab.models import get_model

    torch.manual_seed(seed)
    return get_model(name, **arch)
