"""`cifarlab fold PACK`: a pack's runs into reports/published/ (or a study's folder), as untrusted
input, all or nothing. tooling.packs makes the packs and says what they hold.

Reading: the pack is read within bounds (packs.MAX_*): every member header is checked (name,
type, size) before any member's data is read, the manifest first, each member read or copied
in chunks. Checking: every manifest field is validated (types, names, seeds), each run's recipe
compared with the run's own record in the pack (dvc.lock's params and file md5s, its details,
its history), then with this checkout's params and code, before anything is written.

Writing: the store a fold changes (reports/published/, or reports/studies/<study>/ with
--study) is replaced whole. The new store is staged in reports/.fold-*/ (hard links to the
files it keeps, the pack's files written beside them), then swapped in with one atomic
exchange of the two directories (renameat2 RENAME_EXCHANGE; RENAME_SWAP on macOS). Killed at
any instant, the store is the one before or the one after, byte for byte, and what is left is
a .fold-* directory outside it, removed by the next fold (`recover`). Where the filesystem has
no exchange, the old store is renamed aside and the new one into place with a journal in the
staging directory, and `recover` finishes that second rename if the fold died between the two.
Folds take a lock on reports/, so one runs at a time and recovery never races a live fold.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from cifarlab.core import paths
from cifarlab.core.archives import unsafe_member
from cifarlab.core.errors import ParamsError, one_line
from cifarlab.core.io import read_json_object, write_json
from cifarlab.core.params import RUN_NAME, validate
from cifarlab.core.params_file import read_params_file
from cifarlab.core.runs import output_id
from cifarlab.reporting.published import (
    PROVENANCE,
    PUBLISHED_DIR,
    PUBLISHED_FILES,
    REQUIRED,
    load_provenance,
    prov_numerics,
)
from cifarlab.reporting.studies import STUDIES, STUDIES_DIR, content_md5
from cifarlab.tooling import packs
from cifarlab.tooling.packs import (
    MANIFEST,
    PACK_FORMAT,
    PublishError,
    code_md5s,
    comparable,
    dotted,
    first_difference,
    json_bytes,
    own_record_difference,
    recipe_with,
    recorded_params,
    repro_target,
    run_recipe,
)

CHUNK = 256 * 2**10  # what one read of a member takes into memory
STAGING_PREFIX = ".fold-"
JOURNAL = "switch.json"  # in a staging dir: the rename pair has begun (no atomic exchange here)


# --------------------------------------------------------------------------- reading a pack, bounded


class _Bounded:
    """A read-only view of a decompressed stream that stops at `limit` bytes and takes at most
    `max_read` in one call. tarfile reads an extended header (pax, long name) whole in one
    read of the size the header claims; this refuses such a read before it is made."""

    def __init__(self, raw, limit: int, max_read: int, refuse):
        self.raw, self.limit, self.max_read, self.refuse, self.pos = raw, limit, max_read, refuse, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.max_read:
            raise self.refuse(f"a header or read of {'all' if n is None or n < 0 else n} bytes")
        if self.pos + n > self.limit:
            raise self.refuse(None)
        data = self.raw.read(n)
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset if whence == io.SEEK_CUR else None
        if target is None:
            raise io.UnsupportedOperation("seek from the end")
        if target > self.limit:
            raise self.refuse(None)
        self.pos = self.raw.seek(target)
        return self.pos

    def tell(self) -> int:
        return self.pos


class PackReader:
    """A pack opened for reading: its member headers checked and indexed on opening (no member
    data is kept), then members read whole (JSON, CSV: at most packs.MAX_TEXT_BYTES each,
    packs.MAX_TEXT_TOTAL in all) or copied out in chunks. Every refusal is a PublishError."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.text_read = 0
        self._gz = self._tar = None
        try:
            size = self.path.stat().st_size
            if size > packs.MAX_PACK_BYTES:  # pack never writes more
                raise PublishError(
                    f"{self.path}: {size / 2**20:.1f} MiB, over the {packs.MAX_PACK_BYTES // 2**20} "
                    "MiB a pack may weigh: not a pack cifarlab wrote (pack fewer runs at a time)"
                )
            self._gz = gzip.open(self.path, "rb")
            stream = _Bounded(self._gz, packs.MAX_UNPACKED_BYTES, max(CHUNK, 2**20), self._too_big)
            self._tar = tarfile.open(fileobj=stream, mode="r:")
            self.members: dict[str, tarfile.TarInfo] = {}
            for m in self._tar:  # headers only: the next header is found by skipping, not keeping, data
                self._check(m)
                self.members[m.name] = m
        except PublishError:
            self.close()
            raise
        except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
            self.close()
            raise PublishError(f"{self.path}: not a readable .tar.gz pack ({one_line(e, 160)})") from None
        if MANIFEST not in self.members:
            self.close()
            raise PublishError(f"{self.path}: no {MANIFEST}: not a cifarlab pack (make one with cifarlab pack)")

    def _too_big(self, what: str | None) -> PublishError:
        return PublishError(
            f"{self.path}: {what or f'unpacks to over {packs.MAX_UNPACKED_BYTES // 2**20} MiB'}, more "
            "than a cifarlab pack holds: not a pack cifarlab wrote (make it again with cifarlab pack)"
        )

    def _check(self, m: tarfile.TarInfo) -> None:
        # a pack holds regular files only, each once: no directory, no sparse file (pack writes none)
        if unsafe_member(m) or m.isdir() or m.issparse() or m.name in self.members:
            raise PublishError(f"{self.path}: unexpected member {m.name!r}: not a cifarlab pack")
        if len(self.members) >= packs.MAX_MEMBERS:
            raise self._too_big(f"over {packs.MAX_MEMBERS} members")
        limit = packs.MAX_TEXT_BYTES if PurePosixPath(m.name).suffix in (".json", ".csv") else packs.MAX_MEMBER_BYTES
        if m.size > limit:
            raise PublishError(
                f"{self.path}: member {m.name!r} unpacks to {m.size / 2**20:.1f} MiB, over the "
                f"{limit / 2**20:g} MiB a pack member may hold: not a pack cifarlab wrote "
                "(make it again with cifarlab pack)"
            )

    def close(self) -> None:
        for f in (self._tar, self._gz):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def offset(self, name: str) -> int:
        """Where a member lies in the stream: reading in this order never rewinds the gzip."""
        return self.members[name].offset_data if name in self.members else -1

    def chunks(self, name: str) -> Iterator[bytes]:
        try:
            f = self._tar.extractfile(self.members[name])
            while chunk := f.read(CHUNK):
                yield chunk
        except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
            raise PublishError(f"{self.path}: {name}: not readable ({one_line(e, 160)})") from None

    def read_text(self, name: str) -> bytes:
        """A JSON or CSV member whole (its size checked against MAX_TEXT_BYTES on opening)."""
        self.text_read += self.members[name].size
        if self.text_read > packs.MAX_TEXT_TOTAL:
            raise self._too_big(f"over {packs.MAX_TEXT_TOTAL // 2**20} MiB of JSON and CSV")
        return b"".join(self.chunks(name))

    def md5(self, name: str) -> str:
        h = hashlib.md5()
        for chunk in self.chunks(name):
            h.update(chunk)
        return h.hexdigest()


