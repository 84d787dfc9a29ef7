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

The recipe a pack publishes is the one each run trained with: what dvc.lock recorded for the
run's stages (params, and the md5 of their deps and outs, carried as `trained_with` in its
provenance), else params.yaml checked against the run's own files (details, history). `pack`
refuses a run whose outputs are stale against params.yaml, the code or each other, naming the
keys and the `dvc repro` that brings them up to date.

`fold` refuses a pack whose recipe disagrees with the run's own record in the pack, whose run
recipe (model, recipe, architecture, the train.* and data.* keys that change numbers) differs
from the checkout's, or whose code differs from the checkout's, with one line naming the run
and the key or file; `--accept-code-change` folds the latter anyway and records the files that
differ in the run's provenance. A pack is untrusted: fold reads it within the MAX_* bounds.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import io
import json
import math
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cifarlab.core import paths
from cifarlab.core.errors import CifarlabError, ParamsError
from cifarlab.core.io import atomic_write, read_json_object
from cifarlab.core.params import Params, Recipe, validate
from cifarlab.core.params_file import read_params_file
from cifarlab.core.provenance import code_version
from cifarlab.core.yaml_io import read_yaml_file
from cifarlab.dvc_internals import LOCK_FILE, lock_stages, param_at, read_lock
from cifarlab.reporting.published import PROVENANCE, PUBLISHED_FILES, REQUIRED

PACK_FORMAT = 1
MAX_PACK_BYTES = 16 * 2**20  # what one file carried back from a lent GPU may weigh
# What a pack may unpack to. A gzip of zeros inflates 1000-fold, so fold bounds what it reads,
# not only the file: each member, the whole tar stream (headers included), the number of
# members, and the JSON/CSV it parses into memory (a parsed JSON object can take 30 times its
# text). The largest files a run writes are a few hundred KiB (figures) and ~10 KiB (JSON).
MAX_MEMBER_BYTES = 8 * 2**20
MAX_UNPACKED_BYTES = 64 * 2**20
MAX_MEMBERS = 10_000
MAX_TEXT_BYTES = 2**20  # one JSON or CSV member fold parses
MAX_TEXT_TOTAL = 8 * 2**20  # all of them together
MANIFEST = "manifest.json"
# train.* and data.* keys that change a run's numbers. The numerics (bf16, channels_last,
# fused_optimizer, compile, num_threads) are not among them: provenance records them ("numerics",
# shown in every table), and seeds of another precision are kept apart (never averaged), so an
# fp32 seed folds beside bf16 ones only in a study. data.url/md5 name the data, recorded by md5.
RECIPE_TRAIN_KEYS = ("max_epochs", "eval_batch_size", "deterministic")
RECIPE_DATA_KEYS = ("train_subset", "test_subset", "val_split")
CODE_STAGES = ("train", "evaluate")  # whose code makes the numbers (dvc.yaml deps under src/)


class PublishError(CifarlabError):
    """A pack that cannot be made or folded: bad input, like a bad params.yaml."""

    exit_code = 2


# --------------------------------------------------------------------------- recipe and code


