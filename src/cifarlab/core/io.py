"""Atomic file output (a stage that fails leaves nothing DVC could cache as its result), and the one
JSON-object reader: a file that is not one fails with a line naming it."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cifarlab.core.errors import CifarlabError, DataError, one_line


def _default_mode() -> int:
    """rw for whoever the umask allows, as open() would give (mkstemp makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_mode()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yield a temp file beside `path`; rename it over `path` only if the block succeeds.

    The temp file lives in the same directory so `os.replace` is an atomic rename on POSIX.
    On any exception (KeyboardInterrupt included) the temp file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def finite_or_none(obj: Any) -> Any:
    """`obj` with every float that is nan or +-inf replaced by None (JSON null), recursively
    through dicts, lists and tuples: strict JSON has no NaN or Infinity, and JSON.parse (DVC's VS
    Code extension, a browser) rejects a file that holds one."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as stable, human-diffable, strict JSON (sorted keys, 2-space indent, trailing
    newline; non-finite floats as null, so no NaN or Infinity can reach a file)."""
    text = json.dumps(finite_or_none(obj), indent=2, sort_keys=True, allow_nan=False)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")


def read_json_object(
    source: str | os.PathLike, data: bytes | str | None = None, error: type[CifarlabError] = DataError
) -> dict:
    """The JSON object in the file at `source`, or in `data` (bytes or text already read, which
    `source` names). Raises `error`, one line starting with `source`, when it cannot be read,
    is not UTF-8 JSON (nested too deep for the parser included) or holds anything but an object."""
    try:
        if data is None:
            data = Path(source).read_bytes()
        obj = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except OSError as e:
        raise error(f"{source}: not readable ({one_line(e, 160)})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise error(f"{source}: not JSON ({one_line(e, 160)})") from None
    if not isinstance(obj, dict):
        raise error(f"{source}: expected a JSON object, got {type(obj).__name__}")
    return obj
