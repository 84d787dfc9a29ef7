"""params.yaml validation: the shipped file is valid; each kind of mistake is one clear line.

The run table (`runs:`) is validated entry by entry: each run is its model's section with the
run's overrides applied, checked as one section, and an error in an override names the run's
entry ('runs.<name>.<key>'), the place to fix it.
"""

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_bad_inputs import (
    ALEX_RUN,
    BAD_PARAMS,
    BAD_RATIOS,
    BAD_RUN_NAMES,
    DELETE,
    GRID_RUN,
    RAW,
    UNHASHABLE_EDITS,
    raw,
)
from pydantic import ValidationError
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import ParamsError
from cifarlab.core.params import TOP_KEYS, load_params, validate
from cifarlab.core.runs import resolve, stage_args
from cifarlab.models import list_models, model_info

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(d, check_models: bool = True) -> str:
    with pytest.raises(ParamsError) as e:
        validate(d, check_models)
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------- the shipped file


def test_shipped_params_are_valid_and_cover_every_model():
    p = load_params(SHIPPED_PARAMS)
    assert set(p.recipes) == set(list_models())  # one recipe section per registered model
    assert {r.model for r in p.runs.values()} == set(list_models())  # and every model is trained
    assert p.model in p.runs
    alternatives = (
        {r for alts in p.open_choices.values() for r, _ in alts}
        - set(p.open_choices)
        - {"resnet18-relu-2_1_1-crop_flip"}
    )
    # reports 000-002, report 003's 2x2, report 004's grid; then the open choices' own runs
    assert len(p.runs) == 7 + 4 + 36 + len(alternatives) and len(alternatives) == 18
    # recipe values the reports published
    assert p.recipes["resnet18"].recipe.lr_ratio == (2.0, 1.0, 1.0)
    assert p["resnet9"].recipe.schedule == "onecycle" and p["resnet9"].recipe.epochs == 20
    assert p["custom_resnet"].recipe.early_stopping_patience == 15
    assert dict(p.recipes["alexnet_transfer"].arch)["skip"] is False
    # a run without overrides is its model's section as written
    assert p["lenet5"].overrides == {} and (p["lenet5"].recipe, p["lenet5"].arch) == (
        p.recipes["lenet5"].recipe,
        p.recipes["lenet5"].arch,
    )
    assert p["lenet5"].model == "lenet5" and p["lenet5"].name == "lenet5"


def test_shipped_alexnet_runs_are_skip_x_epochs():
    p = load_params(SHIPPED_PARAMS)
    for skip, (tag, epochs) in itertools.product((False, True), (("low", 10), ("high", 100))):
        run = p[f"alexnet_transfer-{'skip' if skip else 'noskip'}-{tag}"]
        assert run.model == "alexnet_transfer"
        assert dict(run.overrides) == {"skip": skip, "epochs": epochs}
        assert run.arch["skip"] is skip and run.recipe.epochs == epochs
        assert run.recipe.lr == p.recipes["alexnet_transfer"].recipe.lr  # the rest: the section's
    assert set(p.pca) == {n for n, r in p.runs.items() if r.model == "alexnet_transfer"}


def test_shipped_resnet18_runs_are_the_36_cell_grid():
    p = load_params(SHIPPED_PARAMS)
    section = p.recipes["resnet18"].recipe
    cells = list(
        itertools.product(
            ("sigmoid", "tanh", "relu", "leaky_relu"),
            ("2_1_1", "5_3_2", "5_4_1"),
            ("none", "crop_flip_blur_color", "crop_flip"),
        )
    )
    assert {n for n, r in p.runs.items() if r.model == "resnet18"} == {f"resnet18-{a}-{r}-{g}" for a, r, g in cells}
    for act, ratio, aug in cells:
        run = p[f"resnet18-{act}-{ratio}-{aug}"]
        assert dict(run.arch) == {"activation": act}
        assert run.recipe.lr_ratio == tuple(float(x) for x in ratio.split("_"))
        assert run.recipe.augment == aug
        # what the run does not override is the resnet18 section's
        assert run.recipe.model_copy(update={"lr_ratio": section.lr_ratio, "augment": section.augment}) == section


# ---------------------------------------------------------------------------- one-line errors


