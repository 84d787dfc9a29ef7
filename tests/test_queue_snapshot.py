"""What a queued experiment is built from (docs/experiments.md, "Queue pitfalls"): DVC stashes
the workspace when `dvc exp run --queue` is called, so the queued run holds the last commit, every
uncommitted edit to a tracked file (code and params.yaml alike) and the `-S` changes; untracked
files stay out. Checked on the stash commit DVC writes (refs/exps/celery/stash), without running
the experiment."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from workspace import sh, small_project

CODE_EDIT = "# an uncommitted edit, made before queueing\n"


@pytest.mark.slow  # dvc exp subprocesses
def test_queued_experiment_holds_uncommitted_edits_but_not_untracked_files(tmp_path):
    repo = tmp_path / "repo"
    env = small_project(repo, tmp_path / "unused.tar.gz", "0" * 32, runs=("lenet5", "dnn"))
    with open(repo / "src/cifarlab/experiment.py", "a") as f:
        f.write(CODE_EDIT)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["lenet5"]["lr"] = 0.002  # committed: 0.001
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "notes.txt").write_text("untracked\n")

    sh("dvc", "exp", "run", "--queue", "experiment", "-S", "model=lenet5", cwd=repo, env=env)

    stash = sh("git", "rev-parse", "refs/exps/celery/stash", cwd=repo, env=env).strip()

    def queued(path: str) -> str:
        return sh("git", "show", f"{stash}:{path}", cwd=repo, env=env)

    assert queued("src/cifarlab/experiment.py").endswith(CODE_EDIT)  # uncommitted code: in
    queued_params = yaml.safe_load(queued("params.yaml"))
    assert queued_params["lenet5"]["lr"] == 0.002  # uncommitted params edit: in
    assert queued_params["model"] == "lenet5"  # the -S change: in
    files = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", stash], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "notes.txt" not in files  # untracked: out
    # the workspace keeps the edits (DVC restores them after stashing)
    assert (repo / "src/cifarlab/experiment.py").read_text().endswith(CODE_EDIT)
    assert yaml.safe_load((repo / "params.yaml").read_text())["lenet5"]["lr"] == 0.002
