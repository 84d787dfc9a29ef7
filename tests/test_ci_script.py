"""`.ci/run` replaces .venv, rewrites params.yaml and commits: it must do that in a throwaway clone,
never in the checkout it is called from (docs/testing.md, CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_ci_runs_in_a_clone_and_leaves_an_edited_checkout_untouched(tmp_path):
    repo, shared = tmp_path / "main", tmp_path / "shared"
    (repo / ".ci").mkdir(parents=True)
    shared.mkdir()
    shutil.copy(ROOT / ".ci/run", repo / ".ci/run")
    (repo / "params.yaml").write_text("seed: 23  # committed\n")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "base", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo)
    (repo / "params.yaml").write_text("seed: 7  # an uncommitted edit\n")
    (repo / ".venv").mkdir()
    (repo / ".venv/keep").write_text("the user's environment\n")
    # CI's first step makes a virtual environment: a python3 that fails there ends the run early,
    # after `rm -rf .venv`, the first thing CI would do to this checkout
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text("#!/bin/sh\necho fake python3 >&2\nexit 9\n")
    (bin_dir / "python3").chmod(0o755)
    keep = tmp_path / "ci"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CIFARLAB_CI_KEEP": str(keep)}
    env.pop("CIFARLAB_CI_CLONE", None)
    r = subprocess.run(["bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 9 and "fake python3" in r.stderr
    assert "uncommitted changes: not tested" in r.stdout
    assert (repo / "params.yaml").read_text() == "seed: 7  # an uncommitted edit\n"
    assert (repo / ".venv/keep").read_text() == "the user's environment\n"
    assert git("rev-parse", "HEAD", cwd=repo) == head
    # the run happened in the clone: the committed params, ../shared linked beside it
    assert (keep / "main/params.yaml").read_text() == "seed: 23  # committed\n"
    assert (keep / "shared").resolve() == shared.resolve()
