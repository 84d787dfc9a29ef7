"""Running git: the one helper (a run's commit, `cifarlab repro`'s commit check, a worker's clone)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cifarlab.core.errors import CifarlabError, one_line


class GitError(CifarlabError):
    """A git command failed, could not start (no git) or ran past its time."""


def git(*args: str, cwd: str | os.PathLike | None = None, timeout: float | None = None) -> str:
    """The stdout of `git ARGS` run in `cwd` (None: here); GitError with one line (the command,
    where, git's own words) when it exits non-zero, cannot start or runs past `timeout` seconds."""
    where = Path(cwd) if cwd is not None else Path(".")
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise GitError(
            f"git {' '.join(args)} could not run in {where} ({one_line(err, 200)}): install git, "
            "or run it where git works"
        ) from None
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {where}: {one_line(done.stderr, 200)}")
    return done.stdout


def try_git(*args: str, cwd: str | os.PathLike | None = None, timeout: float | None = None) -> str | None:
    """`git`'s stdout, or None where git fails (not a repository, no git): for facts recorded
    when git can tell them."""
    try:
        return git(*args, cwd=cwd, timeout=timeout)
    except GitError:
        return None
