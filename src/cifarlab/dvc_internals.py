"""Everything cifarlab takes from DVC besides its command line, in one module: dvc.lock read as
DVC writes it, and DVC's Python internals, none of which is a public API (the planner of
`dvc.repo.reproduce`, the run-cache, the cache's layout, a stage's and an output's fields, the
rule of `dvc.stage.cache._can_hash`). Nothing else in cifarlab imports dvc.

pyproject.toml pins DVC to the minor version this was checked on. Every DVC name used here is
declared in CALLED, READ and CAN_HASH_MD5; tests/test_dvc_api.py checks them against the
installed DVC and fails naming the one an upgrade removed or changed.

DVC is imported inside the functions: the report stage reads dvc.lock through this module and
needs none of it. The module sits beside the stages, not in cifarlab.tooling, because no stage
may reach the tooling (tests/test_dvc_deps.py), and not in cifarlab.core, on which every stage
depends: an edit here re-runs the report only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarlab.core.errors import DataError, ParamsError, one_line
from cifarlab.core.yaml_io import ErrorType, read_yaml_file

LOCK_FILE = Path("dvc.lock")

# The DVC callables used here: (module:qualified name, the parameters passed by position, those
# passed by name); None: used as a class only (an `except` clause). A method lists `self`.
CALLED: tuple[tuple[str, tuple[str, ...] | None, tuple[str, ...]], ...] = (
    ("dvc.cli:parse_args", ("argv",), ()),
    ("dvc.exceptions:DvcException", None, ()),
    ("dvc.repo:Repo", ("root_dir",), ()),
    ("dvc.repo.reproduce:collect_stages", ("repo", "targets"), ("glob",)),
    ("dvc.repo.reproduce:get_active_graph", ("graph",), ()),
    ("dvc.repo.reproduce:plan_repro", ("graph", "stages"), ()),
    ("dvc.stage:Stage.changed", ("self",), ()),
    ("dvc.stage.cache:StageCache.push", ("self", "remote"), ()),
    ("dvc.stage.cache:StageCache.pull", ("self", "remote"), ()),
    ("dvc.stage.cache:StageCache.get_used_objs", ("self", "used_run_cache"), ("remote",)),
    ("dvc.data_cloud:DataCloud.push", ("self", "objs"), ("remote",)),
    ("dvc.data_cloud:DataCloud.pull", ("self", "objs"), ("remote",)),
    ("dvc.data_cloud:DataCloud.get_remote", ("self", "name"), ()),
)
# The attributes read of DVC's objects, by where the object comes from (a Repo of a project with
# one stage, a dep and an output, and a local remote).
READ: dict[str, tuple[str, ...]] = {
    "repo": ("lock", "index", "stage_cache", "cloud", "cache", "config"),
    "repo.index": ("graph", "outs"),
    "repo.cache": ("legacy",),
    "repo.cache.legacy": ("path",),
    "stage": ("addressing", "cmd", "deps", "outs", "always_changed", "is_callback"),
    "dep": ("protocol", "def_path"),
    "out": ("protocol", "def_path", "persist", "use_cache", "is_metric", "is_plot", "fs_path"),
    "remote": ("path",),
}
# md5 of the source of dvc.stage.cache._can_hash (DVC 3.67), whose rule `_restorable` copies: a
# DVC whose rule reads otherwise fails tests/test_dvc_api.py until `_restorable` is checked against it.
CAN_HASH_MD5 = "eabb8a6a7ac6a5dbd1eea00f24878b83"


# --------------------------------------------------------------------------- dvc.lock


def read_lock(path: str | os.PathLike = LOCK_FILE, *, error: ErrorType = DataError) -> dict | None:
    """dvc.lock parsed as DVC writes it (YAML 1.2: it writes a ratio 5:3:2 unquoted, which YAML 1.1
    reads as the number 18182), or None when there is none (nothing reproduced through DVC yet).
    A file that is not YAML, repeats a key or is no mapping raises `error` with one line
    (`dvc.lock:LINE:COLUMN: ...`)."""
    path = Path(path)
    try:
        lock = read_yaml_file(path, error=error)
    except FileNotFoundError:
        return None
    if not isinstance(lock, dict):
        raise error(
            f"{path}: not a DVC lock file (expected a mapping with `stages:`): restore it (git checkout, "
            "or dvc repro rewrites it)"
        )
    return lock


def param_at(params: Any, key: str, missing: Any = None) -> Any:
    """The value at a dotted params key as DVC looks it up (`lenet5.lr`; a key that itself holds
    the dot first, as dvc.lock records some), or `missing` where there is none."""
    if isinstance(params, Mapping) and key in params:
        return params[key]
    node = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return missing
        node = node[part]
    return node


def lock_stages(lock: Mapping | None) -> dict[str, dict]:
    """stage name -> its dvc.lock entry ({} for no lock or a stage with none)."""
    stages = (lock or {}).get("stages")
    return {str(k): (v if isinstance(v, dict) else {}) for k, v in stages.items()} if isinstance(stages, dict) else {}


# --------------------------------------------------------------------------- DVC's command line


def parse_dvc_args(argv: list[str]) -> Any:
    """`argv` (after `dvc`) parsed by DVC's own parser (an argparse Namespace). Raises what DVC's
    parser raises on an argv it refuses (SystemExit, DvcParserError)."""
    from dvc.cli import parse_args

    return parse_args(argv)


# --------------------------------------------------------------------------- the pipeline


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


@dataclass(frozen=True)
class DvcStage:
    """What cifarlab reads of one of DVC's stages (a dvc.stage.PipelineStage)."""

    name: str  # DVC's address, e.g. train@lenet5
    upstream: tuple[str, ...]  # the stages it directly depends on (an output of each is a dep of it)
    above: frozenset[str]  # every stage it depends on, transitively
    cmd: str  # its command (a list's commands joined by spaces)
    restorable: bool  # DVC's run-cache can bring its outputs back without running it (`_restorable`)
    _stage: Any = field(compare=False, repr=False)

    def changed(self) -> bool:
        """DVC's verdict: its deps, outputs or command differ from dvc.lock. Only inside `repro_order`."""
        return bool(self._stage.changed())


