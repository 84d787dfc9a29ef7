"""Every YAML file cifarlab reads (params.yaml, dvc.lock, reports/reference.yaml, dvc.yaml) goes
through one reader, core.yaml_io: YAML 1.2, as DVC reads and writes them, and a key written twice
is refused with one line naming file, line and column, whichever file and whichever reader of it.
The shipped files read the same values as under PyYAML, which read them before.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from workspace import SHIPPED_PARAMS

from cifarlab import report
from cifarlab.core.early_stop import published_best_loss_epoch
from cifarlab.core.errors import CifarlabError, DataError, ParamsError
from cifarlab.core.params import load_params
from cifarlab.core.yaml_io import read_yaml, read_yaml_file
from cifarlab.dvc_internals import lock_stages, read_lock
from cifarlab.reporting.reference import load_reference
from cifarlab.tooling import estimate, packs
from cifarlab.tooling.packs import PublishError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# dvc.lock as DVC writes it (values unquoted), `data.md5` written twice on line 9, column 9
LOCK = """\
schema: '2.0'
stages:
  fetch:
    cmd: python -m cifarlab.fetch
    params:
      params.yaml:
        data.url: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
        data.md5: c58f30108f718f92721af3b95e74349a
        data.md5: 00000000000000000000000000000000
"""
LOCK_REPEAT = ("9:9", "duplicate key 'data.md5' under 'stages.fetch.params.params.yaml' (first at line 8): remove one")

REFERENCE = """\
numbers:
  - report: '001'
    run: custom_resnet
    metric: loss
    value: 0.41
    epoch: 62
    value: 0.42
