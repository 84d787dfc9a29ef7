"""Reading params.yaml: as YAML 1.2 (DVC's reading, core.yaml_io), refused with one line naming
file, line and column when it is not UTF-8, not YAML, repeats a key or has no mapping at the top
(`params.yaml:LINE:COLUMN: what: what to do`). Validation is core.params."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from cifarlab.core.errors import ParamsError, one_line
from cifarlab.core.paths import PARAMS_FILE
from cifarlab.core.yaml_io import at, decode_utf8, parse_yaml

PARAMS_DOC = "docs/parameters.md"


def read_params_file(path: str | Path = PARAMS_FILE, loader: YAML | None = None) -> Any:
    """params.yaml parsed, its top level a mapping: as the stages read it (YAML 1.2), or with
    `loader` (`cifarlab set`'s round-trip YAML, which keeps comments).

    A file that cannot be read, is not UTF-8 or not YAML, repeats a key or whose top level is no
    mapping raises ParamsError with one line: `params.yaml:LINE:COLUMN: what: what to do`. The
    file is always read as the stages read it first, so every loader refuses the same files with
    the same line, and a file `set` accepts is one every stage accepts.
    """
    path = Path(path)
    return parse_yaml(path, _read_text(path), error=ParamsError, doc=PARAMS_DOC, check=_check_top_level, loader=loader)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path} (run from the repository root)") from None
    except OSError as err:
        raise ParamsError(
            f"cannot read {path} ({err.strerror or one_line(err)}): it must be a readable "
            "file (run from the repository root)"
        ) from None
    return decode_utf8(path, data, ParamsError)


def _check_top_level(path: Path, node: Any) -> None:
    if node is None:
        raise ParamsError(
            f"{path} holds no params (it is empty, or only comments): add seed, model, runs ... "
            f"({PARAMS_DOC}), or restore it with git"
        )
    if not isinstance(node, MappingNode):
        what = (
            "a list"
            if isinstance(node, SequenceNode)
            else f"the value {one_line(node.value, 40)!r}"
            if isinstance(node, ScalarNode)
            else "no mapping"
        )
        raise ParamsError(
            f"{at(path, node.start_mark)}: the top level is {what}, but params.yaml must be a "
            f"mapping of keys (seed:, model:, runs:, ...) to values ({PARAMS_DOC})"
        )
