"""The device a stage computes on and a run's numerics on it (precision, memory format, compile)."""

from __future__ import annotations

import functools
import os
import sys
import tempfile

import torch
import torch.nn as nn

from cifarlab.core.errors import CifarlabError
from cifarlab.core.params import TrainParams
from cifarlab.core.provenance import ISA_ENV, cpu_bf16_flag


def select_device() -> torch.device:
    """CUDA where torch can use a GPU here, else the CPU: the one place torch is asked (stages,
    `cifarlab estimate`'s GPU benchmark lookup, the benchmarks and the GPU kit all go through it).
    tooling.estimate.has_gpu asks the driver instead, for the code that must not import torch."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device`: CUDA kernels run asynchronously, so a step's time
    is only known once they finished; a no-op on a CPU, whose ops return when done."""
    if device.type == "cuda":
        torch.cuda.synchronize()


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
OLD_GPU_FIX = (
    "docker build --build-arg BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.6-cudnn9-runtime -t cifarlab . "
    "(or pip install torch torchvision --index-url https://download.pytorch.org/whl/cu126)"
)


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
    return (
        f"GPU {name} is sm_{major}{minor}, but this torch {torch_version} was built for "
        f'{", ".join(arch_list)} only ("no kernel image is available" on the first step): '
        f"use a CUDA 12.6 build: {OLD_GPU_FIX}"
    )


def check_gpu(device: torch.device) -> None:
    """Stop before any work, with one line, on a GPU this torch build has no kernels for."""
    if device.type != "cuda":
        return
    problem = gpu_arch_problem(
        torch.cuda.get_device_name(device),
        torch.cuda.get_device_capability(device),
        torch.cuda.get_arch_list(),
        torch.__version__,
    )
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


def onednn_isa(implementation: str) -> str:
    """The bf16 class of a oneDNN kernel's ISA, from its implementation name in oneDNN's verbose
    log: 'brg_conv_fwd:avx10_1_512_amx' -> "amx_bf16" (AMX tiles), 'brg_conv_fwd:avx512_core_bf16'
    -> "avx512_bf16" (AVX512-BF16 dot products; AVX10.1 has them too), 'jit_bf16:avx512_core' or
    'gemm:jit:bf16' -> "none" (bf16 converted to fp32 and back around fp32 arithmetic: emulated)."""
    isa = implementation.rsplit(":", 1)[-1]
    if "amx" in isa:
        return "amx_bf16"
    if isa.endswith("_bf16") or isa.startswith("avx10"):
        return "avx512_bf16"
    return "none"


def _onednn_bf16_conv_kernel() -> str | None:
    """The implementation oneDNN runs a bf16 convolution with in this process ('brg_conv_fwd:
    avx10_1_512_amx'), read from its verbose log (C stdout, captured at the file descriptor);
    None if no oneDNN convolution ran."""
    x = torch.randn(1, 8, 8, 8).to(memory_format=torch.channels_last)
    w = torch.randn(8, 8, 3, 3).to(memory_format=torch.channels_last)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 1)
        try:
            with (
                torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON),
                torch.no_grad(),
                torch.autocast("cpu", dtype=torch.bfloat16),
            ):
                torch.nn.functional.conv2d(x, w, padding=1)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
    for line in lines:  # onednn_verbose,v1,primitive,exec,cpu,convolution,<implementation>,...
        fields = line.split(",")
        if "exec" in fields and "convolution" in fields:
            return fields[fields.index("convolution") + 1]
    return None


@functools.cache  # oneDNN fixes its ISA when it first runs: one answer per process
def bf16_in_effect() -> dict:
    """The bf16 arithmetic this process gets on its CPU: {"cpu_bf16": "amx_bf16" | "avx512_bf16" |
    "none", "bf16_check": how that was found}. Not the CPU's flags alone: ONEDNN_MAX_CPU_ISA=AVX2
    (or a VM that withholds AMX) leaves /proc/cpuinfo's amx_bf16 in place while bf16 runs
    emulated (pytorch#118499; a 64-channel 3x3 conv, batch 32, 1 thread: 812 ms in bf16, 90 ms in
    fp32). torch.ops.mkldnn._is_mkldnn_bf16_supported() honours that cap (False: bf16 bypasses
    oneDNN for ATen's reference kernels); where True, the kernel oneDNN picks for a bf16 conv names
    the ISA in effect (AVX512_CORE without BF16 still says True). torch 2.14's
    get_cpu_capability() and _init_amx() ignore the cap."""
    flag = cpu_bf16_flag()
    try:
        if not torch.backends.mkldnn.is_available():
            bf16, check = "none", "torch.backends.mkldnn.is_available() is False"
        elif not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            bf16, check = "none", "torch.ops.mkldnn._is_mkldnn_bf16_supported() is False"
        elif (kernel := _onednn_bf16_conv_kernel()) is None:
            bf16, check = flag, "/proc/cpuinfo flags (oneDNN named no bf16 conv kernel)"
        else:
            bf16, check = onednn_isa(kernel), f"oneDNN bf16 conv kernel {kernel}"
    except (AttributeError, RuntimeError, OSError) as err:  # a torch build without these: a record, never a failed run
        bf16, check = flag, f"/proc/cpuinfo flags (torch could not tell: {type(err).__name__})"
    notes = [f"{k}={os.environ[k]}" for k in ISA_ENV if os.environ.get(k)]
    if flag != bf16:  # the CPU lists another bf16 than this process gets: say both
        notes.append(f"/proc/cpuinfo lists {flag}")
    return {"cpu_bf16": bf16, "bf16_check": check + (f" ({'; '.join(notes)})" if notes else "")}


class Runtime:
    """A run's numerics, the same on every device: bf16 autocast, channels_last, fused optimizer
    kernels and a compiled step as params.yaml `train` says (benchmarks/bench_cpu.py: bf16 +
    channels_last trains resnet9 3-5x faster than fp32 on a CPU with AMX; docs/training.md: CPU speed)."""

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
    def eval_batches(self, model: nn.Module, x_u8: torch.Tensor, pipe, forward) -> list[torch.Tensor]:
        """forward(model, x) of each batch of `eval_batch_size` uint8 images (N, 3, 32, 32), x being
        the batch as `pipe` normalizes it for evaluation (no augmentation), in eval mode under this
        runtime's autocast; the model's train/eval mode is restored after. The one predict loop:
        logits (engine.loop.predict), features (engine.features, pca)."""
        was_training = model.training
        model.eval()
        try:
            out = []
            for xb in torch.split(x_u8, self.eval_batch_size):
                with self.autocast():
                    out.append(forward(model, self.prepare_input(pipe(xb, None, train=False))))
            return out
        finally:
            model.train(was_training)
