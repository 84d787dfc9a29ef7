"""The training engine: one loop for all nine recipes.

Data: uint8 tensors (N, 3, 32, 32) already on `device`; each batch is gathered by index,
augmented and normalized there (augment.BatchPipeline). No DataLoader, no PIL.

Determinism: every random draw of epoch e (shuffle order, augmentation, dropout) comes from
generators seeded with (seed, e), so the same params and data give the same numbers bit for
bit on CPU, and an epoch's randomness does not depend on how the previous ones ran.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from cifarlab.core.errors import CifarlabError, one_line
from cifarlab.engine.augment import BatchPipeline
from cifarlab.core.params import Recipe, TrainParams
from cifarlab.engine.schedules import make_optimizer, make_scheduler


def select_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_threads(n: int | None) -> int:
    """Set torch's CPU thread count (train.num_threads; None = the cores this process may use).

    Threads must not outnumber the free cores: measured on a 2-core machine with another
    process busy on one core, a dnn training step took 0.30 s with 2 OpenMP threads and
    0.03 s with 1. Set train.num_threads=1 when sharing a small machine.
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def configure_determinism(device: torch.device, deterministic: bool) -> None:
    """train.deterministic on CUDA: deterministic kernels only, no cuDNN autotuning.

    cuBLAS needs a fixed workspace for reproducible matmuls (CUBLAS_WORKSPACE_CONFIG, read when
    cuBLAS starts: this runs before the first CUDA op). An op without a deterministic kernel
    then raises instead of silently varying. Off: cuDNN may autotune (faster, not repeatable).
    On CPU nothing changes: its kernels are deterministic already.
    """
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


# For a GPU this torch build has no kernels for: the torch build to use instead. PyTorch's CUDA
# 12.8/12.9 builds dropped Maxwell and Pascal (sm_50-61) and, later, Volta (sm_70); its CUDA 12.6
# builds still carry sm_50-sm_90.
OLD_GPU_FIX = ("docker build --build-arg BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.6-cudnn9-runtime -t cifarlab . "
               "(or pip install torch torchvision --index-url https://download.pytorch.org/whl/cu126)")