@pytest.mark.parametrize("edits, expected", BAD_PARAMS)
def test_bad_params_give_one_line_naming_the_key(edits, expected):
    assert expected in one_line_error(raw(edits))


@pytest.mark.parametrize("empty", ["{}", ""], ids=["empty-mapping", "entries-commented-out"])
def test_an_empty_run_table_names_a_command_that_adds_a_run(empty, tmp_path):
    """`runs: {}` (or `runs:` with every entry commented out): the line says the table is empty,
    and the `cifarlab set` it names makes the file valid."""
    from cifarlab.tooling.cli import set_params

    shipped = (SHIPPED_PARAMS).read_text()
    path = tmp_path / "params.yaml"
    path.write_text(re.sub(r"\nruns:\n(?:(?:[ #].*)?\n)*", f"\nruns: {empty}\n", shipped, count=1))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    msg = str(e.value)
    assert msg.startswith(f"bad value for 'runs': {'{}' if empty else 'None'} (the run table is empty"), msg
    command = shlex.split(msg.partition(", e.g. ")[2])
    assert command[:2] == ["cifarlab", "set"], msg
    set_params(path, command[2:])
    assert list(load_params(path).runs) == ["lenet5"]


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ParamsError, match=r"allowed keys here: .*lr.*activation"):
        validate(raw(resnet18__lrr=1))
    with pytest.raises(ParamsError, match=r"^unknown param 'runs\.lenet5\.depth'; allowed keys here: .*lr.*activation"):
        validate(raw({"runs.lenet5.depth": 3}))
    msg = one_line_error(raw(colour=1))
    assert all(k in msg for k in TOP_KEYS) and "resnet18" in msg


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_bad_run_names(name):
    d = raw()
    d["runs"][name] = {"model": "lenet5"}
    assert f"bad run name {name!r} in 'runs'" in one_line_error(d)


@pytest.mark.parametrize("name", ["a", "lenet5-sgd_lr1e-2", "Run_2-b", "9lives"])
def test_good_run_names(name):
    d = raw()
    d["runs"][name] = {"model": "lenet5"}
    assert validate(d)[name].model == "lenet5"


def test_missing_section_for_a_run_model():
    d = raw()
    del d["lenet5"]
    assert "missing param section 'lenet5' (the recipe run 'lenet5' trains)" in one_line_error(d)
    # a model no run trains needs no section
    d = raw({"dnn": DELETE, "runs.dnn": DELETE, "runs.dnn-no_batchnorm": DELETE, "runs.dnn-hidden_512_256_128": DELETE})
    assert "dnn" not in validate(d).recipes and "dnn" not in validate(d).runs


def test_pca_runs_need_an_embedding_model():
    assert [n for n in RAW["runs"] if model_info(RAW["runs"][n]["model"]).embedding] == list(validate(raw()).pca)
    d = raw({"runs.my-alex": {"model": "alexnet_transfer", "skip": True}, "pca": ["my-alex"]})
    assert validate(d).pca == ("my-alex",)
    assert validate(raw(pca=[])).pca == ()
    for run in ("lenet5", GRID_RUN, "resnet9"):
        assert "has no feature embedding" in one_line_error(raw(pca=[run]))


def test_model_is_a_run_name():
    p = validate(raw(model=GRID_RUN))
    assert p.model == GRID_RUN and p[p.model].model == "resnet18"
    d = raw({"runs.my-run": {"model": "lenet5", "lr": 0.01}, "model": "my-run"})
    assert validate(d).model == "my-run"


# ---------------------------------------------------------------------------- runs = section + overrides


def test_a_run_is_its_model_section_with_the_overrides_applied():
    d = raw({"runs.my-run": {"model": "resnet18", "activation": "tanh", "lr": 0.05, "lr_ratio": "5:3:2"}})
    p = validate(d)
    run = p["my-run"]
    assert run.name == "my-run" and run.model == "resnet18"
    assert dict(run.overrides) == {"activation": "tanh", "lr": 0.05, "lr_ratio": "5:3:2"}  # as written
    assert dict(run.arch) == {"activation": "tanh"}
    assert run.recipe.lr == 0.05 and run.recipe.lr_ratio == (5.0, 3.0, 2.0)
    section = p.recipes["resnet18"].recipe
    assert run.recipe.momentum == section.momentum and run.recipe.epochs == section.epochs
    assert section.lr == 0.1 and dict(p.recipes["resnet18"].arch) == {"activation": "relu"}  # untouched


