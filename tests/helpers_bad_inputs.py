"""The bad inputs of the unit tests, as tables, and the one shape every one-line error has.

Each table parametrizes a unit test (test_params.py, test_preprocess.py, test_models.py,
test_fetch.py, test_train.py) and test_error_shape.py, which drives the same inputs through the
stage a user would meet them in: one table, so the two never drift apart.
"""

from __future__ import annotations

import copy
import re
import tarfile
from collections.abc import Callable
from typing import Any

import numpy as np
from cifar_archive import Members, member
from workspace import SHIPPED_PARAMS

from cifarlab.core.yaml_io import read_yaml

# ---------------------------------------------------------------------------- the error shape

# Words that say what to do or what is allowed; one must be in the message's last clause.
HINT = re.compile(
    r"\b(should|allowed|expected|known|use|set|run|rerun|pass|quote|put|point|delete|save|"
    r"retry|give|needs?|must|only|e\.g\.|letters|a list|a mapping|a non-negative|a positive|"
    r"at least|fix|outside|refused|remove|add)\b",
    re.I,
)


def assert_shape(msg: str, name: str) -> None:
    """One line, no escapes, `name` in it, and after it what to do or what is allowed."""
    assert "\n" not in msg and "\r" not in msg, msg
    assert "\x1b" not in msg, repr(msg)
    assert name in msg, f"{name!r} not named in: {msg}"
    after = msg[msg.index(name) + len(name) :]
    assert HINT.search(after), f"no hint of what to do after {name!r} in: {msg}"


# ---------------------------------------------------------------------------- params.yaml

RAW = read_yaml((SHIPPED_PARAMS).read_text())  # as load_params reads it (YAML 1.2)