def run_recipe(p: Params, run: str) -> dict:
    """What a published number of `run` claims to be the result of, as plain JSON data."""
    r = p.runs[run]
    recipe = {
        "model": r.model,
        "recipe": r.recipe.model_dump(mode="json"),
        "arch": json.loads(json.dumps(dict(r.arch))),
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
    stages = read_yaml_file(dvc_yaml, error=PublishError)["stages"]
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


# --------------------------------------------------------------------------- what a run trained with


def run_stages(out: str, run: str, seed: int) -> tuple[str, ...]:
    """The dvc.yaml stages that made what a pack of `out` carries, upstream first."""
    if out == run:
        own = (f"train@{run}", f"evaluate@{run}", f"plot@{run}", f"pca@{run}")
    else:
        own = (f"train_seeds@{run}-{seed}", f"evaluate_seeds@{run}-{seed}", f"plot_seeds@{run}-{seed}")
    return ("fetch", "preprocess", *own)


def repro_target(out: str, run: str, seed: int, stages: Iterable[str] = ()) -> str:
    """The `dvc repro` targets that redo every file a pack of `out` carries (`stages`: those
    dvc.lock recorded for it, which name a PCA figure's stage)."""
    if out != run:
        return f"plot_seeds@{run}-{seed}"
    return f"plot@{run}" + (f" pca@{run}" if f"pca@{run}" in stages else "")


def locked_stages(root: Path) -> dict:
    """stage name -> its entry in the dvc.lock at `root` ({} without one): read as DVC writes it
    (cifarlab.dvc_internals.read_lock), a malformed one refused in one line."""
    return lock_stages(read_lock(root / LOCK_FILE, error=PublishError))


def _md5s(entries: Any) -> dict[str, str]:
    """path -> md5 of a dvc.lock deps/outs list (entries without an md5 are left out)."""
    found = {}
    for e in entries if isinstance(entries, list) else []:
        if isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("md5"), str):
            found[e["path"]] = e["md5"]
    return found


def lock_record(lock: Mapping, out: str, run: str, seed: int) -> dict:
    """stage -> {"params", "deps", "outs"} as dvc.lock recorded them for the stages that made
    `out`; {} when dvc.lock has no training of it (stages run by hand, the GPU kit)."""
    names = run_stages(out, run, seed)
    if not isinstance(lock.get(names[2]), dict):
        return {}
    record = {}
    for name in names:
        entry = lock.get(name)
        if isinstance(entry, dict):
            params = (entry.get("params") or {}).get(str(paths.PARAMS_FILE))
            record[name] = {
                "params": dict(params) if isinstance(params, dict) else {},
                "deps": _md5s(entry.get("deps")),
                "outs": _md5s(entry.get("outs")),
            }
    return record


_ABSENT = object()


def stale_against(root: Path, out: str, record: Mapping, raw: Mapping, md5s: Mapping[str, str]) -> list[str]:
    """Why `out`'s files are not what its recorded stages would make now, one phrase each: a
    param that params.yaml changed since, a code file edited since, a stage's input rebuilt after
    it ran (train redone, evaluate not), a packed file that is not the one its stage wrote."""
    problems: list[str] = []
    for stage, entry in record.items():
        for key, then in entry["params"].items():
            now = param_at(raw, key, _ABSENT)
            where = first_difference(then, None if now is _ABSENT else now, f"{key}.")
            if where is None and now is not _ABSENT:
                continue
            where = where or key
            rest = where[len(key) + 1 :]
            t, n = (dotted(then, rest), dotted(now, rest)) if rest else (then, now)
            n_text = "nothing" if n is _ABSENT else repr(n)
            problem = f"params.yaml has {where} = {n_text}, {stage} ran with {t!r}"
            if not any(p.startswith(f"params.yaml has {where} = ") for p in problems):
                problems.append(problem)
    written: dict[str, tuple[str, str]] = {}  # path -> (md5, the recorded stage that wrote it)
    for stage, entry in record.items():
        for path, md5 in entry["deps"].items():
            if path in md5s and not md5.endswith(".dir") and md5s[path] != md5:
                problems.append(f"{path} changed since {stage} ran")
            elif path in written and written[path][0] != md5:
                problems.append(f"{written[path][1]} rebuilt {path} after {stage} ran")
        written.update({path: (md5, stage) for path, md5 in entry["outs"].items()})
    for src in [*PUBLISHED_FILES.values()]:
        path = str(src).format(out=out)
        if path in written and not written[path][0].endswith(".dir") and (root / path).is_file():
            if hashlib.md5((root / path).read_bytes()).hexdigest() != written[path][0]:
                problems.append(f"{path} is not the file {written[path][1]} wrote")
    return problems