OUT_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"  # a run output as pack writes it: <run> or <run>-s<seed>


def _json_member(pack: PackReader, name: str, pack_file: Path) -> dict:
    """A pack member that must be a JSON object, parsed; one line naming it otherwise."""
    if name not in pack:
        raise PublishError(f"{pack_file}: no {name}: not a complete cifarlab pack (make it again with cifarlab pack)")
    return read_json_object(f"{pack_file}: {name}", pack.read_text(name), error=PublishError)


def _checked_manifest(pack: PackReader, pack_file: Path) -> tuple[dict, dict[str, dict], dict[str, dict]]:
    """(the manifest, run output -> its provenance, run output -> its details), every field fold
    uses checked for type and form, and every member fold reads present and well-formed (a pack
    is untrusted: it comes from another machine or person). Names and seeds become file names, so
    each must be a run name and a non-negative integer."""

    def bad(what: str) -> PublishError:
        return PublishError(
            f"{pack_file}: {MANIFEST}: {what}: not a pack cifarlab wrote (make it again with cifarlab pack)"
        )

    manifest = _json_member(pack, MANIFEST, pack_file)
    if manifest.get("format") != PACK_FORMAT:
        raise PublishError(f"{pack_file}: pack format {manifest.get('format')!r}, this cifarlab reads {PACK_FORMAT}")
    code = manifest.get("code")
    if not isinstance(code, dict):
        raise bad("no 'code' (the code version the runs trained with)")
    if not isinstance(code.get("files"), dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in code["files"].items()
    ):
        raise bad("'code.files' must map file paths to md5s")
    if not isinstance(code.get("commit"), (str, type(None))):
        raise bad(f"'code.commit' {code.get('commit')!r} is not a commit")
    runs = manifest.get("runs")
    if not isinstance(runs, dict) or not runs:
        raise bad("no 'runs' (the run outputs it holds)")
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
    provenance, details = {}, {}
    needed = []  # read in the order they lie in the pack: one pass over the gzip stream
    for out in runs:
        for name in (n.format(out=out) for n in REQUIRED):
            if name not in pack:
                raise PublishError(f"{pack_file}: no {name}: not a complete cifarlab pack")
            needed.append((pack.offset(name), name, out))
        name = PROVENANCE.format(out=out)
        needed.append((pack.offset(name), name, out))
    for _, name, out in sorted(needed):
        if name == PROVENANCE.format(out=out):
            provenance[out] = _json_member(pack, name, pack_file)
        elif name == f"details/{out}.json":
            details[out] = _json_member(pack, name, pack_file)
        elif name.endswith(".json"):
            _json_member(pack, name, pack_file)
    for out, meta in runs.items():
        prov = provenance[out]
        if (prov.get("run"), prov.get("seed")) != (meta["run"], meta["seed"]):
            raise PublishError(
                f"{pack_file}: {PROVENANCE.format(out=out)} names run {prov.get('run')!r} seed "
                f"{prov.get('seed')!r}, the manifest run {meta['run']!r} seed {meta['seed']!r}: "
                "not a pack cifarlab wrote"
            )
        if not isinstance(prov.get("numerics"), dict) or not isinstance(prov["numerics"].get("precision"), str):
            raise PublishError(
                f"{pack_file}: {PROVENANCE.format(out=out)} records no numerics (precision, memory "
                "format): not a pack cifarlab wrote (make it again with cifarlab pack)"
            )
    return manifest, provenance, details


