"""Throwaway copies of this project for end-to-end tests and benchmarks: a git repository with the
project's tracked files, params.yaml cut down to seconds of CPU work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from cifarlab.core.params import TrainParams
from cifarlab.tooling.estimate import alternative_numerics

ROOT = Path(__file__).resolve().parents[1]

RUNS = ("lenet5", "dnn", "resnet18-relu-2_1_1-none", "alexnet_transfer-skip-low")
# Acceptance slice of `cifarlab repro` (scale-out): three models and four cells of report 004's grid
SCALE_OUT_RUNS = (
    "lenet5",
    "dnn",
    "alexnet_transfer-skip-low",
    "resnet18-relu-2_1_1-none",
    "resnet18-tanh-5_3_2-crop_flip",
    "resnet18-sigmoid-5_4_1-crop_flip_blur_color",
    "resnet18-leaky_relu-2_1_1-crop_flip",
)


def sh(*cmd: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    """Run a command; on failure, fail the test with its output (the one place to look)."""
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        import pytest

        pytest.fail(
            f"{' '.join(cmd)} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"
        )
    return r.stdout


def lock_outs(repo: Path, timing: bool = True) -> dict[str, str]:
    """path -> md5 of every stage output recorded in dvc.lock; timing=False leaves out
    reports/timing/ (wall times: the one output that varies from run to run)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        o["path"]: o["md5"]
        for stage in lock["stages"].values()
        for o in stage.get("outs", [])
        if timing or not o["path"].startswith("reports/timing/")
    }


# What a user's work changes in a checkout without a commit: `cifarlab set` edits params.yaml, the
# report stage rewrites reports/README.md and its figures. Tests read these as shipped (the last
# commit), never the workspace's, so `pytest` passes in a checkout someone has worked in; the
# code, the tests and everything else are taken as they are in the working tree. A commit can
# hold a user's settings too (a branch with `data.url` at a local copy, `seeds: [1, 2]`, a
# one-epoch smoke run): params.yaml's `data`, `train` and `seeds` are read as the schema's
# defaults, which main's params.yaml ships (settings_as_shipped).
USER_EDITED = ("params.yaml", "reports")
CODE = ("src", "tests", "benchmarks", "tools")  # where a file not committed yet is still the project's


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


def _has_head() -> bool:
    return subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=ROOT, capture_output=True).returncode == 0


def project_copy(dest: Path) -> None:
    """The project as a fresh clone of this checkout would have it, plus what is not committed yet
    but would be (new files git does not ignore): the working tree's code and tests, and the last
    commit's params.yaml and reports/ (USER_EDITED), without the history."""
    tracked = _git("ls-files", "-z").decode().split("\0")
    # new code not committed yet, but none of a run's leftovers (an untracked dvc.lock, say)
    new = _git("ls-files", "-z", "--others", "--exclude-standard", "--", *CODE).decode().split("\0")
    for rel in filter(None, tracked + new):
        if rel == "dvc.lock":  # main commits none; one staged here is this workspace's runs
            continue
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if _has_head():  # the shipped versions over the workspace's
        import io
        import tarfile

        with tarfile.open(fileobj=io.BytesIO(_git("archive", "--format=tar", "HEAD", *USER_EDITED))) as tar:
            tar.extractall(dest, filter="data")
    settings_as_shipped(dest / "params.yaml")


def settings_as_shipped(path: Path) -> None:
    """Set params.yaml's `data`, `train` and `seeds` at `path` to the schema's defaults (what main
    ships), through `cifarlab set` (comments and layout kept): the keys a user sets to run their own
    work, whose committed values must not change a test's outcome. The run table, the recipes,
    `seed` and `model` stay as committed."""
    from cifarlab.core.params import DataParams, TrainParams
    from cifarlab.tooling.cli import set_params

    d = yaml.safe_load(path.read_text())
    changes = [
        f"{section}.{key}={json.dumps(value)}"  # JSON values are YAML values
        for section, defaults in (("data", DataParams()), ("train", TrainParams()))
        for key, value in defaults.model_dump(mode="json").items()
        if d.get(section, {}).get(key) != value
    ]
    if d.get("seeds"):
        changes.append("seeds=[]")
    if changes:
        set_params(path, changes)


_SHIPPED: dict[str, Path] = {}


