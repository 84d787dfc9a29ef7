"""`cifarlab repro`: plan from DVC, stages onto Dask, progress, failures, then DVC's own restore."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cifarlab.core.errors import one_line
from cifarlab.core.git import git, try_git
from cifarlab.core.gpus import visible_gpus
from cifarlab.dvc_internals import LOCK_FILE, cache_dir, output_paths, remote_names, remote_url
from cifarlab.tooling.scaleout.placement import Placement, ScaleOutError, build_placement
from cifarlab.tooling.scaleout.task import RAN


def check_committed(root: Path) -> str:
    """The commit workers reproduce (HEAD). Raises ScaleOutError naming what to commit when a
    tracked file other than DVC's (dvc.lock, .gitignore files, outputs) differs from it: workers
    clone the commit, so an uncommitted edit would run nowhere while dvc.lock recorded it."""
    if try_git("rev-parse", "--verify", "-q", "HEAD", cwd=root) is None:
        raise ScaleOutError("this repository has no commit yet: git add -A && git commit -m 'start' first")
    changed = [p for p in git("diff", "--name-only", "HEAD", cwd=root).splitlines() if p]
    outs = output_paths(root)

    # DVC's own files (dvc.lock, the .gitignore files it writes beside outputs) and outputs change
    # with every run; they are not inputs
    def ours(p: str) -> bool:
        return p == LOCK_FILE.name or Path(p).name == ".gitignore" or any(p == o or p.startswith(o + "/") for o in outs)

    code = [p for p in changed if not ours(p)]
    if code:
        more = f" (and {len(code) - 1} more)" if len(code) > 1 else ""
        raise ScaleOutError(
            f"uncommitted changes to {code[0]}{more}: workers run the committed code, so commit "
            f"them first (git commit -am '...'), or stash them (git stash)"
        )
    return git("rev-parse", "HEAD", cwd=root).strip()


def _remote_url(root: Path, name: str) -> str:
    """The URL of the DVC remote `name` as workers must see it (a local path made absolute)."""
    url = remote_url(root, name)
    if url is None:
        known = ", ".join(remote_names(root)) or "none"
        raise ScaleOutError(f"no DVC remote named {name!r} (known: {known}); add one: dvc remote add {name} URL")
    return url


def _dvc(root: Path, *args: str) -> str:
    """A dvc command in the user's workspace, its output shown as it comes; returns it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = []
    for line in proc.stdout:
        out.append(line)
        print(f"  | {line}", end="", flush=True)
    if proc.wait() != 0:
        raise ScaleOutError(f"dvc {' '.join(args[:3])} failed in {root} (its output is above)")
    return "".join(out)


@dataclass
class Outcome:
    done: list[str]
    failed: list[tuple[str, str, str]]  # (stage, one-line reason, log tail)
    skipped: list[str]  # a stage above them failed


class Progress:
    """One line per event: `[done/total done | n running | n queued] what happened`."""

    def __init__(self, total: int):
        self.total, self.done, self.running = total, 0, set()
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()

    def say(self, text: str) -> None:
        queued = self.total - self.done - len(self.running)
        print(
            f"[{self.done}/{self.total} done | {len(self.running)} running | {queued} queued | "
            f"{time.perf_counter() - self.t0:5.0f} s] {text}",
            flush=True,
        )

    def started(self, event) -> None:  # from Dask's event topic (the client's thread)
        _, msg = event
        with self.lock:
            self.running.add(msg["stage"])
            self.say(f"{msg['stage']} started on worker {msg['worker']}")

    def finished(self, stage: str, text: str) -> None:
        with self.lock:
            self.running.discard(stage)
            self.done += 1
            self.say(text)


