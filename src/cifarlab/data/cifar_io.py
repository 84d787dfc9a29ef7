"""Reading the CIFAR-10 "python version" archive, and the pure array helpers preprocess uses.

The archive (cifar-10-python.tar.gz) holds ``cifar-10-batches-py/`` with the pickled batches
``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``. Each batch is a dict:
``data`` uint8 (n, 3072) -- the R plane, then G, then B of a 32x32 image, row-major --
``labels`` (n ints in 0..9), ``filenames`` and ``batch_label``.

Safety: members are read in memory (nothing is extracted to disk), members with absolute paths,
``..`` components, links or device files are refused, and the pickles are loaded with a
restricted unpickler that admits only the globals real CIFAR batches use (numpy array
reconstruction and latin-1 byte strings). Anything else is refused *before* it is called.

Keys may be str (Python 3 pickles, or official Python 2 pickles read with latin-1) or bytes
(``encoding="bytes"`` style); both are normalised to str.
"""

from __future__ import annotations

import _compat_pickle
import gzip
import hashlib
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cifarlab.core.archives import unsafe_member
from cifarlab.core.cifar10 import NUM_CLASSES
from cifarlab.core.errors import DataError, one_line

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
IMAGE_SHAPE = (32, 32, 3)  # HWC, as stored in the prepared .npz files
ROW_LEN = 32 * 32 * 3
# A full official batch pickle is ~31 MB; refuse members far beyond that (decompression bombs).
MAX_MEMBER_BYTES = 1 << 30
CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------
def _numpy_multiarray() -> Any:
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _numpy_frombuffer() -> Any:
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return _frombuffer


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as Python 3 protocol-2 pickles use it for bytes: latin-1 only."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591") or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1", errors)


