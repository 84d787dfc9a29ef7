"""The tests' own layout: what several test files share lives in helper modules (workspace.py,
pack_tools.py, helpers_*.py, conftest.py), never in a test module another one imports. Importing a
test module runs its collection-time code twice and hands its tests to the importer's namespace,
and pytest-xdist's --dist loadfile then no longer keeps a file's work on one worker."""

from __future__ import annotations

import ast
import re
import tokenize
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top level or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_file_under_tests_imports_a_test_module():
    test_modules = {p.stem for p in TESTS.glob("test_*.py")}
    offenders = {p.name: sorted(imported_modules(p) & test_modules) for p in sorted(TESTS.rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}, "move what they share into a helper module"


def test_the_check_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "test_x.py"
    f.write_text("import os\n\ndef test_a():\n    from test_cli import cifarlab\n    import test_params\n")
    assert imported_modules(f) == {"os", "test_cli", "test_params"}


ROOT = TESTS.parent
NOQA_DIRS = ("src", "tests", "benchmarks", "tools")
# Every suppression says why, on its line after the codes: noqa, a colon, CODE[, CODE...], " - ", words
NOQA = re.compile(r"#\s*noqa\b", re.IGNORECASE)
NOQA_WITH_REASON = re.compile(r"#\s*noqa: [A-Z]+[0-9]+(?:, ?[A-Z]+[0-9]+)* - \w+")


def noqa_without_reason(path: Path) -> list[str]:
    """'file:line: comment' for each `# noqa` in a comment of `path` that gives no reason (strings
    that merely mention noqa, like this checker's own test data, are not comments)."""
    bad = []
    with tokenize.open(path) as f:
        for tok in tokenize.generate_tokens(f.readline):
            if tok.type != tokenize.COMMENT:
                continue
            for m in NOQA.finditer(tok.string):
                if not NOQA_WITH_REASON.match(tok.string, m.start()):
                    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    bad.append(f"{shown}:{tok.start[0]}: {tok.string}")
    return bad


def test_every_noqa_says_why():
    files = sorted(p for d in NOQA_DIRS for p in (ROOT / d).rglob("*.py"))
    bad = [line for p in files for line in noqa_without_reason(p)]
    assert not bad, "write `# noqa: CODE - why` (or fix the code):\n" + "\n".join(bad)


def test_the_noqa_check_wants_a_reason_after_the_codes(tmp_path):
    f = tmp_path / "x.py"
    f.write_text(
        "import a  # noqa: F401 - re-exported\n"
        "import b  # noqa: F401, E402 - after sys.path is set\n"
        "s = '# noqa: E501'  # a string, not a comment\n"
        "import c  # noqa: F401\n"
        "import d  # noqa\n"
        "import e  # noqa: F401  (no dash)\n"
        "import f  # why  # NOQA: F401 -\n"
    )
    assert [line.split(":")[1] for line in noqa_without_reason(f)] == ["4", "5", "6", "7"]


def test_a_users_committed_settings_are_read_as_shipped(tmp_path, monkeypatch):
    """A branch whose last commit holds a user's settings (`data.url` at a local copy, extra seeds, a
    one-epoch smoke run) still gives the tests main's params.yaml, byte for byte: in `shipped` and
    in every project copy. The run table and the recipes stay as committed."""
    import subprocess

    import workspace

    from cifarlab.tooling.cli import set_params

    main_params = workspace.shipped("params.yaml").read_bytes()
    repo = tmp_path / "branch"
    (repo / "reports").mkdir(parents=True)
    (repo / "reports/README.md").write_text("the report\n")
    (repo / "params.yaml").write_bytes(main_params)
    set_params(
        repo / "params.yaml",
        [
            "data.url=/elsewhere/cifar-10-python.tar.gz",
            "data.md5=696ae152156718a88a11d447b931571e",
            "data.train_subset=250",
            "seeds=[1, 2]",
            "train.max_epochs=1",
            "train.num_threads=1",
            "lenet5.lr=0.5",
        ],
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "my settings"], cwd=repo, check=True)
    monkeypatch.setattr(workspace, "ROOT", repo)
    monkeypatch.setattr(workspace, "_SHIPPED", {})

    seen = workspace.shipped("params.yaml").read_text()
    workspace.project_copy(tmp_path / "copy")
    assert (tmp_path / "copy/params.yaml").read_text() == seen
    # the settings are main's; the recipe edit is the branch's project, kept
    settled, shipped = yaml.safe_load(seen), yaml.safe_load(main_params)
    assert settled["lenet5"]["lr"] == 0.5 and {**settled, "lenet5": shipped["lenet5"]} == shipped
    # comments and layout kept: only the recipe's line differs
    diff = [(a, b) for a, b in zip(main_params.decode().splitlines(), seen.splitlines(), strict=True) if a != b]
    assert [b.split("#")[0].split() for _, b in diff] == [["lr:", "0.5"]]