def test_a_section_change_reaches_every_run_that_does_not_override_it():
    p = validate(raw({"resnet18.lr": 0.05, f"runs.{GRID_RUN}.lr": 0.2}))
    lrs = {n: r.recipe.lr for n, r in p.runs.items() if r.model == "resnet18"}
    assert lrs.pop(GRID_RUN) == 0.2
    assert set(lrs.values()) == {0.05} and len(lrs) == 35


def test_a_section_value_a_run_overrides_badly_is_still_checked_in_the_run():
    # the section is fine; only the merged run is not
    d = raw({"runs.my-run": {"model": "custom_resnet", "step_size": 0}})
    assert "bad value for 'runs.my-run.step_size': 0" in one_line_error(d)


def test_a_run_override_that_breaks_a_section_rule_names_the_run():
    # a rule over several keys (multistep needs lr_ratio): the run's entry is the place to fix
    msg = one_line_error(raw({f"runs.{GRID_RUN}.lr_ratio": None}))
    assert "schedule 'multistep' needs lr_ratio" in msg
    assert f"runs.{GRID_RUN}" in msg, msg


@pytest.mark.parametrize(
    "ratio, expected",
    [
        ("2_1_1", (2.0, 1.0, 1.0)),
        ("5:3:2", (5.0, 3.0, 2.0)),
        ("5_4_1", (5.0, 4.0, 1.0)),
        ([5, 3, 2], (5.0, 3.0, 2.0)),
        ("0.5:0.5", (0.5, 0.5)),
    ],
)
def test_ratio_forms(ratio, expected):
    assert validate(raw(resnet18__lr_ratio=ratio)).recipes["resnet18"].recipe.lr_ratio == expected
    assert validate(raw({f"runs.{GRID_RUN}.lr_ratio": ratio}))[GRID_RUN].recipe.lr_ratio == expected


@pytest.mark.parametrize("ratio", BAD_RATIOS)
def test_bad_ratios(ratio):
    assert f"bad value for 'runs.{GRID_RUN}.lr_ratio" in one_line_error(raw({f"runs.{GRID_RUN}.lr_ratio": ratio}))


def test_unquoted_ratio_in_params_file_is_read_as_yaml_1_2(tmp_path):
    # `dvc exp run -S` rewrites params.yaml without the quotes; params are read as DVC reads them
    # (YAML 1.2), so an unquoted 5:3:2 is the ratio, not YAML 1.1's base-60 number 5*3600 + 3*60 + 2
    d = raw({f"runs.{GRID_RUN}.lr_ratio": "@RATIO@", f"runs.{ALEX_RUN}.skip": "@SKIP@"})
    text = yaml.safe_dump(d).replace("'@RATIO@'", "5:3:2").replace("'@SKIP@'", "no")
    assert "lr_ratio: 5:3:2" in text and yaml.safe_load(text)["runs"][GRID_RUN]["lr_ratio"] == 18182  # PyYAML
    (tmp_path / "params.yaml").write_text(text.replace("skip: no", "skip: true"))
    assert load_params(tmp_path / "params.yaml")[GRID_RUN].recipe.lr_ratio == (5.0, 3.0, 2.0)
    # and YAML 1.2's `no` is a string, which a bool option refuses rather than guesses at
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=rf"^bad value for 'runs\.{ALEX_RUN}\.skip': 'no'"):
        load_params(tmp_path / "params.yaml")
    # a base-60 integer handed over by a YAML 1.1 reader is refused, not taken as a ratio
    assert f"bad value for 'runs.{GRID_RUN}.lr_ratio': 18182" in one_line_error(
        raw({f"runs.{GRID_RUN}.lr_ratio": 18182})
    )


def test_yaml_style_exponent_string_is_a_number():
    # A YAML 1.1 reader (PyYAML) gives `1e-4` (no dot) as a string; it is still a valid weight decay.
    p = validate(raw({"resnet9.weight_decay": "1e-4", f"runs.{GRID_RUN}.weight_decay": "5e-4"}))
    assert p["resnet9"].recipe.weight_decay == pytest.approx(1e-4)
    assert p[GRID_RUN].recipe.weight_decay == pytest.approx(5e-4)