def submit_and_wait(client, plan: Placement, spec: dict, gpu: bool) -> Outcome:
    """Every planned task onto the cluster, each after the tasks it depends on; wait for all."""
    from distributed import as_completed

    from cifarlab.tooling.scaleout.task import StageFailed, reproduce_stage

    progress = Progress(len(plan.tasks))
    client.subscribe_topic("cifarlab-repro", progress.started)
    run_id = uuid.uuid4().hex[:8]
    futures, stage_of = {}, {}
    for t in plan.tasks:
        task_spec = {
            **spec,
            "stage": t.name,
            "restore_first": list(t.restore_first),
            "checkout_first": list(t.checkout_first),
        }
        fut = client.submit(
            reproduce_stage,
            task_spec,
            *(futures[u] for u in t.upstream),
            key=f"cifarlab-{t.name}-{run_id}",
            pure=False,
            resources={"GPU": t.gpu} if gpu and t.gpu else None,
        )
        futures[t.name] = fut
        stage_of[fut.key] = t.name
    out = Outcome([], [], [])
    for fut in as_completed(list(futures.values())):
        stage = stage_of[fut.key]
        if fut.status == "finished":
            r = fut.result()
            how = "ran" if r["ran"] else "restored from the run-cache"
            extra = f"; also ran {', '.join(r['ran_above'])} (not in the run-cache)" if r["ran_above"] else ""
            out.done.append(stage)
            progress.finished(stage, f"{stage} {how} in {r['seconds']:.0f} s on {r['worker']}{extra}")
            continue
        try:
            exc = fut.exception()
        except Exception as err:  # noqa: BLE001 - cancelled: the scheduler lost it
            exc = err
        if isinstance(exc, StageFailed) and exc.stage != stage:
            out.skipped.append(stage)  # Dask hands a dependent its upstream's error
            progress.finished(stage, f"{stage} skipped: {exc.stage} failed")
            continue
        if isinstance(exc, StageFailed):
            reason, tail = str(exc), exc.tail
        elif type(exc).__name__ == "KilledWorker":
            reason, tail = (
                (f"{stage}: every worker that ran it died (Dask's allowed-failures; killed, or out of memory)"),
                "",
            )
        else:
            reason, tail = f"{stage}: {type(exc).__name__}: {one_line(exc, 300)}", ""
        out.failed.append((stage, reason, tail))
        progress.finished(stage, f"FAILED {reason}")
    return out


CONNECT_TIMEOUT_S = 30  # to a --scheduler address
# A scheduler answers distributed's handshake in milliseconds; distributed itself waits for it
# without a bound, forever on a peer that accepts the connection and never replies (an HTTP server)
HANDSHAKE_S = 10


def _comm_reason(err: BaseException, limit: int) -> str:
    """One line of a distributed comm error, without its `in <TCPConnector object at 0x...>: ` prefix."""
    return one_line(re.sub(r"^in <[^>]*>: ", "", str(err)), limit) or type(err).__name__


def _check_scheduler(address: str) -> None:
    """Raise ScaleOutError in one line unless a Dask scheduler answers at `address`: the TCP (or
    TLS) connection within CONNECT_TIMEOUT_S, then distributed's handshake within HANDSHAKE_S."""
    import asyncio

    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    args = Security().get_connection_args("client")  # as Client: TLS from Dask's config

    async def handshake():
        # OSError: refused, no route; ValueError: not an address; TypeError: tls:// without Dask's TLS config
        try:
            scheme, loc = parse_address(address)
            comm = await asyncio.wait_for(get_backend(scheme).get_connector().connect(loc, **args), CONNECT_TIMEOUT_S)
        except (OSError, ValueError, TypeError, asyncio.TimeoutError) as err:
            timed_out = isinstance(err, asyncio.TimeoutError)
            why = f"no connection in {CONNECT_TIMEOUT_S} s" if timed_out else _comm_reason(err, 150)
            raise ScaleOutError(
                f"no Dask worker reached through the scheduler at {address} ({why}): start the "
                "scheduler and its workers first (docs/scaleout.md)"
            ) from None

        async def exchange():  # what distributed's connect() does after connecting, there unbounded
            await comm.write(comm.handshake_info())
            return await comm.read()

        try:
            await asyncio.wait_for(exchange(), HANDSHAKE_S)
        except asyncio.TimeoutError:
            why = f"no handshake in {HANDSHAKE_S} s"
        except Exception as err:  # noqa: BLE001 - whatever a stranger sends back
            why = f"{type(err).__name__}: {_comm_reason(err, 100)}"
        else:
            why = None
        finally:
            comm.abort()
        if why:
            raise ScaleOutError(
                f"{address} answered but is not a Dask scheduler ({why}): pass the scheduler's "
                "address (tcp://HOST:8786, or tls:// with TLS), not the dashboard's"
            )

    asyncio.run(handshake())


