"""Every one-line error has one shape: a single line, no terminal escape codes, the parameter or
file it is about named, and what to do (or what is allowed) at its end.

The bad inputs are the ones the unit tests use (their parametrize tables, shared through
helpers_bad_inputs.py, not copied) plus the field reports' own, each driven through the stage a
user would meet it in: params through `train`, archives through `fetch` + `preprocess`, weights
through `train` of an AlexNet run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from cifar_archive import make_cifar_archive, member
from helpers_bad_inputs import (
    BAD_OPTION_VALUES,
    BAD_PARAMS,
    BAD_RATIOS,
    BAD_RUN_NAMES,
    BAD_STAGE_ARGS,
    GRID_RUN,
    MALFORMED_BATCHES,
    MALFORMED_MD5S,
    MISSING_BATCHES,
    SUBSET_SIZE_ERRORS,
    UNHASHABLE_EDITS,
    UNSAFE_MEMBERS,
    assert_shape,
    raw,
)
from workspace import SHIPPED_PARAMS

from cifarlab import fetch, preprocess, train
from cifarlab.core.errors import CifarlabError

ROOT = Path(__file__).resolve().parents[1]
PARAM_CASES = BAD_PARAMS


def quoted_name(expected: str) -> str:
    m = re.search(r"'([^']+)'", expected)
    return m.group(1) if m else expected.split(":")[0]


def raise_from(stage_main, argv) -> str:
    with pytest.raises(CifarlabError) as e:
        stage_main(argv)
    return str(e.value)


@pytest.mark.parametrize("edits, expected", PARAM_CASES, ids=[str(e) for e, _ in PARAM_CASES])
def test_params_errors_through_the_train_stage(edits, expected, tmp_path, monkeypatch):
    """Through the train stage of a run the bad value concerns: a stage checks the architecture
    options of its own model only (other models' files are not its dependencies)."""
    monkeypatch.chdir(tmp_path)
    raw_params = raw(edits)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    key = next(iter(edits))
    runs = raw_params["runs"] if isinstance(raw_params.get("runs"), dict) else {}
    run = next((r for r in runs if key.startswith(f"runs.{r}.")), None) or next(
        (r for r, e in runs.items() if isinstance(e, dict) and key.split(".")[0] == e.get("model")), "lenet5"
    )
    msg = raise_from(train.main, ["--run", run])
    assert expected in msg
    assert_shape(msg, quoted_name(expected))


def _write_params(tmp_path: Path, **data) -> None:
    d = yaml.safe_load((SHIPPED_PARAMS).read_text())
    d["data"].update(data)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d, sort_keys=False))


ARCHIVE_CASES = MALFORMED_BATCHES + UNSAFE_MEMBERS


@pytest.mark.parametrize("mutate, match", ARCHIVE_CASES, ids=[m for _, m in ARCHIVE_CASES])
def test_archive_errors_through_fetch_and_preprocess(mutate, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "bad.tar.gz"
    md5 = make_cifar_archive(archive, mutate=mutate)
    _write_params(tmp_path, url=str(archive), md5=md5)
    fetch.main([])
    msg = raise_from(preprocess.main, [])
    assert re.search(match.removesuffix("$"), msg), (match, msg)  # the stage adds what to do
    named = re.match(r"^(?:refused archive member )?'?([\w./-]+)", msg).group(1)
    assert_shape(msg, named)


def test_a_missing_archive_through_fetch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path, url=str(tmp_path / "nope.tar.gz"))
    msg = raise_from(fetch.main, [])
    assert_shape(msg, "nope.tar.gz")


@pytest.mark.parametrize("md5", [12345678901234567890123456789012, 1e34])
def test_an_md5_read_as_a_number_says_how_to_quote_it(md5, tmp_path, monkeypatch):
    """An md5 of digits only (or digits around one e) arrives from YAML as a number."""
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path, md5=md5)
    msg = raise_from(fetch.main, [])
    assert "read as a number" in msg and "'data.md5=\"" in msg
    assert_shape(msg, "data.md5")