def gpu_arch_problem(name: str, capability: tuple[int, int], arch_list: list[str], torch_version: str) -> str | None:
    """Why this torch build cannot run on this GPU, as one line naming the fix; None if it can.

    capability: (major, minor), e.g. (6, 1) for a GTX 1080 Ti; arch_list: torch.cuda.get_arch_list(),
    e.g. ["sm_75", ..., "sm_120", "compute_120"]. A GPU runs sm_XY binaries of its own major
    version and a lower-or-equal minor, and compute_XY (PTX) code of any lower-or-equal version.
    """
    major, minor = capability
    ok = False
    for arch in arch_list:
        kind, _, ver = arch.partition("_")
        if not ver.isdigit():
            continue
        a_major, a_minor = int(ver[:-1]), int(ver[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            ok = True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            ok = True
    if ok or not arch_list:
        return None
    return (f"GPU {name} is sm_{major}{minor}, but this torch {torch_version} was built for "
            f"{', '.join(arch_list)} only (\"no kernel image is available\" on the first step): "
            f"use a CUDA 12.6 build: {OLD_GPU_FIX}")


def check_gpu(device: torch.device) -> None:
    """Stop before any work, with one line, on a GPU this torch build has no kernels for."""
    if device.type != "cuda":
        return
    problem = gpu_arch_problem(torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device),
                               torch.cuda.get_arch_list(), torch.__version__)
    if problem:
        raise CifarlabError(problem)


def setup_device(cfg: TrainParams) -> torch.device:
    """The device a stage computes on, with train.num_threads and train.deterministic applied:
    the one place train, evaluate and pca set these up (and check the GPU is one torch can use)."""
    device = select_device()
    check_gpu(device)
    configure_threads(cfg.num_threads)
    configure_determinism(device, cfg.deterministic)
    return device


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


# An epoch whose mean training cross-entropy is above this (nats; chance is ln 10 = 2.3) has
# diverged as surely as one whose loss is inf or nan: e^-10000 is no classifier's probability.
DIVERGED_LOSS = 1e4


class Runtime:
    """A run's numerics, the same on every device: bf16 autocast, channels_last, fused optimizer
    kernels and a compiled step as params.yaml `train` says (benchmarks/bench_cpu.py: bf16 +
    channels_last trains resnet9 3-5x faster than fp32 on a CPU with AMX; README: CPU speed)."""

    def __init__(self, device: torch.device, cfg: TrainParams):
        self.device = device
        self.bf16 = cfg.bf16
        self.channels_last = cfg.channels_last
        self.eval_batch_size = cfg.eval_batch_size
        self.compile = cfg.compile
        self.compile_mode = cfg.compile_mode
        # torch.compile backend: inductor generates the kernels (C++/OpenMP on a CPU, Triton on
        # CUDA); benchmarks/bench_gpu.py --tiny uses "eager" (graph capture without code
        # generation) to exercise the same path in seconds.
        self.compile_backend = "inductor"
        self.fused_optimizer = cfg.fused_optimizer

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        # 4-D images only: cached features (B, D) have no channel dimension to move
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


@torch.no_grad()
def predict(model: nn.Module, x_u8: torch.Tensor, pipe: BatchPipeline, rt: Runtime, flip: bool = False) -> torch.Tensor:
    """Logits (N, 10) float32 for uint8 images (N, 3, 32, 32) on rt.device; eval mode, no augmentation.

    flip: test-time augmentation, the mean of the logits of each image and its horizontal mirror."""
    was_training = model.training
    model.eval()
    out = []
    for xb in torch.split(x_u8, rt.eval_batch_size):
        with rt.autocast():
            x = rt.prepare_input(pipe(xb, None, train=False))
            logits = model(x).float()
            if flip:
                logits = (logits + model(torch.flip(x, dims=(3,))).float()) / 2
            out.append(logits)
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, 10), device=x_u8.device)


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    parts = list(torch.split(perm, batch_size))
    # BatchNorm cannot train on a batch of one; drop such a remainder (at most 1 image an epoch).
    if len(parts) > 1 and parts[-1].numel() == 1:
        parts.pop()
    return parts


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
    full training state (see `TrainState`; CPU copies, taken when called), so a caller saving
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

    st = TrainState.fresh() if resume is None else TrainState.restore(resume, model, step)
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
        for i, idx in enumerate(bar):
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
            st.diverged = {"epoch": epoch, "step": (first_bad + 1) if first_bad >= 0 else None, "lr": lr,
                           "train_loss": train_loss if math.isfinite(train_loss) else None}
            where = f"step {first_bad + 1} of {len(batches)}" if first_bad >= 0 else f"mean loss {train_loss:.3g}"
            log(f"diverged: {desc} epoch {epoch}, {where}: training loss not finite or above {DIVERGED_LOSS:g} "
                f"at lr {lr:.3g}; training stopped, recorded as diverged (check the lr)")
            st.history.append(EpochStats(epoch=epoch, train_loss=st.diverged["train_loss"], train_acc=correct.item() / seen,
                                         test_loss=None, test_acc=None, lr=lr, seconds=time.perf_counter() - t0))
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
        val_text = f"val loss {val_loss:.4f} acc {val_acc:.4f} | " if use_val else ""
        log(
            f"{desc} epoch {epoch}/{epochs}: train loss {stats.train_loss:.4f} acc {stats.train_acc:.4f} | "
            f"{val_text}test loss {test_loss:.4f} acc {test_acc:.4f} | lr {lr:.3g} | {stats.seconds:.1f}s"
        )
        if test_acc > st.best_acc:
            st.best_acc, st.best_epoch = test_acc, epoch
            st.best_state = _cpu_state(model)
        if use_val and val_acc > st.val_best_acc:
            st.val_best_acc, st.val_best_epoch = val_acc, epoch
            st.val_best_state = _cpu_state(model)
        if recipe.early_stopping_patience is not None:
            watched, split = (val_loss, "validation") if use_val else (test_loss, "test")
            if watched < st.best_loss:
                st.best_loss, st.since_best_loss = watched, 0
            else:
                st.since_best_loss += 1
                if st.since_best_loss >= recipe.early_stopping_patience:
                    log(f"{desc}: early stop at epoch {epoch}: no {split}-loss gain for {st.since_best_loss} epochs")
                    st.stopped_early = True
        st.epoch = epoch
        if on_epoch_end is not None:
            on_epoch_end(epoch, lambda: st.snapshot(model, step))
    return FitResult(
        history=st.history,
        final_state=_cpu_state(model),
        best_state=st.best_state,
        best_epoch=st.best_epoch,
        val_best_state=st.val_best_state,
        val_best_epoch=st.val_best_epoch,
        stopped_early=st.stopped_early,
        train_images=st.images,
        train_seconds=st.train_seconds,
        diverged=st.diverged,
    )