def recorded_params(record: Mapping, run: str) -> dict[str, Any]:
    """The params.yaml keys that make `run`'s recipe, as its stages recorded them (dotted, as
    dvc.lock writes them): the run's entry and model section, seed, train.*, data.*."""
    flat: dict[str, Any] = {}
    for entry in record.values():  # upstream first: a later stage's value wins
        flat.update(entry["params"])
    entry = flat.get(f"runs.{run}")
    model = entry.get("model") if isinstance(entry, Mapping) else None
    keep = {f"runs.{run}", "seed", model}
    return {k: v for k, v in flat.items() if k in keep or k.startswith(("train.", "data."))}


def recipe_with(raw: Mapping, params: Mapping[str, Any], run: str) -> dict:
    """run_recipe of `run` with `params` (dotted keys) laid over the params.yaml `raw`.
    ParamsError when the result is not valid params."""
    raw = copy.deepcopy(dict(raw))
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = copy.deepcopy(value)
    entry = (raw.get("runs") or {}).get(run) if isinstance(raw.get("runs"), dict) else None
    model = entry.get("model") if isinstance(entry, dict) else None
    p = validate(raw, check_models={model} if isinstance(model, str) else True)
    if run not in p.runs:
        raise ParamsError(f"run {run!r} is not in the recorded params")
    return run_recipe(p, run)


def comparable(recipe: Mapping) -> dict:
    """A recipe with only the train.* keys that change numbers (older packs held numerics there),
    and every recipe key a pack lacks at its schema default: a key added to `Recipe` since the
    pack was made (crop_padding, say) defaults to what the code did before it existed."""
    recipe = dict(recipe)
    train = recipe.get("train")
    recipe["train"] = {k: v for k, v in (train if isinstance(train, Mapping) else {}).items() if k in RECIPE_TRAIN_KEYS}
    model = recipe.get("recipe")
    if isinstance(model, Mapping):
        defaults = {k: f.default for k, f in Recipe.model_fields.items() if not f.is_required()}
        recipe["recipe"] = {**defaults, **model}
    return recipe


# the lr a history row starts its epoch at equals the recipe's lr: every epoch of a constant
# schedule, the first of a step or multistep one (onecycle starts at a fraction of it)
_LR_FIRST_EPOCH = ("constant", "step", "multistep")


def own_record_difference(recipe: Mapping, details: Mapping, history: str | None) -> tuple[str, Any, Any, str] | None:
    """(recipe key, the recipe's value, the value the run recorded, where) for the first place
    the run's own files (details, history) contradict `recipe`, or None. Older files that lack a
    field say nothing about it."""
    rec, arch, train = recipe.get("recipe") or {}, recipe.get("arch") or {}, recipe.get("train") or {}
    epochs = details.get("recipe_epochs")
    if epochs is not None and epochs != rec.get("epochs"):
        return "recipe.epochs", rec.get("epochs"), epochs, "details (recipe_epochs)"
    if "epochs_cap" in details and isinstance(rec.get("epochs"), int):
        cap = train.get("max_epochs")
        expected = cap if isinstance(cap, int) and cap < rec["epochs"] else None
        if details["epochs_cap"] != expected:
            return "train.max_epochs", cap, details["epochs_cap"], "details (epochs_cap)"
    overrides = details.get("overrides")
    for key, value in overrides.items() if isinstance(overrides, Mapping) else ():
        if key in rec:
            try:
                value = Recipe.model_validate({**rec, key: value}).model_dump(mode="json")[key]
            except ValidationError:
                pass
            if value != rec[key]:
                return f"recipe.{key}", rec[key], value, "details (overrides)"
        elif arch.get(key, _ABSENT) != value:
            return f"arch.{key}", arch.get(key), value, "details (overrides)"
    if history and rec.get("schedule") in _LR_FIRST_EPOCH and isinstance(rec.get("lr"), (int, float)):
        try:
            rows = list(csv.DictReader(io.StringIO(history)))
        except csv.Error:  # not a history train wrote: nothing it says can be read
            rows = []
        for i, row in enumerate(rows if rows and "lr" in rows[0] else []):
            try:
                lr = float(row.get("lr") or "nan")
            except ValueError:
                lr = math.nan
            if not math.isclose(lr, rec["lr"], rel_tol=1e-6):  # float32 lrs round at ~6e-8
                return (
                    "recipe.lr",
                    rec["lr"],
                    row.get("lr") if math.isnan(lr) else lr,
                    f"history (epoch {row.get('epoch') or i + 1})",
                )
            if rec.get("schedule") != "constant":
                break
    return None


