"""Every command shown to users works: the command lines in README.md and docs/*.md, in params.yaml's
comments and in the `--help` texts of the cifarlab command and its stages.

Each command is checked as far as is cheap here:
- parsed by its own parser (DVC's for `dvc ...`, cifarlab's for `cifarlab ...`), always (fast);
- `dvc exp run` and `dvc repro`: their `-S` overrides applied to a copy of params.yaml by DVC's own
  code (dvc.utils.hydra.apply_overrides, what `dvc exp run` does before anything runs, and where
  it refuses a key that does not exist), the result validated as every stage validates it, and
  every stage target (or --glob) matched against `dvc stage list` (fast; `--dry` cannot stand in:
  DVC 3.67 hashes each stage's deps even when dry, and a fresh clone has none);
- run, in a throwaway copy of the project, where that is cheap and needs no data or GPU:
  `dvc exp show`, `dvc metrics|params|plots diff`, `dvc dag`, `cifarlab runs|set` (slow);
- `docker ...` is parsed (no Docker engine here) and the command it runs in the container is
  checked like any other; setup lines (venv, pip, pytest) are parsed.
A command meant to fail carries the marker `(fails)` beside it; it must fail.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import workspace
from workspace import SHIPPED_PARAMS, pristine_stage_names, project_copy, project_env

ROOT = Path(__file__).resolve().parents[1]
STARTS = ("dvc", "cifarlab", "docker", "python", "python3", "pip", "pytest", ".")
PLACEHOLDER = re.compile(r"<[^>]+>|\.\.\.|\[--seed K\]")


# `cifarlab set A && dvc repro T`: the targets T exist only with A applied (extra seeds add
# stages): command -> the assignments of the `cifarlab set` before it on its line.
CHAINED_SETS: dict[str, list[str]] = {}


def _commands_in_line(line: str) -> list[str]:
    line = line.strip().removeprefix("$ ").strip()
    if not line.split() or line.split()[0] not in STARTS:
        return []
    parts = [c.strip() for c in re.split(r"\s&&\s", line) if c.strip()]
    sets: list[str] = []
    for c in parts:
        argv = shlex.split(c, comments=True)
        if argv[:2] == ["cifarlab", "set"]:  # a placeholder ("data.md5=<md5sum of it>") names no stage
            sets += [a for a in shlex.split(PLACEHOLDER.sub("X", c))[2:] if "X" not in a.split("=", 1)[-1]]
        elif sets and argv[:2] == ["dvc", "repro"]:
            CHAINED_SETS[c] = list(sets)
    return parts


DOCS = ("README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")))


def readme_commands() -> list[tuple[str, str]]:
    """(where, command) for every command line in README.md and in each docs/*.md page (where: the
    file's path, e.g. "docs/experiments.md"): code blocks and inline `code`."""
    found = []
    for where in DOCS:
        text = (ROOT / where).read_text()
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                found += [(where, c) for c in _commands_in_line(line)]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", prose):
            found += [(where, c) for c in _commands_in_line(span)]
    return found


COMMAND_IN_PROSE = re.compile(
    r"\b(?:dvc (?:exp run|exp show|repro|metrics|params|plots|dag|stage|queue)"
    r"|cifarlab (?:runs|estimate|set|compare|pack|fold|fetch|preprocess|train|evaluate|plot|pca|experiment|report))"
    r"\b[^`)#]*"
)


def params_commands() -> list[tuple[str, str]]:
    """Commands quoted in params.yaml's comments (a dvc or cifarlab command word, to the end of
    the line, a closing parenthesis or backtick)."""
    found = []
    for line in (SHIPPED_PARAMS).read_text().splitlines():
        comment = line.partition("#")[2]
        for m in COMMAND_IN_PROSE.finditer(comment):
            found += [("params.yaml", c.strip()) for c in re.split(r"\s&&\s", m.group(0)) if c.strip()]
    return found


def script(path: str):
    """A script of the project (tools/gpu_reproduce.py, benchmarks/bench_gpu.py) as a module."""
    folder, name = path.rsplit("/", 1)
    sys.path.insert(0, str(ROOT / folder))
    try:
        return __import__(name.removesuffix(".py"))
    finally:
        sys.path.pop(0)


def kit():
    return script("tools/gpu_reproduce.py")


SCRIPTS = (
    "tools/gpu_reproduce.py",
    "benchmarks/bench_gpu.py",
    "benchmarks/bench_cpu.py",
    "benchmarks/bench_scaleout.py",
)  # each has parser()


def help_commands() -> list[tuple[str, str]]:
    """Commands in `cifarlab --help` and in each stage's `--help` text."""
    from cifarlab.tooling import cli

    found = []
    texts = {"cifarlab --help": cli.__doc__}
    for stage in cli.STAGES:
        texts[f"cifarlab {stage} --help"] = __import__(f"cifarlab.{stage}", fromlist=["_"]).__doc__
    for path in SCRIPTS:
        texts[f"python {path} --help"] = script(path).__doc__
    for where, text in texts.items():
        for line in (text or "").splitlines():
            m = re.match(
                r"\s{4}((?:dvc|cifarlab|python -m cifarlab|python (?:tools|benchmarks)/\w+\.py)\S* .*?)(?:\s{2,}.*)?$",
                line,
            )
            if m:
                found += [(where, c) for c in _commands_in_line(m.group(1))]
    return found


def all_commands() -> list[tuple[str, str]]:
    seen, out = set(), []
    for where, cmd in readme_commands() + params_commands() + help_commands():
        if cmd not in seen:
            seen.add(cmd)
            out.append((where, cmd))
    return out


COMMANDS = all_commands()


def argv_of(cmd: str) -> list[str]:
    """The argument vector a shell would pass (comments dropped, `$PWD` expanded)."""
    cmd = re.sub(r"\s\[[^\]]*\]", "", cmd)  # an optional part of a usage line: [--seed K]
    return shlex.split(cmd.replace("$PWD", str(ROOT)).replace('"$(id -u):$(id -g)"', "1000:1000"), comments=True)


def expected_to_fail(cmd: str) -> bool:
    return "(fails)" in cmd


def parse_dvc(argv: list[str]) -> None:
    from dvc.cli import DvcParserError, parse_args

    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        try:
            parse_args(argv)
        except (DvcParserError, SystemExit):
            raise AssertionError(f"dvc refuses {argv}: {err.getvalue().strip().splitlines()[-1:]}") from None


def parse_cifarlab(argv: list[str]) -> None:
    from cifarlab.tooling import cli

    if not argv:  # "cifarlab ..." in prose: the command in general
        return
    sub = argv[0]
    assert sub in ("runs", "estimate", "set", *cli.TOOLS, *cli.STAGES), f"cifarlab has no subcommand {sub!r}"
    if sub in cli.STAGES and sub not in ("fetch", "preprocess", "report", "experiment"):
        assert "--run" in argv, f"stage {sub} needs --run NAME: {argv}"
    if sub == "repro":  # dvc repro's targets, on a Dask cluster
        args = cli.repro_parser().parse_args(argv[1:])  # argparse exits (SystemExit) on what it refuses
        unknown = [t for t in args.targets if not PLACEHOLDER.fullmatch(t) and t not in stage_names()]
        assert not unknown, f"cifarlab repro: no stage {unknown[0]!r}"


def check_parses(argv: list[str]) -> None:
    """The fast check: the command's own parser accepts it (placeholders stand for any value)."""
    argv = ["NAME" if PLACEHOLDER.fullmatch(a) else a for a in argv if a not in ("...", "[--seed", "K]")]
    head = argv[0]
    if head == "dvc":
        parse_dvc(argv[1:])
    elif head == "cifarlab":
        parse_cifarlab(argv[1:])
    elif head in ("python", "python3") and argv[1] in SCRIPTS:
        script(argv[1]).parser().parse_args(argv[2:])  # argparse exits (SystemExit) on what it refuses
    elif head in ("python", "python3") and argv[1:3] == ["-m", "cifarlab"]:
        if len(argv) > 3:
            parse_cifarlab(argv[3:])
    elif head in ("python", "python3") and argv[1:2] == ["-m"] and argv[2].startswith("cifarlab."):
        if argv[2] == "cifarlab.core.install":  # takes no arguments; run below
            assert argv[3:] == [], argv
        else:
            parse_cifarlab([argv[2].removeprefix("cifarlab."), *argv[3:]])
    elif head == "docker":
        assert argv[1] in ("build", "run"), argv
        if argv[1] == "run":
            i = argv.index("cifarlab")  # the image; what follows runs inside it
            if len(argv) > i + 1:
                check_parses(argv[i + 1 :])
        else:
            assert "-t" in argv and "cifarlab" in argv, argv
    elif head == "dask":  # Dask's own CLI (click): parse without starting anything
        if argv[1] == "cuda":  # dask-cuda's `dask cuda worker` (not installed here)
            assert argv[2] == "worker" and argv[3].startswith("tcp://"), argv
        else:
            import importlib

            cmd = importlib.import_module(f"distributed.cli.dask_{argv[1]}").main
            cmd.make_context(f"dask {argv[1]}", argv[2:])
    elif head == "git":
        assert argv[1] in ("commit", "add", "push", "clone", "checkout", "stash"), argv
    elif head == "pytest":
        for marker in (argv[argv.index("-m") + 1],) if "-m" in argv else ():
            assert marker in ("", "slow", "gpu", "heavy", "not slow"), marker
    else:
        assert head in ("pip", ".", "python3", "python"), argv


@pytest.mark.parametrize("where, cmd", COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_parses(where, cmd):
    check_parses(argv_of(cmd))


def dvc_argv(argv: list[str]) -> list[str] | None:
    """The dvc part of a command line (inside `docker run ... cifarlab dvc ...` too)."""
    if argv[0] == "docker" and "dvc" in argv:
        return argv[argv.index("dvc") :]
    return argv if argv[0] == "dvc" else None


@functools.cache
def stage_names(assignments: tuple[str, ...] = ()) -> list[str]:
    """`dvc stage list` of the project, or of a copy with `cifarlab set` assignments applied."""
    if not assignments:
        return pristine_stage_names()
    import tempfile

    from cifarlab.tooling.cli import set_params

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "dvc.yaml", Path(tmp) / "dvc.yaml")
        shutil.copy(SHIPPED_PARAMS, Path(tmp) / "params.yaml")
        set_params(Path(tmp) / "params.yaml", list(assignments))
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp, check=True)
        return workspace.stage_names(Path(tmp))


REPRO = [
    (w, c)
    for w, c in COMMANDS
    if (dvc_argv(argv_of(c)) or [None, None, None])[1:3] in (["exp", "run"], ["repro"], ["repro", *argv_of(c)[2:3]])
]


def overrides_and_targets(argv: list[str]) -> tuple[list[str], list[str], bool]:
    from dvc.cli import parse_args

    args = parse_args(argv[1:])
    return (
        list(getattr(args, "set_param", None) or []),
        list(getattr(args, "targets", None) or []),
        bool(getattr(args, "glob", False)),
    )


# a command after `cifarlab set ... &&` needs a `dvc stage list` of its own (a copy with the sets
# applied): seconds of DVC each, so those are slow
@pytest.mark.parametrize(
    "where, cmd",
    [pytest.param(w, c, marks=pytest.mark.slow if CHAINED_SETS.get(c) else ()) for w, c in REPRO],
    ids=[c for _, c in REPRO],
)
def test_documented_exp_run_and_repro_overrides_and_targets_hold(where, cmd, tmp_path):
    """What `dvc exp run -S ...` does first (DVC's own apply_overrides on params.yaml), then the
    validation every stage does, then the targets against the stages DVC expands dvc.yaml into."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides, get_hydra_sweeps

    from cifarlab.core.params import load_params

    overrides, targets, glob = overrides_and_targets(dvc_argv(argv_of(cmd)))
    concrete = [o for o in overrides if not PLACEHOLDER.search(o)]
    # `-S model=lenet5,resnet9` is a sweep (one queued experiment per value): check each
    for i, sweep in enumerate(get_hydra_sweeps(to_path_overrides(concrete)) if concrete else [{}]):
        params = tmp_path / f"params-{i}.yaml"
        shutil.copy(SHIPPED_PARAMS, params)
        for path, items in sweep.items():
            assert path == "params.yaml", (cmd, path)
            apply_overrides(str(params), items)  # raises as `dvc exp run` would (a key not in struct)
        load_params(params)
    names = stage_names(tuple(CHAINED_SETS.get(cmd, ())))
    for t in (t for t in targets if not PLACEHOLDER.fullmatch(t)):
        if glob:
            import fnmatch

            assert fnmatch.filter(names, t), f"{where}: `{cmd}`: --glob {t!r} matches no stage"
        else:
            assert t in names, f"{where}: `{cmd}`: no stage {t!r}"


def test_the_collection_is_not_empty_and_covers_each_source():
    sources = {w for w, _ in COMMANDS}
    assert {"README.md", "params.yaml", "cifarlab --help"} <= sources
    assert "docs/experiments.md" in sources  # the pages under docs/ are read too
    assert any(c.startswith("dvc exp run -S '++runs.") for _, c in COMMANDS)
    assert len(COMMANDS) > 40


# --------------------------------------------------------------------------- running them


RUNNABLE = (
    "dvc exp show",
    "dvc metrics diff",
    "dvc params diff",
    "dvc plots diff",
    "dvc dag",
    "dvc stage list",
    "cifarlab runs",
    "cifarlab set",
    "python -m cifarlab.core.install",
)


def runnable(cmd: str) -> bool:
    if len(argv_of(cmd)) < 3 and cmd.startswith("cifarlab set"):
        return False  # `cifarlab set` named in prose, without assignments
    return (cmd.startswith(RUNNABLE) or cmd == "python -m cifarlab") and not PLACEHOLDER.search(cmd.partition("#")[0])


def as_run(argv: list[str], tmp: Path) -> list[str]:
    """The command, with `plots diff -o` writing into the test's own folder."""
    if argv[:3] == ["dvc", "plots", "diff"] and "-o" in argv:
        i = argv.index("-o")
        return [*argv[: i + 1], str(tmp / "plots"), *argv[i + 2 :]]
    return argv


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_archive):
    """A throwaway git repository holding the project's tracked files, on branch main, with the
    tiny archive fetched and prepared."""
    repo = tmp_path_factory.mktemp("documented") / "repo"
    repo.mkdir(parents=True)
    project_copy(repo)  # this checkout's code, the shipped params.yaml and reports/
    env = project_env(repo)
    archive, md5 = tiny_archive
    for c in (
        ["git", "init", "-q", "-b", "main"],
        [sys.executable, "-m", "cifarlab", "set", f"data.url={archive}", f"data.md5={md5}"],
        ["dvc", "repro", "preprocess"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "base"],
    ):
        r = subprocess.run(c, cwd=repo, env=env, capture_output=True, text=True)
        assert r.returncode == 0, (c, r.stdout[-2000:], r.stderr[-2000:])
    return repo, env


@pytest.mark.slow
@pytest.mark.parametrize(
    "where, cmd", [(w, c) for w, c in COMMANDS if runnable(c)], ids=[c for w, c in COMMANDS if runnable(c)]
)
def test_documented_command_runs(project, where, cmd, tmp_path):
    repo, env = project
    argv = as_run(argv_of(cmd), tmp_path)
    r = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    # undo what the command changed (cifarlab set, dvc exp run's params): the next one starts clean
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo, env=env, check=True)
    ok = r.returncode == 0
    assert ok != expected_to_fail(cmd), (
        f"{where}: `{cmd}` (run as {argv}) exited {r.returncode}\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    )
