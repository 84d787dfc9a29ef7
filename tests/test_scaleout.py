"""`cifarlab repro`: DVC's stages on a Dask cluster, DVC still the record.

Fast: the plan comes from DVC's graph (order, dependencies, GPU shares), uncommitted code is
refused, the guard takes a stage's processes down with its worker, the cluster configurations.
Slow (real clusters, real `dvc`): two "machines" sharing only a DVC remote, a worker killed with
SIGKILL mid-stage, a failing stage. The local 2-worker run against a sequential `dvc repro` is
tests/test_dvc_workflow.py::test_parallel_and_sequential_clean_repros_give_the_same_bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from workspace import lock_outs, sh, small_project

from cifarlab.core.gpus import visible_gpus
from cifarlab.tooling.scaleout import clusters
from cifarlab.tooling.scaleout.coordinator import check_committed
from cifarlab.tooling.scaleout.placement import ScaleOutError, build_placement
from cifarlab.tooling.scaleout.task import run_guarded


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_archive) -> Path:
    """A committed small project (lenet5, dnn, a grid cell, an AlexNet run), nothing run yet."""
    repo = tmp_path_factory.mktemp("scaleout") / "repo"
    small_project(repo, *tiny_archive)
    return repo


def test_plan_is_dvc_graph_order_with_dependencies_and_gpu_shares(project):
    plan = build_placement(project)
    names = [t.name for t in plan.tasks]
    # fetch keeps its archive (persist): run once by the coordinator, never by a worker; the report's
    # files are committed to git (cache: false): it runs where dvc.lock is written, at the end
    assert plan.first == ["fetch"] and plan.last == ["report"] and plan.up_to_date == []
    assert names[0] == "preprocess" and len(names) == len(set(names))
    assert set(names) == {
        "preprocess",
        "experiment",
        "pca@alexnet_transfer-skip-low",
        *(
            f"{k}@{r}"
            for r in ("lenet5", "dnn", "resnet18-relu-2_1_1-none", "alexnet_transfer-skip-low")
            for k in ("train", "evaluate", "plot")
        ),
    }
    task = {t.name: t for t in plan.tasks}
    for t in plan.tasks:  # every task after the tasks it waits for
        assert all(names.index(u) < names.index(t.name) for u in t.upstream), t
    assert task["train@lenet5"].upstream == ("preprocess",)
    assert set(task["evaluate@lenet5"].upstream) == {"preprocess", "train@lenet5"}
    assert task["plot@lenet5"].restore_first == ("preprocess", "train@lenet5", "evaluate@lenet5")
    assert task["plot@lenet5"].checkout_first == ("fetch",)
    # launch-bound small batches share a GPU (lenet5 16 here, dnn 64); ResNet-18 at 128 takes one
    assert task["train@lenet5"].gpu == task["train@dnn"].gpu == 0.25
    assert task["train@resnet18-relu-2_1_1-none"].gpu == 1.0
    assert task["evaluate@dnn"].gpu == 0.25 and task["plot@dnn"].gpu == 0 and task["preprocess"].gpu == 0

    one = build_placement(project, ["plot@lenet5"])  # targets as for dvc repro: that stage and what it needs
    assert [t.name for t in one.tasks] == ["preprocess", "train@lenet5", "evaluate@lenet5", "plot@lenet5"]
    assert one.first == ["fetch"] and one.last == []


def test_uncommitted_code_or_params_are_refused_in_one_line(project):
    assert check_committed(project)  # clean: the commit
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # DVC's record, not an input
    try:
        check_committed(project)
        params = project / "params.yaml"
        text = params.read_text()
        params.write_text(text.replace("max_epochs: 1", "max_epochs: 2"))
        try:
            with pytest.raises(ScaleOutError) as err:
                check_committed(project)
            msg = str(err.value)
            assert "\n" not in msg and msg.startswith("uncommitted changes to params.yaml:") and "git commit" in msg
        finally:
            params.write_text(text)
    finally:
        (project / "dvc.lock").unlink()


def test_cli_refuses_before_starting_a_cluster(project):
    from helpers_cli import cifarlab

    (project / "src/cifarlab/plot.py").write_text((project / "src/cifarlab/plot.py").read_text() + "# edit\n")
    try:
        out = cifarlab("repro", "--workers", "2", cwd=project)
    finally:
        subprocess.run(["git", "checkout", "-q", "src/cifarlab/plot.py"], cwd=project, check=True)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: uncommitted changes to src/cifarlab/plot.py: workers run the committed code")
    assert cifarlab("repro", "--workers", "0", cwd=project).returncode == 2  # argparse: must be 1 or more


def test_an_unreachable_scheduler_is_one_line_before_any_work(project, monkeypatch):
    import socket

    from helpers_cli import cifarlab

    from cifarlab.tooling.scaleout import coordinator

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(coordinator, "CONNECT_TIMEOUT_S", 2)
    out = cifarlab("repro", "--scheduler", f"tcp://127.0.0.1:{port}", cwd=project)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"error: no Dask worker reached through the scheduler at tcp://127.0.0.1:{port}")
    assert not (project / "dvc.lock").exists()  # fetch did not run: nothing was done


def test_guard_kills_the_stage_process_group_when_its_worker_dies(tmp_path):
    """A worker killed by SIGKILL cannot stop its stage; the guard does, grandchildren included."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from pathlib import Path; from cifarlab.tooling.scaleout.task import run_guarded; "
                f"run_guarded(['sh', '-c', 'sleep 300 & sleep 300'], Path({str(tmp_path)!r}), None, "
                f"Path({str(tmp_path / 'log')!r}))"
            ),
        ]
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            sleeps = [p for p in psutil.Process(parent.pid).children(recursive=True) if p.name() == "sleep"]
            if len(sleeps) == 2:
                break
            time.sleep(0.05)
        assert len(sleeps) == 2, "the guarded command did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _, alive = psutil.wait_procs(sleeps, timeout=10)
        assert not alive, f"still running after their worker died: {alive}"
    finally:
        parent.kill()