def _member_facts(pack: PackReader, outs) -> tuple[dict[str, str], dict[str, str]]:
    """(member -> md5 of every run file in the pack, history member -> its text), read in one
    pass in the pack's order."""
    names = sorted(
        (n for out in outs for n in (k.format(out=out) for k in PUBLISHED_FILES) if n in pack), key=pack.offset
    )
    md5s, histories = {}, {}
    for name in names:
        if name.startswith("history/"):
            text = pack.read_text(name)
            md5s[name], histories[name] = hashlib.md5(text).hexdigest(), text.decode("utf-8", "replace")
        else:
            md5s[name] = pack.md5(name)
    return md5s, histories


# --------------------------------------------------------------------------- the run's own record


def _record_stages(prov: Mapping, pack_file: Path, out: str) -> dict | None:
    """The dvc.lock record in a run's provenance (packs.lock_record's shape), checked for form;
    None for a run trained outside DVC or packed by an older cifarlab."""
    tw = prov.get("trained_with")
    if tw is None:
        return None
    stages = tw.get("stages") if isinstance(tw, dict) else None
    ok = isinstance(stages, dict) and all(
        isinstance(e, dict)
        and isinstance(e.get("params"), dict)
        and all(
            isinstance(e.get(k), dict) and all(isinstance(p, str) and isinstance(v, str) for p, v in e[k].items())
            for k in ("deps", "outs")
        )
        for e in stages.values()
    )
    if not ok:
        raise PublishError(
            f"{pack_file}: {PROVENANCE.format(out=out)}: 'trained_with' is not a dvc.lock record: "
            "not a pack cifarlab wrote (make it again with cifarlab pack)"
        )
    return stages


