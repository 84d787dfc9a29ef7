"""The reproduced side of the report: reports/metrics/*.json (+ details) read into one record per (run, seed)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cifarlab.core.cifar10 import FULL_TEST, FULL_TRAIN
from cifarlab.core.errors import DataError
from cifarlab.core.io import read_json_object

EXPERIMENT_FILE = "experiment.json"  # the experiment stage's copy of one run's metrics

# What a details file says about how far a run is from its recipe (see evaluate.py).
SMOKE_KEYS = ("n_train", "n_test", "recipe_epochs", "epochs_cap", "random_features")


def _block(raw: Any) -> dict | None:
    return raw if isinstance(raw, dict) else None


def normalize_metrics(raw: Mapping, path: str, md5: str | None = None) -> dict:
    """One metrics file as the report uses it (`md5`: of the file's bytes, checked against dvc.lock).

    Older files lack `run` (then the model name is the run) and `seed` (then None).
    """
    if not isinstance(raw, Mapping):
        raise DataError(f"{path}: a metrics file must hold a JSON object, got {type(raw).__name__}")
    run = raw.get("run") or raw.get("model")
    if not run:
        raise DataError(f"{path}: has neither `run` nor `model`")
    for key in ("best", "final"):
        if not isinstance(raw.get(key), Mapping):
            raise DataError(f"{path}: has no `{key}` block (rerun its evaluate stage)")
    seed = raw.get("seed")
    smoke = {k: raw.get(k) for k in SMOKE_KEYS}
    return {
        **smoke,
        "diverged_epoch": raw.get("diverged_epoch") if raw.get("diverged") else None,
        "run": str(run),
        "model": raw.get("model"),
        "seed": seed,
        "report": raw.get("report"),
        "overrides": raw.get("overrides") or {},
        "data": raw.get("data"),  # the archive's md5s (details files since "Published results")
        "best": dict(raw["best"]),
        "final": dict(raw["final"]),
        "val": _block(raw.get("val")),
        "best_flip": _block(raw.get("best_flip")),  # details: best epoch with test-time flip
        "path": path,
        "md5": md5,
    }


def load_metrics(
    directory: str | os.PathLike, root: str | os.PathLike | None = None, details_dir: str | os.PathLike | None = None
) -> list[dict]:
    """Every reports/metrics/*.json but experiment.json (a copy of one of them), normalized,
    sorted by path; each merged with its reports/details/<same name>.json where there is one
    (which run and seed it is, data sizes, epochs). A missing directory gives [].

    Each record's `path` is the file's POSIX path relative to `root` (default: the current
    directory, the DVC project root), as dvc.lock names it; absolute where it lies outside.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    root = Path(root) if root is not None else Path.cwd()
    records = []
    details_dir = Path(details_dir) if details_dir is not None else None
    for file in sorted(directory.glob("*.json")):
        if file.name == EXPERIMENT_FILE:
            continue
        try:
            rel = file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = file.as_posix()
        data = file.read_bytes()  # its md5 is checked against dvc.lock's
        raw = read_json_object(rel, data)
        details_file = details_dir / file.name if details_dir is not None else None
        if details_file is not None and details_file.is_file():
            details = read_json_object(details_file)
            meta = {k: v for k, v in details.items() if k not in ("final", "best", "val")}
            raw = {**meta, **raw}
        records.append(normalize_metrics(raw, rel, hashlib.md5(data).hexdigest()))
    return records


def _seed_key(seed: Any) -> tuple:
    return (seed is not None, str(type(seed).__name__), seed if isinstance(seed, (int, float)) else str(seed))


def group_runs(records: Iterable[dict]) -> dict[str, list[dict]]:
    """run -> its records, one per seed, sorted by seed (an unrecorded seed first).

    Two files with the same (run, seed) would count one training run twice: the first by path
    counts, the others stay in the list (last) flagged `duplicate: True`, which `counted` drops
    and the provenance table marks.
    """
    runs: dict[str, list[dict]] = {}
    seen: set[tuple[str, Any]] = set()
    for rec in sorted(records, key=lambda r: r["path"]):
        key = (rec["run"], json.dumps(rec["seed"]))
        if key in seen:
            rec = {**rec, "duplicate": True}
            runs.setdefault(rec["run"], []).append(rec)
            continue
        seen.add(key)
        runs.setdefault(rec["run"], []).append(rec)
    return {
        run: sorted(recs, key=lambda r: (r.get("duplicate", False), _seed_key(r["seed"]), r["path"]))
        for run, recs in sorted(runs.items())
    }


def counted(recs: Sequence[dict]) -> list[dict]:
    """The records of one run that count (duplicates of a (run, seed) dropped)."""
    return [r for r in recs if not r.get("duplicate")]


def smoke_notes(rec: Mapping) -> list[str]:
    """Why one (run, seed) is not the recipe as published: a data subset, capped epochs, random
    AlexNet features. [] for a full run (and for records that do not say: older files)."""
    notes = []
    n_train, n_test = rec.get("n_train"), rec.get("n_test")
    if (n_train is not None and n_train < FULL_TRAIN) or (n_test is not None and n_test < FULL_TEST):
        a, b = ("?" if n is None else f"{n:,}" for n in (n_train, n_test))
        notes.append(f"subset: {a} train / {b} test images (full: {FULL_TRAIN:,} / {FULL_TEST:,})")
    if rec.get("epochs_cap") is not None:
        notes.append(f"epochs capped at {rec['epochs_cap']} (recipe: {rec.get('recipe_epochs')})")
    if rec.get("random_features"):
        notes.append("random AlexNet features (pretrained: false), not ImageNet's")
    return notes
