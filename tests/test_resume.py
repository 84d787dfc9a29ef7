"""Crash and resume: a training run killed with SIGKILL mid-epoch, started again, ends with
the same bytes as a run never interrupted; SIGINT stops it cleanly with one message.

Each test runs `python -m cifarlab.train` as a subprocess (what `dvc repro` runs) on a tiny
archive, so the kill is a real one: the slow suite's.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from workspace import write_params

pytestmark = pytest.mark.slow  # training subprocesses, killed and run again

ROOT = Path(__file__).resolve().parents[1]
MODEL = "hw2_cnn"  # BatchNorm + dropout: RNG-sensitive, so a wrong resume shows in the bytes
EPOCHS = 4


@pytest.fixture
def params(small_params):
    """params(d, **recipe): d/params.yaml training MODEL alone, `recipe` changing its section."""

    def write(d: Path, **recipe) -> None:
        # save every epoch; small_params' fast numerics: fp32 where this CPU emulates bf16 (hw2_cnn's
        # 4 epochs, several times: 3 minutes in emulated bf16 on 2 cores), the defaults where native
        # batches of 8: 25 steps an epoch, so a kill lands inside one
        write_params(
            d,
            small_params(
                [MODEL], train={"max_epochs": EPOCHS, "checkpoint_minutes": 0}, **{MODEL: {"batch_size": 8, **recipe}}
            ),
        )

    return write


@pytest.fixture
def prepared(params, prepare, monkeypatch):
    """prepared(d, **recipe): params(), then the prepared data, in d, the working directory."""

    def prepared(d: Path, **recipe) -> None:
        d.mkdir(parents=True, exist_ok=True)
        params(d, **recipe)
        monkeypatch.chdir(d)
        prepare(d)

    return prepared


def train_cmd(d: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # SIGINT as a terminal would deliver it: a shell running the tests in the background starts
    # them with SIGINT ignored, and children inherit that
    return subprocess.Popen(
        [sys.executable, "-m", "cifarlab.train", "--run", MODEL],
        cwd=d,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def outputs(d: Path) -> dict[str, str]:
    """sha256 of every training output DVC hashes (timing, which varies, left out)."""
    files = [*sorted((d / "data/checkpoints").rglob("*.pt")), d / f"reports/history/{MODEL}.csv"]
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def wait_for_saved_epoch(d: Path, proc: subprocess.Popen, epoch: int, timeout_s: float = 120) -> None:
    """Poll until the resume file holds `epoch` (the run is then inside epoch+1)."""
    state = d / f"data/resume/{MODEL}.pt"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training ended before epoch {epoch} was saved: {proc.communicate()}"
        if state.exists():
            try:
                if torch.load(state, weights_only=True)["state"]["epoch"] >= epoch:
                    return
            except Exception:  # noqa: BLE001 - never half-written (atomic rename), but be patient
                pass
        time.sleep(0.02)
    pytest.fail(f"no resume state for epoch {epoch} within {timeout_s}s")


def test_sigkill_mid_epoch_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, prepared):
    ref, crash = tmp_path / "ref", tmp_path / "crash"

    prepared(ref)
    t0 = time.monotonic()
    proc = train_cmd(ref)
    _, err = proc.communicate(timeout=300)
    uninterrupted_s = time.monotonic() - t0
    assert proc.returncode == 0, err
    assert "resuming" not in err

    prepared(crash)
    proc = train_cmd(crash)
    wait_for_saved_epoch(crash, proc, 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (crash / "data/checkpoints" / MODEL / "final.pt").exists()  # it really died mid-run
    saved = torch.load(crash / f"data/resume/{MODEL}.pt", weights_only=True)["state"]["epoch"]
    assert 2 <= saved < EPOCHS

    t0 = time.monotonic()
    proc = train_cmd(crash)
    _, err = proc.communicate(timeout=300)
    resumed_s = time.monotonic() - t0
    assert proc.returncode == 0, err
    assert f"epochs 1-{saved} already done" in err
    assert f"epoch {saved + 1}/{EPOCHS}" in err and f"epoch {saved}/{EPOCHS}:" not in err  # no epoch redone
    assert outputs(crash) == outputs(ref)
    assert not (crash / f"data/resume/{MODEL}.pt").exists()
    timing = json.loads((crash / f"reports/timing/{MODEL}.json").read_text())
    assert len(timing["epoch_seconds"]) == EPOCHS
    assert timing["resumed_after"] == [saved]
    assert json.loads((ref / f"reports/timing/{MODEL}.json").read_text())["resumed_after"] == []
    print(f"uninterrupted {uninterrupted_s:.1f}s; resumed after epoch {saved} in {resumed_s:.1f}s")


def signal_after_epoch_1(d: Path, sig: signal.Signals) -> tuple[int, str]:
    """Start training in `d`, send `sig` once epoch 1 is saved; return (exit code, stderr)."""
    proc = train_cmd(d)
    wait_for_saved_epoch(d, proc, 1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_a_resume_state_from_other_params_is_ignored(tmp_path, params, prepared):
    d = tmp_path / "run"
    prepared(d)
    assert signal_after_epoch_1(d, signal.SIGKILL)[0] == -signal.SIGKILL
    params(d, lr=0.005)  # another recipe: the saved epochs are not this run's
    proc = train_cmd(d)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "saved by a run with other params or data; starting from epoch 1" in err
    assert f"epoch 1/{EPOCHS}:" in err


def test_sigint_stops_cleanly_with_one_message(tmp_path, prepared):
    d = tmp_path / "run"
    prepared(d)
    code, err = signal_after_epoch_1(d, signal.SIGINT)
    assert code == 130
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: train {MODEL} stopped cleanly; epochs 1-")
    assert f"data/resume/{MODEL}.pt; rerun (dvc repro) to resume from there" in last
    assert not (d / "data/checkpoints" / MODEL / "final.pt").exists()
    assert not list(d.rglob("*.tmp"))  # no half-written file anywhere
