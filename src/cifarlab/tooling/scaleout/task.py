"""What a Dask worker runs for one stage, and the guard around the stage's processes.

`reproduce_stage(spec)`: a fresh clone of the commit being reproduced, configured to use the
machine's DVC cache (and the shared DVC remote between machines), the coordinator's dvc.lock;
then ONE `dvc repro --single-item` that restores the stages above from DVC's run-cache and runs
the stage itself (or restores it too, when an earlier attempt finished it). DVC moves outputs
into the cache only after the stage's command succeeded, so a killed task leaves nothing there.

A Dask worker killed outright (SIGKILL, the out-of-memory killer) cannot stop its subprocesses;
`python -m cifarlab.tooling.scaleout.task guard` stands between: the kernel sends it SIGTERM when the
worker dies (Linux prctl PR_SET_PDEATHSIG), and it kills the stage's whole process group, so no
orphaned training keeps a GPU busy or commits after its task was given to another worker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cifarlab.core.git import git

REMOTE = "cifarlab-store"  # the shared store's name inside a worker's clone
DEFAULT_WORKDIR = "~/.cache/cifarlab/scale-out"  # a worker's clones, logs (and cache, between machines)
TAIL_LINES = 15  # of a failed stage's log, in the error the coordinator prints

RAN = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
RESTORED = re.compile(r"^Stage '([^']+)' is cached - skipping run", re.MULTILINE)


class StageFailed(Exception):
    """A stage's `dvc repro` exited non-zero; `stage`, `log` (its path on the worker) and `tail`."""

    def __init__(self, stage: str, message: str, log: str = "", tail: str = ""):
        super().__init__(message)
        self.stage, self.log, self.tail = stage, log, tail

    def __reduce__(self):  # Dask sends exceptions to the coordinator pickled
        return (StageFailed, (self.stage, str(self), self.log, self.tail))