def provenance_of(
    root: Path, out: str, p: Params, md5s: Mapping[str, str], cache: dict | None = None, code_root: Path | None = None
) -> dict:
    """The provenance record of one finished run output (see the module docstring).

    Fields the run did not record itself (runs of older code; the recipe of a run dvc.lock has
    no record of) are filled from the workspace now and listed under `derived_at_pack`. A run
    whose files are stale (stale_against, own_record_difference) is refused: PublishError."""
    details = read_json_object(root / paths.DETAILS_DIR / f"{out}.json")
    timing = read_json_object(root / paths.TIMING_DIR / f"{out}.json")
    run, seed = details.get("run"), details.get("seed")
    if run not in p.runs or not isinstance(seed, int):
        raise PublishError(
            f"{out}: its details name run {run!r} seed {seed!r}, not a run of this workspace's "
            "params.yaml: pack the workspace that trained it"
        )
    cache = {} if cache is None else cache
    if "lock" not in cache:  # once per pack, not per run
        cache["lock"], cache["raw"] = locked_stages(root), read_params_file(root / paths.PARAMS_FILE)
    record = lock_record(cache["lock"], out, run, seed)
    target = repro_target(out, run, seed, record)
    derived = []
    if record:
        problems = stale_against(root, out, record, cache["raw"], md5s)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise PublishError(
                f"{out}: stale: {'; '.join(problems[:3])}{more}: run `dvc repro {target}` to redo "
                "it with this params.yaml and code (or undo those changes), then pack again"
            )
        try:
            recipe = recipe_with(cache["raw"], recorded_params(record, run), run)
        except ParamsError as e:
            raise PublishError(
                f"{out}: the params dvc.lock recorded for it are not valid now ({e}): run "
                f"`dvc repro {target}`, then pack again"
            ) from None
    else:  # trained outside DVC (by hand, the GPU kit): params.yaml, checked against the run's files below
        derived.append("recipe")
        recipe = run_recipe(p, run)
    history = root / paths.HISTORY_DIR / f"{out}.csv"
    found = own_record_difference(
        recipe, details, history.read_text(encoding="utf-8", errors="replace") if history.is_file() else None
    )
    if found:
        key, ours, theirs, where = found
        source = "dvc.lock" if record else "params.yaml"
        raise PublishError(
            f"{out}: stale: its {where} records {key} = {theirs!r}, its recipe ({source}) has "
            f"{ours!r}: run `dvc repro {target}` to redo it (or set params.yaml back), then pack again"
        )
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
    numerics = timing.get("numerics")
    if not isinstance(numerics, dict):
        raise PublishError(
            f"{out}: reports/timing/{out}.json records no numerics (precision, memory "
            f"format): retrain it (dvc repro -f train@{run}) before packing it"
        )
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
        "recipe": recipe,
        # what dvc.lock recorded for the stages that made it (None: trained outside DVC)
        "trained_with": {"source": str(LOCK_FILE), "stages": record} if record else None,
        "data": {
            "url": (record.get("fetch") or {}).get("params", {}).get("data.url", p.data.url),
            **data,
            "n_train": n_train,
            "n_val": details.get("n_val"),
            "n_test": details.get("n_test"),
        },
        "device": {
            "type": "cuda" if timing.get("cuda") else "cpu",
            "name": device_name,
            "torch": timing.get("torch"),
            "cuda": timing.get("cuda"),
            "cudnn": timing.get("cudnn"),
            "num_threads": timing.get("num_threads"),
        },
        # precision, memory format, compiled step, fused optimizer; a CPU's native bf16
        "numerics": numerics,
        "code": {**code, "files": dict(md5s)},
        "epochs": {
            "run": epochs_run,
            "recipe": details.get("recipe_epochs"),
            "cap": details.get("epochs_cap"),
            "stopped_early": timing.get("stopped_early"),
        },
        "wall_seconds": wall,
        # the last saved epoch of each time the run was stopped and resumed; None: not recorded
        "resumed_after": timing.get("resumed_after"),
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
    raw = read_params_file(root / paths.PARAMS_FILE)
    p = validate(raw)
    available = finished_outs(root)
    outs = list(outs) if outs else available
    if not outs:
        raise PublishError(
            f"no finished run in {root / paths.METRICS_DIR}: run some first (dvc repro, or cifarlab kit)"
        )
    missing = [o for o in outs if o not in available]
    if missing:
        raise PublishError(
            f"run output {missing[0]!r} is not finished in {root} (needs {', '.join(REQUIRED)}); "
            f"finished: {', '.join(available) or 'none'}"
        )
    md5s = code_md5s(code_root)
    code = code_version(code_root)
    manifest = {
        "format": PACK_FORMAT,
        "packed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code": {**code, "files": md5s},
        "runs": {},
    }
    members: dict[str, bytes] = {}
    cache: dict = {"lock": locked_stages(root), "raw": raw}
    for out in outs:
        prov = provenance_of(root, out, p, md5s, cache, code_root)
        manifest["runs"][out] = {"run": prov["run"], "seed": prov["seed"], "recipe": prov["recipe"]}
        for name, src in PUBLISHED_FILES.items():
            path = root / str(src).format(out=out)
            if path.is_file():
                limit = MAX_TEXT_BYTES if path.suffix in (".json", ".csv") else MAX_MEMBER_BYTES
                if path.stat().st_size > limit:  # fold would refuse it
                    raise PublishError(
                        f"{path}: {path.stat().st_size / 2**20:.1f} MiB, over the "
                        f"{limit / 2**20:g} MiB a pack member may hold: not a file cifarlab wrote; "
                        f"redo it (dvc repro {repro_target(out, prov['run'], prov['seed'])})"
                    )
                members[name.format(out=out)] = path.read_bytes()
        members[PROVENANCE.format(out=out)] = json_bytes(prov)
    members[MANIFEST] = json_bytes(manifest)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        # manifest first: fold checks it before it reads any other member
        for name in sorted(members, key=lambda n: (n != MANIFEST, n)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(members[name]))
        unpacked = tar.offset
    if unpacked + 2 * tarfile.RECORDSIZE > MAX_UNPACKED_BYTES or len(members) > MAX_MEMBERS:
        raise PublishError(
            f"pack would unpack to {unpacked / 2**20:.1f} MiB in {len(members)} files, over "
            f"{MAX_UNPACKED_BYTES // 2**20} MiB or {MAX_MEMBERS} files: pack fewer runs at a time (--runs)"
        )
    if buf.tell() > MAX_PACK_BYTES:
        raise PublishError(
            f"pack would be {buf.tell() / 2**20:.1f} MiB, over {MAX_PACK_BYTES // 2**20} MiB: "
            "pack fewer runs at a time (--runs)"
        )
    with atomic_write(dest) as f:
        f.write(buf.getvalue())
    log(f"pack: {len(outs)} runs ({', '.join(outs)}) -> {dest} ({buf.tell() / 2**20:.2f} MiB)")
    return manifest


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
