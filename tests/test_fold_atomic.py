"""`cifarlab fold` is all or nothing: killed (SIGKILL) at any instant, it leaves the store it
changes (reports/published/, or reports/studies/<study>/ with --study) exactly as it was before
or as it is after, byte for byte, and once recovery ran (the next fold, or fold.recover) no
.fold-* directory is left anywhere under reports/ (tooling/fold.py).

"Any instant": a forked child folds with an audit hook that counts its filesystem changes
(opening a file for writing, rename, link, unlink, mkdir, rmdir, chmod, ...) and kills itself
with SIGKILL just before the k-th. A fold makes 100-150 changes here; each test kills it at 24
of them drawn at random (a fixed draw per test) and at every change within three of a rename or
of the staging dir's removal, where the switch happens (all of them pass too: set k_all below).
The atomic exchange (renameat2) raises no audit event of its own: the kills just before and
just after it are the changes on either side."""

from __future__ import annotations

import datetime
import json
import os
import random
import shutil
import signal
import sys
import traceback
import types
from pathlib import Path

import pytest
from pack_tools import checkout, finished_run

from cifarlab.core.params_file import read_params_file
from cifarlab.reporting import studies
from cifarlab.tooling import fold, packs

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child")

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {
    "os.rename",
    "os.link",
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "shutil.rmtree",
    "os.chmod",
    "os.utime",
    "os.truncate",
    "os.symlink",
    "shutil.copyfile",
    "shutil.copymode",
    "shutil.copystat",
}
LOSSLESS, JPEG = (next(m for m, a in studies.JPEG_EFFECT_DATA.items() if a == arm) for arm in ("lossless", "jpeg"))


def _a_change(event: str, args: tuple) -> bool:
    if event == "open":
        return isinstance(args[2], int) and bool(args[2] & WRITE_FLAGS)
    return event in CHANGES


def fold_killed_at(k: int, home: Path, pack: Path, **kw) -> tuple[bool, list[str]]:
    """Fold `pack` into `home` in a forked child that SIGKILLs itself just before its k-th
    filesystem change (k=0: never). (killed, the audit events of its changes when it finished)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(r)
        code, events = 0, []

        def hook(event, args):
            if _a_change(event, args):
                events.append(event)
                if len(events) == k:
                    os.kill(os.getpid(), signal.SIGKILL)

        try:
            sys.addaudithook(hook)
            fold.fold(pack, home, log=lambda s: None, **kw)
            report = json.dumps(events)
        except BaseException:  # noqa: BLE001 - the forked child: whatever stopped it goes to the parent
            code, report = 3, traceback.format_exc()[-4000:]
        with os.fdopen(w, "wb") as f:
            f.write(report.encode())
        os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode()
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True, []
    assert os.WEXITSTATUS(status) == 0, report
    return False, json.loads(report)


def snapshot(store: Path) -> dict | None:
    """Every file's bytes and every folder under `store` (None: no store)."""
    if not os.path.lexists(store):
        return None
    return {p.relative_to(store).as_posix(): p.read_bytes() if p.is_file() else "dir" for p in sorted(store.rglob("*"))}


def leftovers(home: Path) -> list[str]:
    return sorted(p.relative_to(home).as_posix() for p in (home / "reports").rglob(".fold-*"))


@pytest.fixture()
def quick_fold(monkeypatch, tmp_path):
    """What a fold reads of the checkout besides reports/ (params, code md5s) read once, and its
    clock stopped, so every child folds the same bytes in milliseconds."""
    raw = read_params_file(checkout(tmp_path / "code") / "params.yaml")
    p, md5s = fold.validate(raw), fold.code_md5s(tmp_path / "code")
    monkeypatch.setattr(fold, "read_params_file", lambda path: raw)
    monkeypatch.setattr(fold, "validate", lambda r: p)
    monkeypatch.setattr(fold, "code_md5s", lambda root: md5s)
    stopped = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    clock = types.SimpleNamespace(now=lambda tz=None: stopped)
    monkeypatch.setattr(fold, "_dt", types.SimpleNamespace(datetime=clock, timezone=datetime.timezone))


def make_pack(tmp_path: Path, name: str, outs: dict) -> Path:
    """A pack of run outputs: out -> (run, seed, top1, content md5)."""
    ws = checkout(tmp_path / f"ws-{name}")
    for out, (run, seed, top1, md5) in outs.items():
        finished_run(ws, out=out, run=run, seed=seed, top1=top1, content_md5=md5)
    if "lenet5" in outs and name == "new":  # its figure goes: the old one must not survive the fold
        (ws / "reports/figures/runs/curves_lenet5.png").unlink()
    dest = tmp_path / f"{name}.tar.gz"
    packs.pack(ws, dest, log=lambda s: None)
    return dest


