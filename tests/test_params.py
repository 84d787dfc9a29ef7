"""params.yaml validation: the shipped file is valid; each kind of mistake is one clear line."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cifarlab.core.errors import ParamsError
from cifarlab.models import list_models
from cifarlab.core.params import load_params, validate

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def raw(**edits):
    """A copy of the shipped params with dotted-key edits applied (value None deletes... never)."""
    d = copy.deepcopy(RAW)
    for key, value in edits.items():
        *parents, last = key.split("__")
        node = d
        for part in parents:
            node = node[part]
        node[last] = value
    return d


def test_shipped_params_are_valid_and_cover_every_model():
    p = load_params(ROOT / "params.yaml")
    assert set(p.models) == set(list_models())
    assert p.model in p.models
    # recipe values the reports published
    assert p["resnet18"].recipe.lr_ratio == (2.0, 1.0, 1.0)
    assert p["resnet9"].recipe.schedule == "onecycle" and p["resnet9"].recipe.epochs == 20
    assert p["custom_resnet"].recipe.early_stopping_patience == 15
    assert dict(p["alexnet_transfer"].arch)["skip"] is False


@pytest.mark.parametrize(
    "edits, expected",
    [
        ({"colour": 1}, "unknown param 'colour'"),
        ({"data__urll": "x"}, "unknown param 'data.urll'"),
        ({"train__max_epoch": 1}, "unknown param 'train.max_epoch'"),
        ({"resnet9__lrr": 0.1}, "unknown param 'resnet9.lrr'"),
        ({"resnet9__lr": "fast"}, "bad value for 'resnet9.lr': 'fast'"),
        ({"resnet9__epochs": 0}, "bad value for 'resnet9.epochs': 0"),
        ({"lenet5__epochs": -3}, "bad value for 'lenet5.epochs': -3"),
        ({"lenet5__batch_size": 0}, "bad value for 'lenet5.batch_size': 0"),
        ({"lenet5__optimizer": "rmsprop"}, "bad value for 'lenet5.optimizer': 'rmsprop'"),
        ({"models": ["lenet5", "vgg16"]}, "bad value for 'models[1]': 'vgg16' is not a model"),
        ({"model": "vgg16"}, "bad value for 'model': 'vgg16' is not a model"),
        ({"resnet18__activation": "gelu"}, "bad value for 'resnet18.activation': 'gelu'"),
        ({"alexnet_transfer__skip": "no"}, "bad value for 'alexnet_transfer.skip': 'no'"),
        ({"data__train_subset": 5}, "bad value for 'data.train_subset': 5"),
        ({"data__md5": "abc"}, "bad value for 'data.md5': 'abc'"),
        ({"train__max_epochs": 0}, "bad value for 'train.max_epochs': 0"),
        ({"seed": "x"}, "bad value for 'seed'"),
        ({"resnet18__lr_ratio": None}, "resnet18: schedule 'multistep' needs lr_ratio"),
        ({"resnet18__lr_ratio": "5:x:2"}, "bad value for 'resnet18.lr_ratio"),
        ({"custom_resnet__schedule": "cosine"}, "bad value for 'custom_resnet.schedule': 'cosine'"),
    ],
)
def test_bad_params_give_one_line_naming_the_key(edits, expected):
    with pytest.raises(ParamsError) as e:
        validate(raw(**edits))
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg


def test_unknown_key_lists_the_allowed_ones():
    with pytest.raises(ParamsError, match=r"allowed keys here: .*lr.*activation"):
        validate(raw(resnet18__lrr=1))


def test_missing_section_for_a_listed_model():
    d = raw()
    del d["lenet5"]
    with pytest.raises(ParamsError, match="missing param section 'lenet5'"):
        validate(d)


def test_ratio_accepts_colon_string():
    p = validate(raw(resnet18__lr_ratio="5:3:2"))
    assert p["resnet18"].recipe.lr_ratio == (5.0, 3.0, 2.0)


def test_yaml_style_exponent_string_is_a_number():
    # PyYAML reads `1e-4` (no dot) as a string; it is still a valid weight decay.
    p = validate(raw(resnet9__weight_decay="1e-4"))
    assert p["resnet9"].recipe.weight_decay == pytest.approx(1e-4)


def test_params_are_frozen():
    p = validate(raw())
    with pytest.raises(Exception):
        p["resnet9"].recipe.lr = 1.0  # type: ignore[misc]


def test_epoch_cap():
    p = validate(raw(train__max_epochs=3))
    assert p["resnet18"].epochs(p.train.max_epochs) == 3
    assert p["lenet5"].epochs(None) == 10


@pytest.mark.parametrize("stage", ["fetch", "preprocess", "train", "evaluate", "plot", "embed", "report"])
def test_every_stage_refuses_bad_params_before_work(tmp_path, stage):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw(resnet9__lr="fast")))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", f"cifarlab.{stage}"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: bad value for 'resnet9.lr': 'fast' (Input should be a valid number, unable to parse string as a number)"
    assert list(tmp_path.iterdir()) == [tmp_path / "params.yaml"]  # nothing written


def test_ratio_accepts_underscore_form_used_in_run_names():
    assert validate(raw(resnet18__lr_ratio="5_4_1"))["resnet18"].recipe.lr_ratio == (5.0, 4.0, 1.0)


def test_overrides_are_validated_like_params_yaml(tmp_path):
    from cifarlab.core.params import load_params

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw()))
    p = load_params(tmp_path / "params.yaml", model="resnet18", overrides={"activation": "tanh", "lr_ratio": "5:3:2"})
    assert dict(p["resnet18"].arch) == {"activation": "tanh"}
    assert p["resnet18"].recipe.lr_ratio == (5.0, 3.0, 2.0)
    with pytest.raises(ParamsError, match="bad value for 'resnet18.activation': 'swish'"):
        load_params(tmp_path / "params.yaml", model="resnet18", overrides={"activation": "swish"})


def test_every_grid_cell_needs_its_override_entry():
    d = raw()
    del d["grid_overrides"]["relu-5_3_2-crop_flip"]
    with pytest.raises(ParamsError, match=r"missing param 'grid_overrides.relu-5_3_2-crop_flip'"):
        validate(d)
    # a sliced grid (as CI runs it) only needs its own cells
    d["grid"] = {"activations": ["relu"], "ratios": ["2_1_1"], "augments": ["none"]}
    assert validate(d).grid.activations == ("relu",)


def test_grid_override_values_are_validated_as_resnet18_params():
    d = raw()
    d["grid_overrides"]["relu-2_1_1-none"] = {"lr": "fast"}
    with pytest.raises(ParamsError, match="bad value for 'resnet18.lr': 'fast'"):
        validate(d)
    d["grid_overrides"]["relu-2_1_1-none"] = {"lr": 0.05}
    assert dict(validate(d).grid_overrides["relu-2_1_1-none"]) == {"lr": 0.05}


@pytest.mark.parametrize("seeds, ok", [([], True), ([1, 2], True), ([23], False), ([1, 1], False), (["a"], False)])
def test_extra_seeds(seeds, ok):
    if ok:
        assert validate(raw(seeds=seeds)).seeds == tuple(seeds)
    else:
        with pytest.raises(ParamsError, match="bad value for 'seeds'"):
            validate(raw(seeds=seeds))
