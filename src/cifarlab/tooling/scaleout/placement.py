"""Which stages `cifarlab repro` runs where, and each asking for what: the stages of
tooling.repro_stages (DVC's own plan of `dvc repro TARGETS`), as Dask tasks, in the user's workspace
before them (`first`) or after them (`last`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cifarlab.core.errors import CifarlabError
from cifarlab.dvc_internals import DvcStage

# A GPU share per task, in Dask resource units (a GPU worker offers GPU=1): recipes training at
# batch <= SMALL_BATCH are launch-bound (report 000-002's batch 16-64: each step is a few small
# kernels), so four share one GPU; larger batches get a whole one. Inference stages (evaluate,
# pca: seconds of forward passes) take a share too; plots, preprocessing and the report none.
SMALL_BATCH = 64
SMALL_SHARE = 0.25
GPU_STAGES = {
    "train": None,
    "train_seeds": None,
    "evaluate": SMALL_SHARE,
    "evaluate_seeds": SMALL_SHARE,
    "pca": SMALL_SHARE,
}


class ScaleOutError(CifarlabError):
    """`cifarlab repro` cannot start or finish: uncommitted code, an unsupported stage, a dead cluster."""


@dataclass(frozen=True)
class StageTask:
    """One stage as a Dask task."""

    name: str  # DVC's address of the stage, e.g. train@lenet5
    upstream: tuple[str, ...]  # the planned tasks it directly depends on (its Dask dependencies)
    restore_first: tuple[str, ...]  # every stage above it that a worker restores first, DVC's order
    checkout_first: tuple[str, ...]  # the coordinator's stages above it (not run-cacheable): checked out
    gpu: float  # share of one GPU (0: none)


@dataclass
class Placement:
    """Stages whose outputs DVC's run-cache cannot bring back run in the user's workspace: `first`
    (no stage above them: fetch's persisted archive, before any task) and `last` (the report,
    whose files are committed to git: by the final `dvc repro`, after the tasks above them).
    `tasks` go to the cluster, in DVC's order."""

    first: list[str] = field(default_factory=list)
    tasks: list[StageTask] = field(default_factory=list)
    last: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    above: dict[str, set[str]] = field(default_factory=dict)  # a `last` stage -> the tasks it needs

    @property
    def names(self) -> list[str]:
        return [*self.first, *(t.name for t in self.tasks), *self.last]


def gpu_share(stage: DvcStage, batch_size_of) -> float:
    """The GPU share a stage asks for; `batch_size_of(run)` gives a run's training batch size."""
    group = stage.name.split("@")[0]
    if group not in GPU_STAGES:
        return 0.0
    share = GPU_STAGES[group]
    if share is not None:
        return share
    m = re.search(r"--run\s+(\S+)", stage.cmd)
    batch = batch_size_of(m.group(1)) if m else None
    return SMALL_SHARE if batch is not None and batch <= SMALL_BATCH else 1.0


def build_placement(root: Path, targets: list[str] | None = None) -> Placement:
    """The plan for `dvc repro TARGETS` in the DVC repository at `root` (all of dvc.yaml without
    targets)."""
    from cifarlab.core.params import load_params

    p = load_params(root / "params.yaml")

    def batch_size_of(run: str) -> int | None:
        r = p.runs.get(run)
        return r.recipe.batch_size if r is not None else None

    plan = Placement()
    here = os.getcwd()
    os.chdir(root)  # DVC resolves targets (dvc.yaml, stage names) against the working directory
    try:
        _place_into(plan, targets, batch_size_of)
    finally:
        os.chdir(here)
    return plan


def _place_into(plan: Placement, targets: list[str] | None, batch_size_of) -> None:
    from cifarlab.tooling.repro_stages import steps

    walk = steps(".", targets)
    runs = {s.name for s in walk if s.runs}
    for s in walk:
        if not s.runs:
            plan.up_to_date.append(s.name)
            continue
        if not s.stage.restorable or any(a in plan.last for a in s.above):
            if not s.above:
                plan.first.append(s.name)
            else:
                plan.last.append(s.name)
                plan.above[s.name] = set(s.above)
            continue
        plan.tasks.append(
            StageTask(
                name=s.name,
                upstream=tuple(u for u in s.upstream if u in runs and u not in plan.first),
                restore_first=tuple(a.name for a in walk if a.name in s.above and a.stage.restorable),
                checkout_first=tuple(a.name for a in walk if a.name in s.above and not a.stage.restorable),
                gpu=gpu_share(s.stage, batch_size_of),
            )
        )
