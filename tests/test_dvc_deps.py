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
from workspace import SHIPPED_PARAMS, pristine_stage_names, stage_names

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
    return {
        p.relative_to(ROOT).as_posix()
        for p in closure(start)
        if not (p.name == "__init__.py" and not p.read_text().strip())
    }


def stage_code_deps(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("src/")]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def dvc_stages() -> dict[str, dict]:
    """dvc.yaml's stage definitions (foreach/matrix templates as written; anchors resolved)."""
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


# What a stage's command may run besides its module: writes to the terminal only (no output, so
# no dependency) and never fails the stage (tests/test_fetch.py).
TERMINAL_ONLY = ("cifarlab.tooling.notice",)


def stage_module(stage: dict) -> str:
    body = stage.get("do", stage)
    cmds = body["cmd"] if isinstance(body["cmd"], list) else [body["cmd"]]
    mods = [c.split("python -m ", 1)[1].split()[0] for c in cmds]
    (mod,) = [m for m in mods if m not in TERMINAL_ONLY]
    assert mod.removeprefix("cifarlab.") in STAGE_MODULES, cmds
    return mod


def run_models() -> list[str]:
    return sorted({entry["model"] for entry in yaml.safe_load((SHIPPED_PARAMS).read_text())["runs"].values()})


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


def pca_models() -> list[str]:
    d = yaml.safe_load((SHIPPED_PARAMS).read_text())
    return sorted({d["runs"][run]["model"] for run in d.get("pca") or []})


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_every_stage_depends_on_the_code_it_imports(name):
    stage = dvc_stages()[name]
    # a pca stage imports its run's model (the registry loads it): the models of the pca runs
    models = run_models() if per_model(stage) else pca_models() if name == "pca" else [None]
    for model in models:
        need = missing_deps(stage, model)
        if name == "pca":  # listed by name (no ${item.model} there): the model's own file must be a dep
            need += [f for f in code_files(f"cifarlab.models.{model}") if not covered(f, stage_code_deps(stage["do"]))]
        assert sorted(set(need)) == [], f"dvc.yaml stage {name} ({model}) lacks deps on the code it imports"


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
LIST_MODULES = (
    "import atexit, runpy, sys; "
    "atexit.register(lambda: print('loaded:', *sorted(sys.modules), file=sys.stderr)); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__')"
)


@pytest.mark.slow  # a stage module run in a subprocess each
@pytest.mark.parametrize("stage", ["train", "evaluate", "plot"])
@pytest.mark.parametrize("run,model", [("lenet5", "lenet5"), ("resnet18-relu-5_3_2-crop_flip", "resnet18")])
def test_a_run_stage_loads_no_other_model(tmp_path, stage, run, model):
    import os
    import shutil

    shutil.copy(SHIPPED_PARAMS, tmp_path / "params.yaml")
    r = subprocess.run(
        [sys.executable, "-c", LIST_MODULES, f"cifarlab.{stage}", "--run", run],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and lines[-2].startswith("error:"), r.stderr[-2000:]  # stopped at its input
    models = {m.removeprefix("cifarlab.models.") for m in lines[-1].split()[1:] if m.startswith("cifarlab.models.")}
    assert models - {"_blocks"} == {model}, f"{stage} --run {run} loaded models {sorted(models)}"


def test_stage_modules_never_import_each_other():
    stages = {f"cifarlab.{m}" for m in STAGE_MODULES}
    for m in stages:
        others = {n for n in imported_modules(module_file(m), m) if n in stages} - {m}
        assert not others, f"{m} imports stage module(s) {sorted(others)}: move the shared code into the library"
    # and the library never imports a stage
    for path in PKG.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        if name in stages or name == "cifarlab.__main__" or name.startswith("cifarlab.tooling"):
            continue
        assert not imported_modules(path, name) & stages, f"{name} imports a stage module"


def test_no_stage_reaches_the_tooling():
    """Estimate, notice, scale-out, packs and the command line are in cifarlab.tooling; no stage
    module reaches it through its imports, so editing the tooling re-runs no stage."""
    for m in STAGE_MODULES:
        tooling = sorted(f for f in code_files(f"cifarlab.{m}") if f.startswith("src/cifarlab/tooling/"))
        assert not tooling, f"stage {m} imports the tooling: {tooling}"
    # not vacuous: the tooling's own modules are found by the same closure
    assert "src/cifarlab/tooling/estimate.py" in code_files("cifarlab.tooling.notice")


def test_figures_are_not_imported_by_training_or_evaluation():
    """A figure edit must not re-run training: train and evaluate never reach cifarlab.figures."""
    for stage in ("cifarlab.train", "cifarlab.evaluate", "cifarlab.fetch", "cifarlab.preprocess"):
        assert not any("figures" in f for f in code_files(stage)), stage


@pytest.mark.slow  # DVC expands the whole graph
def test_one_train_evaluate_and_plot_stage_per_run_and_no_duplicate_runs():
    from cifarlab.core.params import load_params

    p = load_params(SHIPPED_PARAMS)
    names = pristine_stage_names()
    for kind in ("train", "evaluate", "plot"):
        assert sorted(n.split("@", 1)[1] for n in names if n.startswith(f"{kind}@")) == sorted(p.runs), kind
    assert sorted(n for n in names if n.startswith("pca@")) == sorted(f"pca@{r}" for r in p.pca)
    assert {n for n in names if "@" not in n} == {"fetch", "preprocess", "experiment", "report"}
    # no two runs train the same thing: (model, recipe, architecture) differ for every pair
    seen = {}
    for name, run in p.runs.items():
        key = json.dumps([run.model, run.recipe.model_dump(mode="json"), dict(run.arch)], sort_keys=True, default=str)
        assert key not in seen, f"runs {seen.get(key)} and {name} train the same recipe"
        seen[key] = name


@pytest.mark.slow  # DVC expands the whole graph
def test_extra_seeds_add_a_stage_family_per_seed(tmp_path):
    """seeds: [1] gives train_seeds@<run>-1 (and evaluate_, plot_) for every run."""
    import shutil

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(SHIPPED_PARAMS, tmp_path / "params.yaml")
    (tmp_path / ".dvc").mkdir()
    d = yaml.safe_load((tmp_path / "params.yaml").read_text())
    d["seeds"] = [1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    out = stage_names(tmp_path)
    for kind in ("train", "evaluate", "plot"):
        assert sorted(n for n in out if n.startswith(f"{kind}_seeds@")) == sorted(
            f"{kind}_seeds@{r}-1" for r in d["runs"]
        )