def test_guard_passes_the_exit_code_and_output(tmp_path):
    log = tmp_path / "log"
    assert run_guarded(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path, None, log) == 3
    assert log.read_text() == "out\nerr\n"


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CUDA's way of hiding every GPU
    assert visible_gpus() == []


def test_gpu_workers_are_pinned_one_gpu_each():
    spec = clusters.gpu_worker_spec(["0", "3"])
    assert [w["options"]["env"] for w in spec.values()] == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "3"},
    ]
    for w in spec.values():
        assert w["options"]["resources"] == {"GPU": 1} and w["options"]["nthreads"] == clusters.GPU_SLOTS


def test_slurm_job_script_asks_for_a_gpu_and_offers_it_to_dask():
    pytest.importorskip("dask_jobqueue")
    cluster, _ = clusters.slurm_cluster(["--partition=gpu", "--time=08:00:00"], gpus_per_job=1, cpus_per_job=8)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in (
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=08:00:00",
        "#SBATCH --cpus-per-task=8",
    ):
        assert line in script, script
    assert "--resources GPU=1" in script and f"--nthreads {clusters.GPU_SLOTS}" in script, script


# ------------------------------------------------------------------------------------------ slow


def cache_is_sound(cache: Path) -> int:
    """Every object of a DVC cache holds the bytes its name says (no partial output entered it);
    returns how many were checked."""
    n = 0
    for f in (cache / "files" / "md5").rglob("*"):
        if f.is_file():
            name = f.parent.name + f.name.removesuffix(".dir")
            assert hashlib.md5(f.read_bytes()).hexdigest() == name, f"{f} does not hold what its name says"
            n += 1
    return n


def scheduler_address(path, scheduler, timeout=60.0):
    """The address `dask scheduler --scheduler-file` writes. dask opens the file before it writes
    it, so a reader can see it empty or half-written: wait until it parses."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert scheduler.poll() is None, f"dask scheduler exited with {scheduler.returncode}"
        try:
            return json.loads(path.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.2)
    raise AssertionError(f"dask scheduler wrote no address to {path} in {timeout:.0f} s")


@pytest.mark.slow
def test_two_machines_share_only_a_dvc_remote(tmp_path, tiny_archive):
    """A scheduler and two workers on loopback, each worker a "machine" with its own work folder
    and DVC cache; the coordinator's clone has a third cache; the DVC remote (a local folder) is
    all they share. The coordinator ends with a sequential `dvc repro`'s md5s, nothing to run."""
    runs = ("lenet5", "dnn")
    coord, seq = tmp_path / "coordinator", tmp_path / "sequential"
    env = small_project(coord, *tiny_archive, runs=runs)
    sh("dvc", "remote", "add", "--local", "store", str(tmp_path / "remote"), cwd=coord, env=env)
    seq_env = small_project(seq, *tiny_archive, runs=runs)
    sequential = subprocess.Popen(
        ["dvc", "repro"], cwd=seq, env=seq_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )  # beside the cluster: its own clone and cache
    scheduler_file = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                "dask",
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        address = scheduler_address(scheduler_file, procs[0])
        for m in ("machine1", "machine2"):
            wenv = {**env, "CIFARLAB_SCALEOUT_DIR": str(tmp_path / m)}
            procs.append(
                subprocess.Popen(
                    ["dask", "worker", address, "--nthreads", "1", "--no-dashboard", "--name", m],
                    env=wenv,
                    stderr=subprocess.DEVNULL,
                )
            )
        out = sh("cifarlab", "repro", "--scheduler", address, "--remote", "store", cwd=coord, env=env)
        assert sequential.wait(timeout=600) == 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        sequential.kill()
    # the coordinator trained nothing: every stage came back from the run-cache, the report ran here
    assert re.findall(r"Running stage '([^']+)'", out.split("restoring", 1)[1]) == ["report"], out
    assert lock_outs(coord, timing=False) == lock_outs(seq, timing=False)
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=coord, env=env)
    # each machine trained in its own cache; what the coordinator has came through the remote
    workers_of = {m: (tmp_path / m / "cache") for m in ("machine1", "machine2")}
    assert all(c.is_dir() for c in workers_of.values()), "a worker never ran a stage"
    assert (tmp_path / "remote" / "runs").is_dir()
    assert sum(cache_is_sound(c) for c in [coord / ".dvc/cache", *workers_of.values()]) > 0


