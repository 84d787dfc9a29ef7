"""`cifarlab fold PACK`: a pack's runs into reports/published/ (or a study's folder), as untrusted
input. Every manifest field is validated (types, names, seeds) and each run's recipe and code
compared with this checkout's before anything is written; the files are staged beside the
destination and moved in together, so a refused pack leaves nothing behind. tooling.packs
makes the packs and says what they hold."""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from cifarlab.core import paths
from cifarlab.core.params import RUN_NAME, load_params
from cifarlab.core.runs import output_id
from cifarlab.reporting.published import PROVENANCE, PUBLISHED_DIR, PUBLISHED_FILES, REQUIRED, load_provenance, prov_numerics
from cifarlab.reporting.studies import STUDIES, STUDIES_DIR, arm_dir, content_md5
from cifarlab.tooling.packs import (MANIFEST, PACK_FORMAT, RECIPE_TRAIN_KEYS, PublishError, code_md5s, dotted,
                                    first_difference, json_bytes, run_recipe)


def _read_pack(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {}
            for m in tar.getmembers():
                name = PurePosixPath(m.name)
                if not m.isfile() or name.is_absolute() or ".." in name.parts:
                    raise PublishError(f"{path}: unexpected member {m.name!r}: not a cifarlab pack")
                members[m.name] = tar.extractfile(m).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise PublishError(f"{path}: not a readable .tar.gz pack ({str(e).splitlines()[0]})") from None
    if MANIFEST not in members:
        raise PublishError(f"{path}: no {MANIFEST}: not a cifarlab pack (make one with cifarlab pack)")
    return members


OUT_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"  # a run output as pack writes it: <run> or <run>-s<seed>


def _json_member(members: Mapping[str, bytes], name: str, pack_file: Path) -> dict:
    """A pack member that must be a JSON object, parsed; one line naming it otherwise."""
    if name not in members:
        raise PublishError(f"{pack_file}: no {name}: not a complete cifarlab pack (make it again with cifarlab pack)")
    try:
        data = json.loads(members[name].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PublishError(f"{pack_file}: {name}: not JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PublishError(f"{pack_file}: {name}: expected a JSON object, got {type(data).__name__}")
    return data


def _checked_manifest(members: Mapping[str, bytes], pack_file: Path) -> tuple[dict, dict[str, dict]]:
    """(the manifest, run output -> its provenance), every field fold uses checked for type and
    form, and every member fold reads present and well-formed (a pack is untrusted: it comes from
    another machine or person). Names and seeds become file names, so each must be a run name and
    a non-negative integer."""
    def bad(what: str) -> PublishError:
        return PublishError(f"{pack_file}: {MANIFEST}: {what}: not a pack cifarlab wrote (make it again with cifarlab pack)")

    manifest = _json_member(members, MANIFEST, pack_file)
    if manifest.get("format") != PACK_FORMAT:
        raise PublishError(f"{pack_file}: pack format {manifest.get('format')!r}, this cifarlab reads {PACK_FORMAT}")
    code = manifest.get("code")
    if not isinstance(code, dict):
        raise bad("no 'code' (the code version the runs trained with)")
    if not isinstance(code.get("files"), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in code["files"].items()):
        raise bad("'code.files' must map file paths to md5s")
    if not isinstance(code.get("commit"), (str, type(None))):
        raise bad(f"'code.commit' {code.get('commit')!r} is not a commit")
    runs = manifest.get("runs")
    if not isinstance(runs, dict) or not runs:
        raise bad("no 'runs' (the run outputs it holds)")
    provenance = {}
    for out, meta in runs.items():
        if not re.fullmatch(OUT_NAME, out):
            raise bad(f"run output {out!r} is not a run output name")
        if not isinstance(meta, dict):
            raise bad(f"run output {out!r}: expected an object")
        run, seed = meta.get("run"), meta.get("seed")
        if not isinstance(run, str) or not re.fullmatch(RUN_NAME, run):
            raise bad(f"run output {out!r}: run {run!r} is not a run name")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise bad(f"run output {out!r}: seed {seed!r} is not a non-negative integer")
        if not isinstance(meta.get("recipe"), dict):
            raise bad(f"run output {out!r}: no 'recipe'")
        for name in (n.format(out=out) for n in REQUIRED):
            if name.endswith(".json"):
                _json_member(members, name, pack_file)
            elif name not in members:
                raise PublishError(f"{pack_file}: no {name}: not a complete cifarlab pack")
        prov = provenance[out] = _json_member(members, PROVENANCE.format(out=out), pack_file)
        if (prov.get("run"), prov.get("seed")) != (run, seed):
            raise PublishError(f"{pack_file}: {PROVENANCE.format(out=out)} names run {prov.get('run')!r} seed "
                               f"{prov.get('seed')!r}, the manifest run {run!r} seed {seed!r}: not a pack cifarlab wrote")
    return manifest, provenance


def _family(prov: Mapping) -> tuple:
    """What a run's seeds must share to be averaged: the data (content md5) and the precision."""
    return content_md5(prov), prov_numerics(prov).get("precision")


def _published_elsewhere(dest_root: Path, prov: Mapping) -> list[str]:
    """Published outputs of prov's run (its own name among them: a seed published before)
    trained on other data or in another precision (fp32 / bf16) than `prov`."""
    others = []
    for out, old in load_provenance(dest_root).items():
        if old.get("run") == prov["run"] and _family(old) != _family(prov):
            others.append(out)
    return sorted(others)


def _study_hint(prov: Mapping) -> str:
    """', or --study NAME to keep them apart' where the pack's runs fit a study, else ''."""
    fits = [name for name, s in STUDIES.items() if s.arm_of(prov) is not None]
    return f", or --study {fits[0]} to keep them apart ({STUDIES[fits[0]].title})" if fits else ""


def fold(pack_file: Path, root: Path = Path("."), accept_code_change: bool = False, replace: bool = False,
         study: str | None = None, log=print) -> list[str]:
    """Fold a pack into `root`'s reports/published/, or with `study` into the study's arm that
    each run's provenance names (reports/studies/<study>/<arm>/; reporting/studies.py). Each
    file is replaced atomically; nothing is written when any check fails. Returns the run
    outputs folded, named as in this checkout.

    A run's seeds are averaged together, so they must share their data and precision: a pack
    trained on other data (content md5) or in another precision (fp32 / bf16) than a run's seeds
    already published is refused, unless `replace`, which removes those seeds first."""
    root, pack_file = Path(root), Path(pack_file)
    if study is not None and study not in STUDIES:
        raise PublishError(f"--study {study!r}: no such study; studies: {', '.join(STUDIES)}")
    members = _read_pack(pack_file)
    manifest, provenance = _checked_manifest(members, pack_file)
    p = load_params(root / paths.PARAMS_FILE)
    mine = code_md5s(root)
    theirs = manifest["code"]["files"]
    differ = sorted(f for f in set(mine) | set(theirs) if mine.get(f) != theirs.get(f))
    commit = (manifest["code"].get("commit") or "unknown")[:12]
    if differ and not accept_code_change:
        more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
        verb = "differ" if more else "differs"
        raise PublishError(f"{pack_file}: trained with other code (commit {commit}): {differ[0]}{more} {verb} from "
                           "this checkout; fold it in a checkout of that commit, rerun, or pass --accept-code-change "
                           "to publish it with the difference recorded")
    renamed: dict[str, str] = {}
    for out, meta in sorted(manifest["runs"].items()):
        run = meta["run"]
        if run not in p.runs:
            raise PublishError(f"{pack_file}: run {run!r} is not in this checkout's run table (params.yaml runs)")
        theirs = dict(meta["recipe"])  # keys older packs held that are numerics now (train.bf16) do not count
        theirs["train"] = {k: v for k, v in (theirs.get("train") or {}).items() if k in RECIPE_TRAIN_KEYS}
        key = first_difference(theirs, run_recipe(p, run))
        if key:
            raise PublishError(f"{pack_file}: run {run!r} was trained with {key} = "
                               f"{dotted(theirs, key)!r}, this checkout has "
                               f"{dotted(run_recipe(p, run), key)!r}: fold it where params.yaml matches")
        renamed[out] = output_id(run, meta["seed"], p.seed)
    dests: dict[str, Path] = {}  # out -> the store it goes to
    stale: list[tuple[Path, str]] = []
    for out, new in renamed.items():
        prov = provenance[out]
        dest = root / PUBLISHED_DIR
        if study is not None:
            s = STUDIES[study]
            arm = s.arm_of(prov)
            if arm is None:
                raise PublishError(f"{pack_file}: run output {out!r} fits neither arm of study {study!r} "
                                   f"({' / '.join(s.arms)}): it takes {s.expects}")
            if s.with_published and any(p.get("run") == prov["run"] and _family(p) == _family(prov)
                                        for p in load_provenance(dest).values()):
                raise PublishError(f"{pack_file}: run {prov['run']!r} in {arm} is published (reports/published), "
                                   f"and the study counts those seeds: fold {out!r} without --study to join them")
            dest = arm_dir(study, arm, root)
        dests[out] = dest
        others = _published_elsewhere(dest, prov)
        if others and not replace:
            raise PublishError(f"{pack_file}: run {prov['run']!r} is already published from other data or in "
                               f"another precision ({', '.join(others)}), and such seeds are never averaged: "
                               f"pass --replace to drop those first{'' if study else _study_hint(prov)}")
        stale += [(dest, o) for o in others if o not in renamed.values()]  # the pack's own are overwritten
    today = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    top = root / (STUDIES_DIR if study else PUBLISHED_DIR)
    top.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=top, prefix=".fold-") as tmp:
        staged: list[tuple[Path, Path]] = []
        for out, new in renamed.items():
            # the run's old files go, so a figure the new pack lacks does not survive from another run
            for name in [*PUBLISHED_FILES, PROVENANCE]:
                data = members.get(name.format(out=out))
                target = dests[out] / name.format(out=new)
                if not target.resolve().is_relative_to(top.resolve()):  # checked names make this unreachable
                    raise PublishError(f"{pack_file}: {name.format(out=new)} would land outside {top}")
                if name == PROVENANCE:
                    data = json_bytes({**provenance[out], "out": new,
                                        "folded": {"at": today, "pack": pack_file.name,
                                                   "code_differs": differ if accept_code_change else []}})
                if data is None:
                    staged.append((None, target))
                    continue
                tmp_file = Path(tmp) / new / name.format(out=new)  # new: a checked run name and an int seed
                tmp_file.parent.mkdir(parents=True, exist_ok=True)
                tmp_file.write_bytes(data)
                staged.append((tmp_file, target))
        for dest, out in stale:  # --replace: the run's seeds of other data go
            staged += [(None, dest / name.format(out=out)) for name in [*PUBLISHED_FILES, PROVENANCE]]
        for src, target in staged:
            target.parent.mkdir(parents=True, exist_ok=True)
            if src is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(src, target)
    where = sorted({str(d) for d in dests.values()})
    log(f"fold: {len(renamed)} runs ({', '.join(renamed.values())}) -> {', '.join(where)}"
        + (f"; code differs from commit {commit} in {len(differ)} file{'s' if len(differ) != 1 else ''} (recorded)"
           if differ else ""))
    return list(renamed.values())