def _check_own_record(
    pack_file: Path,
    out: str,
    meta: Mapping,
    prov: Mapping,
    details: Mapping,
    facts: tuple[dict[str, str], dict[str, str]],
    raw: Mapping,
) -> None:
    """The recipe the manifest publishes for `out` must be the one its own record in the pack
    says it trained with: its provenance's recipe, the params dvc.lock recorded (laid over this
    checkout's params.yaml), the md5s dvc.lock recorded for its files, its details, its history."""
    run, seed = meta["run"], meta["seed"]
    stages = _record_stages(prov, pack_file, out)
    target = repro_target(out, run, seed, stages or ())
    fix = f"the pack was made from a stale workspace: there, `dvc repro {target}`, then pack it again"
    published = comparable(meta["recipe"])

    def refuse(key: str, theirs, where: str) -> PublishError:
        return PublishError(
            f"{pack_file}: run output {out!r}: {MANIFEST} publishes {key} = "
            f"{dotted(published, key)!r}, but {where} says {theirs!r}: {fix}"
        )

    if isinstance(prov.get("recipe"), dict):
        key = first_difference(published, comparable(prov["recipe"]))
        if key:
            raise refuse(key, dotted(comparable(prov["recipe"]), key), PROVENANCE.format(out=out))
    if stages:
        try:
            trained = comparable(recipe_with(raw, recorded_params(stages, run), run))
        except ParamsError as e:
            raise PublishError(
                f"{pack_file}: run output {out!r}: the params dvc.lock recorded for it are not valid "
                f"params here ({e}): fold it in a checkout of its code"
            ) from None
        key = first_difference(published, trained)
        if key:
            raise refuse(key, dotted(trained, key), f"the dvc.lock record in {PROVENANCE.format(out=out)}")
        written = {path: (md5, stage) for stage, e in stages.items() for path, md5 in e["outs"].items()}
        for name, src in PUBLISHED_FILES.items():
            member, path = name.format(out=out), str(src).format(out=out)
            if member in facts[0] and path in written and not written[path][0].endswith(".dir"):
                got = facts[0][member]
                if got != written[path][0]:
                    raise PublishError(
                        f"{pack_file}: {member} has md5 {got}, not the {written[path][0]} dvc.lock "
                        f"recorded for {written[path][1]}: {fix}"
                    )
    history = f"history/{out}.csv"
    found = own_record_difference(published, details, facts[1].get(history))
    if found:
        key, _, theirs, where = found
        where = where.replace("details", f"details/{out}.json", 1).replace("history", history, 1)
        raise refuse(key, theirs, f"its own {where}")


# --------------------------------------------------------------------------- the store, swapped whole


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step. False where this system or filesystem cannot."""
    if not sys.platform.startswith(("linux", "darwin")):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform == "darwin":
            fn, flag = libc.renamex_np, 2  # RENAME_SWAP
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
            rc = fn(os.fsencode(a), os.fsencode(b), flag)
        else:
            fn, flag = libc.renameat2, 2  # RENAME_EXCHANGE
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            rc = fn(-100, os.fsencode(a), -100, os.fsencode(b), flag)  # AT_FDCWD
    except (AttributeError, OSError):  # no such call in this C library (glibc < 2.28, musl)
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(reports: Path) -> Iterator[None]:
    """One fold (or recovery) at a time in a checkout: an exclusive lock on reports/."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(reports, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock; so does the process's death


def _recover(reports: Path) -> None:
    """Finish or undo what a killed fold left (the caller holds the lock, so no fold is live):
    a rename pair stopped between its two renames is completed (its journal names the store,
    which is missing, and the staged store is whole), then every staging dir is removed; so are
    the .fold-* dirs older cifarlab left inside reports/published and reports/studies."""
    for stage in sorted(reports.glob(f"{STAGING_PREFIX}*")):
        try:
            store = reports / json.loads((stage / JOURNAL).read_text(encoding="utf-8"))["store"]
        except (OSError, ValueError, KeyError, TypeError):
            store = None
        if (
            store is not None
            and store.resolve().is_relative_to(reports.resolve())
            and not os.path.lexists(store)
            and (stage / "store").is_dir()
        ):
            os.rename(stage / "store", store)
            _fsync_dir(store.parent)
        shutil.rmtree(stage, ignore_errors=True)
    for old in [*(reports / "published").glob(f"{STAGING_PREFIX}*"), *(reports / "studies").glob(f"{STAGING_PREFIX}*")]:
        shutil.rmtree(old, ignore_errors=True)