@pytest.mark.slow
def test_a_worker_killed_mid_stage_is_retried_and_leaves_nothing_partial(tmp_path, tiny_archive):
    repo = tmp_path / "repo"
    # 40 epochs: a few seconds of training to kill it in
    env = small_project(repo, *tiny_archive, runs=("dnn",), train={"max_epochs": 40})
    logs = repo / ".dvc/tmp/scale-out/logs"
    output = tmp_path / "out.log"  # a file, not a pipe: nobody reads a pipe while waiting below
    proc = subprocess.Popen(
        ["cifarlab", "repro", "--workers", "2", "train@dnn"],
        cwd=repo,
        env=env,
        stdout=output.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        victim, deadline = None, time.time() + 300
        while victim is None and time.time() < deadline and proc.poll() is None:
            for log in logs.glob("train_dnn-*.log") if logs.is_dir() else []:
                if "dnn epoch 2/40" in log.read_text(errors="replace"):
                    victim = log
            time.sleep(0.05)
        assert victim is not None, "train@dnn never got to its second epoch"
        guard = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if {"cifarlab.tooling.scaleout.task", "guard", "train@dnn"} <= set(p.info["cmdline"] or [])
        )
        worker_pid = int(guard.info["cmdline"][guard.info["cmdline"].index("guard") + 1])
        stage_procs = guard.children(recursive=True)
        os.kill(worker_pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(stage_procs, timeout=10)
        assert not alive, f"the killed worker's stage kept running: {alive}"
        proc.wait(timeout=600)
    finally:
        proc.kill()
    out = output.read_text()
    assert proc.returncode == 0, out
    assert "train@dnn ran" in out and len(list(logs.glob("train_dnn-*.log"))) == 2, out  # the retry
    assert cache_is_sound(repo / ".dvc/cache") > 0
    first = lock_outs(repo, timing=False)
    # the retried result is an uninterrupted run's: train again, in order, here
    sh("dvc", "repro", "--force", "--single-item", "train@dnn", cwd=repo, env=env)
    assert lock_outs(repo, timing=False) == first


@pytest.mark.slow
def test_a_failing_stage_is_named_with_its_log_and_a_rerun_goes_on(tmp_path, tiny_archive):
    repo = tmp_path / "repo"
    env = small_project(repo, *tiny_archive, runs=("lenet5", "alexnet_transfer-skip-low"), commit=False)
    sh(
        "cifarlab",
        "set",
        "model=lenet5",
        "alexnet_transfer.pretrained=true",
        f"alexnet_transfer.weights={tmp_path}/none.pth",
        cwd=repo,
        env=env,
    )
    sh("git", "add", "-A", cwd=repo, env=env)
    sh("git", "commit", "-qm", "weights that are not there", cwd=repo, env=env)
    targets = ["plot@lenet5", "train@alexnet_transfer-skip-low"]  # as for dvc repro (CI time: no report)
    # two "GPUs" (none here: torch sees no CUDA whatever this says): the GPU cluster, one worker
    # pinned per GPU, tasks asking for shares of one, with no GPU to block on
    gpus = {**env, "CUDA_VISIBLE_DEVICES": "0,1"}
    r = subprocess.run(
        ["cifarlab", "repro", "--workers", "2", *targets],
        cwd=repo,
        env=gpus,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 GPU workers (GPUs 0, 1), 4 tasks each" in r.stdout, r.stdout
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: train@alexnet_transfer-skip-low failed on "), r.stderr
    assert "none.pth" in r.stderr  # the stage's own error, from its log's tail
    # lenet5's stages finished and are kept: in dvc.lock, up to date
    status = json.loads(sh("dvc", "status", "--json", cwd=repo, env=env) or "{}")
    assert not {"train@lenet5", "evaluate@lenet5", "plot@lenet5"} & set(status), status
    assert "train@alexnet_transfer-skip-low" in status
    # fixed and committed, the same command goes on: lenet5 is not trained again
    sh("cifarlab", "set", "alexnet_transfer.pretrained=false", "alexnet_transfer.weights=null", cwd=repo, env=env)
    sh("git", "commit", "-qam", "random features", cwd=repo, env=env)
    out = sh("cifarlab", "repro", "--workers", "2", *targets, cwd=repo, env=env)
    assert "train@alexnet_transfer-skip-low ran" in out, out
    assert "train@lenet5 ran" not in out and "Running stage 'train@lenet5'" not in out, out
    assert "Data and pipelines are up to date" in sh("dvc", "status", *targets, cwd=repo, env=env)
