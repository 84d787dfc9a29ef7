"""Where each reported number came from, read from dvc.lock: the stage that wrote a metrics
file, the params it (and the stages it depends on) hashed, and the data source.

Pure functions of the parsed dvc.lock (`cifarlab.dvc_internals.read_lock`); a file no stage of
dvc.lock wrote is "not recorded", one whose bytes differ from its dvc.lock entry is "stale".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from cifarlab.core.params import OFFICIAL_MD5
from cifarlab.dvc_internals import lock_stages, param_at


def _paths_of(items: Any) -> list[str]:
    out = []
    for item in items or []:
        p = item.get("path") if isinstance(item, dict) else item
        if p:
            out.append(PurePosixPath(str(p)).as_posix())
    return out


def _covers(a: str, b: str) -> bool:
    """a and b are the same path or one is a directory holding the other."""
    return a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/")


def producing_stage(lock: Mapping | None, path: str) -> str | None:
    """Name of the dvc.lock stage whose `outs` hold `path` (the path itself or a directory of it)."""
    path = PurePosixPath(path).as_posix()
    for name, stage in sorted(lock_stages(lock).items()):
        for out in _paths_of(stage.get("outs")):
            if out == path or path.startswith(out.rstrip("/") + "/"):
                return name
    return None


def locked_md5(lock: Mapping | None, path: str) -> str | None:
    """The md5 dvc.lock records for the file `path` itself (None for a directory out or none)."""
    path = PurePosixPath(path).as_posix()
    for stage in lock_stages(lock).values():
        for out in stage.get("outs") or []:
            if isinstance(out, dict) and out.get("path") == path:
                md5 = out.get("md5")
                return md5 if isinstance(md5, str) and not md5.endswith(".dir") else None
    return None


def upstream_stages(lock: Mapping | None, name: str) -> list[str]:
    """Stages whose outs hold one of `name`'s deps (one level up: train@<run>, preprocess), sorted."""
    stages = lock_stages(lock)
    deps = _paths_of(stages.get(name, {}).get("deps"))
    return sorted(
        other
        for other, stage in stages.items()
        if other != name and any(_covers(out, dep) for out in _paths_of(stage.get("outs")) for dep in deps)
    )


def hashed_params(lock: Mapping | None, path: str) -> dict | None:
    """The params behind a metrics file: {params file: {key: value}}, merged over the stage that
    wrote it and every stage it depends on directly (its train stage, preprocess); None if no stage
    of dvc.lock wrote it."""
    name = producing_stage(lock, path)
    if name is None:
        return None
    stages = lock_stages(lock)
    merged: dict[str, dict] = {}
    for stage in upstream_stages(lock, name) + [name]:  # the writing stage last: it wins a clash
        for file, kv in (stages[stage].get("params") or {}).items():
            merged.setdefault(str(file), {}).update(kv or {})
    return merged


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def params_hash(lock: Mapping | None, path: str) -> str:
    """First 8 hex chars of md5(canonical JSON of `hashed_params`), or why there is none."""
    if lock is None:
        return "not recorded (no dvc.lock)"
    params = hashed_params(lock, path)
    if params is None:
        return "not recorded (no dvc.lock stage writes it)"
    return hashlib.md5(canonical_json(params).encode("utf-8")).hexdigest()[:8]


def data_source(lock: Mapping | None) -> str:
    """ "official archive" (md5 of the cs.toronto.edu archive), "local copy <url>", or why unknown."""
    if lock is None:
        return "not recorded (no dvc.lock)"
    fetch = lock_stages(lock).get("fetch")
    if fetch is None:
        return "not recorded (no fetch stage in dvc.lock)"
    url = md5 = None
    for kv in (fetch.get("params") or {}).values():
        url = url or param_at(kv or {}, "data.url")
        md5 = md5 or param_at(kv or {}, "data.md5")
    if md5 == OFFICIAL_MD5:
        return "official archive"
    return f"local copy `{url}`" if url else "local copy (url not recorded)"
