"""Honest estimates and the notice before a long run (issue 40, points 1 and 2).

1. A step's time is the MEAN of the steps timed now (not the fastest ever seen, from a cache every
   checkout shared), the mean of their slower half the upper end of a range; a stage also costs
   its start-up, train.py's own step timing, its test pass and DVC's share.
2. The notice runs first in fetch and in every training stage, speaks once per dvc process, and
   counts the stages of the command it runs under: `dvc exp run experiment -S model=lenet5` counts
   that run's stages, not the pipeline's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers_cli import fake_dvc
from workspace import SHIPPED_PARAMS, project_copy, project_env, small_params, write_params

from cifarlab.core.params import load_params
from cifarlab.tooling import estimate, notice

ROOT = Path(__file__).resolve().parents[1]
IDLE = estimate.Startup(estimate.IDLE_STARTUP_S, 0.0, None)  # a stage starting as fast as on an idle machine


# --------------------------------------------------------------------------- the estimate


def test_a_step_time_is_the_mean_of_the_steps_timed_and_the_slower_half_its_upper_end(monkeypatch):
    """Steps alternating 10 ms and 30 ms (a busy machine): 20 ms a step (2 ms an image at a batch
    of 10), not the fastest 10 ms, and the slower half's 30 ms as the range's upper end; timed by
    engine.step.time_steps, the one timing loop."""
    from cifarlab.core.params import TrainParams
    from cifarlab.engine import step as engine_step
    from cifarlab.engine.augment import BatchPipeline
    from cifarlab.engine.device import Runtime, setup_device
    from cifarlab.engine.loop import build_model
    from cifarlab.engine.step import StepTiming
    from cifarlab.tooling import timing

    calls = []

    def fake_time_steps(step, batch, gen, *, warmup, steps, min_seconds=0.0, max_steps=None, each=True):
        calls.append((warmup, steps, min_seconds, each))
        return StepTiming(1.0, [0.010, 0.030, 0.010, 0.030], 0.08, 4, None)

    monkeypatch.setattr(engine_step, "time_steps", fake_time_steps)
    p = load_params(SHIPPED_PARAMS)
    train = TrainParams(bf16=False, channels_last=False, num_threads=1)
    device = setup_device(train)
    recipe = p["lenet5"].recipe
    t = timing.time_network(
        build_model("lenet5", dict(p["lenet5"].arch), 0),
        recipe,
        BatchPipeline(recipe.augment, (0.5,) * 3, (0.25,) * 3, device),
        Runtime(device, train),
        batch=10,
        quick=True,
    )
    assert calls == [(engine_step.WARMUP_STEPS, timing.QUICK_STEPS, timing.QUICK_TIMED_S, True)]
    assert (t.train_s, t.slow_s) == (pytest.approx(0.002), pytest.approx(0.003))
    assert timing.summarize([0.01, 0.02, 0.03], 1) == (pytest.approx(0.02), pytest.approx(0.025))


def test_a_training_stage_costs_its_overheads_and_a_range_from_the_mean_to_the_slower_half():
    """resnet18, 1 epoch on 5,000 / 2,000 images, 45 images/s on the mean step and 40 on the slower
    half, its test pass 200/s: the field report's '49 s' row ran 256 s. Now the row is DVC's share,
    the start-up, the process's own work and train.py's own step timing, plus the epoch's training
    and test passes: at the mean for the lower end, at the slower half for the upper end."""
    p = load_params(SHIPPED_PARAMS)
    p = p.model_copy(update={"train": p.train.model_copy(update={"max_epochs": 1})})
    run = "resnet18-relu-2_1_1-crop_flip"
    t = estimate.StepTime(1 / 45, 1 / 40, 1 / 200)
    (cost,) = estimate.stage_costs(p, {estimate.run_key(p[run]): t}, [f"train@{run}"], sizes=(5000, 2000), startup=IDLE)
    fixed = estimate.DVC_STAGE_S + IDLE.seconds + estimate.TRAIN_PROCESS_S + 4 * 64 / 45
    epoch = 5000 / 45 + 2000 / 200
    assert cost.low_seconds == pytest.approx(fixed + epoch)
    assert cost.seconds == pytest.approx(fixed + epoch * 45 / 40)
    row = estimate.table([cost], "this CPU").splitlines()[2]
    assert row.split()[-1] == estimate.span(cost.low_seconds, cost.seconds)
    # a stage starting twice as slowly as on the idle machine: the fixed costs twice theirs
    busy = estimate.Startup(2 * estimate.IDLE_STARTUP_S)
    fetch_idle, fetch_busy = (estimate.stage_costs(p, {}, ["fetch"], startup=s)[0].seconds for s in (IDLE, busy))
    assert fetch_busy == pytest.approx(2 * fetch_idle) and fetch_idle == pytest.approx(5 + estimate.DVC_STAGE_S)
    # a GPU benchmark's bare rate (no start-up measured): its images only, as before
    (gpu,) = estimate.stage_costs(p, {estimate.run_key(p[run]): 1e-3}, [f"train@{run}"], sizes=(5000, 2000))
    assert gpu.low_seconds == gpu.seconds == pytest.approx(1e-3 * (5000 + 2000 / 3))


def test_estimate_prints_the_time_measured_now_not_a_faster_cached_one(monkeypatch, tmp_path):
    """A cache holding a 100x faster time of lenet5 (the fastest ever seen) changes nothing:
    `cifarlab estimate` times now, says so, and its row is the time just measured, which replaces
    the cached one."""
    from helpers_cli import cifarlab
    from workspace import pristine_root

    from cifarlab.tooling import timing

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    now = estimate.StepTime(2e-3, 3e-3, 1e-3)
    monkeypatch.setattr(timing, "measure", lambda train, keys, log=None: {k: now for k in keys})
    monkeypatch.setattr(timing, "measure_startup", lambda root=".": IDLE)
    p = load_params(SHIPPED_PARAMS)
    key = estimate.run_key(p["lenet5"])
    estimate.store_times(p.train, {key: estimate.StepTime(2e-5, 2e-5, 1e-5, 0.0, time.time())}, pristine_root())
    out = cifarlab("estimate", "--all", "train@lenet5")
    assert out.returncode == 0, out.stderr
    (cost,) = estimate.stage_costs(p, {key: now}, ["train@lenet5"], startup=IDLE)
    row = next(line for line in out.stdout.splitlines() if line.startswith("train@lenet5 "))
    assert row.split()[-1] == estimate.span(cost.low_seconds, cost.seconds) and "-" in row.split()[-1]
    assert out.stdout.startswith("timed now on this checkout, beside what else runs (load average ")
    assert "from the mean training step to the mean of the slower half of the steps" in out.stdout
    assert estimate.cached_times(p.train, pristine_root())[key].train_s == 2e-3


def test_a_cached_timing_stands_for_now_only_beside_a_load_like_nows(monkeypatch):
    """2 cores, load 4 now: a timing beside load 3 stands (2 and 1.5 a core); beside 1 (a core
    free) or 8 it does not (the load predicts a step poorly: timed anew, never stretched)."""
    monkeypatch.setattr(estimate, "loadavg", lambda: (4.0, 4.0, 4.0))
    assert estimate.like_now(3.0, cores=2) and estimate.like_now(5.0, cores=2)
    assert not estimate.like_now(1.0, cores=2) and not estimate.like_now(8.0, cores=2)
    assert not estimate.like_now(None, cores=2)
    monkeypatch.setattr(estimate, "loadavg", lambda: (0.5, 0.5, 0.5))
    assert estimate.like_now(1.9, cores=2) and not estimate.like_now(4.0, cores=2)


def test_the_notice_times_anew_what_was_timed_beside_another_load(monkeypatch, tmp_path):
    """Idle now: lenet5 timed idle stands; dnn, timed beside two trainings (load 7), and the
    start-up, missing, are timed anew by `python -m cifarlab.tooling.timing` (a child process: torch)."""
    p = load_params(SHIPPED_PARAMS)
    now = time.time()
    cache = {
        estimate.run_key(p["lenet5"]): estimate.StepTime(1.0, 1.0, 0.3, 0.2, now),
        estimate.run_key(p["dnn"]): estimate.StepTime(1.0, 1.0, 0.3, 7.0, now),
    }
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    monkeypatch.setattr(estimate, "loadavg", lambda: (0.3, 0.3, 0.3))
    monkeypatch.setattr(estimate, "repro_call", lambda: estimate.ReproCall("dvc repro", []))
    monkeypatch.setattr(estimate, "to_run", lambda root, targets, glob, changed=None: ["train@lenet5", "train@dnn"])
    monkeypatch.setattr(estimate, "cached_times", lambda train, root=".": cache)
    monkeypatch.setattr(estimate, "cached_startup", lambda train, root=".": None)
    ran = []
    monkeypatch.setattr(estimate.subprocess, "run", lambda argv, **kw: ran.append(argv[1:]))
    assert estimate.repro_notice(p, tmp_path) is None  # the start-up still missing: nothing said
    assert ran == [["-m", "cifarlab.tooling.timing", "--startup", "dnn"]]


# --------------------------------------------------------------------------- which command, which stages


def test_repro_call_reads_dvc_repro_and_dvc_exp_run_targets():
    """From the dvc process above (pid, start time, its arguments), with DVC's own parser."""
    call = estimate.repro_call([(10, "5", ["exp", "run", "experiment", "-S", "model=lenet5"])])
    assert call == estimate.ReproCall("dvc exp run", ["experiment"])
    assert estimate.repro_call([(10, "5", ["repro", "--glob", "plot@resnet18-*"])]) == estimate.ReproCall(
        "dvc repro", ["plot@resnet18-*"], glob=True
    )
    assert estimate.repro_call([(10, "5", ["repro", "--single-item", "train@lenet5"])]).single_item
    # `dvc exp run --temp`: its stages run under an exec-run of its own; the exp run above names them
    temp = [(11, "6", ["exp", "exec-run", "--infofile", "x.run"]), (10, "5", ["exp", "run", "--temp", "experiment"])]
    assert estimate.repro_call(temp) == estimate.ReproCall("dvc exp run", ["experiment"])
    # a queued experiment's worker: not known
    assert estimate.repro_call([(11, "6", ["exp", "exec-run", "--infofile", "x.run"])]).known is False
    assert estimate.repro_call([]) is None