def test_params_are_frozen():
    p = validate(raw())
    with pytest.raises(ValidationError, match="frozen"):
        p["resnet9"].recipe.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.runs["new"] = p["resnet9"]  # type: ignore[index]
    with pytest.raises(TypeError):
        p[GRID_RUN].arch["activation"] = "tanh"  # type: ignore[index]
    with pytest.raises(TypeError):
        p[GRID_RUN].overrides["lr"] = 1.0  # type: ignore[index]


def test_epoch_cap():
    p = validate(raw(train__max_epochs=3))
    assert p[GRID_RUN].epochs(p.train.max_epochs) == 3
    assert p["lenet5"].epochs(None) == 10
    assert p[ALEX_RUN].epochs(None) == 10  # the run's override, not the section's 100
    assert p["alexnet_transfer-skip-high"].epochs(50) == 50


def test_unknown_run_lookup_names_the_runs():
    p = validate(raw())
    with pytest.raises(ParamsError, match=r"^unknown run 'resnet18'; known runs .*cifarlab runs.*: lenet5, resnet9, "):
        p["resnet18"]  # a model, not a run


def test_resolve_run_and_seed():
    p = validate(raw(seeds=[1, 2]))
    spec = resolve(p, GRID_RUN)
    assert (spec.name, spec.model, spec.seed, spec.out) == (GRID_RUN, "resnet18", p.seed, GRID_RUN)
    assert (spec.recipe, spec.arch) == (p[GRID_RUN].recipe, p[GRID_RUN].arch) and spec.overrides == p[
        GRID_RUN
    ].overrides
    assert resolve(p, GRID_RUN, 1).out == f"{GRID_RUN}-s1"
    assert resolve(p, GRID_RUN, p.seed).out == GRID_RUN
    with pytest.raises(ParamsError, match=r"bad --seed -1"):
        resolve(p, GRID_RUN, -1)
    with pytest.raises(ParamsError, match="unknown run 'vgg16'"):
        resolve(p, "vgg16")


def test_stage_args(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw()))
    monkeypatch.chdir(tmp_path)
    _, spec = stage_args("prog", "doc", ["--run", ALEX_RUN, "--seed", "7"])
    assert spec.name == ALEX_RUN and spec.seed == 7 and spec.out == f"{ALEX_RUN}-s7" and spec.arch["skip"]
    with pytest.raises(ParamsError, match="unknown run 'nope'"):
        stage_args("prog", "doc", ["--run", "nope"])
    for argv in (
        [],
        ["--run", "lenet5", "--set", "lr=0.1"],
        ["--grid-cell", "relu-2_1_1-none"],
        ["--alexnet-run", "skip-low"],
    ):
        with pytest.raises(SystemExit) as e:
            stage_args("prog", "doc", argv)
        assert e.value.code == 2


@pytest.mark.parametrize("seeds, ok", [([], True), ([1, 2], True), ([23], False), ([1, 1], False), (["a"], False)])
def test_extra_seeds(seeds, ok):
    if ok:
        assert validate(raw(seeds=seeds)).seeds == tuple(seeds)
    else:
        with pytest.raises(ParamsError, match="bad value for 'seeds'"):
            validate(raw(seeds=seeds))


# ---------------------------------------------------------------------------- hostile values


@pytest.mark.parametrize("edits", UNHASHABLE_EDITS)
def test_unhashable_model_or_pca_entry_is_a_params_error(edits):
    # `-S 'model=[]'` or a pca list of lists must be a one-line error, not a TypeError trace
    msg = one_line_error(raw(edits))
    assert "'model'" in msg or "'pca[0]'" in msg


# ---------------------------------------------------------------------------- check_models=False (fetch)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_models_false_imports_no_torch():
    r = _python(
        "import sys; from cifarlab.core.params import load_params; load_params(check_models=False); "
        "assert 'torch' not in sys.modules",
        ROOT,
    )
    assert r.returncode == 0, r.stderr