def recover(root: Path = Path(".")) -> None:
    """Bring the stores of the checkout at `root` back to a fold's before or after state and
    remove what a killed fold left (see the module docstring)."""
    reports = Path(root) / paths.REPORTS_DIR
    if reports.is_dir():
        with _locked(reports):
            _recover(reports)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # safe: nothing here writes a file in place, only replaces it
    except OSError:
        shutil.copy2(src, dst)


def _switch(store: Path, new: Path, stage: Path, reports: Path) -> None:
    """Put the staged `new` store in place of `store` in one step (see the module docstring)."""
    store.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(store):
        os.rename(new, store)
    elif not _exchange(new, store):
        write_json(stage / JOURNAL, {"store": store.relative_to(reports).as_posix()})
        os.rename(store, stage / "old")
        os.rename(new, store)
    _fsync_dir(store.parent)


# --------------------------------------------------------------------------- fold


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


def fold(
    pack_file: Path,
    root: Path = Path("."),
    accept_code_change: bool = False,
    replace: bool = False,
    study: str | None = None,
    log=print,
) -> list[str]:
    """Fold a pack into `root`'s reports/published/, or with `study` into the study's arm that
    each run's provenance names (reports/studies/<study>/<arm>/; reporting/studies.py). The
    store is replaced whole and atomically; nothing is written when any check fails. Returns
    the run outputs folded, named as in this checkout.

    A run's seeds are averaged together, so they must share their data and precision: a pack
    trained on other data (content md5) or in another precision (fp32 / bf16) than a run's seeds
    already published is refused, unless `replace`, which removes those seeds first."""
    root, pack_file = Path(root), Path(pack_file)
    if study is not None and study not in STUDIES:
        raise PublishError(f"--study {study!r}: no such study; studies: {', '.join(STUDIES)}")
    with PackReader(pack_file) as pack:
        return _fold(pack, pack_file, root, accept_code_change, replace, study, log)