def test_dvc_processes_reads_the_dvc_command_above_through_a_shell(tmp_path):
    """A stage's process finds the dvc command that started it (DVC runs it through a shell): a
    `dvc` script standing in for DVC's console script."""
    run = fake_dvc(
        tmp_path, "from cifarlab.tooling.notice import dvc_processes; print([a for _, _, a in dvc_processes()])"
    )
    out = run("exp", "run", "experiment", "-S", "model=lenet5")
    assert out == "[['exp', 'run', 'experiment', '-S', 'model=lenet5']]"


def experiment_project(tmp_path: Path, model: str) -> Path:
    """A DVC project of three runs (lenet5, dnn, resnet9), `model` the experiment's run, as
    `dvc exp run -S model=...` leaves params.yaml; no dvc.lock (every stage to run)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    project_copy(repo)
    write_params(repo, small_params(("lenet5", "dnn", "resnet9"), (tmp_path / "c.tar.gz", "0" * 32), model=model))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=project_env(repo), check=True)
    return repo


def slow_cache(monkeypatch, p, seconds_per_image: float = 1.0) -> None:
    """Every network cached at `seconds_per_image` (each training long), timed now at load 0, the
    machine idle now: no timing in the notice, no stretch."""
    now = time.time()
    s = seconds_per_image
    times = {estimate.run_key(r): estimate.StepTime(s, s, s / 3, 0.0, now) for r in p.runs.values()}
    monkeypatch.setattr(estimate, "cached_times", lambda train, root=".": times)
    monkeypatch.setattr(estimate, "cached_startup", lambda train, root=".": estimate.Startup(3.0, 0.0, now))
    monkeypatch.setattr(estimate, "loadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)


@pytest.mark.slow  # DVC's planner over a small project, twice
def test_dvc_exp_run_experiment_counts_only_the_stages_of_that_experiment(tmp_path, monkeypatch):
    """Under `dvc exp run experiment -S model=lenet5` (its argv above this process), in the first
    training stage: fetch, preprocess, train, evaluate of lenet5 and experiment, 1 training; not
    the pipeline's 3. Under a plain `dvc repro` in the same project: all of them."""
    repo = experiment_project(tmp_path, "lenet5")
    p = load_params(repo / "params.yaml")
    slow_cache(monkeypatch, p)
    monkeypatch.setenv("DVC_STAGE", "train@lenet5")
    exp_run = ["exp", "run", "experiment", "-S", "model=lenet5"]
    monkeypatch.setattr(notice, "dvc_processes", lambda: [(99, "7", exp_run)])
    msg = estimate.repro_notice(p, repo)
    assert msg.splitlines()[0].startswith(
        "warning: no GPU found: this `dvc exp run` runs 5 stages, 1 of them training (1 epoch on "
    ), msg
    assert msg.splitlines()[-1] == "  to run without this notice: CIFARLAB_NO_NOTICE=1 dvc exp run ..."
    monkeypatch.setattr(notice, "dvc_processes", lambda: [(99, "7", ["repro"])])
    msg = estimate.repro_notice(p, repo)
    assert " 3 of them training " in msg.splitlines()[0] and "this `dvc repro` runs " in msg