def _empty_bytes(*args: Any) -> bytes:
    """`bytes()` as protocol-2 pickles use it for b"": no arguments allowed."""
    if args:
        raise pickle.UnpicklingError("refused bytes() with arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    ma = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _empty_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):  # numpy's protocol-5 form
        allowed[(mod, "_frombuffer")] = _numpy_frombuffer()
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals CIFAR batches contain; anything else raises."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            # Protocol-2 pickles name builtins as `__builtin__` (Python 2 names); report Python 3's.
            shown = f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"
            raise DataError(
                f"refused to unpickle {shown!r} in {self._source}: CIFAR batches hold "
                "only dicts, lists, strings, numbers and numpy arrays"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"refused to unpickle a persistent id in {self._source}: CIFAR batches have none")


def safe_loads(payload: bytes, source: str) -> Any:
    """Unpickle `payload` (named `source` in errors) with `RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(payload), source).load()
    except DataError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError, MemoryError...
        raise DataError(f"cannot unpickle {source}: {type(e).__name__}: {one_line(e, 300)}") from e


def _as_str(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return value


def _normalize_keys(obj: Any, source: str, required: tuple[str, ...]) -> dict[str, Any]:
    """`obj`, a dict holding every key of `required`, with its keys as str."""
    if not isinstance(obj, dict):
        raise DataError(f"{source} holds a {type(obj).__name__}, expected a dict")
    d = {_as_str(k): v for k, v in obj.items()}
    for key in required:
        if key not in d:
            raise DataError(f"{source} has no {key!r} entry")
    return d


# --------------------------------------------------------------------------------------------
# Archive reading
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CifarArrays:
    """The whole archive as arrays: images uint8 (N, 32, 32, 3) HWC, labels int64 (N,)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


def _check_member(m: tarfile.TarInfo, archive: Path) -> None:
    why = unsafe_member(m)
    if why is None and m.isfile() and m.size > MAX_MEMBER_BYTES:
        why = f"{m.size} bytes is too large for a CIFAR batch"
    if why is not None:
        raise DataError(f"refused archive member {m.name!r} in {archive}: {why}")


def _read_members(path: Path) -> dict[str, Any]:
    """Unpickled contents of the wanted members of the archive at `path`, keyed by batch name."""
    wanted = {META, TEST_BATCH, *TRAIN_BATCHES}
    found: dict[str, Any] = {}
    saw_dir = False
    with tarfile.open(path, "r:gz") as tf:
        for m in tf:
            _check_member(m, path)
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            parts = PurePosixPath(name).parts
            if parts and parts[0] == BATCH_DIR:
                saw_dir = True
            if not m.isfile() or len(parts) != 2 or parts[0] != BATCH_DIR or parts[1] not in wanted:
                continue
            if parts[1] in found:
                raise DataError(f"{path} holds {BATCH_DIR}/{parts[1]} twice")
            f = tf.extractfile(m)
            assert f is not None  # regular file
            payload = f.read()
            if len(payload) != m.size:
                raise DataError(f"{path} is not a readable .tar.gz (truncated or corrupt): {name} is cut short")
            found[parts[1]] = safe_loads(payload, parts[1])
            del payload
        # Read the gzip stream to its end so a truncated tail or a bad CRC is noticed too
        # (tarfile stops at the end-of-archive marker without checking the gzip trailer).
        assert tf.fileobj is not None
        while tf.fileobj.read(CHUNK_BYTES):
            pass
    if not saw_dir:
        raise DataError(f"{path} has no {BATCH_DIR}/ directory: not the CIFAR-10 python archive")
    for name in (META, *TRAIN_BATCHES, TEST_BATCH):
        if name not in found:
            raise DataError(f"{path} lacks {BATCH_DIR}/{name}")
    return found


def _check_meta(obj: Any) -> tuple[tuple[str, ...], int]:
    meta = _normalize_keys(obj, META, ("label_names", "num_cases_per_batch"))
    names = meta["label_names"]
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES:
        n = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise DataError(f"{META}: label_names has {n} entries, expected {NUM_CLASSES}")
    classes = tuple(_as_str(c) for c in names)
    if not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != NUM_CLASSES:
        raise DataError(f"{META}: label_names {list(classes)!r} must be {NUM_CLASSES} distinct non-empty strings")
    per_batch = meta["num_cases_per_batch"]
    if isinstance(per_batch, bool) or not isinstance(per_batch, (int, np.integer)) or per_batch < 1:
        raise DataError(f"{META}: num_cases_per_batch {per_batch!r} must be a positive integer")
    return classes, int(per_batch)


def check_labels(where: object, labels: np.ndarray, n_images: int) -> None:
    """One label per image, each a class index in 0..9; DataError naming `where` otherwise."""
    if len(labels) != n_images:
        raise DataError(f"{where}: {len(labels)} labels for {n_images} images")
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        raise DataError(f"{where}: label {labels[bad][0]} outside 0..{NUM_CLASSES - 1}")


def _check_batch(name: str, obj: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch dict; return images uint8 (n, 32, 32, 3) and labels int64 (n,)."""
    batch = _normalize_keys(obj, name, ("data", "labels"))
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{name}: data is a {type(data).__name__}, expected a uint8 numpy array")
    if data.ndim != 2 or data.shape[1] != ROW_LEN:
        raise DataError(f"{name}: data has shape {tuple(data.shape)}, expected (n, {ROW_LEN})")
    if data.dtype != np.uint8:
        raise DataError(f"{name}: data has dtype {data.dtype}, expected uint8")
    raw_labels = batch["labels"]
    if isinstance(raw_labels, (list, tuple)) and not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in raw_labels
    ):
        bad = next(v for v in raw_labels if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)))
        raise DataError(f"{name}: label {bad!r} is not an integer")
    labels = np.asarray(raw_labels)
    if labels.ndim == 1 and len(labels) == 0:
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{name}: labels must be a list of integers, got {labels.dtype} of shape {labels.shape}")
    check_labels(name, labels, len(data))
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def read_archive(path: str | Path) -> CifarArrays:
    """Read and validate the CIFAR-10 python archive at `path`, in memory.

    Raises `DataError` (one line) for a missing, unreadable or malformed archive.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CIFAR-10 archive not found: {path} (run the fetch stage first: dvc repro fetch)")
    try:
        found = _read_members(path)
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
        raise DataError(f"{path} is not a readable .tar.gz (truncated or corrupt): {one_line(e, 300)}") from e

    classes, per_batch = _check_meta(found[META])
    xs, ys = [], []
    for name in TRAIN_BATCHES:
        x, y = _check_batch(name, found.pop(name))
        # The official batches hold exactly num_cases_per_batch; archives written with
        # np.array_split (the shared offline tool) hold that or one more.
        if not (per_batch <= len(y) <= per_batch + 1 or (per_batch == 1 and len(y) == 0)):
            raise DataError(f"{name} holds {len(y)} images but {META} says num_cases_per_batch = {per_batch}")
        xs.append(x)
        ys.append(y)
    test_x, test_y = _check_batch(TEST_BATCH, found.pop(TEST_BATCH))
    train_x = np.concatenate(xs)
    del xs
    return CifarArrays(train_x, np.concatenate(ys), test_x, test_y, classes)


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------
def stratified_subset(labels: np.ndarray, n: int | None, seed: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Sorted int64 indices of a class-stratified random subset of `n` of `labels`.

    `n=None` (or `n == len(labels)`) selects everything. Otherwise every class gets
    ``n // num_classes`` images and ``n % num_classes`` classes, chosen by the seeded rng, one
    more. Deterministic for a given (labels, n, seed): ``np.random.default_rng(seed)``.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n is None or n == total:
        return np.arange(total, dtype=np.int64)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise DataError(f"subset size {n!r} must be an integer or null")
    if n > total:
        raise DataError(f"subset size {n} exceeds the {total} images available")
    if n < num_classes:
        raise DataError(
            f"subset size {n} is below the number of classes ({num_classes}); stratifying needs at least one per class"
        )
    rng = np.random.default_rng(seed)
    per_class = np.full(num_classes, n // num_classes, dtype=np.int64)
    per_class[rng.choice(num_classes, size=n % num_classes, replace=False)] += 1
    chosen = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class[c]:
            raise DataError(f"subset size {n} needs {per_class[c]} images of class {c} but only {len(idx)} exist")
        chosen.append(rng.choice(idx, size=int(per_class[c]), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and (population) std of uint8 NHWC images, in [0, 1] units.

    Computed from per-channel value histograms with integer sums, so it is exact up to the
    final float64 division and square root, and needs no float copy of the images.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"channel_stats needs uint8 (N, H, W, 3) images, got {x.dtype} {x.shape}")
    count = x.size // 3
    if count == 0:
        raise DataError("channel_stats needs at least one image, got none")
    values = np.arange(256, dtype=np.int64)
    mean, std = np.empty(3), np.empty(3)
    for c in range(3):
        hist = np.bincount(x[..., c].reshape(-1), minlength=256).astype(np.int64)
        s = int(hist @ values)  # < 2**63 for any plausible N
        ss = int(hist @ (values * values))
        var_num = count * ss - s * s  # = count**2 * variance, exact in Python ints
        mean[c] = s / count / 255.0
        std[c] = (var_num**0.5) / count / 255.0
    return mean, std


def archive_identity(path: str | Path) -> dict[str, str]:
    """The two md5s that name an archive's data (hex strings):

    archive_md5  md5 of the .tar.gz file: what `data.md5` checks, but it depends on the zlib that
                 compressed the archive, so two builds of the same images can differ here;
    content_md5  md5 of the decompressed tar stream (`gzip -dc FILE | md5sum`): the same on every
                 machine for the same images (the JPEG-derived full set: 41f098d714552507420169bbfa271dac).
    """
    file_h, content_h = hashlib.md5(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            file_h.update(chunk)
    try:
        with gzip.open(path, "rb") as g:
            for chunk in iter(lambda: g.read(CHUNK_BYTES), b""):
                content_h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable .tar.gz (truncated or corrupt): {one_line(e, 300)}") from e
    return {"archive_md5": file_h.hexdigest(), "content_md5": content_h.hexdigest()}
