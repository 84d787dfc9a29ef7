"""Property tests (hypothesis): hostile or random input to the readers and validators either
passes or raises the project's own error type (CifarlabError: one line, a clean exit), never
another exception, and never hangs (each example has a deadline).

- archives: random bytes; a valid archive's bytes flipped, truncated or spliced; a valid
  archive whose batch objects are replaced by random Python values;
- pickles: random bytes through the restricted unpickler;
- params: a valid params.yaml (run table included) with a random key set to a random value, or a
  random key added; with and without the model registry (fetch validates without it).
"""

from __future__ import annotations

import copy
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cifar_archive import default_members, member, write_tar_gz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import CifarlabError
from cifarlab.core.params import validate
from cifarlab.data.cifar_io import read_archive, safe_loads

ROOT = Path(__file__).resolve().parents[1]
# 60 examples per property in the default run; CIFARLAB_FUZZ_EXAMPLES=2000 for a long hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("CIFARLAB_FUZZ_EXAMPLES", 60)),
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _valid_archive_bytes() -> bytes:
    """A well-formed archive of 2 train + 1 test image per class (a few KB), as bytes."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "a.tar.gz"
        write_tar_gz(p, default_members(2, 1, seed=0))
        return p.read_bytes()


VALID = _valid_archive_bytes()


def _read(tmp_path: Path, data: bytes) -> None:
    """read_archive on `data`: it may succeed or raise CifarlabError; anything else fails the test."""
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(data)
    try:
        arrays = read_archive(path)
    except CifarlabError as e:
        assert str(e) and "\n" not in str(e), f"not one line: {e!r}"
        return
    # accepted: then it is a real dataset (the validators' promise to the rest of the pipeline)
    assert arrays.train_x.dtype == np.uint8 and arrays.train_x.shape[1:] == (32, 32, 3)
    assert arrays.train_y.min() >= 0 and arrays.train_y.max() <= 9


def test_the_unmutated_archive_is_accepted(tmp_path):
    _read(tmp_path, VALID)
    assert read_archive(tmp_path / "cifar-10-python.tar.gz").test_x.shape == (10, 32, 32, 3)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_archive(tmp_path, data):
    _read(tmp_path, data)


@FUZZ
@given(
    cuts=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    truncate=st.one_of(st.none(), st.integers(0, len(VALID))),
)
def test_flipped_and_truncated_archive(tmp_path, cuts, truncate):
    data = bytearray(VALID)
    for pos, byte in cuts:
        data[pos] = byte
    _read(tmp_path, bytes(data[:truncate] if truncate is not None else data))


# Random Python values in place of a batch's entries: what a crafted (not corrupted) archive holds.
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.binary(max_size=64),
        st.builds(
            lambda shape, dt: np.zeros(shape, dtype=dt),
            st.lists(st.integers(0, 40), max_size=3).map(tuple),
            st.sampled_from([np.uint8, np.int64, np.float32, np.bool_]),
        ),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    target=st.sampled_from(["batches.meta", "data_batch_1", "data_batch_5", "test_batch"]),
    key=st.sampled_from(["data", "labels", "label_names", "num_cases_per_batch", "filenames", None]),
    value=values,
)
def test_crafted_batch_contents(tmp_path, target, key, value):
    members = default_members(2, 1, seed=0)
    name = member(target)
    if key is None:
        members[name] = value  # the whole object replaced
    else:
        members[name] = {**members[name], key: value}
    try:
        write_tar_gz(tmp_path / "a.tar.gz", members)
    except (pickle.PicklingError, TypeError, ValueError):
        return  # not even picklable: not an archive anyone could hand us
    _read(tmp_path, (tmp_path / "a.tar.gz").read_bytes())


@FUZZ
@given(payload=st.binary(max_size=512))
def test_random_pickle_bytes(payload):
    try:
        safe_loads(payload, "fuzz")
    except CifarlabError as e:
        assert "\n" not in str(e)


# ------------------------------------------------------------------------------------------ params
BASE = yaml.safe_load((SHIPPED_PARAMS).read_text())


def _paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    return out


PATHS = _paths(BASE)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
)


def mutated(path: tuple, value, add: bool, name: str) -> dict:
    """The shipped params with the value at `path` replaced, or (add) a new key `name` beside it."""
    raw = copy.deepcopy(BASE)
    node = raw
    for k in path[:-1]:
        node = node[k]
    if add and isinstance(node.get(path[-1]), dict):
        node[path[-1]][name] = value  # a new key, maybe a typo of a real one
    else:
        node[path[-1]] = value
    return raw


@FUZZ
@given(path=st.sampled_from(PATHS), value=scalars, add=st.booleans(), name=st.text(min_size=1, max_size=8))
def test_mutated_params(path, value, add, name):
    raw = mutated(path, value, add, name)
    try:
        validate(raw)
    except CifarlabError as e:
        assert str(e) and "\n" not in str(e), f"not one line: {e!r}"


@FUZZ
@given(path=st.sampled_from(PATHS), value=scalars, add=st.booleans(), name=st.text(min_size=1, max_size=8))
def test_mutated_params_without_the_model_registry(path, value, add, name):
    """The same mutations through fetch's check (check_models=False): no torch, same promise."""
    raw = mutated(path, value, add, name)
    try:
        validate(raw, check_models=False)
    except CifarlabError as e:
        assert str(e) and "\n" not in str(e), f"not one line: {e!r}"


def test_base_params_are_valid():
    assert validate(copy.deepcopy(BASE)).seed == BASE["seed"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0, "fast", [], {}])
def test_non_finite_or_wrong_lr_is_refused(value):
    raw = copy.deepcopy(BASE)
    raw["resnet9"]["lr"] = value
    with pytest.raises(CifarlabError, match=r"'resnet9\.lr'"):
        validate(raw)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0, "fast", [], {}])
def test_non_finite_or_wrong_lr_in_a_run_is_refused(value):
    raw = copy.deepcopy(BASE)
    raw["runs"]["resnet18-relu-5_3_2-crop_flip"]["lr"] = value
    for check_models in (True, False):
        with pytest.raises(CifarlabError, match=r"'runs\.resnet18-relu-5_3_2-crop_flip\.lr'"):
            validate(raw, check_models)