def test_the_notice_counts_the_stage_running_it_and_asks_dvc_of_the_rest(monkeypatch, tmp_path):
    """Inside a training stage (DVC_STAGE) the planner is told that stage runs (DVC holds it) and
    asks DVC of every other, fetch and preprocess included (up to date here: not counted); the
    block: the time, how to go faster (a subset run already), how to skip it; nothing under a
    queued experiment or `dvc repro --single-item`."""
    p = load_params(SHIPPED_PARAMS)
    p = p.model_copy(
        update={
            "data": p.data.model_copy(update={"train_subset": 5000, "test_subset": 2000}),
            "train": p.train.model_copy(update={"max_epochs": 1}),
        }
    )
    slow_cache(monkeypatch, p, 0.08)
    asked = {}

    def to_run(root, targets, glob, changed=None):
        asked.update({s: changed(s) for s in ("fetch", "preprocess", "train@lenet5", "train@dnn")})
        asked["targets"] = targets
        return ["train@lenet5", "evaluate@lenet5", "plot@lenet5", "train@dnn"]

    monkeypatch.setattr(estimate, "to_run", to_run)
    monkeypatch.setenv("DVC_STAGE", "train@lenet5")
    monkeypatch.setattr(estimate, "repro_call", lambda: estimate.ReproCall("dvc repro", []))
    lines = estimate.repro_notice(p, tmp_path).splitlines()
    assert asked == {"fetch": None, "preprocess": None, "train@lenet5": True, "train@dnn": None, "targets": None}
    assert lines[0].startswith(
        "warning: no GPU found: this `dvc repro` runs 4 stages, 2 of them training (2 epochs on 5,000 images): about "
    )
    assert lines[1:] == [
        "  to go faster: lower data.train_subset or train.max_epochs, or name fewer stages (dvc repro plot@lenet5)",
        "  to run without this notice: CIFARLAB_NO_NOTICE=1 dvc repro ...",
    ]
    # short: nothing said
    slow_cache(monkeypatch, p, 1e-5)
    assert estimate.repro_notice(p, tmp_path) is None
    slow_cache(monkeypatch, p, 0.08)
    for call in (estimate.ReproCall("dvc", [], known=False), estimate.ReproCall("dvc repro", ["x"], single_item=True)):
        monkeypatch.setattr(estimate, "repro_call", lambda call=call: call)
        assert estimate.repro_notice(p, tmp_path) is None