@pytest.mark.slow  # a whole AlexNet pickled (240 MB)
def test_a_pickled_module_as_alexnet_weights_says_save_the_state_dict(tmp_path, monkeypatch, tiny_archive, prepare):
    """torch.save(model) instead of torch.save(model.state_dict()): a common mistake."""
    import torch
    import torchvision

    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "alexnet-whole.pt"
    torch.save(torchvision.models.alexnet(weights=None), weights)
    archive, md5 = tiny_archive
    d = yaml.safe_load((SHIPPED_PARAMS).read_text())
    d["data"].update(url=str(archive), md5=md5)
    d["alexnet_transfer"].update(weights=str(weights), image_size=64)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    prepare()
    msg = raise_from(train.main, ["--run", "alexnet_transfer-skip-low"])
    assert msg.startswith(f"alexnet_transfer.weights: '{weights}' is a pickled module, not a state_dict")
    assert "weights_only=False" not in msg  # never advice to load an untrusted pickle
    assert_shape(msg, str(weights))


MODEL_CASES = BAD_OPTION_VALUES


@pytest.mark.parametrize("name, arch", MODEL_CASES, ids=[f"{n}-{a}" for n, a in MODEL_CASES])
def test_model_option_errors_through_the_train_stage(name, arch, tmp_path, monkeypatch):
    """A bad architecture option in a run's entry, as `dvc repro train@<run>` meets it."""
    monkeypatch.chdir(tmp_path)
    d = raw()
    run = next(r for r, e in d["runs"].items() if e["model"] == name)
    d["runs"][run] = {**d["runs"][run], **{k: list(v) if isinstance(v, tuple) else v for k, v in arch.items()}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    msg = raise_from(train.main, ["--run", run])
    key = next(iter(k for k in arch if k != "pretrained"))
    assert_shape(msg, key)


MD5_CASES = MALFORMED_MD5S


@pytest.mark.parametrize("bad", [b[0] if isinstance(b, tuple) else b for b in MD5_CASES])
def test_malformed_md5_through_fetch(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path, md5=bad)
    msg = raise_from(fetch.main, [])
    assert_shape(msg, "data.md5")


def _params_with(tmp_path: Path, d: dict) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d, sort_keys=False))


@pytest.mark.parametrize("name", [n for n in BAD_RUN_NAMES if isinstance(n, str)])
def test_bad_run_names_through_train(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = raw()
    d["runs"][name] = {"model": "lenet5"}
    _params_with(tmp_path, d)
    assert_shape(raise_from(train.main, ["--run", "lenet5"]), repr(name))


@pytest.mark.parametrize("ratio", BAD_RATIOS, ids=str)
def test_bad_ratios_through_train(ratio, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _params_with(tmp_path, raw({f"runs.{GRID_RUN}.lr_ratio": ratio}))
    assert_shape(raise_from(train.main, ["--run", GRID_RUN]), f"runs.{GRID_RUN}.lr_ratio")


@pytest.mark.parametrize("edits", UNHASHABLE_EDITS, ids=str)
def test_unhashable_entries_through_train(edits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _params_with(tmp_path, raw(edits))
    msg = raise_from(train.main, ["--run", "lenet5"])
    assert_shape(msg, "'model'" if "model" in edits else "'pca[0]'")


STAGE_ARGS = BAD_STAGE_ARGS


@pytest.mark.parametrize("argv, message", [c for c in STAGE_ARGS if c[0]], ids=[str(a) for a, _ in STAGE_ARGS if a])
def test_bad_stage_arguments_through_train(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _params_with(tmp_path, raw())
    msg = raise_from(train.main, argv)
    assert message in msg
    assert_shape(msg, argv[-1])


@pytest.mark.parametrize("name", MISSING_BATCHES)
def test_missing_batch_through_preprocess(name, tmp_path, monkeypatch):
    def drop(m):
        del m[member(name)]

    test_archive_errors_through_fetch_and_preprocess(drop, rf"lacks cifar-10-batches-py/{name}", tmp_path, monkeypatch)


@pytest.mark.parametrize("n", [n for n, _ in SUBSET_SIZE_ERRORS])
def test_subset_sizes_through_preprocess(n, tmp_path, monkeypatch, tiny_archive):
    monkeypatch.chdir(tmp_path)
    archive, md5 = tiny_archive
    d = raw()
    d["data"].update(url=str(archive), md5=md5, train_subset=max(n, 10) if n < 10 else n)
    if n < 10:  # below the params floor (10): params refuse it before the stage does
        d["data"]["train_subset"] = n
        _params_with(tmp_path, d)
        assert_shape(raise_from(fetch.main, []), "data.train_subset")
        return
    _params_with(tmp_path, d)
    fetch.main([])
    msg = raise_from(preprocess.main, [])
    assert_shape(msg, f"subset size {n}")
