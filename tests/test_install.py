"""A broken environment (torch and torchvision from different builds) is one line with the fix,
from `python -m cifarlab.core.install` (README's command 1) and from any stage or command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cifarlab.core import install
from cifarlab.core.stage_main import run_main

BROKEN = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


@pytest.mark.slow  # two python subprocesses importing torch
def test_install_check_names_the_mismatch_in_one_line(tmp_path):
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision/__init__.py").write_text(BROKEN)  # imports as a mismatched build does
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    r = subprocess.run([sys.executable, "-m", "cifarlab.core.install"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: torchvision ") and "operator torchvision::nms does not exist" in line
    assert "pip install --force-reinstall 'torch==" in line
    ok = subprocess.run([sys.executable, "-m", "cifarlab.core.install"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: torch ")


def test_a_stage_failing_on_a_broken_torchvision_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now fails

    def stage(argv):
        import torchvision  # noqa: F401 - as a model builder does on first use

    with pytest.raises(SystemExit) as e:
        run_main(stage, [], check_workspace=False)
    err = capsys.readouterr().err
    assert e.value.code == 1 and len(err.splitlines()) == 1 and err.startswith("error: torchvision ")


def test_a_runtime_error_of_the_code_is_not_blamed_on_the_install():
    def stage(argv):
        raise RuntimeError("a bug")

    assert install.install_problem() is None
    with pytest.raises(RuntimeError, match="a bug"):
        run_main(stage, [], check_workspace=False)