SCENES = {
    # lenet5 seed 23 replaced (one figure fewer), seed 1 kept, seed 2 added
    "published": (
        None,
        {"lenet5": ("lenet5", 23, 0.60, LOSSLESS), "lenet5-s1": ("lenet5", 1, 0.62, LOSSLESS)},
        {"lenet5": ("lenet5", 23, 0.65, LOSSLESS), "lenet5-s2": ("lenet5", 2, 0.61, LOSSLESS)},
    ),
    # both arms of the jpeg study change in one fold
    "study": (
        "jpeg",
        {"lenet5": ("lenet5", 23, 0.60, LOSSLESS), "dnn": ("dnn", 23, 0.40, JPEG)},
        {"lenet5": ("lenet5", 23, 0.65, LOSSLESS), "dnn-s1": ("dnn", 1, 0.41, JPEG)},
    ),
}


@pytest.mark.slow  # a forked fold SIGKILLed at some 30 instants each
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-pair"])
@pytest.mark.parametrize("scene", SCENES)
def test_a_fold_killed_at_any_instant_leaves_the_store_before_or_after(
    scene, exchange, tmp_path, quick_fold, monkeypatch
):
    """The field report: a fold killed midway left half of a run's files replaced, and
    reports/published/.fold-* behind. Exchange: the store is never anything but before or after,
    even before recovery. Rename pair (filesystems without an exchange): between its two renames
    the store is missing, and recovery completes it; before or after once recovered."""
    if not exchange:
        monkeypatch.setattr(fold, "_exchange", lambda a, b: False)
    study, old, new = SCENES[scene]
    base = checkout(tmp_path / "base")
    fold.fold(make_pack(tmp_path, "old", old), base, study=study, log=lambda s: None)
    pack = make_pack(tmp_path, "new", new)
    store = Path("reports") / ("studies/jpeg" if study else "published")

    def fresh(name: str) -> Path:
        home = tmp_path / name
        shutil.copytree(base / "reports", home / "reports", symlinks=True)
        return home

    before = snapshot(base / store)
    killed, events = fold_killed_at(0, fresh("whole"), pack, study=study)
    after = snapshot(tmp_path / "whole" / store)
    assert not killed and after != before and not leftovers(tmp_path / "whole")
    changed = {f for f in set(before) | set(after) if before.get(f) != after.get(f)}
    assert len(changed) >= 5, changed  # several files of one run: a half-done fold would mix them
    n, k_all = len(events), False
    near_switch = {k + d for k, e in enumerate(events, 1) if e in ("os.rename", "shutil.rmtree") for d in range(-3, 4)}
    ks = (
        range(1, n + 1)
        if k_all
        else sorted(
            near_switch & set(range(1, n + 1)) | set(random.Random(f"{scene}-{exchange}").sample(range(1, n + 1), 24))
        )
    )
    seen = {"before": 0, "after": 0, "missing": 0}
    for k in ks:
        home = fresh(f"k{k}")
        killed, _ = fold_killed_at(k, home, pack, study=study)
        assert killed
        state = snapshot(home / store)
        assert state in (before, after) or (not exchange and state is None), f"killed before change {k} of {n}"
        seen["missing" if state is None else "before" if state == before else "after"] += 1
        fold.recover(home)
        assert snapshot(home / store) in (before, after), f"killed before change {k} of {n}, recovered"
        assert not leftovers(home), (k, leftovers(home))
        shutil.rmtree(home)
    assert seen["before"] and seen["after"] and (exchange or seen["missing"]), seen


def test_a_later_fold_cleans_up_after_a_killed_one(tmp_path, quick_fold):
    """A fold killed with its staging dir half written, then the same fold again: the store is
    the after state, and neither the killed fold's staging dir nor a .fold-* dir an older
    cifarlab left inside reports/published/ survives."""
    home = checkout(tmp_path / "home")
    fold.fold(make_pack(tmp_path, "old", SCENES["published"][1]), home, log=lambda s: None)
    (home / "reports/published/.fold-abc123/lenet5").mkdir(parents=True)  # what the old fold left
    (home / "reports/published/.fold-abc123/lenet5/metrics.json").write_text("{}")
    pack = make_pack(tmp_path, "new", SCENES["published"][2])
    assert fold_killed_at(12, home, pack)[0]
    assert leftovers(home)  # the killed fold's staging dir, and the old one
    fold.fold(pack, home, log=lambda s: None)
    assert not leftovers(home)
    prov = json.loads((home / "reports/published/provenance/lenet5.json").read_text())
    assert prov["folded"]["pack"] == "new.tar.gz"
    assert not (home / "reports/published/figures/curves_lenet5.png").exists()
    assert (home / "reports/published/metrics/lenet5-s1.json").is_file()
