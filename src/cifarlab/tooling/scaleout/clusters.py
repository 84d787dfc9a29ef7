"""The Dask cluster `cifarlab repro` runs on: Dask's own cluster managers, configured.

- no GPU, `--workers N`: a LocalCluster of N single-threaded worker processes (one stage each);
- GPUs, `--workers N`: one worker per GPU (the first N), pinned by CUDA_VISIBLE_DEVICES in its
  environment (what dask-cuda's LocalCUDACluster does), offering the resource GPU=1 in
  GPU_SLOTS threads, so four launch-bound small-batch runs (GPU=0.25 each) share one GPU;
- `--slurm`: dask-jobqueue's SLURMCluster, one GPU per job, N jobs;
- `--scheduler ADDRESS`: a scheduler the user runs, with their workers (`dask worker ADDRESS
  --resources GPU=1` on GPU machines).

A one-machine cluster listens on loopback only (scheduler, nannies, workers, dashboard): Dask's
comms have no authentication, so anyone who reaches one of its ports can run Python on the workers.
"""

from __future__ import annotations

import logging  # silence_logs=CRITICAL: a failed stage is reported once, by the coordinator
import os

from cifarlab.tooling.scaleout.placement import ScaleOutError

GPU_SLOTS = 4  # tasks one GPU worker runs at once: 1 whole-GPU stage, or 4 quarter shares
LOOPBACK = "127.0.0.1"  # the one host a one-machine cluster listens on (module docstring)


def gpu_worker_spec(gpus: list[str]) -> dict:
    """SpecCluster's worker spec: one Nanny per GPU, pinned to it, offering GPU=1 in GPU_SLOTS threads.
    memory_limit=0: stages run as subprocesses, outside what Dask would measure anyway."""
    from distributed import Nanny

    return {
        f"gpu{g}": {
            "cls": Nanny,
            "options": {
                "host": LOOPBACK,
                "nthreads": GPU_SLOTS,
                "resources": {"GPU": 1},
                "memory_limit": 0,
                "env": {"CUDA_VISIBLE_DEVICES": g},
                "silence_logs": logging.CRITICAL,
            },
        }
        for g in gpus
    }


def local_cluster(workers: int | None, gpus: list[str], dashboard: str = f"{LOOPBACK}:8787"):
    """One machine: CPU workers, or one worker per GPU. `workers` None = every core / GPU.
    Every port on LOOPBACK; `dashboard` names its host too (a bare ":8787" is every interface).
    Returns (cluster, a few words saying what it is)."""
    from distributed import LocalCluster, Scheduler, SpecCluster

    if not gpus:
        n = workers or os.cpu_count() or 1
        return LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=0,
            host=LOOPBACK,
            dashboard_address=dashboard,
            silence_logs=logging.CRITICAL,
        ), f"{n} CPU workers"
    use = gpus[:workers] if workers else gpus
    cluster = SpecCluster(
        workers=gpu_worker_spec(use),
        silence_logs=logging.CRITICAL,
        scheduler={"cls": Scheduler, "options": {"host": LOOPBACK, "dashboard_address": dashboard}},
    )
    return cluster, f"{len(use)} GPU workers (GPUs {', '.join(use)}), {GPU_SLOTS} tasks each"


def slurm_cluster(options: list[str], gpus_per_job: int = 1, cpus_per_job: int = 8, memory: str = "64GB"):
    """dask-jobqueue's SLURMCluster, not yet scaled (`cluster.scale(jobs=N)` submits N jobs): one
    worker per job with `gpus_per_job` GPUs (0: a CPU job running one stage at a time);
    `options` are extra #SBATCH lines (e.g. --partition=gpu, --time=08:00:00)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ScaleOutError("--slurm needs dask-jobqueue: pip install 'cifarlab[slurm]'") from None
    gres = [f"--gres=gpu:{gpus_per_job}"] if gpus_per_job else []
    resources = ["--resources", f"GPU={gpus_per_job}"] if gpus_per_job else []
    # cores = the worker's threads (tasks at once); job_cpu = the cores SLURM reserves for them
    cluster = SLURMCluster(
        cores=GPU_SLOTS * gpus_per_job or 1,
        job_cpu=cpus_per_job,
        processes=1,
        memory=memory,
        job_extra_directives=[*gres, *options],
        worker_extra_args=resources,
    )
    return cluster, f"SLURM jobs of {gpus_per_job} GPU(s), {cpus_per_job} cores, {memory}"
