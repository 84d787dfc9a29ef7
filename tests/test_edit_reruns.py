"""Edit one thing, re-run only what it changes: `dvc status` of a reproduced workspace after one
edit names exactly the stages that edit concerns (dvc.yaml's code deps are what each stage runs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from workspace import sh, small_project

RUNS = ("lenet5", "lenet5-tanh", "dnn", "resnet18-relu-5_3_2-crop_flip")
NEW_MODEL = '''"""A model added by a user: one new file, registered under its own name."""
from torch import nn

from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.models import register_model


@register_model("tiny_mlp", report="001", description="flatten -> 10")
def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, NUM_CLASSES))
'''


def changed(repo: Path, env: dict) -> set[str]:
    """The stages `dvc status` reports changed."""
    out = subprocess.run(["dvc", "status", "--json"], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return {name.split(":")[-1] for name in json.loads(out.stdout or "{}")}


def edited(path: Path, text: str):
    """Append `text` to `path`; returns a function that puts the file back."""
    before = path.read_bytes()
    path.write_text(before.decode() + text)
    return lambda: path.write_bytes(before)


@pytest.mark.slow
def test_an_edit_reruns_only_what_it_changes(tmp_path, tiny_archive):
    archive, md5 = tiny_archive
    repo = tmp_path / "ws"
    env = small_project(repo, archive, md5, RUNS)
    sh("dvc", "repro", "-q", cwd=repo, env=env, timeout=1200)
    assert changed(repo, env) == set()
    src = repo / "src/cifarlab"

    # a new model file registering a new model: no existing stage changes
    (src / "models/tiny_mlp.py").write_text(NEW_MODEL)
    assert changed(repo, env) == set()
    (src / "models/tiny_mlp.py").unlink()

    # a comment in one model's file: that model's runs (the report checks no model's options)
    undo = edited(src / "models/lenet5.py", "# a comment\n")
    lenet5_runs = {f"{kind}@{run}" for kind in ("train", "evaluate", "plot") for run in ("lenet5", "lenet5-tanh")}
    assert changed(repo, env) == lenet5_runs
    undo()

    # a comment in the report's code: the report only
    undo = edited(src / "reporting/markdown.py", "# a comment\n")
    assert changed(repo, env) == {"report"}
    undo()

    # a comment in the CPU notice and the estimate (the tooling): no stage at all
    undo_notice = edited(src / "tooling/notice.py", "# a comment\n")
    undo_estimate = edited(src / "tooling/estimate.py", "# a comment\n")
    assert changed(repo, env) == set()
    undo_notice()
    undo_estimate()
    assert changed(repo, env) == set()
