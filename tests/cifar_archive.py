"""Build tiny CIFAR-10 archives in the official "python version" layout, for tests.

`make_cifar_archive` writes ``cifar-10-batches-py/{batches.meta, data_batch_1..5, test_batch}``
into a deterministic .tar.gz (gzip mtime 0, fixed tar mtimes), with learnable images: each
class has its own mean colour and a class-specific stripe, plus noise, so a smoke training run
can beat chance. The `mutate` hook edits the members before they are written, to produce
broken variants:

    def drop(members):                      # members: {"cifar-10-batches-py/<name>": value}
        del members[member("data_batch_3")]
    make_cifar_archive(path, mutate=drop)

A member value is a dict (pickled in `key_style`), raw ``bytes`` (written as the payload
unchanged), or a ``tarfile.TarInfo`` (written as-is, e.g. a symlink). Deleting a key drops it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCH_DIR = "cifar-10-batches-py"
MTIME = 1238000000
# A distinct mean colour per class (RGB), far enough apart to be learnable from a few images.
PALETTE = np.array(
    [
        [200, 40, 40],
        [40, 200, 40],
        [40, 40, 200],
        [200, 200, 40],
        [200, 40, 200],
        [40, 200, 200],
        [230, 140, 40],
        [120, 120, 120],
        [40, 120, 230],
        [140, 60, 20],
    ],
    dtype=np.float64,
)

Members = dict[str, Any]


def member(name: str) -> str:
    """The full tar member name of batch `name` (e.g. "data_batch_1")."""
    return f"{BATCH_DIR}/{name}"


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 3072) rows (R plane, G plane, B plane) for `labels`: class colour + stripe + noise."""
    n = len(labels)
    img = np.empty((n, 32, 32, 3), dtype=np.float64)
    img[:] = PALETTE[labels][:, None, None, :]
    rows = np.arange(32)[None, :]
    stripe = (rows >= 3 * labels[:, None]) & (rows < 3 * labels[:, None] + 3)  # a bright band per class
    img += 50.0 * stripe[:, :, None, None]
    img += rng.normal(0, 25, size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img.transpose(0, 3, 1, 2).reshape(n, 3072)  # HWC -> CHW planes -> 3072


def _split(per_class: int, rng: np.random.Generator, prefix: str) -> tuple[list[int], np.ndarray, list[str]]:
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    data = make_images(labels, rng)
    names = [f"{prefix}_{CLASSES[c]}_{i:05d}.png" for i, c in enumerate(labels)]
    return [int(c) for c in labels], data, names


def _convert_keys(obj: Any, key_style: str) -> Any:
    """Recursively turn str keys/strings into bytes for key_style="bytes"."""
    if key_style != "bytes":
        return obj
    if isinstance(obj, str):
        return obj.encode("latin-1")
    if isinstance(obj, dict):
        return {_convert_keys(k, key_style): _convert_keys(v, key_style) for k, v in obj.items()}
    if isinstance(obj, list) and obj and isinstance(obj[0], str):
        return [_convert_keys(v, key_style) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------
# A minimal Python 2 (cPickle, protocol 2) writer, to mimic the official archive's pickles:
# str keys become py2 `str` (SHORT_BINSTRING/BINSTRING), arrays reference numpy.core.multiarray.
# ------------------------------------------------------------------------------------------
def _py2_str(out: bytearray, s: str | bytes) -> None:
    b = s.encode("latin-1") if isinstance(s, str) else s
    out += (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b


def _py2_emit(out: bytearray, obj: Any) -> None:
    if obj is None:
        out += b"N"
    elif isinstance(obj, bool):
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, (int, np.integer)):
        v = int(obj)
        out += b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)
    elif isinstance(obj, (str, bytes)):
        _py2_str(out, obj)
    elif isinstance(obj, tuple):
        out += b"("
        for v in obj:
            _py2_emit(out, v)
        out += b"t"
    elif isinstance(obj, list):
        out += b"]"
        if obj:
            out += b"("
            for v in obj:
                _py2_emit(out, v)
            out += b"e"
    elif isinstance(obj, dict):
        out += b"}"
        if obj:
            out += b"("
            for k, v in obj.items():
                _py2_emit(out, k)
                _py2_emit(out, v)
            out += b"u"
    elif isinstance(obj, np.dtype):
        _, args, state = obj.__reduce__()
        out += b"cnumpy\ndtype\n"
        _py2_emit(out, args)
        out += b"R"
        _py2_emit(out, state)
        out += b"b"
    elif isinstance(obj, np.ndarray):
        _py2_emit_array(out, obj)
    else:
        raise TypeError(f"py2 pickle writer cannot write {type(obj).__name__}")


def _py2_emit_array(out: bytearray, arr: np.ndarray) -> None:
    _, args, state = arr.__reduce__()  # (_reconstruct, (ndarray, (0,), b"b"), (1, shape, dtype, fortran, raw))
    out += b"cnumpy.core.multiarray\n_reconstruct\n"
    out += b"(cnumpy\nndarray\n"
    _py2_emit(out, args[1])
    _py2_emit(out, args[2])
    out += b"tR"
    _py2_emit(out, state)
    out += b"b"


def py2_pickle(obj: Any) -> bytes:
    """Pickle `obj` (dicts, lists, str, int, uint8 arrays) the way Python 2's cPickle would."""
    out = bytearray(b"\x80\x02")
    _py2_emit(out, obj)
    out += b"."
    return bytes(out)


def _payload(obj: Any, key_style: str) -> bytes:
    if key_style == "py2":
        return py2_pickle(obj)
    return pickle.dumps(_convert_keys(obj, key_style), protocol=2)


def default_members(train_per_class: int, test_per_class: int, seed: int) -> Members:
    """The members of a well-formed archive, as python objects (str keys)."""
    rng = np.random.default_rng(seed)
    tr_labels, tr_data, tr_names = _split(train_per_class, rng, "train")
    te_labels, te_data, te_names = _split(test_per_class, rng, "test")
    n_train = len(tr_labels)
    members: Members = {
        member("batches.meta"): {
            "num_cases_per_batch": max(1, n_train // 5),
            "label_names": list(CLASSES),
            "num_vis": 3072,
        }
    }
    for i, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        members[member(f"data_batch_{i}")] = {
            "batch_label": f"training batch {i} of 5",
            "labels": [tr_labels[j] for j in chunk],
            "data": tr_data[chunk],
            "filenames": [tr_names[j] for j in chunk],
        }
    members[member("test_batch")] = {
        "batch_label": "testing batch 1 of 1",
        "labels": te_labels,
        "data": te_data,
        "filenames": te_names,
    }
    return members


def write_tar_gz(path: str | Path, members: Members, key_style: str = "str") -> str:
    """Write `members` as a deterministic .tar.gz at `path`; return its md5."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=1) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for name, value in members.items():
                if isinstance(value, tarfile.TarInfo):
                    tf.addfile(value)
                    continue
                payload = value if isinstance(value, bytes) else _payload(value, key_style)
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                info.mtime = MTIME
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar_archive(
    path: str | Path,
    train_per_class: int = 20,
    test_per_class: int = 10,
    *,
    key_style: str = "str",
    seed: int = 0,
    mutate: Callable[[Members], Members | None] | None = None,
) -> str:
    """Write a tiny official-layout CIFAR-10 archive to `path` and return its md5.

    key_style: "str" (Python 3 pickles with str keys, as the shared offline tool writes),
    "bytes" (bytes keys and strings, as ``encoding="bytes"`` sees the official files) or
    "py2" (hand-written Python 2 cPickle bytes, as in the official archive).
    Identical arguments give byte-identical archives.
    """
    if key_style not in ("str", "bytes", "py2"):
        raise ValueError(f"key_style {key_style!r} must be 'str', 'bytes' or 'py2'")
    members = default_members(train_per_class, test_per_class, seed)
    if mutate is not None:
        result = mutate(members)
        if result is not None:
            members = result
    return write_tar_gz(path, members, key_style)
