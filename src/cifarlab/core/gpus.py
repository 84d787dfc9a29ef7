"""Which GPUs this machine offers, found without importing torch (importing it takes seconds:
~10 s on a 2-core machine busy training): for the start-of-run notice, the estimate's cache key
and `cifarlab repro`'s cluster. Code that has torch loaded asks engine.device.select_device,
which follows the torch build (a CPU-only torch on a GPU machine trains on the CPU)."""

from __future__ import annotations

import os
import shutil
import subprocess


def visible_gpus() -> list[str]:
    """The NVIDIA GPUs this process may use, as CUDA numbers them: CUDA_VISIBLE_DEVICES when set
    (empty or -1: none), else nvidia-smi's indices."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