class _Delete:
    """The DELETE marker; named in test ids (`pytest -n 2` workers must collect the same ids)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()

GRID_RUN = "resnet18-relu-2_1_1-none"  # a report-004 run of the shipped table
ALEX_RUN = "alexnet_transfer-skip-low"  # a report-003 run of the shipped table


def raw(edits: dict | None = None, **kw):
    """A copy of the shipped params with edits applied. Keys are dotted paths
    ("runs.lenet5.activation"; run names have no dots); a value of DELETE removes the key.
    Keyword arguments are the same with `__` for the dots (simple keys only)."""
    d = copy.deepcopy(RAW)
    for key, value in {**(edits or {}), **{k.replace("__", "."): v for k, v in kw.items()}}.items():
        *parents, last = key.split(".")
        node = d
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return d


# (edits, what the one-line error says)
BAD_PARAMS = [
    ({"colour": 1}, "unknown param 'colour'"),
    ({"data.urll": "x"}, "unknown param 'data.urll'"),
    ({"train.max_epoch": 1}, "unknown param 'train.max_epoch'"),
    ({"resnet9.lrr": 0.1}, "unknown param 'resnet9.lrr'"),
    ({"resnet9.lr": "fast"}, "bad value for 'resnet9.lr': 'fast'"),
    ({"resnet9.epochs": 0}, "bad value for 'resnet9.epochs': 0"),
    ({"lenet5.epochs": -3}, "bad value for 'lenet5.epochs': -3"),
    ({"lenet5.batch_size": 0}, "bad value for 'lenet5.batch_size': 0"),
    ({"lenet5.optimizer": "rmsprop"}, "bad value for 'lenet5.optimizer': 'rmsprop'"),
    ({"resnet18.activation": "gelu"}, "bad value for 'resnet18.activation': 'gelu'"),
    ({"alexnet_transfer.skip": "no"}, "bad value for 'alexnet_transfer.skip': 'no'"),
    ({"data.train_subset": 5}, "bad value for 'data.train_subset': 5"),
    ({"data.md5": "abc"}, "bad value for 'data.md5': 'abc'"),
    ({"train.max_epochs": 0}, "bad value for 'train.max_epochs': 0"),
    ({"seed": "x"}, "bad value for 'seed'"),
    ({"resnet18.lr_ratio": None}, "resnet18: schedule 'multistep' needs lr_ratio"),
    ({"resnet18.lr_ratio": "5:x:2"}, "bad value for 'resnet18.lr_ratio"),
    ({"custom_resnet.schedule": "cosine"}, "bad value for 'custom_resnet.schedule': 'cosine'"),
    # the removed keys are unknown now
    ({"models": ["lenet5"]}, "unknown param 'models'"),
    ({"grid_overrides": {}}, "unknown param 'grid_overrides'"),
    ({"alexnet_runs": {}}, "unknown param 'alexnet_runs'"),
    # `model` names a run, not a registered model
    ({"model": "vgg16"}, "bad value for 'model': 'vgg16' is not a run"),
    ({"model": "resnet18"}, "bad value for 'model': 'resnet18' is not a run"),
    ({"model": DELETE}, "missing param 'model'"),
    # the run table itself
    ({"runs": DELETE}, "missing param 'runs'"),
    ({"runs": {}}, "bad value for 'runs': {} (the run table is empty, nothing to train): add a run"),
    ({"runs": None}, "bad value for 'runs': None (the run table is empty, nothing to train): add a run"),
    ({"runs": ["lenet5"]}, "bad value for 'runs'"),
    ({"runs.lenet5": "lenet5"}, "bad value for 'runs.lenet5': 'lenet5'"),
    ({"runs.lenet5": None}, "bad value for 'runs.lenet5': None"),
    ({"runs.lenet5.model": DELETE}, "bad value for 'runs.lenet5'"),
    ({"runs.lenet5.model": "vgg16"}, "bad value for 'runs.lenet5.model': 'vgg16' is not a model"),
    ({"runs.lenet5.model": "runs"}, "bad value for 'runs.lenet5.model': 'runs' is not a model"),
    ({"runs.lenet5.model": ["lenet5"]}, "bad value for 'runs.lenet5.model': ['lenet5'] is not a model"),
    # a run's overrides, validated as the model's section and named by the run's entry
    ({"runs.lenet5.activation": "gelu"}, "bad value for 'runs.lenet5.activation': 'gelu'"),
    ({"runs.lenet5.lrr": 0.1}, "unknown param 'runs.lenet5.lrr'; allowed keys here: "),
    ({"runs.lenet5.skip": True}, "unknown param 'runs.lenet5.skip'"),  # another model's option
    ({"runs.lenet5.lr": "fast"}, "bad value for 'runs.lenet5.lr': 'fast'"),
    ({"runs.lenet5.epochs": 0}, "bad value for 'runs.lenet5.epochs': 0"),
    ({f"runs.{GRID_RUN}.activation": "gelu"}, f"bad value for 'runs.{GRID_RUN}.activation': 'gelu'"),
    ({f"runs.{GRID_RUN}.lr_ratio": "5:x:2"}, f"bad value for 'runs.{GRID_RUN}.lr_ratio"),
    ({f"runs.{GRID_RUN}.augment": "mixup"}, f"bad value for 'runs.{GRID_RUN}.augment': 'mixup'"),
    ({f"runs.{ALEX_RUN}.skip": "no"}, f"bad value for 'runs.{ALEX_RUN}.skip': 'no'"),
    ({f"runs.{ALEX_RUN}.epochs": 0}, f"bad value for 'runs.{ALEX_RUN}.epochs': 0"),
    # pca: runs of a model with an embedding
    ({"pca": ["nope"]}, "bad value for 'pca[0]': 'nope' is not a run"),
    ({"pca": [ALEX_RUN, "alexnet_transfer"]}, "bad value for 'pca[1]': 'alexnet_transfer' is not a run"),
    ({"pca": ["lenet5"]}, "bad value for 'pca[0]': run 'lenet5' trains lenet5, which has no feature embedding"),
    ({"pca": ALEX_RUN}, "bad value for 'pca'"),
]

# a dot too: DVC reads the param runs.<name> as a nested key (lenet5-sgd_lr0.01 once failed so)
BAD_RUN_NAMES = ["bad name", "-lead", "a/b", "", ".hidden", "run@1", "lenet5-sgd_lr0.01", 3, True]

BAD_RATIOS = ["5:x:2", "5:0:2", "5", "2__1", [1, -1]]

# `-S 'model=[]'` or a pca list of lists
UNHASHABLE_EDITS = [{"model": []}, {"model": {"a": 1}}, {"pca": [[ALEX_RUN]]}, {"pca": [{}]}]

# ---------------------------------------------------------------------------- archives

MISSING_BATCHES = ["data_batch_3", "test_batch", "batches.meta"]


def _set(name: str, key: str, value: Callable[[Any], Any]) -> Callable[[Members], None]:
    def mutate(m: Members) -> None:
        m[member(name)][key] = value(m[member(name)][key])

    return mutate


# (mutate the members, the one-line error as a regex); ids: MALFORMED_BATCH_IDS
MALFORMED_BATCHES = [
    (
        _set("data_batch_2", "data", lambda d: d.astype(np.float32)),
        r"^data_batch_2: data has dtype float32, expected uint8$",
    ),
    (_set("data_batch_2", "data", lambda d: d.astype(np.int64)), r"^data_batch_2: data has dtype int64"),
    (
        _set("test_batch", "data", lambda d: d[:, :3071]),
        r"^test_batch: data has shape \(100, 3071\), expected \(n, 3072\)$",
    ),
    (
        _set("data_batch_1", "data", lambda d: d.reshape(-1, 3, 32, 32)),
        r"^data_batch_1: data has shape \(40, 3, 32, 32\)",
    ),
    (
        _set("data_batch_1", "data", lambda d: d.tolist()),
        r"^data_batch_1: data is a list, expected a uint8 numpy array$",
    ),
    (_set("data_batch_4", "labels", lambda y: [10] + y[1:]), r"^data_batch_4: label 10 outside 0\.\.9$"),
    (_set("test_batch", "labels", lambda y: y[:-1] + [-1]), r"^test_batch: label -1 outside 0\.\.9$"),
    (_set("data_batch_3", "labels", lambda y: [float(v) for v in y]), r"^data_batch_3: label \d\.0 is not an integer$"),
    (_set("data_batch_3", "labels", lambda y: [True] + y[1:]), r"^data_batch_3: label True is not an integer$"),
    (_set("data_batch_5", "labels", lambda y: y[:-1]), r"^data_batch_5: 39 labels for 40 images$"),
    (
        _set("batches.meta", "num_cases_per_batch", lambda n: 30),
        r"^data_batch_1 holds 40 images but batches.meta says num_cases_per_batch = 30$",
    ),
    (
        _set("batches.meta", "num_cases_per_batch", lambda n: 0),
        r"^batches.meta: num_cases_per_batch 0 must be a positive integer$",
    ),
    (_set("batches.meta", "label_names", lambda c: c[:9]), r"^batches.meta: label_names has 9 entries, expected 10$"),
    (_set("batches.meta", "label_names", lambda c: ["cat"] * 10), r"^batches.meta: label_names .* distinct"),
]
MALFORMED_BATCH_IDS = [
    "float-data",
    "int64-data",
    "short-rows",
    "4d-data",
    "list-data",
    "label-10",
    "label-neg",
    "float-labels",
    "bool-labels",
    "label-count",
    "meta-count",
    "meta-zero",
    "meta-names",
    "meta-dup",
]


def special_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    """A tar member that is no regular file (a link, a device, a folder), for cifar_archive's members."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, linkname, 0
    return info