def _set_parent_death_signal(sig: int) -> None:
    """Have the kernel send this process `sig` when its parent (thread) dies (Linux prctl
    PR_SET_PDEATHSIG; elsewhere a no-op)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_guarded(cmd: list[str], cwd: Path, env: dict, log: Path) -> int:
    """Run `cmd` behind the guard, its output (stdout and stderr) appended to `log`; its exit code."""
    guard = [sys.executable, "-m", "cifarlab.tooling.scaleout.task", "guard", str(os.getpid()), "--", *cmd]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            guard, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )  # no preexec_fn: unsafe in a threaded worker
        return proc.wait()


def guard_main(argv: list[str]) -> int:
    """`guard PARENT_PID -- CMD...`: run CMD in its own process group; kill the group when this
    process gets SIGTERM or SIGINT (its parent died or asked), or when PARENT_PID is already gone."""
    parent, sep, *cmd = argv
    assert sep == "--" and cmd, "usage: guard PARENT_PID -- CMD..."
    child: subprocess.Popen | None = None

    def stop(signum, _frame):
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _set_parent_death_signal(signal.SIGTERM)  # armed by this process for itself
    if os.getppid() != int(parent):  # the parent died before it was armed
        stop(signal.SIGTERM, None)
    child = subprocess.Popen(cmd, start_new_session=True)
    return child.wait()


def _dvc_config(cache_dir: Path, remote_url: str | None) -> str:
    """The clone's .dvc/config.local (DVC's INI format): the shared cache, links where the
    filesystem allows them (a 180 MB prepared set is linked, not copied, into each clone), and
    the shared remote as the default one."""
    text = f'[cache]\n    dir = {cache_dir}\n    type = "reflink,hardlink,copy"\n'
    if remote_url:
        text += f"[core]\n    remote = {REMOTE}\n['remote \"{REMOTE}\"']\n    url = {remote_url}\n"
    return text


def _slug(stage: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stage)


def reproduce_stage(spec: dict, *_upstream) -> dict:
    """Reproduce one stage in a Dask worker. `spec` (built by the coordinator): stage,
    restore_first, checkout_first, repo (a path or URL git can clone), commit, lock (the
    coordinator's dvc.lock text or None), cache_dir (one machine: the shared cache) or
    remote_url (between machines), workdir. `_upstream`: the results of the tasks it waited for.

    Returns {stage, ran, restored, seconds, worker, log}; raises StageFailed with the log's tail.
    """
    t0 = time.perf_counter()
    stage = spec["stage"]
    workdir = Path(os.environ.get("CIFARLAB_SCALEOUT_DIR") or spec.get("workdir") or DEFAULT_WORKDIR).expanduser()
    tag = f"{_slug(stage)}-{uuid.uuid4().hex[:8]}"
    clone, log = workdir / "clones" / tag, workdir / "logs" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    clone.parent.mkdir(parents=True, exist_ok=True)
    try:
        from distributed import get_worker

        worker = get_worker()
        where = f"{worker.name} ({socket.gethostname()})"
        worker.log_event("cifarlab-repro", {"stage": stage, "event": "start", "worker": str(worker.name)})
    except (ImportError, ValueError):  # called outside a worker (tests)
        where = socket.gethostname()

    shared = Path(spec["repo"]).is_dir()
    git("clone", "--quiet", "--no-checkout", *(["--shared"] if shared else []), spec["repo"], str(clone))
    git("checkout", "--quiet", "--detach", spec["commit"], cwd=clone)
    if spec.get("lock"):
        (clone / "dvc.lock").write_text(spec["lock"])
    cache_dir = Path(spec["cache_dir"]) if spec.get("cache_dir") else workdir / "cache"
    (clone / ".dvc" / "config.local").write_text(_dvc_config(cache_dir, spec.get("remote_url")))

    bindir = str(Path(sys.executable).parent)  # the stages' `python` and `dvc`: this environment's
    env = {**os.environ, "PYTHONPATH": str(clone / "src"), "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    remote = bool(spec.get("remote_url"))
    steps = []
    if spec["checkout_first"]:  # fetch's archive: from the cache (one machine) or the remote
        steps.append(["dvc", "pull" if remote else "checkout", *spec["checkout_first"]])
    steps.append(["dvc", "repro", "--single-item", *(["--pull"] if remote else []), *spec["restore_first"], stage])
    if remote:  # this run's run-cache entry and the objects it names, for the next machine
        steps.append([sys.executable, "-m", "cifarlab.tooling.scaleout.task", "push-run-cache"])
    for cmd in steps:
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n")
        code = run_guarded(cmd, clone, env, log)
        if code != 0:
            lines = log.read_text(errors="replace").splitlines()
            tail = "\n".join(lines[-TAIL_LINES:])
            shutil.rmtree(clone, ignore_errors=True)  # its checkpoints; the log stays
            raise StageFailed(
                stage, f"{stage} failed on {where}: `{' '.join(cmd[:3])}` exited {code}; log: {log}", str(log), tail
            )
    text = log.read_text(errors="replace")
    shutil.rmtree(clone, ignore_errors=True)
    return {
        "stage": stage,
        "ran": stage in RAN.findall(text),
        "restored": RESTORED.findall(text),
        "ran_above": [s for s in RAN.findall(text) if s != stage],
        "seconds": time.perf_counter() - t0,
        "worker": where,
        "log": str(log),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["guard"]:
        sys.exit(guard_main(sys.argv[2:]))
    if sys.argv[1:2] in (["push-run-cache"], ["pull-run-cache"]):
        from cifarlab.dvc_internals import sync_run_cache

        sync_run_cache(sys.argv[1][:4], sys.argv[2] if len(sys.argv) > 2 else None)
        sys.exit(0)
    sys.exit(
        "usage: python -m cifarlab.tooling.scaleout.task guard PARENT_PID -- CMD... "
        "| push-run-cache | pull-run-cache [REMOTE]"
    )
