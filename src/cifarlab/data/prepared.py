"""The prepared splits: subsetting, validation hold-out, channel statistics, and the .npz files
(x uint8 (N, 32, 32, 3), y int64 (N,)) every later stage reads (the `preprocess` stage's library)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.core import paths
from cifarlab.core.errors import DataError
from cifarlab.core.io import atomic_write, read_json_object
from cifarlab.data.cifar_io import IMAGE_SHAPE, CifarArrays, channel_stats, check_labels, stratified_subset

Split = tuple[np.ndarray, np.ndarray]


def _counts(y: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(y, minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}


def prepare(
    arrays: CifarArrays, train_subset: int | None, test_subset: int | None, seed: int, val_split: float = 0.0
) -> tuple[Split, Split, dict[str, Any], Split]:
    """Subset both splits (stratified, seeded), hold a validation split out of train, and
    compute the train-split statistics.

    val_split: the fraction of the (subset) train split held out, stratified and seeded; 0 = none
    (the reports had none), which gives an empty val split.
    Returns ``((train_x, train_y), (test_x, test_y), stats, (val_x, val_y))``; stats holds
    ``mean`` and ``std`` (3 floats each, train split, [0, 1] units), ``classes``, ``n_train``,
    ``n_test``, ``n_val``, ``train_per_class`` and ``test_per_class`` (class name -> count).
    """
    train_idx = stratified_subset(arrays.train_y, train_subset, seed)
    test_idx = stratified_subset(arrays.test_y, test_subset, seed)
    val_idx = np.zeros(0, dtype=np.int64)
    if val_split > 0:
        n_val = max(len(arrays.classes), round(len(train_idx) * val_split))
        # a different stream than the subset draw (seed + 1), so val is not the subset's head
        val_idx = train_idx[stratified_subset(arrays.train_y[train_idx], n_val, seed + 1)]
        train_idx = np.setdiff1d(train_idx, val_idx)
    train = (np.ascontiguousarray(arrays.train_x[train_idx]), arrays.train_y[train_idx].astype(np.int64))
    test = (np.ascontiguousarray(arrays.test_x[test_idx]), arrays.test_y[test_idx].astype(np.int64))
    val = (np.ascontiguousarray(arrays.train_x[val_idx]), arrays.train_y[val_idx].astype(np.int64))
    mean, std = channel_stats(train[0])
    stats = {
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "classes": list(arrays.classes),
        "n_train": int(len(train[1])),
        "n_test": int(len(test[1])),
        "n_val": int(len(val[1])),
        "train_per_class": _counts(train[1], arrays.classes),
        "test_per_class": _counts(test[1], arrays.classes),
    }
    return train, test, stats, val


def _check_split(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise DataError(f"{path}: x is {x.dtype} {tuple(x.shape)}, expected uint8 (N, 32, 32, 3)")
    if y.dtype != np.int64 or y.ndim != 1:
        raise DataError(f"{path}: y is {y.dtype} {tuple(y.shape)}, expected int64 (N,)")
    check_labels(path, y, len(x))


def save_split(path: str | os.PathLike, x: np.ndarray, y: np.ndarray) -> None:
    """Write an uncompressed .npz with keys x (uint8 (N, 32, 32, 3)) and y (int64 (N,)), atomically."""
    path = Path(path)
    _check_split(path, np.asarray(x), np.asarray(y))
    with atomic_write(path, "wb") as f:
        np.savez(f, x=x, y=y)


def load_split(path: str | os.PathLike) -> Split:
    """Read a split written by `save_split`; raise `DataError` if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"prepared split not found: {path} (run the preprocess stage: dvc repro preprocess)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataError(f"{path}: no {missing[0]!r} array (holds {sorted(z.files)})")
            x, y = z["x"], z["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        msg = " ".join(str(e).split())
        raise DataError(f"{path} is not a readable .npz: {msg}") from e
    _check_split(path, x, y)
    return x, y


def load_prepared(device, with_val: bool = False):
    """The prepared splits as tensors on `device`: x uint8 (N, 3, 32, 32), y int64 (N,); plus stats.

    Returns (train_x, train_y, test_x, test_y, stats), and val_x, val_y after them if with_val.
    """
    import torch  # here, not at the top: the preprocess stage needs no torch

    if not paths.STATS_FILE.is_file():
        raise DataError(
            f"prepared data not found: {paths.STATS_FILE}; run the preprocess stage first (dvc repro preprocess)"
        )
    stats = read_json_object(paths.STATS_FILE)
    out = []
    for f in (paths.TRAIN_FILE, paths.TEST_FILE, *((paths.VAL_FILE,) if with_val else ())):
        x, y = load_split(f)  # x: (N, 32, 32, 3) uint8 HWC as stored
        out.append(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device))
        out.append(torch.from_numpy(y).to(device))
    return (*out[:4], stats, *out[4:])