# (add a member, the one-line error as a regex); ids: UNSAFE_MEMBER_IDS
UNSAFE_MEMBERS = [
    (lambda m: m.__setitem__("../evil", b"x"), r"refused archive member '\.\./evil' .*'\.\.' in path"),
    (lambda m: m.__setitem__("cifar-10-batches-py/../../evil", b"x"), r"'\.\.' in path"),
    (lambda m: m.__setitem__("/tmp/evil", b"x"), r"refused archive member '/tmp/evil' .*absolute path"),
    (
        lambda m: m.__setitem__(
            "cifar-10-batches-py/readme.html",
            special_member("cifar-10-batches-py/readme.html", tarfile.SYMTYPE, "/etc/passwd"),
        ),
        r"refused archive member 'cifar-10-batches-py/readme.html' .*a link",
    ),
    (
        lambda m: m.__setitem__("hard", special_member("hard", tarfile.LNKTYPE, "cifar-10-batches-py/test_batch")),
        r"refused archive member 'hard' .*a link",
    ),
    (
        lambda m: m.__setitem__("dev", special_member("dev", tarfile.CHRTYPE)),
        r"refused archive member 'dev' .*device or special",
    ),
    (
        lambda m: m.__setitem__("fifo", special_member("fifo", tarfile.FIFOTYPE)),
        r"refused archive member 'fifo' .*device or special",
    ),
]
UNSAFE_MEMBER_IDS = ["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "chardev", "fifo"]

# (subset size, the error as a regex) on the tiny archive's 200 training images
SUBSET_SIZE_ERRORS = [
    (201, r"^subset size 201 exceeds the 200 images available$"),
    (9, r"^subset size 9 is below the number of classes"),
    (0, r"^subset size 0 is below"),
]

# ---------------------------------------------------------------------------- models, fetch, stages

# (model, architecture options get_model refuses)
BAD_OPTION_VALUES = [
    ("custom_resnet", {"expansion": 3}),
    ("custom_resnet", {"dropout": 1.0}),
    ("hw2_cnn", {"dropout": -0.1}),
    ("dnn", {"hidden": (128, 0)}),
    ("lenet5", {"activation": "gelu"}),
    ("resnet18", {"activation": "gelu"}),
    ("alexnet_transfer", {"image_size": 32, "pretrained": False}),
]

MALFORMED_MD5S = ["", "xyz", "0" * 31, "g" * 32]

# (a stage's argv, what its error says)
BAD_STAGE_ARGS = [
    (["--run", "lenet5", "--seed", "-1"], "bad --seed -1"),
    (["--run", "../evil"], "unknown run '../evil'"),
    ([], "the following arguments are required: --run"),
]
