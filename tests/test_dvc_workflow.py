"""The DVC experiment workflow as a researcher runs it, end to end, in a throwaway git repo.

`dvc exp run -S model=lenet5` on a tiny archive, its result committed on main, then a branch
that changes a param: `dvc metrics diff main` and `dvc params diff main` must report the
change, and `dvc plots diff main` must render. Slow (real `dvc` subprocesses, about two
minutes on 2 CPU cores); `.ci/run` runs it with `pytest -m slow`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from workspace import (
    SCALE_OUT_RUNS,
    SHIPPED_PARAMS,
    lock_outs,
    project_copy,
    project_env,
    sh,
    small_project,
    write_params,
)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_exp_run_then_metrics_params_and_plots_diff_between_branches(tmp_path, small_params):
    repo = tmp_path / "repo"
    repo.mkdir()
    project_copy(repo)
    # two runs are enough to see one move and the other not (CI's 30 minutes: the grid cell and
    # AlexNet stages cost a minute here, and the clean-repro test below covers them)
    write_params(repo, small_params(("lenet5", "dnn")))
    env = project_env(repo)

    def git(*a: str) -> str:
        return sh("git", *a, cwd=repo, env=env)

    def dvc(*a: str) -> str:
        return sh("dvc", *a, cwd=repo, env=env)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "base")

    # 1. the experiment: the `experiment` stage shows the run named by the param (a copy of its
    # metrics: no run is trained twice)
    dvc("exp", "run", "-S", "model=lenet5")
    metrics = json.loads((repo / "reports/metrics/experiment.json").read_text())
    assert (repo / "reports/metrics/experiment.json").read_bytes() == (
        repo / "reports/metrics/lenet5.json"
    ).read_bytes()
    assert not (repo / "data/checkpoints/experiment").exists()
    shown = json.loads(dvc("exp", "show", "--json"))
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    assert exps, f"dvc exp show lists no experiment: {shown}"
    exp_data = exps[0]["revs"][0]["data"]
    assert exp_data["params"]["params.yaml"]["data"]["model"] == "lenet5"
    exp_metrics = exp_data["metrics"]["reports/metrics/experiment.json"]["data"]
    assert exp_metrics["best"]["top1"] == metrics["best"]["top1"]

    # 2. keep it on main (dvc.lock names the metrics, the DVC cache holds them), then a branch with another lr
    git("add", "-A")
    git("commit", "-qm", "lenet5 experiment")
    git("checkout", "-qb", "faster-lr")
    dvc("exp", "run", "-S", "lenet5.lr=0.05")
    git("add", "-A")
    git("commit", "-qm", "lenet5 lr 0.05")

    diff = json.loads(dvc("metrics", "diff", "main", "--json"))
    exp_diff = diff["reports/metrics/experiment.json"]
    new = json.loads((repo / "reports/metrics/experiment.json").read_text())
    assert exp_diff["final.loss"]["old"] == pytest.approx(metrics["final"]["loss"])
    assert exp_diff["final.loss"]["new"] == pytest.approx(new["final"]["loss"])
    assert exp_diff["final.loss"]["diff"] != 0  # another lr: another loss
    # lenet5's recipe changed: its own run and the experiment (model=lenet5) moved, no other run did
    assert set(diff) == {"reports/metrics/experiment.json", "reports/metrics/lenet5.json"}
    assert diff["reports/metrics/lenet5.json"]["final.loss"] == exp_diff["final.loss"]

    params = json.loads(dvc("params", "diff", "main", "--json"))["params.yaml"]
    old_lr = yaml.safe_load((SHIPPED_PARAMS).read_text())["lenet5"]["lr"]
    assert list(params) == ["lenet5.lr"]
    assert (params["lenet5.lr"]["old"], params["lenet5.lr"]["new"]) == (old_lr, 0.05)

    out = tmp_path / "plots"
    dvc("plots", "diff", "main", "-o", str(out))
    assert (out / "index.html").stat().st_size > 0


def documented_block(page: Path, heading: str) -> list[str]:
    """The commands of the first ```bash block under `## heading` of a docs page, comments cut."""
    text = page.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_metrics_diff_main_as_documented_shows_old_and_new(tmp_path, small_params):
    """docs/experiments.md "Between branches", line by line: a baseline committed on main, one
    value changed on a branch, then `dvc metrics diff main` gives the changed run's old and new
    values (not `-`), and `dvc params diff main` the value."""
    repo = tmp_path / "repo"
    repo.mkdir()
    project_copy(repo)
    write_params(repo, small_params(("lenet5", "dnn")))
    env = project_env(repo)
    sh("git", "init", "-q", "-b", "main", cwd=repo, env=env)
    sh("git", "add", "-A", cwd=repo, env=env)
    sh("git", "commit", "-qm", "base", cwd=repo, env=env)
    commands = documented_block(ROOT / "docs" / "experiments.md", "Between branches")
    assert any(c.startswith("dvc metrics diff main") for c in commands), commands
    out = {}
    for cmd in commands:
        argv = shlex.split(cmd)
        if argv[:3] == ["dvc", "plots", "diff"]:
            argv[argv.index("-o") + 1] = str(tmp_path / "plots")
        out[cmd] = sh(*argv, cwd=repo, env=env)
    # the table DVC prints: Path, Metric, main's value, the workspace's, the change
    rows = [line.split() for line in out["dvc metrics diff main"].splitlines()]
    changed = [r for r in rows if r and r[0] == "reports/metrics/lenet5.json"]
    assert changed, out["dvc metrics diff main"]
    for _path, _metric, old, new, *_ in changed:
        assert old != "-" and new != "-", out["dvc metrics diff main"]
    assert {r[1] for r in changed} >= {"final.loss", "best.loss"}
    assert not any(r and r[0].startswith("reports/metrics/dnn") for r in rows)  # untouched: not listed
    params = out["dvc params diff main"]
    assert "lenet5.lr" in params and "0.01" in params, params
    assert (tmp_path / "plots" / "index.html").stat().st_size > 0