@contextlib.contextmanager
def _cwd(path: str | os.PathLike) -> Iterator[None]:
    """In `path` for the `with` (contextlib.chdir from Python 3.11)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def repro_order(
    root: str | os.PathLike = ".", targets: list[str] | None = None, glob: bool = False
) -> Iterator[list[DvcStage]]:
    """The stages `dvc repro TARGETS` walks in the DVC repository at `root` (none: all of
    dvc.yaml), in DVC's order: those DVC collects for the targets (`--glob` as `dvc repro
    --glob`) and every stage above them. The repository stays open (and locked) inside the
    `with`, where DvcStage.changed() may ask DVC. An unknown target -> ParamsError, one line."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    with Repo(str(root)) as repo, repo.lock, quiet_dvc(), _cwd(root):
        try:  # DVC resolves a target's dvc.yaml against the working directory, as its CLI does
            collected = collect_stages(repo, targets or ["dvc.yaml"], glob=glob)
        except DvcException as err:
            pattern = " pattern" if glob else ""
            raise ParamsError(
                f"{' '.join(targets or [])}: no such stage{pattern} ({one_line(err, 200)}); stage names: dvc stage list"
            ) from None
        if not collected:
            raise ParamsError(f"{' '.join(targets or [])}: matches no stage; stage names: dvc stage list")
        graph = get_active_graph(repo.index.graph)
        order = []
        for stage in plan_repro(graph, collected):
            cmd = " ".join(stage.cmd) if isinstance(stage.cmd, list) else stage.cmd or ""
            order.append(
                DvcStage(
                    name=stage.addressing,
                    upstream=tuple(u.addressing for u in graph.successors(stage)),  # an edge: stage -> one it needs
                    above=frozenset(a.addressing for a in nx.descendants(graph, stage)),
                    cmd=cmd,
                    restorable=_restorable(stage),
                    _stage=stage,
                )
            )
        yield order


def _restorable(stage) -> bool:
    """Whether DVC's run-cache can bring this stage's outputs back without running it: the rule of
    dvc.stage.cache._can_hash (DVC 3), less its hashing of the deps (which may not exist yet),
    plus Stage.run's: no run-cache entry is saved for a stage with a `cache: false` output that
    is not a metric or a plot (the report's files, committed to git)."""
    return bool(
        stage.cmd
        and stage.deps
        and stage.outs
        and not stage.always_changed
        and not stage.is_callback
        and all(d.protocol == "local" and d.def_path for d in stage.deps)
        and all(o.protocol == "local" and o.def_path and not o.persist for o in stage.outs)
        and all(o.use_cache or o.is_metric or o.is_plot for o in stage.outs)
    )


# --------------------------------------------------------------------------- the repository


def output_paths(root: Path) -> set[str]:
    """Every output of the pipeline at `root`, relative to it (POSIX)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {Path(o.fs_path).relative_to(root.resolve()).as_posix() for o in repo.index.outs}


def remote_url(root: Path, name: str) -> str | None:
    """The URL of the DVC remote `name` as another process must see it (a local path made
    absolute); None when there is no such remote."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        remotes = repo.config.get("remote", {})
        if name not in remotes:
            return None
        return repo.cloud.get_remote(name).path if "://" not in remotes[name]["url"] else remotes[name]["url"]


def remote_names(root: Path) -> list[str]:
    """The DVC remotes configured at `root`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return list(repo.config.get("remote", {}))


def cache_dir(root: Path) -> str:
    """The root of the DVC cache the repository at `root` uses, absolute."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return str(Path(repo.cache.legacy.path).resolve())


def sync_run_cache(direction: str, remote: str | None = None, root: str | os.PathLike = ".") -> None:
    """In the DVC repository at `root`: push (or pull) the run-cache entries and every object
    they name to (from) `remote` (None: the default one). `dvc push --run-cache` moves the
    entries only, not the outputs they name, and `dvc repro --pull` takes only the default
    remote; a restore needs entries and objects both."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        if direction == "push":
            used = repo.stage_cache.push(remote)
            for objs in repo.stage_cache.get_used_objs(used).values():
                repo.cloud.push(objs, remote=remote)
        else:
            used = repo.stage_cache.pull(remote)
            # remote=: a directory output's listing (.dir) is fetched from there first
            for objs in repo.stage_cache.get_used_objs(used, remote=remote).values():
                repo.cloud.pull(objs, remote=remote)