def _fold(
    pack: PackReader, pack_file: Path, root: Path, accept_code_change: bool, replace: bool, study: str | None, log
) -> list[str]:
    manifest, provenance, details = _checked_manifest(pack, pack_file)
    facts = _member_facts(pack, manifest["runs"])
    raw = read_params_file(root / paths.PARAMS_FILE)
    p = validate(raw)
    mine = code_md5s(root)
    theirs = manifest["code"]["files"]
    differ = sorted(f for f in set(mine) | set(theirs) if mine.get(f) != theirs.get(f))
    commit = (manifest["code"].get("commit") or "unknown")[:12]
    if differ and not accept_code_change:
        more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
        verb = "differ" if more else "differs"
        raise PublishError(
            f"{pack_file}: trained with other code (commit {commit}): {differ[0]}{more} {verb} from "
            "this checkout; fold it in a checkout of that commit, rerun, or pass --accept-code-change "
            "to publish it with the difference recorded"
        )
    renamed: dict[str, str] = {}
    for out, meta in sorted(manifest["runs"].items()):
        run = meta["run"]
        if run not in p.runs:
            raise PublishError(f"{pack_file}: run {run!r} is not in this checkout's run table (params.yaml runs)")
        _check_own_record(pack_file, out, meta, provenance[out], details[out], facts, raw)
        published, here = comparable(meta["recipe"]), comparable(run_recipe(p, run))
        key = first_difference(published, here)
        if key:
            raise PublishError(
                f"{pack_file}: run {run!r} was trained with {key} = {dotted(published, key)!r}, "
                f"this checkout has {dotted(here, key)!r}: fold it where params.yaml matches"
            )
        renamed[out] = output_id(run, meta["seed"], p.seed)
    reports = root / paths.REPORTS_DIR
    store = root / (STUDIES_DIR / study if study else PUBLISHED_DIR)
    created = not reports.exists()
    reports.mkdir(parents=True, exist_ok=True)
    with _locked(reports):
        _recover(reports)
        try:
            dests = _destinations(renamed, provenance, root, store, study, replace, pack_file)
        except PublishError:
            if created:  # refused: nothing written, not even reports/
                with contextlib.suppress(OSError):
                    reports.rmdir()
            raise
        stage = Path(tempfile.mkdtemp(dir=reports, prefix=STAGING_PREFIX))
        new = stage / "store"
        if store.is_dir():
            shutil.copytree(
                store,
                new,
                symlinks=True,
                copy_function=_link_or_copy,
                ignore=lambda d, names: [n for n in names if n.startswith(STAGING_PREFIX)],
            )
        else:
            new.mkdir()
        today = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        writes: list[tuple[int, str | None, Path, bytes | None]] = []  # (offset in pack, member, target, data)
        for out, new_out in renamed.items():
            where = dests[out][0]
            # the run's old files go, so a figure the new pack lacks does not survive from another run
            for name in [*PUBLISHED_FILES, PROVENANCE]:
                member, target = name.format(out=out), new / where / name.format(out=new_out)
                if not target.resolve().is_relative_to(new.resolve()):  # checked names make this unreachable
                    raise PublishError(f"{pack_file}: {name.format(out=new_out)} would land outside {store}")
                _remove(target)
                if name == PROVENANCE:
                    data = json_bytes(
                        {
                            **provenance[out],
                            "out": new_out,
                            "folded": {
                                "at": today,
                                "pack": pack_file.name,
                                "code_differs": differ if accept_code_change else [],
                            },
                        }
                    )
                    writes.append((-1, None, target, data))
                elif member in pack:
                    writes.append((pack.offset(member), member, target, None))
        for where, other in {(d, o) for d, others in dests.values() for o in others}:
            if other not in renamed.values():  # --replace: the run's seeds of other data go
                for name in [*PUBLISHED_FILES, PROVENANCE]:
                    _remove(new / where / name.format(out=other))
        for _, member, target, data in sorted(writes, key=lambda w: w[0]):  # the pack's order: no rewinding
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as f:
                for chunk in [data] if member is None else pack.chunks(member):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        _switch(store, new, stage, reports)
        shutil.rmtree(stage, ignore_errors=True)
    where = sorted({str(store / d) for d, _ in dests.values()})
    log(
        f"fold: {len(renamed)} runs ({', '.join(renamed.values())}) -> {', '.join(where)}"
        + (
            f"; code differs from commit {commit} in {len(differ)} file{'s' if len(differ) != 1 else ''} (recorded)"
            if differ
            else ""
        )
    )
    return list(renamed.values())


def _remove(path: Path) -> None:
    """Unlink `path` if there: a staged file may be a hard link to the live store's."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _destinations(
    renamed: Mapping[str, str],
    provenance: Mapping[str, dict],
    root: Path,
    store: Path,
    study: str | None,
    replace: bool,
    pack_file: Path,
) -> dict[str, tuple[str, list[str]]]:
    """out -> (its folder in the store, relative: "." or the study's arm; the published outputs of
    its run from other data or in another precision, which --replace removes), refusing those
    without --replace and runs that fit no arm of the study."""
    dests = {}
    for out in renamed:
        prov = provenance[out]
        where = "."
        if study is not None:
            s = STUDIES[study]
            arm = s.arm_of(prov)
            if arm is None:
                raise PublishError(
                    f"{pack_file}: run output {out!r} fits neither arm of study {study!r} "
                    f"({' / '.join(s.arms)}): it takes {s.expects}"
                )
            if s.with_published and any(
                q.get("run") == prov["run"] and _family(q) == _family(prov)
                for q in load_provenance(root / PUBLISHED_DIR).values()
            ):
                raise PublishError(
                    f"{pack_file}: run {prov['run']!r} in {arm} is published (reports/published), "
                    f"and the study counts those seeds: fold {out!r} without --study to join them"
                )
            where = arm
        others = _published_elsewhere(store / where, prov)
        if others and not replace:
            raise PublishError(
                f"{pack_file}: run {prov['run']!r} is already published from other data or in "
                f"another precision ({', '.join(others)}), and such seeds are never averaged: "
                f"pass --replace to drop those first{'' if study else _study_hint(prov)}"
            )
        dests[out] = (where, others)
    return dests