@dataclass
class TrainState:
    """Everything `fit` carries from one epoch to the next: with the model's and optimizer's
    state (in `snapshot`) it is all a resumed run needs to continue exactly where this one was."""

    epoch: int  # the last finished epoch (0: none)
    history: list[EpochStats]
    best_acc: float
    best_epoch: int
    best_state: dict | None
    best_loss: float  # early stopping: the lowest watched loss so far ...
    since_best_loss: int  # ... and the epochs since it
    val_best_acc: float
    val_best_epoch: int | None
    val_best_state: dict | None
    stopped_early: bool
    images: int
    train_seconds: float
    diverged: dict | None = None

    @classmethod
    def fresh(cls) -> TrainState:
        return cls(epoch=0, history=[], best_acc=-1.0, best_epoch=0, best_state=None, best_loss=math.inf,
                   since_best_loss=0, val_best_acc=-1.0, val_best_epoch=None, val_best_state=None,
                   stopped_early=False, images=0, train_seconds=0.0)

    def snapshot(self, model: nn.Module, step: TrainStep) -> dict:
        """Plain containers and tensors only, so torch.load(weights_only=True) reads it back.
        Every tensor is a CPU copy: training may go on while another thread writes it out."""
        return {
            "state": {k: v for k, v in vars(self).items() if k != "history"},
            "history": [asdict(h) for h in self.history],
            "model": _cpu_state(model),
            "optimizer": _cpu_copy(step.opt.state_dict()),
            "scheduler": copy.deepcopy(step.sched.state_dict()) if step.sched is not None else None,
            # Unused by the loop (it reseeds every epoch) but part of a full state: a later
            # change that draws from the global RNGs between epochs stays resumable.
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    @classmethod
    def restore(cls, snap: dict, model: nn.Module, step: TrainStep) -> TrainState:
        model.load_state_dict(snap["model"])
        step.opt.load_state_dict(snap["optimizer"])
        if step.sched is not None:
            step.sched.load_state_dict(snap["scheduler"])
        torch.set_rng_state(snap["rng"]["torch"])
        if snap["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(snap["rng"]["cuda"])
        return cls(**snap["state"], history=[EpochStats(**h) for h in snap["history"]])


def _loss_acc(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def _cpu_copy(obj):
    """`obj` (nested dicts/lists of tensors and plain values) with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def history_rows(history: list[EpochStats]) -> list[dict]:
    """One dict per epoch; the val_* columns only when a validation split was used."""
    rows = [asdict(h) for h in history]
    if all(h.val_acc is None for h in history):
        for r in rows:
            del r["val_loss"], r["val_acc"]
    return rows


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


def build_model(name: str, arch: dict, seed: int) -> nn.Module:
    """Model `name` with its initial weights fixed by `seed`."""
    from cifarlab.models import get_model

    torch.manual_seed(seed)
    return get_model(name, **arch)
