"""dvc.yaml against the code: every stage depends on every file its module imports, the run
table gives one train, evaluate and plot stage per run, and no run is trained twice.

The imports are read from the source (ast), transitively within the cifarlab package, function-
level imports included: a stage's outputs may depend on any code it can reach. A package
`__init__.py` counts when it holds code; an empty one cannot change what a stage writes.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "cifarlab"
STAGE_MODULES = ("fetch", "preprocess", "train", "evaluate", "plot", "pca", "experiment", "report")


def module_file(name: str) -> Path | None:
    """src/ file of module `name` (a dotted cifarlab name), or None outside the package."""
    base = SRC / name.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """cifarlab modules named by the import statements of one file (anywhere in it)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] == "cifarlab" and module_file(m) is not None}


def closure(start: str) -> set[Path]:
    """Every file `start` reaches through imports, with the __init__.py of each parent package
    (Python runs those first)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(imported_modules(module_file(name), name))
    return {module_file(m) for m in seen}


def code_files(start: str) -> set[str]:
    """Repository-relative paths a stage's deps must cover (empty __init__.py files left out)."""
    return {p.relative_to(ROOT).as_posix() for p in closure(start)
            if not (p.name == "__init__.py" and not p.read_text().strip())}


def stage_code_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("src/")]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stage definitions (foreach/matrix templates as written; anchors resolved)."""
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_module(stage: dict) -> str:
    body = stage.get("do", stage)
    cmd = body["cmd"]
    mod = cmd.split("python -m ", 1)[1].split()[0]
    assert mod.removeprefix("cifarlab.") in STAGE_MODULES, cmd
    return mod


def run_models() -> list[str]:
    return sorted({entry["model"] for entry in yaml.safe_load((ROOT / "params.yaml").read_text())["runs"].values()})


def missing_deps(stage: dict, model: str | None = None) -> list[str]:
    """Code files the stage reaches but does not depend on. A per-run stage (deps naming
    `${item.model}`) imports its run's model module at run time (the registry loads it on first
    use, which no import statement shows): its closure is added, for `model`."""
    body = stage.get("do", stage)
    need = code_files(stage_module(stage))
    deps = stage_code_deps(body)
    if model is not None:
        need |= code_files(f"cifarlab.models.{model}")
        deps = [d.replace("${item.model}", model) for d in deps]
    return sorted(f for f in need if not covered(f, deps))


def per_model(stage: dict) -> bool:
    return any("${item.model}" in d for d in stage_code_deps(stage.get("do", stage)))


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_every_stage_depends_on_the_code_it_imports(name):
    stage = dvc_stages()[name]
    for model in run_models() if per_model(stage) else [None]:
        assert missing_deps(stage, model) == [], f"dvc.yaml stage {name} ({model}) lacks deps on the code it imports"


def test_a_removed_dep_is_caught():
    """The check is not vacuous: drop one dep of train and it names the file."""
    stage = dvc_stages()["train"]
    deps = stage["do"]["deps"]
    stage["do"]["deps"] = [d for d in deps if d != "src/cifarlab/engine/schedules.py"]
    assert missing_deps(stage, "lenet5") == ["src/cifarlab/engine/schedules.py"]
    stage["do"]["deps"] = [d for d in deps if d != "src/cifarlab/models/${item.model}.py"]
    assert missing_deps(stage, "resnet18") == ["src/cifarlab/models/resnet18.py"]
    stage["do"]["deps"] = [d for d in deps if d != "src/cifarlab/models/_blocks.py"]
    assert missing_deps(stage, "resnet18") == ["src/cifarlab/models/_blocks.py"]


# Each per-run stage entry point, started on one run in a directory holding params.yaml and no
# data: it validates params and stops at its missing input; at exit it lists the modules loaded.
LIST_MODULES = ("import atexit, runpy, sys; "
                "atexit.register(lambda: print('loaded:', *sorted(sys.modules), file=sys.stderr)); "
                "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("stage", ["train", "evaluate", "plot"])
@pytest.mark.parametrize("run,model", [("lenet5", "lenet5"), ("resnet18-relu-5_3_2-crop_flip", "resnet18")])
def test_a_run_stage_loads_no_other_model(tmp_path, stage, run, model):
    import os
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    r = subprocess.run([sys.executable, "-c", LIST_MODULES, f"cifarlab.{stage}", "--run", run], cwd=tmp_path,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and lines[-2].startswith("error:"), r.stderr[-2000:]  # stopped at its input
    models = {m.removeprefix("cifarlab.models.") for m in lines[-1].split()[1:] if m.startswith("cifarlab.models.")}
    assert models - {"_blocks"} == {model}, f"{stage} --run {run} loaded models {sorted(models)}"
