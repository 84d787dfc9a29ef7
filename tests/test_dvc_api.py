"""DVC's private Python API, as cifarlab uses it: every name cifarlab.dvc_internals declares
(CALLED, READ, CAN_HASH_MD5) is checked against the installed DVC, so an upgrade that removes a
function or attribute, or changes a signature or the run-cache rule cifarlab copies, fails here
with one line naming it, not in the middle of `cifarlab repro`. And no other module imports dvc.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
from pathlib import Path

import dvc
import pytest

from cifarlab import dvc_internals
from cifarlab.dvc_internals import CALLED, CAN_HASH_MD5, READ

SRC = Path(__file__).resolve().parents[1] / "src"
HOW = "update src/cifarlab/dvc_internals.py to the new DVC (and the dvc pin in pyproject.toml)"


def resolve(name: str):
    """`module:Qualified.name` -> the object."""
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def call_problems() -> list[str]:
    """One line per declared callable the installed DVC lacks or that no longer takes the
    arguments cifarlab passes (by position: those names, in that order; by name: those)."""
    problems = []
    for name, positional, keywords in CALLED:
        try:
            obj = resolve(name)
        except (ImportError, AttributeError) as err:
            problems.append(f"DVC {dvc.__version__} has no {name} ({err}): {HOW}")
            continue
        if positional is None:
            continue
        sig = inspect.signature(obj)
        params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][
            : len(positional)
        ]
        try:
            sig.bind(*positional, **dict.fromkeys(keywords))
            if tuple(p.name for p in params) != positional:
                raise TypeError(f"its first parameters are {tuple(p.name for p in params)}, not {positional}")
        except TypeError as err:
            passed = ", ".join([*positional, *(f"{k}=" for k in keywords)])
            problems.append(f"DVC {dvc.__version__}: {name}{sig} no longer takes ({passed}) ({err}): {HOW}")
    return problems


def test_every_dvc_callable_cifarlab_uses_is_there_with_the_arguments_it_passes():
    assert call_problems() == []


def test_a_removed_or_changed_dvc_function_is_named(monkeypatch):
    """The check is not vacuous: a DVC without plan_repro, or whose collect_stages lost `glob`."""
    import dvc.repo.reproduce as reproduce

    monkeypatch.delattr(reproduce, "plan_repro")
    monkeypatch.setattr(reproduce, "collect_stages", lambda repo, targets, recursive=False: [])
    problems = call_problems()
    assert len(problems) == 2, problems
    assert problems[0].startswith("DVC ") and "dvc.repo.reproduce:collect_stages" in problems[0]
    assert "glob=" in problems[0]
    assert "no dvc.repo.reproduce:plan_repro" in problems[1]


def test_the_run_cache_rule_cifarlab_copies_is_unchanged():
    """dvc_internals._restorable copies the rule of dvc.stage.cache._can_hash: a DVC whose rule
    reads otherwise must be looked at before cifarlab repro trusts its copy."""
    from dvc.stage import cache

    source = inspect.getsource(cache._can_hash)
    got = hashlib.md5(source.encode()).hexdigest()
    assert got == CAN_HASH_MD5, (
        f"DVC {dvc.__version__} changed dvc.stage.cache._can_hash (md5 {got}, not {CAN_HASH_MD5}): compare it "
        f"with _restorable in src/cifarlab/dvc_internals.py, then record the new md5 there:\n{source}"
    )


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    """A DVC project (no git) with one stage (a dep, an output) and a local remote."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("dvc_api") / "project"
    root.mkdir()
    Repo.init(str(root), no_scm=True).close()
    (root / "in.txt").write_text("in\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps:\n      - in.txt\n    outs:\n      - out.txt\n"
    )
    with (root / ".dvc" / "config").open("a") as f:
        f.write("['remote \"store\"']\n    url = ../store\n")
    return root


def test_every_dvc_attribute_cifarlab_reads_is_there(tiny_repo):
    from dvc.repo import Repo

    with Repo(str(tiny_repo)) as repo:
        (stage,) = repo.index.stages
        objects = {
            "repo": repo,
            "repo.index": repo.index,
            "repo.cache": repo.cache,
            "repo.cache.legacy": repo.cache.legacy,
            "stage": stage,
            "dep": stage.deps[0],
            "out": stage.outs[0],
            "remote": repo.cloud.get_remote("store"),
        }
        assert set(objects) == set(READ), "a kind of object in dvc_internals.READ this test does not build"
        missing = [
            f"{kind}.{attr} ({type(objects[kind]).__name__})"
            for kind, attrs in READ.items()
            for attr in attrs
            if not hasattr(objects[kind], attr)
        ]
    assert not missing, f"DVC {dvc.__version__} objects lack {', '.join(missing)}: {HOW}"


def test_dvc_internals_work_on_a_real_project(tiny_repo, monkeypatch):
    """Each function once, on the installed DVC: the plan, the repository's facts."""
    monkeypatch.chdir(tiny_repo)  # DVC resolves targets (dvc.yaml) against the working directory
    with dvc_internals.repro_order(tiny_repo) as order:
        assert [(s.name, s.upstream, s.above, s.cmd, s.restorable) for s in order] == [
            ("copy", (), frozenset(), "cp in.txt out.txt", True)
        ]
        assert order[0].changed()  # never run: no dvc.lock entry
    assert dvc_internals.output_paths(tiny_repo) == {"out.txt"}
    assert Path(dvc_internals.cache_dir(tiny_repo)) == (tiny_repo / ".dvc" / "cache").resolve()
    assert dvc_internals.remote_names(tiny_repo) == ["store"]
    # a relative url is relative to .dvc/config's folder
    assert Path(dvc_internals.remote_url(tiny_repo, "store")) == (tiny_repo / "store").resolve()
    assert dvc_internals.remote_url(tiny_repo, "nope") is None
    assert dvc_internals.parse_dvc_args(["repro", "--glob", "train@*"]).targets == ["train@*"]


def dvc_importers() -> list[str]:
    """src/ files other than dvc_internals.py that import dvc (anywhere in the file)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(n == "dvc" or n.startswith("dvc.") for n in names):
                found.append(path.relative_to(SRC).as_posix())
                break
    return [f for f in found if f != "cifarlab/dvc_internals.py"]


def test_only_dvc_internals_imports_dvc():
    assert dvc_importers() == [], "DVC's Python API is used only through src/cifarlab/dvc_internals.py"