"""
REFERENCE_REPEAT = ("7:5", "duplicate key 'value' under 'numbers[0]' (first at line 5): remove one")


def one_line(err: BaseException, path: Path, where_what: tuple[str, str]) -> None:
    where, what = where_what
    assert str(err) == f"{path}:{where}: {what}"
    assert "\n" not in str(err)


# --------------------------------------------------------------------------- a key written twice


def test_params_yaml_with_a_repeated_key_is_refused_naming_its_line(tmp_path):
    text = SHIPPED_PARAMS.read_text(encoding="utf-8")
    seed_line = text.splitlines().index(next(line for line in text.splitlines() if line.startswith("seed:"))) + 1
    path = tmp_path / "params.yaml"
    path.write_text(text + "seed: 5\n", encoding="utf-8")
    with pytest.raises(ParamsError) as e:
        load_params(path)
    one_line(
        e.value,
        path,
        (
            f"{text.count(chr(10)) + 1}:1",
            f"duplicate key 'seed' at the top level (first at line {seed_line}): remove one",
        ),
    )


def test_dvc_lock_with_a_repeated_key_is_refused_by_each_of_its_readers(tmp_path, monkeypatch):
    lock = tmp_path / "dvc.lock"
    lock.write_text(LOCK, encoding="utf-8")
    with pytest.raises(DataError) as e:  # the report stage and `cifarlab compare`
        read_lock(lock)
    one_line(e.value, lock, LOCK_REPEAT)
    assert report.read_lock is read_lock
    with pytest.raises(PublishError) as e:  # `cifarlab pack`
        packs.locked_stages(tmp_path)
    one_line(e.value, lock, LOCK_REPEAT)
    monkeypatch.chdir(tmp_path)  # the time estimate reads ./dvc.lock
    with pytest.raises(DataError) as e:
        estimate._data_changes(SimpleNamespace(data=SimpleNamespace(md5="0" * 32)))  # params: not reached
    one_line(e.value, Path("dvc.lock"), LOCK_REPEAT)


def test_reference_yaml_with_a_repeated_key_is_refused_naming_its_line(tmp_path):
    ref = tmp_path / "reference.yaml"
    ref.write_text(REFERENCE, encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_reference(ref)
    one_line(e.value, ref, REFERENCE_REPEAT)
    # the time estimate takes no epoch from a file the report stage refuses
    assert published_best_loss_epoch("custom_resnet", ref) is None
    ref.write_text(REFERENCE.replace("    value: 0.42\n", ""), encoding="utf-8")
    assert published_best_loss_epoch("custom_resnet", ref) == 62


def test_dvc_yaml_with_a_repeated_key_is_refused_naming_its_line(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: a\n    cmd: b\n", encoding="utf-8")
    with pytest.raises(PublishError) as e:
        packs.code_files(tmp_path)
    one_line(
        e.value,
        tmp_path / "dvc.yaml",
        ("4:5", "duplicate key 'cmd' under 'stages.train' (first at line 3): remove one"),
    )


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("1: a\n0x1: b\n", "2:1", "found duplicate key"),  # equal as values, not as written: ruamel's own refusal
        ("- {a: 1, a: 2}\n", "1:10", "duplicate key 'a' under '[0]'"),  # a top-level list
        ("a: [1, 2\n", "2:1", "in the '[' opened at line 1, column 4"),
        ("a: 1\n---\na: 2\n", "2:1", "a second YAML document: x.yaml must hold one"),
        ("a: !!python/name:os.system x\n", "1:4", "remove the tag"),
    ],
)
def test_any_yaml_file_is_refused_in_one_line_naming_where(tmp_path, text, where, words):
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_yaml_file(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{where}: ") and words in msg and "\n" not in msg, msg


def test_a_file_that_is_not_utf8_is_refused_naming_the_byte(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_bytes(b"schema: '2.0'\nstages:\n  fetch: {cmd: \xe9}\n")
    with pytest.raises(DataError, match=rf"^{lock}:3:16: byte 0xe9 is not UTF-8 text: "):
        read_lock(lock)


def test_a_lock_that_is_no_mapping_is_refused_and_none_is_no_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    assert read_lock(lock) is None and lock_stages(None) == {}
    lock.write_text("- fetch\n")
    with pytest.raises(DataError, match="not a DVC lock file"):
        read_lock(lock)


# --------------------------------------------------------------------------- YAML 1.2, as DVC


def test_dvc_lock_values_are_read_as_dvc_wrote_them(tmp_path):
    """What YAML 1.1 (PyYAML) reads otherwise: a ratio as a base-60 number, `1e-05` as text,
    `no` as False."""
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "stages:\n  train@x:\n    params:\n      params.yaml:\n"
        "        runs.x: {lr_ratio: 5:3:2, lr: 1e-05, augment: no}\n"
    )
    params = lock_stages(read_lock(lock))["train@x"]["params"]["params.yaml"]["runs.x"]
    assert params == {"lr_ratio": "5:3:2", "lr": 1e-05, "augment": "no"}
    assert yaml.safe_load(lock.read_text())["stages"]["train@x"]["params"]["params.yaml"]["runs.x"] == {
        "lr_ratio": 18182,
        "lr": "1e-05",
        "augment": False,
    }


@pytest.mark.parametrize("name", ["reports/reference.yaml", "dvc.yaml"])
def test_the_shipped_files_pyyaml_read_before_read_the_same_now(name):
    """reference.yaml and dvc.yaml were read with PyYAML (YAML 1.1): YAML 1.2 reads the same
    values (types included) from them, so moving them to the one reader changed no number."""
    text = (ROOT / name).read_text(encoding="utf-8")

    def typed(obj):
        if isinstance(obj, dict):
            return {k: typed(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [typed(v) for v in obj]
        return (type(obj).__name__, obj)

    assert typed(read_yaml(text)) == typed(yaml.safe_load(text))
    assert typed(read_yaml_file(ROOT / name)) == typed(yaml.safe_load(text))


# --------------------------------------------------------------------------- one reader


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names


def test_cifarlab_reads_yaml_through_core_yaml_io_only():
    """No PyYAML in cifarlab; ruamel only in the reader (and params_file's check of its nodes)."""
    allowed = {"cifarlab/core/yaml_io.py", "cifarlab/core/params_file.py"}
    pyyaml, ruamel = [], []
    for path in sorted(SRC.rglob("*.py")):
        names = imports_of(path)
        rel = path.relative_to(SRC).as_posix()
        if any(n == "yaml" or n.startswith("yaml.") for n in names):
            pyyaml.append(rel)
        if any(n.startswith("ruamel") for n in names) and rel not in allowed:
            ruamel.append(rel)
    assert pyyaml == [] and ruamel == [], (pyyaml, ruamel)


def test_the_errors_are_the_callers_kind(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\na: 2\n")
    for kind in (DataError, ParamsError, PublishError):
        with pytest.raises(kind):
            read_yaml_file(path, error=kind)
    assert issubclass(PublishError, CifarlabError)
