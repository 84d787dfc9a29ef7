"""A pack is a file from another machine or person: untrusted input, like an archive. `fold`
validates every manifest field and member it uses (types, names, seeds), writes nothing outside
reports/published/ (or the study's folder), folds all or nothing, and says what is wrong in one
line (tooling/packs.py)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cifarlab.tooling import fold, packs
from test_published import checkout, finished_run


def repack(src: Path, dest: Path, edit) -> Path:
    """`src` with its members passed through edit(members: dict name -> bytes), written to `dest`."""
    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    edit(members)
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def manifest_edit(change):
    def edit(members):
        m = json.loads(members["manifest.json"])
        change(m)
        members["manifest.json"] = json.dumps(m).encode()
    return edit


def _set_seed(value):
    def change(m):
        m["runs"]["lenet5-s1"]["seed"] = value
    return change


def _drop(*keys):
    def change(m):
        obj = m
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]
    return change


def _rename_out(new):
    def edit(members):
        m = json.loads(members["manifest.json"])
        m["runs"][new] = m["runs"].pop("lenet5-s1")
        members["manifest.json"] = json.dumps(m).encode()
        for name in list(members):
            if "lenet5-s1" in name:
                members[name.replace("lenet5-s1", new)] = members.pop(name)
    return edit


def _member(name, data):
    def edit(members):
        if data is None:
            del members[name]
        else:
            members[name] = data
    return edit


CRAFTED = {
    # a seed that is a path: before, fold wrote reports/published/details/lenet5-s1/../../../../x.json
    "seed is a path": (manifest_edit(_set_seed("1/../../../../x")), r"seed '1/\.\./\.\./\.\./\.\./x' .*integer"),
    "seed is a float": (manifest_edit(_set_seed(1.5)), r"seed 1\.5 .*integer"),
    "seed is a bool": (manifest_edit(_set_seed(True)), r"seed True .*integer"),
    "seed is negative": (manifest_edit(_set_seed(-1)), r"seed -1 .*integer"),
    "no code": (manifest_edit(_drop("code")), r"manifest\.json: no 'code'"),
    "code files not a mapping": (manifest_edit(lambda m: m["code"].update(files=["a"])), r"'code\.files'"),
    "no runs": (manifest_edit(_drop("runs")), r"manifest\.json: no 'runs'"),
    "run not a string": (manifest_edit(lambda m: m["runs"]["lenet5-s1"].update(run=["lenet5"])), r"run \['lenet5'\]"),
    "run is a path": (manifest_edit(lambda m: m["runs"]["lenet5-s1"].update(run="../x")), r"run '\.\./x'"),
    "no recipe": (manifest_edit(_drop("runs", "lenet5-s1", "recipe")), r"no 'recipe'"),
    "manifest a list": (_member("manifest.json", b"[]"), r"manifest\.json: expected a JSON object"),
    "manifest not JSON": (_member("manifest.json", b"{oops"), r"manifest\.json: not JSON"),
    "output name climbs": (_rename_out("../../x"), r"unexpected member 'details/\.\./\.\./x\.json'"),
    "output name is a path": (_rename_out("sub/x"), r"run output 'sub/x' is not a run output name"),
    "provenance missing": (_member("provenance/lenet5-s1.json", None), r"no provenance/lenet5-s1\.json"),
    "provenance not JSON": (_member("provenance/lenet5-s1.json", b"\xff"), r"provenance/lenet5-s1\.json: not JSON"),
    "metrics missing": (_member("metrics/lenet5-s1.json", None), r"no metrics/lenet5-s1\.json"),
    "metrics not an object": (_member("metrics/lenet5-s1.json", b"3"), r"metrics/lenet5-s1\.json: expected a JSON"),
    "provenance names another seed": (
        _member("provenance/lenet5-s1.json", json.dumps({"run": "lenet5", "seed": 7}).encode()),
        r"provenance/lenet5-s1\.json names run 'lenet5' seed 7, the manifest run 'lenet5' seed 1"),
    "a member nobody asked for": (_member("figures/../../evil.png", b"x"), r"unexpected member"),
}


@pytest.fixture()
def good_pack(tmp_path):
    ws = checkout(tmp_path / "ws")
    finished_run(ws)  # seed 23: the checkout's seed, so the pack holds two outputs
    finished_run(ws, out="lenet5-s1", seed=1, top1=0.62)
    dest = tmp_path / "good.tar.gz"
    packs.pack(ws, dest, log=lambda s: None)
    return dest


@pytest.mark.parametrize("case", CRAFTED, ids=list(CRAFTED))
def test_a_crafted_pack_is_refused_in_one_line_and_nothing_is_written(case, good_pack, tmp_path):
    edit, message = CRAFTED[case]
    home = checkout(tmp_path / "home")
    before = sorted(p for p in tmp_path.rglob("*") if "home" not in p.parts[:len(tmp_path.parts) + 1])
    bad = repack(good_pack, tmp_path / "bad.tar.gz", edit)
    r = subprocess.run([sys.executable, "-m", "cifarlab", "fold", str(bad)], cwd=home, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and __import__("re").search(message, r.stderr), r.stderr
    assert not (home / "reports").exists()  # nothing folded, not even half
    after = sorted(p for p in tmp_path.rglob("*") if "home" not in p.parts[:len(tmp_path.parts) + 1])
    assert after == sorted([*before, bad]), set(after) ^ set(before)  # nothing written outside the checkout
    assert not (tmp_path.parent / "x.json").exists()


def test_the_good_pack_folds(good_pack, tmp_path):
    home = checkout(tmp_path / "home")
    assert fold.fold(repack(good_pack, tmp_path / "same.tar.gz", lambda m: None), home,
                      log=lambda s: None) == ["lenet5", "lenet5-s1"]
