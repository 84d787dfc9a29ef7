"""A params.yaml that cannot be read as params (not YAML, a repeated key, a top level that is no
mapping, not UTF-8, not there) gets one line from every entry point, and the same line: where
(params.yaml:LINE:COLUMN), which key where there is one, and what to do. DVC refuses such files
too (a duplicate key included), so the stages must not read them differently.

Each case is the shipped params.yaml with one mistake, driven through `cifarlab set` (ruamel's
round-trip loader, which keeps comments), `cifarlab runs` and `python -m cifarlab.report` (the
loader every stage reads with) as real subprocesses; every stage module and the other commands
that read params run in-process through the same shells. The one-line shape is helpers_bad_inputs.assert_shape.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers_bad_inputs import assert_shape
from helpers_cli import cifarlab
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import ParamsError
from cifarlab.core.params import load_params
from cifarlab.core.stage_main import run_main
from cifarlab.tooling.cli import STAGES as CLI_STAGES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (SHIPPED_PARAMS).read_text(encoding="utf-8")
DIRECTORY = object()  # a case whose params.yaml is a folder


def line_of(text: str, needle: str, after: str | None = None) -> int:
    """1-based line of the first `needle` (after the first `after`, when given)."""
    start = text.index(after) if after else 0
    return text.count("\n", 0, text.index(needle, start)) + 1


def edit(old: str, new: str, text: str = SHIPPED) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


@dataclass(frozen=True)
class Case:
    id: str
    content: object  # str, bytes, None (no file) or DIRECTORY
    line: int | None  # the line the message must name (as params.yaml:LINE: or "line LINE")
    names: tuple[str, ...] = ()  # what else it must name (the key, its parent)
    exact: str | None = None  # the whole message, where the case pins it


LENET5_TAIL = "  epochs: 10\n  schedule: constant\n  augment: none\n"  # the lenet5 section's
assert SHIPPED.count(LENET5_TAIL) == 1
EPOCHS_LINE = line_of(SHIPPED, LENET5_TAIL)
FIRST_BATCH = line_of(SHIPPED, "  batch_size:", after="\nlenet5:")
OPEN_BRACE = line_of(SHIPPED, "  lenet5: {model: lenet5}")
OPEN_LIST = line_of(SHIPPED, '"dnn:final"]')
SEED_LINE = line_of(SHIPPED, "\nseed: ") + 1
LAST_LINE = SHIPPED.count("\n") + 1  # the line a text appended to the file starts on
_B = SHIPPED.encode()
_AT = _B.index(b"OPEN: tanh")  # a comment of the lenet5 section

CASES = [
    Case(
        "duplicate-key-nested",
        edit(LENET5_TAIL, "  epochs: 10\n  batch_size: 32\n  schedule: constant\n  augment: none\n"),
        EPOCHS_LINE + 1,
        ("'batch_size'", "'lenet5'"),
        exact=f"params.yaml:{EPOCHS_LINE + 1}:3: duplicate key 'batch_size' under 'lenet5' "
        f"(first at line {FIRST_BATCH}): remove one",
    ),
    Case(
        "duplicate-key-top-level",
        SHIPPED + "seed: 5\n",
        LAST_LINE,
        ("'seed'",),
        exact=f"params.yaml:{LAST_LINE}:1: duplicate key 'seed' at the top level (first at line {SEED_LINE}): "
        "remove one",
    ),
    Case(
        "duplicate-key-in-flow-mapping",
        edit("  lenet5: {model: lenet5}", "  lenet5: {model: lenet5, model: dnn}"),
        OPEN_BRACE,
        ("'model'", "'runs.lenet5'"),
    ),
    Case(
        "tab-indentation",
        edit(LENET5_TAIL, "\tepochs: 10\n  schedule: constant\n  augment: none\n"),
        EPOCHS_LINE,
        ("tab",),
    ),
    Case(
        "bad-indentation", edit(LENET5_TAIL, "  epochs: 10\n   schedule: constant\n  augment: none\n"), EPOCHS_LINE + 1
    ),
    Case("unclosed-bracket", edit("  lenet5: {model: lenet5}", "  lenet5: {model: lenet5"), OPEN_BRACE, ("'{'",)),
    Case("unclosed-quote-in-a-list", edit('"dnn:final"]', '"dnn:final]'), OPEN_LIST),
    Case(
        "unclosed-quote-to-the-end",
        edit("  normalize: none      # inputs", '  normalize: "none      # inputs'),
        line_of(SHIPPED, "  normalize: none      # inputs"),
        ("quote",),
    ),
    Case("two-documents", SHIPPED + "---\nseed: 1\n", LAST_LINE, ("---",)),
    Case("top-level-list", "# params\n- seed: 1\n- model: lenet5\n", 2, ("a list",)),
    Case("top-level-scalar", "just some text\n", 1, ("'just some text'",)),
    Case("empty-file", "", None, ("params.yaml", "empty")),
    Case("only-comments", "# seed: 23\n", None, ("params.yaml", "empty")),
    Case("non-utf8-byte", _B[:_AT] + b"\xe9" + _B[_AT:], line_of(SHIPPED, "OPEN: tanh"), ("0xe9", "UTF-8")),
    Case("control-character", _B[:_AT] + b"\x07" + _B[_AT:], line_of(SHIPPED, "OPEN: tanh"), ("#x0007",)),
    Case("unsafe-tag", edit("\nseed: ", "\nseed: !!python/name:os.system "), SEED_LINE, ("python/name:os.system",)),
    Case("missing-file", None, None, ("params.yaml", "not found")),
    Case("a-directory", DIRECTORY, None, ("params.yaml",)),
    # valid YAML, wrong type: validation names the key (and no line)
    Case("wrong-type", edit("\nseed: ", "\nseed: abc #"), None, ("'seed'", "'abc'")),
]
IDS = [c.id for c in CASES]


def place(case: Case, where: Path) -> Path:
    path = where / "params.yaml"
    if case.content is DIRECTORY:
        path.mkdir()
    elif isinstance(case.content, bytes):
        path.write_bytes(case.content)
    elif case.content is not None:
        path.write_bytes(case.content.encode())
    return path


def snapshot(path: Path) -> object:
    return path.read_bytes() if path.is_file() else (path.is_dir() or None)


def check(case: Case, code: int, stderr: str) -> str:
    """Exit 2, one line `error: ...`, no traceback; the line, key and a hint named. The message."""
    assert "Traceback" not in stderr, stderr
    assert code == ParamsError.exit_code, (code, stderr)
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
    assert stderr.startswith("error: "), stderr
    msg = stderr.removeprefix("error: ").removesuffix("\n")
    if case.exact is not None:
        assert msg == case.exact
    if case.line is not None:
        assert re.search(rf"(^params\.yaml:{case.line}:\d+: |\bline {case.line}\b)", msg), (
            f"line {case.line} not named in: {msg}"
        )
    for name in case.names:
        assert name in msg, f"{name!r} not named in: {msg}"
    if case.line is not None and msg.startswith(f"params.yaml:{case.line}:"):
        named = f"params.yaml:{case.line}"
    elif case.line is not None and f"line {case.line}" in msg:
        named = f"line {case.line}"
    else:
        named = case.names[-1]
    assert_shape(msg, named)
    return msg


ENTRY_POINTS = {
    "cifarlab-set": ["-m", "cifarlab", "set", "lenet5.batch_size=32"],
    "cifarlab-runs": ["-m", "cifarlab", "runs"],
    "report-stage": ["-m", "cifarlab.report"],
}


@pytest.mark.slow  # a python subprocess each (57)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_malformed_params_file_gets_one_line(case, entry, tmp_path):
    path = place(case, tmp_path)
    before = snapshot(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [sys.executable, *ENTRY_POINTS[entry]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    check(case, r.returncode, r.stderr)
    assert snapshot(path) == before  # `set` writes nothing on a bad file, nor creates one
    assert [p.name for p in tmp_path.iterdir()] == ([] if case.content is None else ["params.yaml"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_set_and_the_stages_give_the_same_line(case, tmp_path):
    """ruamel's round-trip loader (`set`, to keep comments) and the stages' loader refuse the same
    files with the same words."""
    path = place(case, tmp_path)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    read = check(case, e.value.exit_code, f"error: {e.value}\n".replace(str(tmp_path) + "/", ""))
    out = cifarlab("set", "lenet5.lr=0.01", cwd=tmp_path)
    assert check(case, out.returncode, out.stderr) == read


PER_RUN = {"train", "evaluate", "plot", "pca"}
STAGES = list(CLI_STAGES)  # every stage module
COMMANDS = [["estimate"], ["pack", "-o", "out.tar.gz"], ["runs"], ["train", "--run", "lenet5"]]
SOME = [c for c in CASES if c.id in ("duplicate-key-nested", "non-utf8-byte", "top-level-list")]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("case", SOME, ids=[c.id for c in SOME])
def test_every_stage_module_gives_the_line(case, stage, tmp_path, monkeypatch, capsys):
    """In-process through run_main, the shell of `python -m cifarlab.<stage>`."""
    place(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        run_main(importlib.import_module(f"cifarlab.{stage}").main, ["--run", "lenet5"] if stage in PER_RUN else [])
    check(case, e.value.code, capsys.readouterr().err)
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


@pytest.mark.parametrize("argv", COMMANDS, ids=[a[0] for a in COMMANDS])
@pytest.mark.parametrize("case", SOME, ids=[c.id for c in SOME])
def test_every_command_that_reads_params_gives_the_line(case, argv, tmp_path):
    place(case, tmp_path)
    out = cifarlab(*argv, cwd=tmp_path)
    check(case, out.returncode, out.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]


@pytest.mark.parametrize(
    "value, named", [("[1, 2", "'lenet5.lr'"), ("{a: 1, a: 2}", "'lenet5.lr'"), ('"0.01', "'lenet5.lr'")]
)
def test_set_refuses_a_value_that_is_not_yaml_in_one_line(value, named, tmp_path):
    (tmp_path / "params.yaml").write_text(SHIPPED)
    out = cifarlab("set", f"lenet5.lr={value}", cwd=tmp_path)
    assert out.returncode == ParamsError.exit_code and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert_shape(out.stderr.removeprefix("error: ").strip(), named)
    assert (tmp_path / "params.yaml").read_text() == SHIPPED


def test_merge_keys_are_not_duplicates(tmp_path):
    """A key a `<<:` merge brings in may be written again: YAML's override, not a repeat."""
    text = edit(
        "  lenet5: {model: lenet5}\n",
        "  lenet5: &l5 {model: lenet5}\n  lenet5-b32: {<<: *l5, model: lenet5, batch_size: 32}\n",
    )
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml")["lenet5-b32"].recipe.batch_size == 32
    out = cifarlab("set", "lenet5.lr=0.01", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert load_params(tmp_path / "params.yaml")["lenet5-b32"].recipe.lr == 0.01
