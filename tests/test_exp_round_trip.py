"""README's "DVC experiments" commands, in order, as a user runs them on a workspace that has
trained some of its runs: each exits 0, prints at most 3 DVC WARNING lines, leaves no DVC
output for git to see, and no uncommitted edit of the user's is lost (the command README gives
to bring them back finds them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workspace import ROOT, sh, small_project

# A table with runs the experiments train and one they never do (cnn): a partial workspace.
RUNS = ("lenet5", "dnn", "resnet9", "custom_resnet", "resnet18-relu-5_3_2-crop_flip", "cnn")
# Folders of DVC-cached outputs (.gitignore): git must never list a file under them.
DVC_OUTPUTS = (
    "data/",
    "reports/metrics/",
    "reports/history/",
    "reports/predictions/",
    "reports/details/",
    "reports/timing/",
    "reports/figures/runs/",
)


def readme_block(section: str) -> list[str]:
    """The command lines of the first ```bash block of docs/experiments.md's `section` (its `# title`
    or a `## heading`; continuations joined)."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    body = re.split(rf"^#{{1,2}} {re.escape(section)}\n", text, maxsplit=1, flags=re.M)[1]
    body = body.split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1).replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def run(cmd: str, repo: Path, env: dict) -> str:
    r = subprocess.run(["bash", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"`{cmd}` exited {r.returncode}\n{out[-3000:]}"
    warnings = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warnings) <= 3, f"`{cmd}`: {len(warnings)} WARNING lines, e.g.\n" + "\n".join(warnings[:5])
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shown = [line[3:] for line in status.splitlines() if line[3:].startswith(DVC_OUTPUTS)]
    assert not shown, f"after `{cmd}` git sees DVC outputs: {shown[:5]}"
    return out


# 8.7 minutes on a 2-core AMD EPYC: CI leaves it out (test_documented_commands.py checks every
# command of the block: parsed, overrides applied by DVC's code, targets matched); `pytest -m heavy`
@pytest.mark.slow
@pytest.mark.heavy
def test_readme_experiment_round_trip_on_a_partial_workspace(tmp_path, tiny_archive):
    archive, md5 = tiny_archive
    repo = tmp_path / "ws"
    env = small_project(repo, archive, md5, RUNS)
    run("dvc repro plot@lenet5 plot@dnn", repo, env)  # README: "Only some runs"
    # DVC's read commands: no .gitignore of DVC's own in a plots folder (it was read as a plot),
    # and every error left is a run not trained yet (known: DVC lists every declared output)
    shown = json.loads(sh("dvc", "plots", "show", "--json", cwd=repo, env=env))
    assert not list(repo.glob("reports/**/.gitignore"))
    untrained = [r for r in RUNS if r not in ("lenet5", "dnn")]
    for error in shown.get("errors") or []:
        assert error["type"] == "FileNotFoundError" and any(r in error["name"] for r in untrained), error
    # named, the runs trained read clean (docs/experiments.md)
    named = json.loads(
        sh(
            "dvc",
            "metrics",
            "show",
            "--json",
            "reports/metrics/lenet5.json",
            "reports/metrics/dnn.json",
            cwd=repo,
            env=env,
        )
    )
    assert "error" not in json.dumps(named) and json.dumps(named).count('"top1"') == 4  # best and final, 2 runs
    named = json.loads(sh("dvc", "plots", "show", "--json", "reports/history/lenet5.csv", cwd=repo, env=env))
    assert not named.get("errors") and named.get("data")
    edit = "\nan uncommitted line of the user's\n"
    with (repo / "README.md").open("a") as f:
        f.write(edit)
    exp_name = None
    for cmd in readme_block("DVC experiments"):
        if "<exp-name>" in cmd:
            names = sh("dvc", "exp", "list", "--name-only", cwd=repo, env=env).split()
            exp_name = names[0]
            cmd = cmd.replace("<exp-name>", exp_name)
        run(cmd, repo, env)
        if cmd.startswith("dvc queue status"):  # README: wait for the queue, "then dvc exp show"
            deadline = time.monotonic() + 900
            while re.search(r"Running|Queued", sh("dvc", "queue", "status", cwd=repo, env=env)):
                assert time.monotonic() < deadline, "the queued experiments did not finish in 900 s"
                time.sleep(5)
            assert "Failed" not in sh("dvc", "queue", "status", cwd=repo, env=env)
    assert exp_name
    # on the kept experiment's branch, with its outputs
    assert sh("git", "branch", "--show-current", cwd=repo, env=env).strip() == "my-branch"
    assert (repo / "reports/metrics/experiment.json").is_file()
    # the edit was set aside by `git stash -u`; README's comment beside it says how it comes back
    line = next(c for c in (ROOT / "docs" / "experiments.md").read_text().splitlines() if c.startswith("git stash -u"))
    back = re.search(r"\((git checkout main && git stash pop) brings them back\)", line).group(1)
    run(back, repo, env)
    assert (repo / "README.md").read_text().endswith(edit)


@pytest.mark.slow
def test_a_failing_stage_leaves_every_finished_output_ignored(tmp_path, tiny_archive):
    """`dvc repro plot@lenet5-classic train@alexnet_transfer-noskip-low` with AlexNet's weights
    missing: AlexNet fails in one line, lenet5-classic finished, and git sees none of its outputs
    (DVC takes back the .gitignore entries it wrote when a later stage fails: the folders are in
    the committed .gitignore instead), so `git add -A` cannot commit DVC outputs."""
    archive, md5 = tiny_archive
    repo = tmp_path / "ws"
    env = small_project(repo, archive, md5, ("lenet5-classic", "alexnet_transfer-noskip-low", "dnn"))
    sh(
        sys.executable,
        "-m",
        "cifarlab",
        "set",
        "alexnet_transfer.pretrained=true",
        "alexnet_transfer.weights=/nonexistent/alexnet.pth",
        cwd=repo,
        env=env,
    )
    # --keep-going: lenet5-classic finishes whichever stage DVC takes first
    targets = ["plot@lenet5-classic", "train@alexnet_transfer-noskip-low"]
    r = subprocess.run(
        ["dvc", "repro", "--keep-going", *targets], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode != 0 and "error: alexnet_transfer.weights: no such file '/nonexistent/alexnet.pth'" in r.stderr
    assert (repo / "reports/figures/runs/curves_lenet5-classic.png").is_file(), r.stdout[-2000:]  # finished
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not [line for line in status.splitlines() if line[3:].startswith(DVC_OUTPUTS)], status
