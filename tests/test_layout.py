"""The tests' own layout: what several test files share lives in helper modules (workspace.py,
pack_tools.py, helpers_*.py, conftest.py), never in a test module another one imports. Importing a
test module runs its collection-time code twice and hands its tests to the importer's namespace,
and pytest-xdist's --dist loadfile then no longer keeps a file's work on one worker."""
from __future__ import annotations

import ast
from pathlib import Path

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
