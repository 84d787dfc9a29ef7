"""The one YAML reader: every YAML file cifarlab reads (params.yaml, dvc.lock, reports/reference.yaml,
dvc.yaml) is read as DVC reads it (ruamel.yaml, YAML 1.2), so the values cifarlab sees are the values
DVC hashes: YAML 1.1 (PyYAML) reads the unquoted ratio 5:3:2 that DVC writes in dvc.lock as the
base-60 number 18182, `no` as False and `1e-05` as text.

A file that is not UTF-8, not YAML or repeats a key is refused with one line naming file, line
and column (`path:LINE:COLUMN: what: what to do`), raised as the caller's error type (a
`CifarlabError` subclass: ParamsError for params.yaml, DataError for the report's inputs, ...).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from cifarlab.core.errors import CifarlabError, DataError, one_line

ErrorType = Callable[[str], CifarlabError]


def read_yaml(text: str) -> Any:
    """YAML text parsed as DVC parses it (YAML 1.2), for text with no file behind it (a value
    typed on the command line). Raises ruamel's YAMLError."""
    return _yaml_1_2().load(text)


def read_yaml_file(path: str | Path, *, error: ErrorType = DataError, doc: str | None = None) -> Any:
    """The YAML file `path` parsed (see `parse_yaml`; None for an empty one). FileNotFoundError is
    left to the caller (a missing dvc.lock is no error, a missing params.yaml is); any other
    failure raises `error` with one line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise error(f"cannot read {path} ({err.strerror or one_line(err)}): it must be a readable file") from None
    return parse_yaml(path, decode_utf8(path, data, error), error=error, doc=doc)


def decode_utf8(path: Path, data: bytes, error: ErrorType = DataError) -> str:
    """`data` as UTF-8 text (as DVC reads it, whatever the locale), or `error` naming the line and
    column of the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        column = len(data[line_start : err.start].decode("utf-8", "replace")) + 1
        raise error(
            f"{path}:{line}:{column}: byte 0x{data[err.start]:02x} is not UTF-8 text: "
            "save the file as UTF-8 (or remove the character)"
        ) from None


def parse_yaml(
    path: Path,
    text: str,
    *,
    error: ErrorType = DataError,
    doc: str | None = None,
    check: Callable[[Path, Any], None] | None = None,
    loader: YAML | None = None,
) -> Any:
    """`text` (the file `path`'s) parsed as YAML 1.2; None when it holds no document.

    Text that is not YAML or repeats a key in a mapping raises `error` with one line
    (`path:LINE:COLUMN: what: what to do`; `doc`: where the file's format is described, named in
    the hint). `check(path, node)` sees the composed document first (params.yaml refuses a top
    level that is no mapping there, with its position). `loader`: construct with this YAML
    instead (`cifarlab set`'s round-trip YAML, which keeps comments); the file is checked as
    DVC reads it first, so every loader refuses the same files with the same line.
    """
    reader = _yaml_1_2()
    try:
        node = reader.compose(text)
    except YAMLError as err:
        raise _yaml_error(path, err, text, error, doc) from None
    if check is not None:
        check(path, node)
    if node is None:
        return None
    _check_duplicate_keys(path, node, error)
    try:
        raw = reader.constructor.construct_document(node)
        return raw if loader is None else loader.load(text)
    except YAMLError as err:
        raise _yaml_error(path, err, text, error, doc) from None


def at(path: Path, mark: Any) -> str:
    """`path:LINE:COLUMN`, 1-based, of a ruamel mark (0-based)."""
    return f"{path}:{mark.line + 1}:{mark.column + 1}"


