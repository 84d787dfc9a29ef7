"""Packs: finished runs with their provenance in one file, carried to another checkout and
folded into its reports/published/ (tooling/fold.py; reporting/published.py reads them for the
report and `cifarlab compare`).

    cifarlab pack -o runs.tar.gz           in the workspace where the runs finished (a GPU box)
    cifarlab fold runs.tar.gz              in the checkout that publishes them (main)
    cifarlab compare                       your reports/metrics against reports/published

A pack is a .tar.gz (at most MAX_PACK_BYTES) holding manifest.json and, per run output <out>
(the run name, or <run>-s<seed>), the files of PUBLISHED_FILES plus provenance/<out>.json:
data (archive and content md5, image counts), device, torch/CUDA, code version (commit, dirty,
md5 of every file of the train and evaluate stages' code), seed, epochs run against the
recipe's, wall time and training images/s. Never checkpoints.

`fold` refuses a pack whose run recipe (model, recipe, architecture, the train.* and data.*
keys that change numbers) differs from the checkout's, or whose code differs from the
checkout's, with one line naming the run and the key or file; `--accept-code-change` folds
the latter anyway and records the files that differ in the run's provenance.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cifarlab.core import paths
from cifarlab.core.errors import CifarlabError
from cifarlab.core.io import atomic_write
from cifarlab.core.params import Params, load_params
from cifarlab.core.provenance import code_version
from cifarlab.reporting.published import PROVENANCE, PUBLISHED_FILES, REQUIRED, numerics_of, read_json_object
from cifarlab.reporting.studies import content_md5

PACK_FORMAT = 1
MAX_PACK_BYTES = 16 * 2**20  # what one file carried back from a lent GPU may weigh
MANIFEST = "manifest.json"
# train.* and data.* keys that change a run's numbers. The numerics (bf16, channels_last,
# fused_optimizer, compile, num_threads) are not among them: provenance records them ("numerics",
# shown in every table), and seeds of another precision are kept apart (never averaged), so an
# fp32 seed folds beside bf16 ones only in a study. data.url/md5 name the data, recorded by md5.
RECIPE_TRAIN_KEYS = ("max_epochs", "eval_batch_size", "deterministic")
RECIPE_DATA_KEYS = ("train_subset", "test_subset", "val_split")
CODE_STAGES = ("train", "evaluate")  # whose code makes the numbers (dvc.yaml deps under src/)


class PublishError(CifarlabError):
    """A pack that cannot be made or folded."""


# --------------------------------------------------------------------------- recipe and code


def run_recipe(p: Params, run: str) -> dict:
    """What a published number of `run` claims to be the result of, as plain JSON data."""
    r = p.runs[run]
    recipe = {
        "model": r.model,
        "recipe": r.params.recipe.model_dump(mode="json"),
        "arch": json.loads(json.dumps(dict(r.params.arch))),
        "train": {k: getattr(p.train, k) for k in RECIPE_TRAIN_KEYS},
        "data": {k: getattr(p.data, k) for k in RECIPE_DATA_KEYS},
    }
    if any(recipe["data"][k] for k in RECIPE_DATA_KEYS):
        recipe["data"]["split_seed"] = p.seed  # subsets and the val split are drawn with `seed`
    return recipe


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The dotted key of the first place two JSON values differ, or None if equal."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}{k}"
            d = first_difference(a[k], b[k], f"{where}{k}.")
            if d:
                return d
        return None
    return None if a == b else (where.rstrip(".") or "(value)")


def dotted(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = obj.get(part) if isinstance(obj, Mapping) else None
    return obj


def code_files(root: Path) -> list[str]:
    """The .py files of the train and evaluate stages' code deps (dvc.yaml), sorted, POSIX, relative."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        raise PublishError(f"{dvc_yaml} not found: pack and fold run at the root of a cifarlab checkout")
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    files: set[str] = set()
    for name in CODE_STAGES:
        for dep in stages[name]["do"]["deps"]:
            dep = str(dep)
            if not dep.startswith("src/"):
                continue
            if "${item.model}" in dep:  # each run's own model file: every model's, for a pack of any runs
                found = sorted(root.glob(dep.replace("${item.model}", "*")))
            else:
                path = root / dep
                found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
            files.update(f.relative_to(root).as_posix() for f in found if f.is_file())
    return sorted(files)


def code_md5s(root: Path) -> dict[str, str]:
    """path -> md5 of every file of code_files."""
    return {f: hashlib.md5((root / f).read_bytes()).hexdigest() for f in code_files(root)}


# --------------------------------------------------------------------------- pack


def finished_outs(root: Path) -> list[str]:
    """Run outputs whose required files are all present in the workspace at `root`."""
    metrics = root / paths.METRICS_DIR
    outs = sorted(f.stem for f in metrics.glob("*.json") if f.name != "experiment.json") if metrics.is_dir() else []
    return [o for o in outs if all((root / str(PUBLISHED_FILES[k]).format(out=o)).is_file() for k in REQUIRED)]


def _lock_mismatch(root: Path, out: str, run: str, seed: int, p: Params, md5s: Mapping[str, str]) -> str | None:
    """A code file whose md5 differs from what dvc.lock recorded when `out` was trained, or None
    (also None without dvc.lock or without its stage: nothing recorded to check against)."""
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return None
    stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}
    name = f"train@{run}" if seed == p.seed else f"train_seeds@{run}-{seed}"
    for dep in (stages.get(name) or {}).get("deps") or []:
        path, md5 = dep.get("path"), dep.get("md5")
        if path in md5s and md5 and not md5.endswith(".dir") and md5s[path] != md5:
            return path
    return None