def test_check_models_false_still_checks_data_train_and_recipes(tmp_path):
    for edits, expected in [
        ({"data.train_subset": 5}, "bad value for 'data.train_subset': 5"),
        ({"data.md5": "abc"}, "bad value for 'data.md5': 'abc'"),
        ({"train.max_epochs": 0}, "bad value for 'train.max_epochs': 0"),
        ({"train.eval_batch_size": 0}, "bad value for 'train.eval_batch_size': 0"),
        ({"data.urll": "x"}, "unknown param 'data.urll'"),
        ({"resnet9.lr": "fast"}, "bad value for 'resnet9.lr': 'fast'"),
        ({"runs.lenet5.lr": "fast"}, "bad value for 'runs.lenet5.lr': 'fast'"),
        ({"runs.lenet5.model": "vgg16"}, "bad value for 'runs.lenet5.model': 'vgg16' is not a model"),
        ({"model": "resnet18"}, "bad value for 'model': 'resnet18' is not a run"),
        ({"pca": ["nope"]}, "bad value for 'pca[0]': 'nope' is not a run"),
        ({"runs.bad name": {"model": "lenet5"}}, "bad run name 'bad name'"),
    ]:
        assert expected in one_line_error(raw(edits), check_models=False), edits
    # what needs the registry is left to the stages after fetch
    assert validate(raw({"runs.lenet5.activation": "gelu"}), check_models=False)["lenet5"].arch["activation"] == "gelu"
    assert validate(raw(pca=["lenet5"]), check_models=False).pca == ("lenet5",)
    # and from disk, in a process that never imports torch
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw({"data.train_subset": 5})))
    r = _python(
        "import sys\nfrom cifarlab.core.errors import ParamsError\nfrom cifarlab.core.params import load_params\n"
        "try:\n    load_params(check_models=False)\nexcept ParamsError as e:\n    print(e)\n"
        "assert 'torch' not in sys.modules",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("bad value for 'data.train_subset': 5")


# ---------------------------------------------------------------------------- every stage


PER_RUN = {"train", "evaluate", "plot", "pca"}
STAGES = ["fetch", "preprocess", "train", "evaluate", "plot", "pca", "experiment", "report"]


LR_FAST = "bad value for '{}.lr': 'fast' (Input should be a valid number, unable to parse string as a number)"


def _run_stage(tmp_path: Path, stage: str, edits: dict) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw(edits)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--run", "lenet5"] if stage in PER_RUN else []
    return subprocess.run(
        [sys.executable, "-m", f"cifarlab.{stage}", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _refused_in_process(tmp_path: Path, stage: str, edits: dict, monkeypatch, capsys) -> str:
    """Run a stage's main through run_main on params with `edits`; it must exit 2. Its stderr."""
    import importlib

    from cifarlab.core.stage_main import run_main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw(edits)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_main(importlib.import_module(f"cifarlab.{stage}").main, ["--run", "lenet5"] if stage in PER_RUN else [])
    assert e.value.code == 2
    return capsys.readouterr().err.strip()


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_refuses_bad_params_before_work(tmp_path, stage, monkeypatch, capsys):
    """In-process through the same shell as `python -m cifarlab.<stage>` (run_main): exit 2, one
    line on stderr, nothing written. (One real subprocess below covers the `python -m` path.)"""
    assert _refused_in_process(
        tmp_path, stage, {"resnet9.lr": "fast"}, monkeypatch, capsys
    ) == "error: " + LR_FAST.format("resnet9")
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]  # nothing written


def test_python_dash_m_stage_refuses_bad_params_with_exit_2(tmp_path):
    r = _run_stage(tmp_path, "train", {"resnet9.lr": "fast"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: " + LR_FAST.format("resnet9")
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


@pytest.mark.parametrize("stage", ["fetch", "train"])  # fetch: check_models=False; train: stage_args
def test_a_stage_names_the_run_entry_of_a_bad_override(tmp_path, stage, monkeypatch, capsys):
    assert _refused_in_process(
        tmp_path, stage, {"runs.lenet5.lr": "fast"}, monkeypatch, capsys
    ) == "error: " + LR_FAST.format("runs.lenet5")
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]


def test_stage_list_is_every_stage_module():
    from cifarlab.tooling.cli import STAGES as CLI_STAGES

    assert sorted(CLI_STAGES) == sorted(STAGES)
    assert all((ROOT / "src" / "cifarlab" / f"{s}.py").is_file() for s in STAGES)