# 11.5 minutes on a 2-core AMD EPYC: CI leaves it out (its subset reproduction runs `cifarlab repro
# --workers 2` and then checks that `dvc repro` has nothing to do); `pytest -m heavy` runs it
@pytest.mark.heavy
def test_parallel_and_sequential_clean_repros_give_the_same_bytes(tmp_path, tiny_archive):
    """Two fresh clones, each with its own fresh DVC cache, of three models and four cells of
    report 004's grid: one reproduced by `dvc repro`, one by `cifarlab repro --workers 2` (a local
    Dask cluster). Every output DVC records (checkpoints, histories, predictions, metrics, figures,
    the report) has the same md5 in both dvc.lock files; only reports/timing/ (wall times) may
    differ. A following `dvc repro` of the parallel one runs nothing."""
    archive, md5 = tiny_archive
    procs = {}
    commands = {"sequential": ["dvc", "repro"], "parallel": ["cifarlab", "repro", "--workers", "2"]}
    for name, cmd in commands.items():
        repo = tmp_path / name
        env = small_project(repo, archive, md5, SCALE_OUT_RUNS)
        # Both at once (1 torch thread per stage, params above): independent clones, caches and
        # processes, so running them side by side changes no byte, and shortens the test.
        # output to a file, not a pipe: an unread pipe could fill and stall the second run
        log = (tmp_path / f"{name}.log").open("w")
        procs[name] = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    outs = []
    try:
        for name, proc in procs.items():
            proc.wait(timeout=900)
            if proc.returncode != 0:
                pytest.fail(
                    f"{' '.join(commands[name])} in {name} exited {proc.returncode}\n"
                    f"{(tmp_path / f'{name}.log').read_text()[-4000:]}"
                )
            outs.append(lock_outs(tmp_path / name))
    finally:  # a failure or timeout leaves no repro running on the machine
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    first, second = outs
    assert first.keys() == second.keys()
    assert {f"data/checkpoints/{r}" for r in SCALE_OUT_RUNS} <= first.keys()
    assert {"data/checkpoints/lenet5", "reports/metrics/lenet5.json", "reports/README.md"} <= first.keys()
    differ = sorted(p for p in first if first[p] != second[p])
    assert all(p.startswith("reports/timing/") for p in differ), differ

    parallel_log = (tmp_path / "parallel.log").read_text()
    assert parallel_log.count("Running stage 'report'") == 1 and "note: dvc repro ran" not in parallel_log
    repo = tmp_path / "parallel"
    env = project_env(repo)
    rerun = sh("dvc", "repro", cwd=repo, env=env)
    assert "Running stage" not in rerun and "is cached" not in rerun, rerun

    # What an edit re-runs, as `dvc status` says it on the parallel (fully reproduced) clone.

    def stale_after_editing(rel: str) -> set[str]:
        path = repo / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        try:
            return set(json.loads(sh("dvc", "status", "--json", cwd=repo, env=env) or "{}"))
        finally:
            path.write_bytes(original)

    # a figure edit redraws figures: plot, pca and report stages only, never training
    figures = stale_after_editing("src/cifarlab/figures/__init__.py")
    assert figures == {*(f"plot@{r}" for r in SCALE_OUT_RUNS), "pca@alexnet_transfer-skip-low", "report"}, figures
    # a params.py edit (recipe defaults, validation) can change any run: every train stage is stale
    params = stale_after_editing("src/cifarlab/core/params.py")
    assert {f"train@{r}" for r in SCALE_OUT_RUNS} <= params, params
    # a training-loop edit re-runs training and what reads checkpoints, not fetch or preprocess
    loop = stale_after_editing("src/cifarlab/engine/loop.py")
    assert {f"train@{r}" for r in SCALE_OUT_RUNS} <= loop and not loop & {"fetch", "preprocess"}, loop
    assert json.loads(sh("dvc", "status", "--json", cwd=repo, env=env) or "{}") == {}
