"""The Dask cluster `cifarlab repro` runs on: Dask's own cluster managers, configured.

- no GPU, `--workers N`: a LocalCluster of N single-threaded worker processes (one stage each);
- GPUs, `--workers N`: one worker per GPU (the first N), pinned by CUDA_VISIBLE_DEVICES in its
  environment (what dask-cuda's LocalCUDACluster does), offering the resource GPU=1 in
  GPU_SLOTS threads, so four launch-bound small-batch runs (GPU=0.25 each) share one GPU;
- `--slurm`: dask-jobqueue's SLURMCluster, one GPU per job, N jobs;
- `--scheduler ADDRESS`: a scheduler the user runs, with their workers (`dask worker ADDRESS
  --resources GPU=1` on GPU machines).
"""
from __future__ import annotations

import logging  # silence_logs=CRITICAL: a failed stage is reported once, by the coordinator
import os
import shutil
import subprocess

from cifarlab.scaleout.plan import ScaleOutError

GPU_SLOTS = 4  # tasks one GPU worker runs at once: 1 whole-GPU stage, or 4 quarter shares


def visible_gpus() -> list[str]:
    """The GPUs this machine's workers may use: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's
    indices (no torch import: the coordinator stays light)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def local_cluster(workers: int | None, gpus: list[str], dashboard: str = ":8787"):
    """One machine: CPU workers, or one worker per GPU. `workers` None = every core / GPU."""
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    if not gpus:
        n = workers or os.cpu_count() or 1
        # memory_limit=0: stages run as subprocesses, outside what Dask would measure anyway
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0,
                            dashboard_address=dashboard, silence_logs=logging.CRITICAL), f"{n} CPU workers"
    use = gpus[: workers] if workers else gpus
    spec = {f"gpu{g}": {"cls": Nanny, "options": {
        "nthreads": GPU_SLOTS, "resources": {"GPU": 1}, "memory_limit": 0,
        "env": {"CUDA_VISIBLE_DEVICES": g}, "silence_logs": logging.CRITICAL}} for g in use}
    cluster = SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": dashboard}},
                          silence_logs=logging.CRITICAL)
    return cluster, f"{len(use)} GPU workers (GPUs {', '.join(use)}), {GPU_SLOTS} tasks each"


def slurm_cluster(jobs: int, options: list[str], cores: int = 8, memory: str = "64GB", gpus_per_job: int = 1):
    """dask-jobqueue's SLURMCluster: `jobs` jobs of one worker each, `gpus_per_job` GPUs per job
    (0: CPU jobs); `options` are extra #SBATCH lines (e.g. --partition=gpu, --time=08:00:00)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ScaleOutError("--slurm needs dask-jobqueue: pip install 'cifarlab[slurm]'") from None
    gres = [f"--gres=gpu:{gpus_per_job}"] if gpus_per_job else []
    resources = ["--resources", f"GPU={gpus_per_job}", "--nthreads", str(GPU_SLOTS)] if gpus_per_job else []
    cluster = SLURMCluster(cores=cores, memory=memory, processes=1, job_extra_directives=[*gres, *options],
                           worker_extra_args=resources)
    cluster.scale(jobs=jobs)
    return cluster, f"SLURM: {jobs} jobs of {gpus_per_job} GPU(s), {cores} cores, {memory}"
