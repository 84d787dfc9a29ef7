"""Which stages `dvc repro TARGETS` runs, in its order: from DVC's own graph, never a second
parse of dvc.yaml. The one planner of `cifarlab estimate`, the start-of-run notice and
`cifarlab repro`.

The stages are those DVC collects for the targets (`dvc.repo.reproduce.collect_stages`, with
`--glob` as `dvc repro --glob`) and every stage above them, in the order `plan_repro` walks them.
A stage runs when DVC says it changed, or when a stage it depends on runs (its inputs will
change): the stages a `dvc repro` would run.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cifarlab.core.errors import ParamsError


@dataclass(frozen=True)
class Step:
    """One stage of the plan."""

    name: str  # DVC's address, e.g. train@lenet5
    runs: bool  # `dvc repro` would run it: changed, or a stage above it runs
    upstream: tuple[str, ...]  # the stages it directly depends on (an output of each is a dep of it)
    above: frozenset[str]  # every stage it depends on, transitively
    stage: Any = field(compare=False, repr=False)  # the dvc.stage.PipelineStage


@contextlib.contextmanager
def quiet_dvc():
    """DVC's status checks log every missing output; the plan needs the answer, not the log."""
    log = logging.getLogger("dvc")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def steps(root: str | Path = ".", targets: list[str] | None = None, glob: bool = False, force: bool = False,
          changed: Callable[[str], bool | None] | None = None) -> list[Step]:
    """The plan of `dvc repro TARGETS` in the DVC repository at `root` (none: all of dvc.yaml), in
    DVC's order. force: every stage runs (`dvc repro --force`, a fresh clone's view). changed(name):
    True/False overrides DVC's verdict on that stage, None asks DVC (the start-of-run notice
    answers for the stage running it). An unknown target -> ParamsError with one line."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with Repo(str(root)) as repo, repo.lock, quiet_dvc():
        try:
            collected = collect_stages(repo, targets or ["dvc.yaml"], glob=glob)
        except DvcException as err:
            pattern = " pattern" if glob else ""
            raise ParamsError(f"{' '.join(targets or [])}: no such stage{pattern} ({' '.join(str(err).split())[:200]}); "
                              "stage names: dvc stage list") from None
        if not collected:
            raise ParamsError(f"{' '.join(targets or [])}: matches no stage; stage names: dvc stage list")
        graph = get_active_graph(repo.index.graph)
        order = plan_repro(graph, collected)
        running: set[str] = set()
        out = []
        for stage in order:
            name = stage.addressing
            ups = tuple(u.addressing for u in graph.successors(stage))  # an edge: stage -> a stage it needs
            verdict = changed(name) if changed is not None else None
            runs = force or any(u in running for u in ups) or (stage.changed() if verdict is None else verdict)
            if runs:
                running.add(name)
            out.append(Step(name, runs, ups, frozenset(a.addressing for a in nx.descendants(graph, stage)), stage))
    return out


def to_run(root: str | Path = ".", targets: list[str] | None = None, glob: bool = False, force: bool = False,
           changed: Callable[[str], bool | None] | None = None) -> list[str]:
    """The names of the stages `dvc repro TARGETS` would run, in its order (see `steps`)."""
    return [s.name for s in steps(root, targets, glob, force, changed) if s.runs]
