"""Which stages `dvc repro TARGETS` runs, in its order: from DVC's own graph, never a second
parse of dvc.yaml. The one planner of `cifarlab estimate`, the start-of-run notice and
`cifarlab repro`.

The stages are those DVC collects for the targets (with `--glob` as `dvc repro --glob`) and
every stage above them, in the order DVC's planner walks them (cifarlab.dvc_internals.repro_order).
A stage runs when DVC says it changed, or when a stage it depends on runs (its inputs will
change): the stages a `dvc repro` would run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cifarlab.dvc_internals import DvcStage, repro_order


@dataclass(frozen=True)
class Step:
    """One stage of the plan."""

    name: str  # DVC's address, e.g. train@lenet5
    runs: bool  # `dvc repro` would run it: changed, or a stage above it runs
    upstream: tuple[str, ...]  # the stages it directly depends on (an output of each is a dep of it)
    above: frozenset[str]  # every stage it depends on, transitively
    stage: DvcStage = field(compare=False, repr=False)  # what DVC says of it (command, restorable)


def steps(
    root: str | Path = ".",
    targets: list[str] | None = None,
    glob: bool = False,
    force: bool = False,
    changed: Callable[[str], bool | None] | None = None,
) -> list[Step]:
    """The plan of `dvc repro TARGETS` in the DVC repository at `root` (none: all of dvc.yaml), in
    DVC's order. force: every stage runs (`dvc repro --force`, a fresh clone's view). changed(name):
    True/False overrides DVC's verdict on that stage, None asks DVC (the start-of-run notice
    answers for the stage running it). An unknown target -> ParamsError with one line."""
    running: set[str] = set()
    out = []
    with repro_order(root, targets, glob) as order:
        for stage in order:
            verdict = changed(stage.name) if changed is not None else None
            runs = (
                force or any(u in running for u in stage.upstream) or (stage.changed() if verdict is None else verdict)
            )
            if runs:
                running.add(stage.name)
            out.append(Step(stage.name, runs, stage.upstream, stage.above, stage))
    return out


def to_run(root: str | Path = ".", targets: list[str] | None = None, **options) -> list[str]:
    """The names of the stages `dvc repro TARGETS` would run, in its order (`options`: those of
    `steps`)."""
    return [s.name for s in steps(root, targets, **options) if s.runs]
