"""A full disk (or a resume directory the run may not write) mid-run: a resume point that cannot
be written costs the run that resume point, never the run; a checkpoint that cannot be written
(an output of the run) fails it with one line. No half-written file is left either way.

The failures are simulated at the file layer, as a full disk shows them: the write gets some
bytes out, then fails with ENOSPC (or the temp file cannot be created: EACCES). One slow test
puts data/resume on a real 64 KiB tmpfs (mounting needs root; skipped elsewhere). lenet5 on a tiny
archive trains 3 epochs in a few seconds on 1 CPU thread.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from workspace import write_params

from cifarlab import train
from cifarlab.core.stage_main import run_main
from cifarlab.engine.resume import ResumeWriter, load_resume

ROOT = Path(__file__).resolve().parents[1]
MODEL = "lenet5"
EPOCHS = 3  # three resume writes: the first fails, the later ones would re-raise it (or warn again)


def lenet5_params(small_params) -> dict:
    """MODEL alone, EPOCHS epochs, a resume write every epoch, the shipped numerics."""
    return small_params([MODEL], fast=False, train={"max_epochs": EPOCHS, "checkpoint_minutes": 0})


@pytest.fixture
def workdir(tmp_path, small_params, prepare, monkeypatch):
    write_params(tmp_path, lenet5_params(small_params))
    monkeypatch.chdir(tmp_path)
    prepare()
    return tmp_path


def fd_path(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


class FillingDisk:
    """A file on a disk with `room` bytes left: writes land until it is full, then ENOSPC."""

    def __init__(self, f, room: int):
        self._f, self._room = f, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        n = min(len(data), self._room)
        self._f.write(data[:n])
        self._room -= n
        if n < len(data):
            self._f.flush()  # the bytes that fit are on the disk, as a real short write leaves them
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def fill_disk_for(monkeypatch, full, room: int = 1000) -> None:
    """Every file opened whose final name `full(name)` accepts is on a full disk (its temp file
    included: atomic writes go through `.<name>.<random>.tmp`)."""
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        f = real(fd, *args, **kwargs)
        path = fd_path(fd)
        name = path.name[1:].rsplit(".", 2)[0] if path.name.endswith(".tmp") else path.name
        return FillingDisk(f, room) if full(path.parent, name) else f

    monkeypatch.setattr(os, "fdopen", fdopen)


def refuse_files_in(monkeypatch, directory: Path) -> None:
    """No file may be created in `directory` (EACCES; real permissions don't stop root)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == directory.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(dir) / kwargs.get("prefix", "")))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def leftovers(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.name.endswith(".tmp"))


def assert_outputs(d: Path) -> None:
    for f in ("final.pt", "best.pt"):
        assert torch.load(d / "data/checkpoints" / MODEL / f, weights_only=True)["epoch"] >= 1
    assert len((d / f"reports/history/{MODEL}.csv").read_text().splitlines()) == 1 + EPOCHS
    assert (d / f"reports/timing/{MODEL}.json").is_file()


@pytest.mark.parametrize(
    "failure, reason",
    [
        ("disk fills mid-write", "No space left on device"),
        ("resume dir not writable", "Permission denied"),
        ("resume dir is a file", "Not a directory (data/resume)"),
    ],
)
def test_a_resume_point_that_cannot_be_written_is_one_warning_and_the_run_finishes(
    workdir, monkeypatch, capsys, failure, reason
):
    resume_dir = workdir / "data/resume"
    if failure == "disk fills mid-write":
        fill_disk_for(monkeypatch, lambda parent, name: parent == resume_dir)
    elif failure == "resume dir not writable":
        refuse_files_in(monkeypatch, resume_dir)
    else:
        resume_dir.write_text("not a directory\n")
    capsys.readouterr()

    run_main(train.main, ["--run", MODEL], check_workspace=False)  # returns: exit status 0

    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{MODEL} epoch {EPOCHS}/{EPOCHS}:" in err  # every epoch trained after the failed writes
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err  # three failed writes, one line: the later ones fail for the same reason
    assert f"data/resume/{MODEL}" in warnings[0] and reason in warnings[0], warnings[0]
    assert "the run goes on" in warnings[0]
    assert_outputs(workdir)
    assert not leftovers(workdir)
    if failure == "resume dir is a file":
        assert resume_dir.read_text() == "not a directory\n"  # untouched
    else:
        assert not list(resume_dir.iterdir())  # the run ended: no resume state, no orphaned weights


def test_a_checkpoint_that_cannot_be_written_fails_the_run_in_one_line_and_a_rerun_resumes(
    workdir, monkeypatch, capsys
):
    out_dir = workdir / "data/checkpoints" / MODEL
    fill_disk_for(monkeypatch, lambda parent, name: parent == out_dir and name == "best.pt", room=4096)
    capsys.readouterr()

    with pytest.raises(SystemExit) as stop:
        run_main(train.main, ["--run", MODEL], check_workspace=False)

    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write data/checkpoints/{MODEL}/best.pt (No space left on device)"), last
    assert not (out_dir / "best.pt").exists() and not leftovers(workdir)
    # the resume state outlives the failed output: a rerun with room trains nothing again
    assert torch.load(workdir / f"data/resume/{MODEL}.pt", weights_only=True)["state"]["epoch"] == EPOCHS

    monkeypatch.undo()
    monkeypatch.chdir(workdir)
    run_main(train.main, ["--run", MODEL], check_workspace=False)
    err = capsys.readouterr().err
    assert f"epochs 1-{EPOCHS} already done" in err and "warning:" not in err
    assert_outputs(workdir)
    assert not (workdir / "data/resume" / f"{MODEL}.pt").exists()


def snapshot_of(epoch: int, best_epoch: int):
    def snap():
        best = {"w": torch.full((256,), 1.0 * best_epoch)}  # 1 KB: more than the 1000 bytes a full disk takes
        return {
            "state": {
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_state": best,
                "val_best_epoch": None,
                "val_best_state": None,
            },
            "history": [],
            "model": {"w": torch.full((256,), 1.0 * epoch)},
        }

    return snap


def test_resume_writes_go_on_after_a_failure_warn_once_per_failing_stretch_and_leave_the_last_state_whole(
    tmp_path, monkeypatch, capsys
):
    path = tmp_path / "run.pt"
    full = {"on": False, "only": None}  # the disk is full (for every file, or for `only`)
    fill_disk_for(monkeypatch, lambda parent, name: full["on"] and full["only"] in (None, name))
    w = ResumeWriter(path, "fp", minutes=0)

    def epoch(e: int, best: int) -> None:
        w(e, snapshot_of(e, best))
        w.wait()

    epoch(1, 1)
    assert w.saved_epoch == 1
    before = sorted(f.name for f in tmp_path.iterdir())
    # epoch 2, a new best: its weights file fits, the main file naming it does not
    full.update(on=True, only="run.pt")
    epoch(2, 2)
    assert sorted(f.name for f in tmp_path.iterdir()) == before  # the new best's file taken back, no temp
    assert load_resume(path, "fp", log=lambda s: None)["state"]["epoch"] == 1  # the last state, whole
    full.update(only=None)
    epoch(3, 2)
    epoch(4, 2)
    assert w.saved_epoch == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: resume point not saved ("), lines
    assert f"{tmp_path}/run.pt: No space left on device" in lines[0]
    assert "epoch 1" in lines[0]  # where a crash now restarts

    full.update(on=False)  # space freed: the next write lands, and says so
    epoch(5, 5)
    assert w.saved_epoch == 5
    snap = load_resume(path, "fp", log=lambda s: None)
    assert snap["state"]["epoch"] == 5
    torch.testing.assert_close(snap["state"]["best_state"]["w"], torch.full((256,), 5.0))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("resume point saved again"), lines

    full.update(on=True)  # full again: a new stretch of failures, a new warning
    epoch(6, 5)
    epoch(7, 5)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: resume point not saved") and "epoch 5" in lines[0]
    w.close()
    assert not leftovers(tmp_path)
    w.remove()
    assert not list(tmp_path.iterdir())


# ---- a real full disk: a 64 KiB tmpfs over data/resume (a lenet5 resume state is ~1 MB)


@pytest.fixture
def tiny_fs(tmp_path):
    """A mounted 64 KiB tmpfs at a fresh directory; skips where mounting needs privileges we lack."""
    mnt = tmp_path / "tiny_fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_a_real_full_disk_under_data_resume_costs_the_resume_point_not_the_run(
    tmp_path, small_params, prepare, monkeypatch, tiny_fs
):
    d = tmp_path / "run"
    d.mkdir()
    write_params(d, lenet5_params(small_params))
    monkeypatch.chdir(d)
    prepare()
    (d / "data/resume").symlink_to(tiny_fs)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "cifarlab.train", "--run", MODEL],
        cwd=d,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert f"data/resume/{MODEL}" in warnings[0] and "No space left on device" in warnings[0]
    assert_outputs(d)
    assert not list(tiny_fs.iterdir())  # nothing left on the full disk


def test_a_full_disk_under_any_stage_output_is_one_line(monkeypatch, capsys):
    """Outputs other than checkpoints and resume points (a history, a timing file, a figure):
    the machine's OSErrors (disk full, no permission) end a stage in one line, exit 1."""

    from cifarlab.core.stage_main import run_main

    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "reports/history/lenet5.csv")

    with pytest.raises(SystemExit) as e:
        run_main(full, [], check_workspace=False)
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1
    assert err.startswith(
        "error: cannot write or read (reports/history/lenet5.csv): No space left on device: make room"
    )

    def bug(argv):
        raise OSError(errno.EBADF, "Bad file descriptor")  # not the machine's state: a bug, its traceback

    with pytest.raises(OSError):
        run_main(bug, [], check_workspace=False)