def shipped(rel: str) -> Path:
    """A file as the last commit has it (e.g. "params.yaml", its settings as shipped:
    settings_as_shipped), written to a temporary folder once per process; the working file where
    there is no commit yet or it is not tracked."""
    if rel not in _SHIPPED:
        path = ROOT / rel
        committed = (
            _has_head()
            and subprocess.run(["git", "cat-file", "-e", f"HEAD:{rel}"], cwd=ROOT, capture_output=True).returncode == 0
        )
        if committed or rel == "params.yaml":
            import atexit
            import tempfile

            folder = Path(tempfile.mkdtemp(prefix="cifarlab-shipped-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            copy = folder / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(_git("show", f"HEAD:{rel}") if committed else path.read_bytes())
            if rel == "params.yaml":
                settings_as_shipped(copy)
            path = copy
        _SHIPPED[rel] = path
    return _SHIPPED[rel]


_PRISTINE: list[Path] = []


def pristine_root() -> Path:
    """A git repository holding project_copy(), made once per process: for tests that run a command
    in "the project" (`cifarlab runs`, `dvc stage list`) without reading this workspace's
    params.yaml, dvc.lock or outputs."""
    if not _PRISTINE:
        import atexit
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="cifarlab-pristine-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        project_copy(folder)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=folder, check=True)
        _PRISTINE.append(folder)
    return _PRISTINE[0]


def stage_names(root: Path) -> list[str]:
    """`dvc stage list --name-only` in `root`: every stage its dvc.yaml expands into."""
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def pristine_stage_names() -> list[str]:
    """stage_names of pristine_root(): every stage the shipped dvc.yaml expands into."""
    return stage_names(pristine_root())


def __getattr__(name: str):
    if name == "SHIPPED_PARAMS":  # `from workspace import SHIPPED_PARAMS`: the committed params.yaml
        return shipped("params.yaml")
    if name == "FAST_NUMERICS":  # `from workspace import FAST_NUMERICS`, computed then
        return fast_numerics()
    raise AttributeError(name)


# The numerics end-to-end tests train in: the defaults (bf16 + channels_last) where this CPU has
# native bf16, fp32 where it emulates it (emulated, training is 5-10x slower than fp32:
# docs/training.md, CPU speed), as `cifarlab estimate` advises. These tests check the pipeline;
# test_numerics.py trains lenet5 in bf16 + channels_last on every CPU (the other models where
# bf16 is native). The bf16 in effect is asked of torch (engine.device.bf16_in_effect), on first
# use: importing this module stays torch-free for the tests that never train.
def fast_numerics() -> dict:
    from cifarlab.engine.device import bf16_in_effect

    return alternative_numerics(TrainParams(), bf16_in_effect()["cpu_bf16"]) or {}


def small_params(
    runs: Iterable[str] | Mapping[str, dict] = RUNS,
    archive: tuple[Path, str] | None = None,
    fast: bool = True,
    **changes,
) -> dict:
    """The shipped params.yaml (never the workspace's), cut down to seconds of CPU work, as the
    dict to write (write_params): only `runs` of the run table (its names, or a {name: entry}
    mapping of a test's own runs); `model` dnn where it is one of them (an experiment can change
    it), else the first; `pca` the shipped list's runs among them; data from `archive`, a
    (path, md5) pair; one epoch, one torch thread, this CPU's fast numerics (FAST_NUMERICS;
    fast=False keeps the shipped ones); random AlexNet features at 64x64 in batches of 50, lenet5
    in batches of 16. `changes`: a section's name -> the keys to change in it
    (train={"max_epochs": 2}); any value that is no mapping replaces the key (pca=[], seeds=[1])."""
    d = yaml.safe_load(shipped("params.yaml").read_text())
    d["runs"] = dict(runs) if isinstance(runs, Mapping) else {r: d["runs"][r] for r in runs}
    d["model"] = "dnn" if "dnn" in d["runs"] else next(iter(d["runs"]))
    d["pca"] = [r for r in d["pca"] if r in d["runs"]]
    if archive is not None:
        d["data"].update(url=str(archive[0]), md5=archive[1])
    d["train"].update(max_epochs=1, num_threads=1, **(fast_numerics() if fast else {}))
    d["alexnet_transfer"].update(pretrained=False, image_size=64, batch_size=50)
    d["lenet5"]["batch_size"] = 16
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    return d


def write_params(directory: Path, params: dict) -> Path:
    """`params` written as directory/params.yaml, in the shipped file's key order."""
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def project_env(repo: Path) -> dict[str, str]:
    """The environment a stage in `repo` needs: its own src/ imported, this interpreter's tools
    first on PATH, a git identity, no DVC analytics."""
    return {
        **os.environ,
        "PYTHONPATH": str(repo / "src"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def small_project(
    repo: Path, archive: Path, md5: str, runs: tuple[str, ...] = RUNS, commit: bool = True, **changes
) -> dict:
    """A git repository at `repo` with the project cut down by small_params (`model` dnn, pca
    only alexnet_transfer-skip-low's of the runs; `changes` as small_params takes them),
    committed (workers of `cifarlab repro` clone the commit). Returns project_env(repo)."""
    repo.mkdir(parents=True)
    project_copy(repo)
    write_params(
        repo,
        small_params(
            runs, (archive, md5), model="dnn", pca=[r for r in ("alexnet_transfer-skip-low",) if r in runs], **changes
        ),
    )
    env = project_env(repo)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=env, check=True)
    if commit:
        subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "small project"], cwd=repo, env=env, check=True)
    return env
