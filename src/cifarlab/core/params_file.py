"""Reading params.yaml: as YAML 1.2 (DVC's reading), refused with one line naming file, line and
column when it is not UTF-8, not YAML, repeats a key or has no mapping at the top
(`params.yaml:LINE:COLUMN: what: what to do`). Validation is core.params."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from cifarlab.core.errors import ParamsError, one_line
from cifarlab.core.paths import PARAMS_FILE


def read_params_file(path: str | Path = PARAMS_FILE, loader: YAML | None = None) -> Any:
    """params.yaml parsed, its top level a mapping: as the stages read it (`read_yaml`), or with
    `loader` (`cifarlab set`'s round-trip YAML, which keeps comments).

    A file that cannot be read, is not UTF-8 or not YAML, repeats a key or whose top level is no
    mapping raises ParamsError with one line: `params.yaml:LINE:COLUMN: what: what to do`. The
    file is always read as the stages read it first, so every loader refuses the same files with
    the same line, and a file `set` accepts is one every stage accepts.
    """
    path = Path(path)
    text = _read_text(path)
    reader = _yaml_1_2()
    try:
        node = reader.compose(text)
    except YAMLError as err:
        raise _yaml_error(path, err, text) from None
    _check_top_level(path, node)
    _check_duplicate_keys(path, node)
    try:
        raw = reader.constructor.construct_document(node)
        return raw if loader is None else loader.load(text)
    except YAMLError as err:
        raise _yaml_error(path, err, text) from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path} (run from the repository root)") from None
    except OSError as err:
        raise ParamsError(f"cannot read {path} ({err.strerror or one_line(err)}): it must be a readable "
                          "file (run from the repository root)") from None
    try:
        return data.decode("utf-8")  # as DVC reads it, whatever the locale
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        column = len(data[line_start:err.start].decode("utf-8", "replace")) + 1
        raise ParamsError(f"{path}:{line}:{column}: byte 0x{data[err.start]:02x} is not UTF-8 text: "
                          "save the file as UTF-8 (or remove the character)") from None


def _at(path: Path, mark: Any) -> str:
    """`path:LINE:COLUMN`, 1-based, of a ruamel mark (0-based)."""
    return f"{path}:{mark.line + 1}:{mark.column + 1}"


def _yaml_error(path: Path, err: YAMLError, text: str) -> ParamsError:
    """One line for what ruamel reports over several: where, what, and what to do."""
    if isinstance(err, ReaderError):  # a character YAML does not allow; located by offset
        pos = min(err.position, len(text))
        line, column = text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
        return ParamsError(f"{path}:{line}:{column}: a control character (#x{err.character:04x}), which YAML "
                           "does not allow: remove it")
    problem = one_line(getattr(err, "problem", None) or "")
    context = one_line(getattr(err, "context", None) or "")
    mark = getattr(err, "problem_mark", None)
    context_mark = getattr(err, "context_mark", None)
    if mark is None and context_mark is None:
        return ParamsError(f"{path} is not valid YAML ({one_line(err, 200)}): fix it (docs/parameters.md)")
    where = _at(path, mark or context_mark)
    opened = (f"line {context_mark.line + 1}, column {context_mark.column + 1}"
              if context_mark is not None else "")
    if "'\\t'" in problem or re.search(r"\btab\b", problem):
        return ParamsError(f"{where}: a tab character, which YAML does not allow here: use spaces to indent")
    if problem == "mapping values are not allowed here":
        return ParamsError(f"{where}: a ':' that cannot start a key here: check this line's indentation "
                           "against the lines above, or quote a value that holds ': '")
    if context.startswith("while parsing a flow ") and context_mark is not None:
        bracket = "{" if "mapping" in context else "["
        return ParamsError(f"{where}: {problem}, in the '{bracket}' opened at {opened}: close it, or quote a "
                           "value that holds , : [ ] { }")
    if context == "while scanning a quoted scalar" and context_mark is not None:
        return ParamsError(f"{where}: {problem}: the quote opened at {opened} is not closed: add the closing quote")
    if isinstance(err, DuplicateKeyError):  # keys equal as values, not as written (1 and 0x1)
        return ParamsError(f"{where}: {problem}, in the mapping at {opened}: remove one")
    if problem.startswith("could not determine a constructor for the tag"):
        return ParamsError(f"{where}: {problem}: remove the tag (params are plain numbers, text, lists and "
                           "mappings)")
    if context == "expected a single document in the stream":
        return ParamsError(f"{where}: a second YAML document: params.yaml must hold one; remove this '---' "
                           "and merge what follows it into the first")
    detail = f" ({context} at {opened})" if context and opened else (f" ({context})" if context else "")
    return ParamsError(f"{where}: not valid YAML: {problem or context}{detail}: fix it there "
                       "(docs/parameters.md)")


def _check_top_level(path: Path, node: Any) -> None:
    if node is None:
        raise ParamsError(f"{path} holds no params (it is empty, or only comments): add seed, model, runs ... "
                          "(docs/parameters.md), or restore it with git")
    if not isinstance(node, MappingNode):
        what = ("a list" if isinstance(node, SequenceNode)
                else f"the value {one_line(node.value, 40)!r}" if isinstance(node, ScalarNode) else "no mapping")
        raise ParamsError(f"{_at(path, node.start_mark)}: the top level is {what}, but params.yaml must be a "
                          "mapping of keys (seed:, model:, runs:, ...) to values (docs/parameters.md)")


def _check_duplicate_keys(path: Path, root: MappingNode) -> None:
    """Refuse a key written twice in one mapping, at any depth (the first such in the file). YAML
    forbids it and DVC refuses it; a reader that kept one of the two would run on a value the
    file also contradicts. A key a `<<:` merge brings in may be written again: that overrides it."""
    repeats = []  # (repeat, first, the keys above them)
    done: set[int] = set()  # aliases share nodes (and may nest them in themselves)
    todo: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
    while todo:
        node, where = todo.pop()
        if id(node) in done:
            continue
        done.add(id(node))
        if isinstance(node, SequenceNode):
            todo.extend((item, (*where[:-1], f"{where[-1]}[{i}]")) for i, item in enumerate(node.value))
        if not isinstance(node, MappingNode):
            continue
        first: dict[tuple[str, str], Any] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and str(key.tag) != "tag:yaml.org,2002:merge":
                ident = (str(key.tag), key.value)
                if ident in first:
                    repeats.append((key, first[ident], where))
                first.setdefault(ident, key)
            todo.append((value, (*where, str(key.value) if isinstance(key, ScalarNode) else "?")))
    if repeats:
        key, first_key, where = min(repeats, key=lambda r: (r[0].start_mark.line, r[0].start_mark.column))
        under = f"under '{'.'.join(where)}'" if where else "at the top level"
        raise ParamsError(f"{_at(path, key.start_mark)}: duplicate key '{key.value}' {under} "
                          f"(first at line {first_key.start_mark.line + 1}): remove one")


def refuse_duplicate_keys(path: Path, text: str) -> None:
    """ParamsError (one line, `path:LINE:COLUMN`) for a key written twice in one mapping of the
    YAML `text`, for readers of other YAML files (PyYAML keeps the last of the two silently);
    nothing for text ruamel cannot compose: the caller's own parser says why."""
    try:
        node = _yaml_1_2().compose(text)
    except YAMLError:
        return
    if node is not None:
        _check_duplicate_keys(path, node)


def _yaml_1_2() -> YAML:
    return YAML(typ="safe", pure=True)


def read_yaml(text: str) -> Any:
    """Parse YAML as DVC does (ruamel.yaml, YAML 1.2), so the values validated are the values DVC
    hashes: `dvc exp run -S` rewrites params.yaml with ruamel and drops quotes, and YAML 1.1
    (PyYAML) would then read a ratio 2:1:1 as the base-60 number 7261 and `no` as False."""
    return _yaml_1_2().load(text)