@contextlib.contextmanager
def _cluster(needed: bool, workers, scheduler, slurm, slurm_gpus):
    """(client, whether a worker offers GPUs) of the cluster asked for; (None, False) when no task
    needs one. Closes the client and any cluster started here."""
    from cifarlab.tooling.scaleout import clusters

    if not needed:
        yield None, False
        return
    from distributed import Client

    if scheduler:
        _check_scheduler(scheduler)
        cluster, what = None, f"the scheduler at {scheduler}"
    elif slurm is not None:
        cluster, what = clusters.slurm_cluster(slurm, gpus_per_job=slurm_gpus)
        cluster.scale(jobs=workers or 1)
        what = f"{workers or 1} {what}"
    else:
        cluster, what = clusters.local_cluster(workers, visible_gpus())
    try:
        try:
            client = Client(cluster if cluster is not None else scheduler, timeout=CONNECT_TIMEOUT_S)
            client.wait_for_workers(1, timeout=None if slurm is not None else 120)
        except (OSError, TimeoutError) as err:
            raise ScaleOutError(
                f"no Dask worker reached through {what} ({one_line(err, 150)}): start the "
                "scheduler and its workers first (docs/scaleout.md)"
            ) from None
        with client:
            sched = client.scheduler_info()
            info = sched["workers"]
            board = (
                f"dashboard {client.dashboard_link}"
                if "dashboard" in sched.get("services", {})
                else "no dashboard (pip install bokeh where the scheduler runs)"
            )
            print(f"Dask: {what}; {len(info)} worker(s) now; {board}", flush=True)
            yield client, any("GPU" in (w.get("resources") or {}) for w in info.values())
    finally:
        if cluster is not None:
            cluster.close()


def repro(
    root: Path,
    targets: list[str] | None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    slurm: list[str] | None = None,
    slurm_gpus: int = 1,
    remote: str | None = None,
    repo_url: str | None = None,
    workdir: str | None = None,
) -> int:
    """`cifarlab repro`; returns the exit code (0: every stage done and restored here)."""
    root = root.resolve()
    commit = check_committed(root)
    plan = build_placement(root, targets)
    if not plan.names:
        print("nothing to reproduce: every stage is up to date (dvc status)")
        return 0
    print(
        f"cifarlab repro: {len(plan.names)} stages of commit {commit[:10]} ({len(plan.up_to_date)} up to date)",
        flush=True,
    )
    remote_url = _remote_url(root, remote) if remote else None

    workdir = workdir or (None if remote else str(root / ".dvc" / "tmp" / "scale-out"))
    outcome = Outcome([], [], [])
    # the cluster first: an unreachable scheduler is said before any work is done
    with _cluster(bool(plan.tasks), workers, scheduler, slurm, slurm_gpus) as (client, gpu):
        # 1. Stages DVC's run-cache cannot restore (fetch's persisted archive): once, here, so no
        # worker downloads it again; workers check it out of the shared cache (or pull it).
        for name in plan.first:
            print(f"{name}: run here first (DVC's run-cache cannot restore its outputs)", flush=True)
            _dvc(root, "repro", "--single-item", name)
            if remote:
                _dvc(root, "push", "--remote", remote, name)
        if client is not None:
            shared_cache = None if remote else cache_dir(root)
            lock = root / LOCK_FILE
            spec = {
                "repo": repo_url or str(root),
                "commit": commit,
                "cache_dir": shared_cache,
                "lock": lock.read_text() if lock.exists() else None,
                "remote_url": remote_url,
                "workdir": workdir,
            }
            try:
                outcome = submit_and_wait(client, plan, spec, gpu)
            finally:
                if workdir and not remote:  # clones of tasks whose worker was killed
                    shutil.rmtree(Path(workdir) / "clones", ignore_errors=True)

    # 2. DVC's own record: every finished stage (and what it needs) restored from the run-cache;
    # the `last` stages whose tasks all finished (the report) run here, as dvc repro would.
    last = [s for s in plan.last if not plan.above[s] & {*outcome.skipped, *(f[0] for f in outcome.failed)}]
    done = [*plan.first, *outcome.done, *last]
    if outcome.done or last:
        print(
            f"restoring {len(outcome.done)} stages into this workspace from DVC's run-cache"
            + (f", then running {', '.join(last)} here" if last else ""),
            flush=True,
        )
        if remote:  # the workers' run-cache entries and outputs, from the shared remote
            if subprocess.run(
                [sys.executable, "-m", "cifarlab.tooling.scaleout.task", "pull-run-cache", remote], cwd=root
            ).returncode:
                raise ScaleOutError(f"pulling the run-cache from the DVC remote {remote!r} failed (above)")
        text = _dvc(root, "repro", *outcome.done, *last)
        again = [s for s in RAN.findall(text) if s not in last]
        if again:
            print(f"note: dvc repro ran {', '.join(again)} here: not in the run-cache", flush=True)
    for _stage, reason, tail in outcome.failed:
        print(f"error: {reason}", file=sys.stderr)
        if tail:
            print("\n".join(f"  | {line}" for line in tail.splitlines()), file=sys.stderr)
    if outcome.failed:
        print(
            f"{len(done)} stages done and kept (dvc.lock); {len(outcome.failed)} failed, "
            f"{len(outcome.skipped)} not started; fix, commit, and run the same command again to go on",
            file=sys.stderr,
        )
        return 1
    print(f"done: {len(done)} stages reproduced; dvc.lock written (dvc status: up to date)")
    return 0
