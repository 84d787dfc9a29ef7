"""`python -m cifarlab.tooling.notice`: the notice before a long `dvc repro` / `dvc exp run`, which
dvc.yaml runs first in `fetch` and in every training stage (train, train_seeds): on a machine
without a GPU, which stages that command still runs and for how long, when long
(tooling.estimate.repro_notice). It speaks once per dvc process, from the first of those stages
it runs, whether or not fetch runs: the first claims a marker named by that process's pid and
start time; the others find it and return at once, importing nothing but the standard library.
CIFARLAB_NO_NOTICE=1 skips it. It writes to the terminal only, so it is no dependency of the
stages, and it never fails one: what it cannot tell, it leaves unsaid."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

SKIP_ENV = "CIFARLAB_NO_NOTICE"
LEVELS = 8  # python <- sh <- dvc, with room for wrappers (nice, timeout, time) and `dvc exp run --temp`


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the 3rd on (after the command name in parens), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def dvc_processes(levels: int = LEVELS) -> list[tuple[int, str, list[str]]]:
    """This process's ancestors that run dvc, nearest first: (pid, start time, arguments after the
    dvc executable), read from Linux /proc; [] elsewhere, or under no dvc (run by hand)."""
    out = []
    pid = os.getppid()
    for _ in range(levels):
        fields = _stat(pid)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            break
        if fields is None:
            break
        args = [a.decode(errors="replace") for a in argv if a]
        for i, a in enumerate(args[:3]):  # dvc ..., python dvc ..., python -m dvc ...
            if Path(a).name == "dvc" or (Path(a).name.startswith("dvc") and a.endswith(".exe")):
                out.append((pid, fields[19], args[i + 1 :]))  # field 22: start time, in clock ticks since boot
                break
        pid = int(fields[1])  # field 4: the parent
        if pid <= 1:
            break
    return out


def marker_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"cifarlab-notice-{os.getuid() if hasattr(os, 'getuid') else 0}"


def claim(pid: int, start: str) -> bool:
    """True for the first caller under the dvc process (pid, start), False for every later one. A
    marker of a process that is gone (or whose pid now names another) is cleared on the way."""
    folder = marker_dir()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        for old in folder.iterdir():
            p, _, s = old.name.partition("-")
            fields = _stat(int(p)) if p.isdigit() else None
            if fields is None or fields[19] != s:
                old.unlink(missing_ok=True)
        fd = os.open(folder / f"{pid}-{start}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True  # no marker possible here: better said in every stage than never
    os.close(fd)
    return True


def due() -> bool:
    """Whether this process should plan a notice at all (standard library only, quick)."""
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        return False
    chain = dvc_processes()
    if chain:
        pid, start, _ = chain[0]
        return claim(pid, start)
    # no dvc above (run by hand, or an OS without /proc): by hand, plan; under DVC with no way to
    # speak once, fetch only (the notice of old)
    return os.environ.get("DVC_STAGE") in (None, "fetch")


def repro_notice(p) -> str | None:
    from cifarlab.tooling.estimate import repro_notice as notice

    return notice(p)


def main() -> None:
    if not due():
        return
    from cifarlab.core.errors import CifarlabError, one_line
    from cifarlab.core.params import load_params

    try:
        notice = repro_notice(load_params(check_models=False))
    except CifarlabError:
        return  # bad params: the stage, next, refuses them in one line
    except Exception as err:  # noqa: BLE001 - a notice is advice: never the reason a repro stops
        notice = f"note: no time estimate for this dvc repro ({type(err).__name__}: {one_line(err, 200)})"
    if notice:
        print(notice, file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # noqa: BLE001 - never fails the stage it runs in (Ctrl-C included: DVC sees it next)
        pass