# --------------------------------------------------------------------------- the notice's process


def test_dvc_runs_the_notice_first_in_fetch_and_in_every_training_stage():
    """Before the first training stage whether or not fetch runs: first in train and train_seeds."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["fetch"]["cmd"][0] == "python -m cifarlab.tooling.notice"
    for name in ("train", "train_seeds"):
        body = stages[name].get("do", stages[name])
        assert body["cmd"][0] == "python -m cifarlab.tooling.notice", name
        assert body["cmd"][1].startswith("python -m cifarlab.train --run "), name


def test_the_notice_claims_once_per_dvc_process(tmp_path, monkeypatch):
    monkeypatch.setattr(notice, "marker_dir", lambda: tmp_path / "markers")
    me = notice._stat(os.getpid())[19]
    assert notice.claim(os.getpid(), me) is True
    assert notice.claim(os.getpid(), me) is False
    (tmp_path / "markers" / "999999999-1").touch()  # a process gone: cleared on the next claim
    (tmp_path / "markers" / f"{os.getpid()}-1").touch()  # this pid when another process had it
    assert notice.claim(os.getppid(), notice._stat(os.getppid())[19]) is True
    assert sorted(m.name for m in (tmp_path / "markers").iterdir()) == sorted(
        [f"{os.getpid()}-{me}", f"{os.getppid()}-{notice._stat(os.getppid())[19]}"]
    )


def test_the_notice_speaks_once_per_dvc_process_and_returns_at_once_after(tmp_path):
    """Two stages under one `dvc repro`: the first claims the marker and plans (here: no params,
    so nothing to say); the second returns at once, importing neither pydantic, DVC nor torch.
    CIFARLAB_NO_NOTICE=1: nothing at all."""
    code = (
        "import sys, time; t = time.perf_counter(); from cifarlab.tooling import notice; notice.main(); "
        "print(round(time.perf_counter() - t, 3), any(m in sys.modules for m in ('pydantic', 'dvc', 'torch', "
        "'cifarlab.core.params')))"
    )
    fake = tmp_path / "dvc"
    fake.write_text(f'#!/bin/bash\n{sys.executable} -c "{code}"\n{sys.executable} -c "{code}"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(tmp_path), "DVC_STAGE": "train@lenet5"}
    env.pop(notice.SKIP_ENV, None)
    out = subprocess.run([str(fake), "repro"], capture_output=True, text=True, env=env, cwd=tmp_path)
    first, second = out.stdout.splitlines()
    assert first.split()[1] == "True", out  # planned: params read (none here: nothing said)
    seconds, heavy = second.split()
    assert heavy == "False" and float(seconds) < 0.5, out
    assert out.stderr == ""
    skipped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, notice.SKIP_ENV: "1"}, cwd=tmp_path
    )
    assert skipped.stdout.split()[1] == "False" and skipped.stderr == ""


@pytest.mark.slow  # two dvc commands training two tiny runs
def test_a_long_dvc_exp_run_and_dvc_repro_warn_before_their_first_training_stage(tiny_archive, tmp_path, monkeypatch):
    """fetch up to date, every network cached at 10 s an image (200 images: each training long): `dvc exp run
    experiment -S model=lenet5` warns inside its training stage, before training, once, counting
    the experiment's stages (train, evaluate, experiment), not the pipeline's; then a plain
    `dvc repro` warns once, before its first training stage."""
    from workspace import sh, small_project

    repo = tmp_path / "repo"
    env = small_project(repo, *tiny_archive, runs=("lenet5", "dnn"))
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    env.pop(notice.SKIP_ENV, None)
    sh("dvc", "repro", "preprocess", cwd=repo, env=env)
    p = load_params(repo / "params.yaml")
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])

    def cache_long_steps() -> None:
        # timed now, beside this moment's load average: like now's (estimate.like_now: within 1.5x)
        # for the dvc command run next, however loaded the machine (a fixed load failed at a load
        # average of 8 on 2 cores), so the notice reads these rather than timing anew
        now, load = time.time(), estimate.loadavg()[0]
        estimate.store_times(
            p.train,
            {estimate.run_key(r): estimate.StepTime(10.0, 10.0, 3.0, load, now) for r in p.runs.values()},
            repo,
            startup=estimate.Startup(3.0, load, now),
        )

    def warned_before_training(out: str, run: str) -> str:
        lines = out.splitlines()
        warnings = [i for i, line in enumerate(lines) if line.startswith("warning: no GPU found")]
        assert len(warnings) == 1, out[-3000:]
        assert lines[warnings[0] - 1] == "> python -m cifarlab.tooling.notice", out[-3000:]
        assert warnings[0] < lines.index(f"> python -m cifarlab.train --run {run}"), out[-3000:]
        assert "  to run without this notice: CIFARLAB_NO_NOTICE=1" in out
        return lines[warnings[0]]

    def dvc(*args: str) -> str:  # its output and the stages' in the order they came (one pipe)
        r = subprocess.run(
            ["dvc", *args], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900
        )
        assert r.returncode == 0, r.stdout[-3000:]
        return r.stdout

    cache_long_steps()
    line = warned_before_training(dvc("exp", "run", "experiment", "-S", "model=lenet5"), "lenet5")
    assert line.startswith("warning: no GPU found: this `dvc exp run` runs 3 stages, 1 of them training"), line
    cache_long_steps()
    line = warned_before_training(dvc("repro"), "dnn")
    assert line.startswith("warning: no GPU found: this `dvc repro` runs "), line