def _yaml_error(path: Path, err: YAMLError, text: str, error: ErrorType, doc: str | None) -> CifarlabError:
    """One line for what ruamel reports over several: where, what, and what to do."""
    see = f" ({doc})" if doc else ""
    if isinstance(err, ReaderError):  # a character YAML does not allow; located by offset
        pos = min(err.position, len(text))
        line, column = text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
        return error(
            f"{path}:{line}:{column}: a control character (#x{err.character:04x}), which YAML does not allow: remove it"
        )
    problem = one_line(getattr(err, "problem", None) or "")
    context = one_line(getattr(err, "context", None) or "")
    mark = getattr(err, "problem_mark", None)
    context_mark = getattr(err, "context_mark", None)
    if mark is None and context_mark is None:
        return error(f"{path} is not valid YAML ({one_line(err, 200)}): fix it{see}")
    where = at(path, mark or context_mark)
    opened = f"line {context_mark.line + 1}, column {context_mark.column + 1}" if context_mark is not None else ""
    if "'\\t'" in problem or re.search(r"\btab\b", problem):
        return error(f"{where}: a tab character, which YAML does not allow here: use spaces to indent")
    if problem == "mapping values are not allowed here":
        return error(
            f"{where}: a ':' that cannot start a key here: check this line's indentation "
            "against the lines above, or quote a value that holds ': '"
        )
    if context.startswith("while parsing a flow ") and context_mark is not None:
        bracket = "{" if "mapping" in context else "["
        return error(
            f"{where}: {problem}, in the '{bracket}' opened at {opened}: close it, or quote a "
            "value that holds , : [ ] { }"
        )
    if context == "while scanning a quoted scalar" and context_mark is not None:
        return error(f"{where}: {problem}: the quote opened at {opened} is not closed: add the closing quote")
    if isinstance(err, DuplicateKeyError):  # keys equal as values, not as written (1 and 0x1)
        return error(f"{where}: {problem}, in the mapping at {opened}: remove one")
    if problem.startswith("could not determine a constructor for the tag"):
        return error(f"{where}: {problem}: remove the tag ({path.name} holds plain numbers, text, lists and mappings)")
    if context == "expected a single document in the stream":
        return error(
            f"{where}: a second YAML document: {path.name} must hold one; remove this '---' "
            "and merge what follows it into the first"
        )
    detail = f" ({context} at {opened})" if context and opened else (f" ({context})" if context else "")
    return error(f"{where}: not valid YAML: {problem or context}{detail}: fix it there{see}")


def _check_duplicate_keys(path: Path, root: Any, error: ErrorType) -> None:
    """Refuse a key written twice in one mapping, at any depth (the first such in the file). YAML
    forbids it and DVC refuses it; a reader that kept one of the two would run on a value the
    file also contradicts. A key a `<<:` merge brings in may be written again: that overrides it.

    ruamel refuses a repeat too (DuplicateKeyError, for keys equal as values: 1 and 0x1), but
    names neither the mapping's keys above it nor the line of the first, and meets the repeats
    in construction order, not the file's; this walk gives that line for keys written alike."""
    repeats = []  # (repeat, first, the keys above them)
    done: set[int] = set()  # aliases share nodes (and may nest them in themselves)
    todo: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
    while todo:
        node, where = todo.pop()
        if id(node) in done:
            continue
        done.add(id(node))
        if isinstance(node, SequenceNode):
            todo.extend(
                (item, (*where[:-1], f"{where[-1]}[{i}]") if where else (f"[{i}]",))
                for i, item in enumerate(node.value)
            )
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
        raise error(
            f"{at(path, key.start_mark)}: duplicate key '{key.value}' {under} "
            f"(first at line {first_key.start_mark.line + 1}): remove one"
        )


def _yaml_1_2() -> YAML:
    return YAML(typ="safe", pure=True)


def round_trip_yaml() -> YAML:
    """ruamel's round-trip YAML, for rewriting a file by hand's edit (`cifarlab set` on
    params.yaml): comments, key order, flow style and quotes survive; null stays `null`."""
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never fold a long line of the run table
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def dump_round_trip(rt: YAML, doc: Any) -> str:
    """`doc` (loaded with `rt`) as YAML text."""
    buf = io.StringIO()
    rt.dump(doc, buf)
    return buf.getvalue()
