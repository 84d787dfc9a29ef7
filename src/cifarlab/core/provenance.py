"""Where a run came from: the git commit it ran at and whether the code had uncommitted changes,
and the CPU it ran on (name, the bf16 flags it lists; the bf16 a process gets is
engine.device.bf16_in_effect). Written to reports/timing/<run>.json (a file allowed to
differ run to run), never to the outputs two clean runs must reproduce byte for byte."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from cifarlab.core.git import try_git

# The files whose changes make "dirty" code: the package, its build and the pipeline. Not
# params.yaml (a run's params are recorded on their own) nor dvc.lock / reports/ (a running
# `dvc repro` rewrites them itself).
CODE_PATHS = ("src", "pyproject.toml", "dvc.yaml")
# For copies without .git (a GPU machine gets the working tree only): the commit, set by
# whoever made the copy, e.g. CIFARLAB_COMMIT=$(git rev-parse HEAD).
COMMIT_ENV = "CIFARLAB_COMMIT"
GIT_TIMEOUT_S = 30  # a hung git (a network filesystem) must not hold up training


def code_version(root: str | os.PathLike = ".") -> dict:
    """{"commit": 40-hex or None, "code_commit": 40-hex or None, "dirty": bool or None}.

    commit: `git rev-parse HEAD` in `root`, else $CIFARLAB_COMMIT, else None. code_commit: the
    last commit that changed CODE_PATHS (the code's own version: on a branch that only adds
    results it names the commit the code came from). dirty: whether the tracked files under
    CODE_PATHS differ from HEAD (None when git cannot say).
    """
    root = Path(root)
    head = try_git("rev-parse", "HEAD", cwd=root, timeout=GIT_TIMEOUT_S)
    if head is None:
        commit = os.environ.get(COMMIT_ENV) or None
        return {"commit": commit, "code_commit": commit, "dirty": None}
    last = try_git("log", "-1", "--format=%H", "--", *CODE_PATHS, cwd=root, timeout=GIT_TIMEOUT_S)
    status = try_git(
        "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS, cwd=root, timeout=GIT_TIMEOUT_S
    )
    return {
        "commit": head.strip(),
        "code_commit": (last or "").strip() or None,
        "dirty": None if status is None else bool(status.strip()),
    }


# CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic, fastest first: Intel AMX tiles
# (Sapphire Rapids and later), then AVX512-BF16 dot products (Cooper Lake, AMD Zen 4 and later).
# Without either, oneDNN emulates bf16 and a bf16 run is slower than fp32 (docs/training.md: CPU speed).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Environment variables that cap the instructions oneDNN (ONEDNN_, DNNL_: its old name) and ATen's
# own kernels use, whatever the CPU lists: a step time or a bf16 check is valid under the same caps only.
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform's guess elsewhere)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_flag() -> str:
    """The native bf16 this CPU lists in /proc/cpuinfo: "amx_bf16", "avx512_bf16", or "none". What
    the hardware has, not what a process gets: ONEDNN_MAX_CPU_ISA or a VM can withhold it
    (engine.device.bf16_in_effect asks torch)."""
    flags = cpu_flags()
    return next((f for f in BF16_FLAGS if f in flags), "none")
