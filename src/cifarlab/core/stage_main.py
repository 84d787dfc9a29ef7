"""The thin wrapper every stage's `main()` runs in: one-line errors, clean Ctrl-C, exit codes."""

from __future__ import annotations

import errno
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

from cifarlab.core.errors import CifarlabError


class WorkspaceCodeError(CifarlabError):
    """The code Python imports is not the code of the DVC workspace the stage runs in."""


def _py_files(package: Path) -> dict[str, str]:
    return {
        p.relative_to(package).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(package.rglob("*.py"))
    }


def workspace_code_problem(cwd: Path | None = None) -> str | None:
    """Why the imported cifarlab is not this DVC workspace's src/cifarlab, or None.

    dvc.yaml hashes src/cifarlab of the workspace it runs in, but `python -m cifarlab.<stage>`
    imports whatever is installed: with an editable install of another checkout, a second
    workspace (a clone, `dvc exp run --temp`) would run that checkout's code under this one's
    hashes. Compared by content, so an identical copy is fine. Outside a workspace with its own
    src/cifarlab (tests, a GPU kit folder) there is nothing to compare.
    """
    cwd = Path.cwd() if cwd is None else cwd
    here = cwd / "src" / "cifarlab"
    if not (cwd / "dvc.yaml").is_file() or not (here / "__init__.py").is_file():
        return None
    import cifarlab

    imported = Path(cifarlab.__file__).resolve().parent
    if imported == here.resolve():
        return None
    mine, theirs = _py_files(here), _py_files(imported)
    differ = sorted(n for n in mine.keys() | theirs.keys() if mine.get(n) != theirs.get(n))
    if not differ:
        return None
    more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
    return (
        f"Python imports cifarlab from {imported}, not from this workspace's src/cifarlab, and "
        f"{differ[0]}{more} differ: DVC would record this code but run that one; run "
        "`pip install -e .` here, or set PYTHONPATH=src"
    )


def check_workspace_code() -> None:
    """Raise WorkspaceCodeError when workspace_code_problem finds one."""
    problem = workspace_code_problem()
    if problem:
        raise WorkspaceCodeError(problem)


def run_main(
    main: Callable[[list[str] | None], object], argv: list[str] | None = None, check_workspace: bool = True
) -> None:
    """Run a stage; turn project errors into `error: <one line>` and a non-zero exit.

    Stage code writes outputs atomically, so an error or Ctrl-C here leaves nothing half-written.
    """
    try:
        if check_workspace:  # stages: the code DVC hashed must be the code that runs
            check_workspace_code()
        main(argv)
    except CifarlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted: stopped cleanly; finished outputs are intact, rerun `dvc repro` to go on", file=sys.stderr)
        sys.exit(130)
    except (ImportError, RuntimeError):
        from cifarlab.core.install import install_problem

        problem = install_problem()  # only asked on failure: importing torchvision costs ~2 s
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # the machine's, not the code's: disk full, no permission, a path in the way
        if e.errno not in _MACHINE_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(
            f"error: cannot write or read{where}: {e.strerror}: make room (or fix the permissions) there and "
            "rerun; outputs are written atomically, so nothing is half-written",
            file=sys.stderr,
        )
        sys.exit(1)


# OSErrors that are the machine's state, not a bug: one line, no traceback
_MACHINE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
    errno.ENOTDIR,
    errno.EISDIR,
}