def provenance_of(root: Path, out: str, p: Params, md5s: Mapping[str, str], cache: dict | None = None,
                  code_root: Path | None = None) -> dict:
    """The provenance record of one finished run output (see the module docstring).

    Fields the run did not record itself (runs of older code) are filled from the workspace
    now and listed under `derived_at_pack`."""
    details = read_json_object(root / paths.DETAILS_DIR / f"{out}.json")
    timing = read_json_object(root / paths.TIMING_DIR / f"{out}.json")
    run, seed = details.get("run"), details.get("seed")
    if run not in p.runs or not isinstance(seed, int):
        raise PublishError(f"{out}: its details name run {run!r} seed {seed!r}, not a run of this workspace's "
                           "params.yaml: pack the workspace that trained it")
    derived = []
    data = dict(details.get("data") or {})
    raw = root / paths.RAW_ARCHIVE
    if not data.get("content_md5"):
        derived.append("data")
        data = {"archive_md5": p.data.md5, "content_md5": None}
        if raw.is_file():
            from cifarlab.data.cifar_io import archive_identity

            cache = {} if cache is None else cache
            if "identity" not in cache:  # 170 MB read twice: once per pack, not per run
                cache["identity"] = archive_identity(raw)
            data = cache["identity"]
    code = timing.get("code")
    if not code:
        derived.append("code")
        code = code_version(root if code_root is None else code_root)
    device_name = timing.get("device_name")
    if not device_name:
        derived.append("device_name")
        device = str(timing.get("device", ""))
        if device == "cpu":
            from cifarlab.core.provenance import cpu_name

            device_name = cpu_name()  # the packing machine: runs are packed where they ran
        else:
            device_name = device  # older files wrote the GPU's name here
    numerics, guessed = numerics_of(timing, p.train.model_dump())
    if guessed:
        derived.append("numerics")
    epoch_seconds = timing.get("epoch_seconds") or []
    wall = timing.get("wall_seconds", round(sum(epoch_seconds), 3))
    n_train = details.get("n_train")
    epochs_run = timing.get("epochs_run", len(epoch_seconds))
    return {
        "out": out,
        "run": run,
        "seed": seed,
        "model": details.get("model"),
        "report": details.get("report"),
        "recipe": run_recipe(p, run),
        "data": {"url": p.data.url, **data, "n_train": n_train, "n_val": details.get("n_val"),
                 "n_test": details.get("n_test")},
        "device": {"type": "cuda" if timing.get("cuda") else "cpu", "name": device_name,
                   "torch": timing.get("torch"), "cuda": timing.get("cuda"), "cudnn": timing.get("cudnn"),
                   "num_threads": timing.get("num_threads")},
        # precision, memory format, compiled step, fused optimizer; a CPU's native bf16
        "numerics": numerics,
        "code": {**code, "files": dict(md5s)},
        "epochs": {"run": epochs_run, "recipe": details.get("recipe_epochs"), "cap": details.get("epochs_cap"),
                   "stopped_early": timing.get("stopped_early")},
        "wall_seconds": wall,
        # all epochs' training images over the epochs' wall time (test passes included): a
        # resumed run's own train_images_per_s covers only the process that finished it
        "images_per_s": round(n_train * epochs_run / wall, 1) if n_train and wall else None,
        "diverged": details.get("diverged"),
        "derived_at_pack": derived,
    }


def pack(root: Path, dest: Path, outs: Iterable[str] | None = None, log=print, code_root: Path | None = None) -> dict:
    """Write the pack of `outs` (default: every finished run output) of the workspace at `root`
    to `dest`, atomically. code_root: the checkout whose code ran (default `root`; the GPU kit's
    workspace is a folder of the checkout). Returns the manifest. Errors: PublishError, one line."""
    root = Path(root)
    code_root = root if code_root is None else Path(code_root)
    p = load_params(root / paths.PARAMS_FILE)
    available = finished_outs(root)
    outs = list(outs) if outs else available
    if not outs:
        raise PublishError(f"no finished run in {root / paths.METRICS_DIR}: run some first (dvc repro, or cifarlab kit)")
    missing = [o for o in outs if o not in available]
    if missing:
        raise PublishError(f"run output {missing[0]!r} is not finished in {root} (needs {', '.join(REQUIRED)}); "
                           f"finished: {', '.join(available) or 'none'}")
    md5s = code_md5s(code_root)
    code = code_version(code_root)
    manifest = {"format": PACK_FORMAT, "packed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "code": {**code, "files": md5s}, "runs": {}}
    members: dict[str, bytes] = {}
    cache: dict = {}
    for out in outs:
        prov = provenance_of(root, out, p, md5s, cache, code_root)
        stale = _lock_mismatch(root, out, prov["run"], prov["seed"], p, md5s)
        if stale:
            raise PublishError(f"{out}: {stale} changed since dvc.lock recorded its training: rerun it (dvc repro) "
                               "or restore that code before packing")
        manifest["runs"][out] = {"run": prov["run"], "seed": prov["seed"], "recipe": prov["recipe"]}
        for name, src in PUBLISHED_FILES.items():
            path = root / str(src).format(out=out)
            if path.is_file():
                members[name.format(out=out)] = path.read_bytes()
        members[PROVENANCE.format(out=out)] = json_bytes(prov)
    members[MANIFEST] = json_bytes(manifest)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
    if buf.tell() > MAX_PACK_BYTES:
        raise PublishError(f"pack would be {buf.tell() / 2**20:.1f} MiB, over {MAX_PACK_BYTES // 2**20} MiB: "
                           "pack fewer runs at a time (--runs)")
    with atomic_write(dest) as f:
        f.write(buf.getvalue())
    log(f"pack: {len(outs)} runs ({', '.join(outs)}) -> {dest} ({buf.tell() / 2**20:.2f} MiB)")
    return manifest


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
