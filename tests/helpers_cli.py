"""`cifarlab ARGS` run in this process, for the tests of the command (test_cli.py and the others
that drive it: test_scaleout.py, test_malformed_params.py)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from workspace import ROOT, pristine_root


def cifarlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`cifarlab ARGS` in this process, through the console script's own shell (exit code, stdout,
    stderr as a subprocess would give them; one real subprocess in test_cli.py covers `python -m`)."""
    from cifarlab.tooling.cli import entry_point

    out, err, code = io.StringIO(), io.StringIO(), 0
    here, argv = os.getcwd(), sys.argv
    os.chdir(pristine_root() if cwd is None else cwd)  # never this workspace's params.yaml or dvc.lock
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            sys.argv = ["cifarlab", *args]
            entry_point()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(here)
        sys.argv = argv
    return subprocess.CompletedProcess(["cifarlab", *args], code, out.getvalue(), err.getvalue())


def fake_dvc(folder: Path, code: str):
    """A `dvc` script in `folder` standing in for DVC's console script: bash runs `code` in this
    interpreter (as DVC runs a stage's command, through a shell), with cifarlab importable.
    Returns run(*args) -> its stdout, stripped."""
    fake = folder / "dvc"
    fake.write_text(f"#!/bin/bash\n{sys.executable} -c '{code}'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def run(*args: str) -> str:
        return subprocess.run([str(fake), *args], capture_output=True, text=True, env=env, check=True).stdout.strip()

    return run
