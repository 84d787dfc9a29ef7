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
from pack_tools import checkout, finished_run, repack

from cifarlab.tooling import fold, packs


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
        r"provenance/lenet5-s1\.json names run 'lenet5' seed 7, the manifest run 'lenet5' seed 1",
    ),
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
    before = sorted(p for p in tmp_path.rglob("*") if "home" not in p.parts[: len(tmp_path.parts) + 1])
    bad = repack(good_pack, tmp_path / "bad.tar.gz", edit)
    r = subprocess.run([sys.executable, "-m", "cifarlab", "fold", str(bad)], cwd=home, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and __import__("re").search(message, r.stderr), r.stderr
    assert not (home / "reports").exists()  # nothing folded, not even half
    after = sorted(p for p in tmp_path.rglob("*") if "home" not in p.parts[: len(tmp_path.parts) + 1])
    assert after == sorted([*before, bad]), set(after) ^ set(before)  # nothing written outside the checkout
    assert not (tmp_path.parent / "x.json").exists()


def test_the_good_pack_folds(good_pack, tmp_path):
    home = checkout(tmp_path / "home")
    assert fold.fold(repack(good_pack, tmp_path / "same.tar.gz", lambda m: None), home, log=lambda s: None) == [
        "lenet5",
        "lenet5-s1",
    ]


# --------------------------------------------------------------------------- bounded reading

MiB = 2**20


def _tar_gz(dest: Path, members, pax: dict | None = None) -> Path:
    """A .tar.gz of (name, size or bytes) members, in that order; sizes are zeros written in
    chunks, so the test never holds them."""
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, int):
                info.size = data
                tar.addfile(info, _Zeros(data))
            else:
                info.size = len(data)
                if pax and name in pax:
                    info.pax_headers = pax[name]
                tar.addfile(info, io.BytesIO(data))
    return dest


class _Zeros(io.RawIOBase):
    def __init__(self, n):
        self.left = n

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n

    def readable(self):
        return True


@pytest.fixture()
def small_bounds(monkeypatch):
    """The pack bounds at a test's scale: a member 1 MiB, the whole tar 4 MiB, JSON 64 KiB."""
    for name, value in (("MAX_MEMBER_BYTES", MiB), ("MAX_UNPACKED_BYTES", 4 * MiB), ("MAX_TEXT_BYTES", 64 * 2**10)):
        monkeypatch.setattr(packs, name, value)


def _good_members(good_pack):
    with tarfile.open(good_pack) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _peak_while(fn) -> tuple[int, str]:
    """(peak bytes Python allocated while fn() ran, the PublishError it must raise)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(packs.PublishError) as e:
            fn()
        return tracemalloc.get_traced_memory()[1], str(e.value)
    finally:
        tracemalloc.stop()


def test_a_member_that_inflates_is_refused_from_its_header_without_reading_it(good_pack, tmp_path, small_bounds):
    """The field report: a figure of zeros that inflates to 2 GiB (a few MB packed) was read whole,
    2.1 GB of memory, before the manifest was checked. Here at 1/256 the scale: 8 MiB of zeros
    against a 1 MiB bound, refused from the member's header, under the bound in memory."""
    bomb = _tar_gz(tmp_path / "bomb.tar.gz", [("figures/curves_lenet5.png", 8 * MiB), *_good_members(good_pack)])
    home = checkout(tmp_path / "home")
    peak, message = _peak_while(lambda: fold.fold(bomb, home, log=lambda s: None))
    assert message == (
        f"{bomb}: member 'figures/curves_lenet5.png' unpacks to 8.0 MiB, over the 1 MiB a pack member "
        "may hold: not a pack cifarlab wrote (make it again with cifarlab pack)"
    )
    assert peak < MiB / 2, peak
    assert not (home / "reports").exists()


def test_members_that_together_inflate_past_the_bound_are_refused(good_pack, tmp_path, small_bounds):
    many = [(f"figures/pca_x{i}_2d3d.png", MiB - 4096) for i in range(6)]  # each under the bound, 6 MiB in all
    bomb = _tar_gz(tmp_path / "bomb.tar.gz", [*_good_members(good_pack), *many])
    peak, message = _peak_while(lambda: fold.fold(bomb, checkout(tmp_path / "home"), log=lambda s: None))
    assert message.endswith(
        "unpacks to over 4 MiB, more than a cifarlab pack holds: not a pack cifarlab wrote "
        "(make it again with cifarlab pack)"
    ), message
    assert peak < MiB / 2, peak


def test_the_manifest_is_checked_before_a_large_member_is_read(good_pack, tmp_path, small_bounds):
    """A pack whose manifest is wrong is refused for its manifest; the large member before it
    (an older pack sorts manifest.json after details/ and figures/) is never read into memory."""
    members = [(n, d) for n, d in _good_members(good_pack) if n != "manifest.json"]
    manifest = json.dumps({"format": 99}).encode()
    bad = _tar_gz(
        tmp_path / "bad.tar.gz", [("figures/confusion_lenet5.png", MiB - 4096), *members, ("manifest.json", manifest)]
    )
    peak, message = _peak_while(lambda: fold.fold(bad, checkout(tmp_path / "home"), log=lambda s: None))
    assert message == f"{bad}: pack format 99, this cifarlab reads {packs.PACK_FORMAT}"
    assert peak < MiB / 2, peak


def test_an_inflating_header_a_json_bomb_and_a_corrupt_stream_are_refused_in_one_line(good_pack, tmp_path):
    """tarfile reads a pax header whole: one that claims 2 MiB is refused before it is read; a
    JSON member is parsed only under MAX_TEXT_BYTES, and one nested past Python's recursion
    limit is refused like any other bad JSON; a damaged gzip stream is one line too."""
    members = _good_members(good_pack)
    pax = _tar_gz(tmp_path / "pax.tar.gz", members, pax={"manifest.json": {"comment": "x" * (2 * MiB)}})
    rest = [m for m in members if m[0] != "manifest.json"]
    big = _tar_gz(tmp_path / "big.tar.gz", [("manifest.json", b" " * (packs.MAX_TEXT_BYTES + 1)), *rest])
    deep = _tar_gz(tmp_path / "deep.tar.gz", [("manifest.json", b"[" * 200_000), *rest])
    data = bytearray(good_pack.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(bytes(data))
    home = checkout(tmp_path / "home")
    for bad, message in (
        (pax, r"a header or read of \d+ bytes, more than a cifarlab pack holds"),
        (big, r"member 'manifest\.json' unpacks to 1\.0 MiB, over the 1 MiB"),
        (deep, r"manifest\.json: not JSON \(maximum recursion depth"),
        # 64 zero bytes mid-stream: a deflate error, or bytes that inflate to a
        # broken manifest, by where the middle of this pack falls
        (corrupt, r"not a readable \.tar\.gz pack \(|manifest\.json: not JSON \("),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "cifarlab", "fold", str(bad)], cwd=home, capture_output=True, text=True
        )
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert __import__("re").search(message, r.stderr), r.stderr
    assert not (home / "reports").exists()
