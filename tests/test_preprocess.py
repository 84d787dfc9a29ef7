"""Archive reading (safety and validation), stratified subsets, channel stats, prepared splits."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from cifar_archive import CLASSES, Members, make_cifar_archive, member
from helpers_bad_inputs import (
    MALFORMED_BATCH_IDS,
    MALFORMED_BATCHES,
    MISSING_BATCHES,
    SUBSET_SIZE_ERRORS,
    UNSAFE_MEMBER_IDS,
    UNSAFE_MEMBERS,
    special_member,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import DataError
from cifarlab.data.cifar_io import CifarArrays, channel_stats, read_archive, stratified_subset
from cifarlab.data.prepared import load_split, prepare, save_split


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def _archive(tmp_path: Path, mutate: Callable[[Members], Any] | None = None, **kw: Any) -> Path:
    path = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_archive(path, mutate=mutate, **kw)
    return path


def _broken(tmp_path: Path, mutate: Callable[[Members], Any], match: str) -> str:
    path = _archive(tmp_path, mutate)
    with pytest.raises(DataError, match=match) as e:
        read_archive(path)
    return _one_line(e)


# ------------------------------------------------------------------------------------------
# reading well-formed archives
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_archive: tuple[Path, str]) -> CifarArrays:
    return read_archive(tiny_archive[0])


def test_shapes_and_dtypes(tiny: CifarArrays) -> None:
    assert tiny.train_x.shape == (200, 32, 32, 3) and tiny.train_x.dtype == np.uint8
    assert tiny.train_y.shape == (200,) and tiny.train_y.dtype == np.int64
    assert tiny.test_x.shape == (100, 32, 32, 3) and tiny.test_x.dtype == np.uint8
    assert tiny.test_y.shape == (100,) and tiny.test_y.dtype == np.int64
    assert tiny.classes == tuple(CLASSES)
    assert np.bincount(tiny.train_y).tolist() == [20] * 10
    assert np.bincount(tiny.test_y).tolist() == [10] * 10
    assert tiny.train_x.flags.c_contiguous


@pytest.mark.parametrize("key_style", ["bytes", "py2"])
def test_key_styles_read_identically(key_style: str, tiny: CifarArrays, tmp_path: Path) -> None:
    other = read_archive(_archive(tmp_path, key_style=key_style))
    assert other.classes == tiny.classes
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(other, field), getattr(tiny, field))


def test_archive_is_deterministic(tmp_path: Path) -> None:
    a = make_cifar_archive(tmp_path / "a.tar.gz", seed=3)
    b = make_cifar_archive(tmp_path / "b.tar.gz", seed=3)
    c = make_cifar_archive(tmp_path / "c.tar.gz", seed=4)
    assert a == b != c


def test_rows_become_hwc_images(tmp_path: Path) -> None:
    """A row is the R plane, then G, then B, each 32x32 row-major; images come out HWC."""
    row = np.zeros(3072, np.uint8)
    row[0 * 1024 + 1 * 32 + 2] = 11  # R at (h=1, w=2)
    row[1 * 1024 + 5 * 32 + 7] = 22  # G at (h=5, w=7)
    row[2 * 1024 + 31 * 32 + 0] = 33  # B at (h=31, w=0)

    def plant(m: Members) -> None:
        m[member("data_batch_1")]["data"][0] = row

    x = read_archive(_archive(tmp_path, plant)).train_x[0]
    assert (x[1, 2, 0], x[5, 7, 1], x[31, 0, 2]) == (11, 22, 33)
    assert int(x.astype(int).sum()) == 66


def test_tool_style_uneven_batches_are_accepted(tmp_path: Path) -> None:
    """np.array_split of 13 per class (130) gives batches of 26; of 21 per class, 42 or 43."""
    arrays = read_archive(_archive(tmp_path, train_per_class=21, test_per_class=3))
    assert len(arrays.train_y) == 210 and len(arrays.test_y) == 30


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="archive not found: .*nope.tar.gz.*fetch") as e:
        read_archive(tmp_path / "nope.tar.gz")
    _one_line(e)


# ------------------------------------------------------------------------------------------
# corrupt and malformed archives
# ------------------------------------------------------------------------------------------
def test_truncated_gzip(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    data = tiny_archive[0].read_bytes()
    for cut in (len(data) // 2, len(data) - 20, 100):
        bad = tmp_path / f"cut{cut}.tar.gz"
        bad.write_bytes(data[:cut])
        with pytest.raises(DataError, match=r"is not a readable \.tar\.gz \(truncated or corrupt\)") as e:
            read_archive(bad)
        assert str(bad) in _one_line(e)


def test_not_gzip(tmp_path: Path) -> None:
    bad = tmp_path / "x.tar.gz"
    bad.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(DataError, match=r"is not a readable \.tar\.gz") as e:
        read_archive(bad)
    _one_line(e)


def test_gzip_but_not_tar(tmp_path: Path) -> None:
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(gzip.compress(os.urandom(5000), mtime=0))
    with pytest.raises(DataError, match=r"is not a readable \.tar\.gz") as e:
        read_archive(bad)
    _one_line(e)


def test_missing_batch_dir(tmp_path: Path) -> None:
    def rename(m: Members) -> Members:
        return {k.replace("cifar-10-batches-py/", "other/"): v for k, v in m.items()}

    _broken(tmp_path, rename, r"has no cifar-10-batches-py/ directory")


@pytest.mark.parametrize("name", MISSING_BATCHES)
def test_missing_batch(name: str, tmp_path: Path) -> None:
    def drop(m: Members) -> None:
        del m[member(name)]

    _broken(tmp_path, drop, rf"lacks cifar-10-batches-py/{name}$")


@pytest.mark.parametrize(("mutate", "match"), MALFORMED_BATCHES, ids=MALFORMED_BATCH_IDS)
def test_malformed_batches(mutate: Callable[[Members], None], match: str, tmp_path: Path) -> None:
    _broken(tmp_path, mutate, match)


def test_batch_count_mismatch(tmp_path: Path) -> None:
    """One batch with fewer images than its siblings and the meta: named, with both counts."""

    def shrink(m: Members) -> None:
        b = m[member("data_batch_3")]
        b["data"], b["labels"], b["filenames"] = b["data"][:10], b["labels"][:10], b["filenames"][:10]

    _broken(tmp_path, shrink, r"^data_batch_3 holds 10 images but batches.meta says num_cases_per_batch = 40$")


def test_missing_entries_and_non_dict(tmp_path: Path) -> None:
    def no_labels(m: Members) -> None:
        del m[member("data_batch_1")]["labels"]

    _broken(tmp_path / "a", no_labels, r"^data_batch_1 has no 'labels' entry$")

    def listed(m: Members) -> None:
        m[member("test_batch")] = [1, 2, 3]

    _broken(tmp_path / "b", listed, r"^test_batch holds a list, expected a dict$")


def test_garbage_pickle(tmp_path: Path) -> None:
    def garbage(m: Members) -> None:
        m[member("data_batch_2")] = b"this is not a pickle"

    _broken(tmp_path, garbage, r"^cannot unpickle data_batch_2: ")


# ------------------------------------------------------------------------------------------
# hostile archives: nothing runs, nothing is written
# ------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, fn: Any, arg: str) -> None:
        self.fn, self.arg = fn, arg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return self.fn, (self.arg,)


@pytest.mark.parametrize(
    ("how", "refused"),
    [("os.system", "posix.system"), ("eval", "builtins.eval"), ("nested", "posix.system")],
)
def test_malicious_pickle_is_refused_without_running(how: str, refused: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    if how == "eval":
        evil: Any = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    else:
        evil = _Evil(os.system, f"touch {marker}")
    if how == "nested":
        payload = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": evil}, protocol=2)
    else:
        payload = pickle.dumps(evil, protocol=2)

    def inject(m: Members) -> None:
        m[member("data_batch_1")] = payload

    msg = _broken(tmp_path / "a", inject, "refused to unpickle")
    assert msg == (
        f"refused to unpickle {refused!r} in data_batch_1: CIFAR batches hold only dicts, lists, "
        "strings, numbers and numpy arrays"
    )
    assert not marker.exists()


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    # _codecs.encode("x", "rot13"): the one builtin admitted, with an encoding real batches never use
    payload = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."

    def inject(m: Members) -> None:
        m[member("test_batch")] = payload

    _broken(tmp_path, inject, r"^cannot unpickle test_batch: UnpicklingError: refused _codecs.encode")


@pytest.mark.parametrize(("add", "match"), UNSAFE_MEMBERS, ids=UNSAFE_MEMBER_IDS)
def test_unsafe_members_are_refused(add: Callable[[Members], None], match: str, tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    _broken(work, add, match)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "cifar-10-python.tar.gz"]


def test_symlinked_batch_is_refused(tmp_path: Path) -> None:
    def link(m: Members) -> Members:
        out = {k: v for k, v in m.items() if k != member("data_batch_1")}
        out[member("data_batch_1")] = special_member(member("data_batch_1"), tarfile.SYMTYPE, "/etc/passwd")
        return out

    _broken(tmp_path, link, r"cifar-10-batches-py/data_batch_1' .*a link")


def test_extra_regular_members_are_ignored(tmp_path: Path) -> None:
    def extra(m: Members) -> None:
        m["cifar-10-batches-py/readme.html"] = b"<html></html>"
        m["./cifar-10-batches-py/"] = special_member("cifar-10-batches-py", tarfile.DIRTYPE)

    assert len(read_archive(_archive(tmp_path, extra)).train_y) == 200


# ------------------------------------------------------------------------------------------
# stratified subsets
# ------------------------------------------------------------------------------------------
def test_subset_none_and_all_select_everything(tiny: CifarArrays) -> None:
    np.testing.assert_array_equal(stratified_subset(tiny.train_y, None, 0), np.arange(200))
    np.testing.assert_array_equal(stratified_subset(tiny.train_y, 200, 5), np.arange(200))


def test_subset_exact_per_class_counts(tiny: CifarArrays) -> None:
    idx = stratified_subset(tiny.train_y, 37, seed=1)
    assert len(idx) == 37 and idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    counts = np.bincount(tiny.train_y[idx], minlength=10)
    assert sorted(counts.tolist()) == [3] * 3 + [4] * 7
    idx = stratified_subset(tiny.train_y, 50, seed=1)
    assert np.bincount(tiny.train_y[idx], minlength=10).tolist() == [5] * 10


def test_subset_is_deterministic_per_seed(tiny: CifarArrays) -> None:
    a = stratified_subset(tiny.train_y, 50, seed=7)
    np.testing.assert_array_equal(a, stratified_subset(tiny.train_y, 50, seed=7))
    assert not np.array_equal(a, stratified_subset(tiny.train_y, 50, seed=8))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 200), seed=st.integers(0, 2**32 - 1))
def test_subset_property(n: int, seed: int) -> None:
    labels = np.repeat(np.arange(10), 20)[np.random.default_rng(0).permutation(200)]
    idx = stratified_subset(labels, n, seed)
    assert len(idx) == n == len(np.unique(idx))
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.min() == n // 10 and counts.max() == n // 10 + (n % 10 > 0)
    assert (counts > n // 10).sum() == n % 10


@pytest.mark.parametrize(("n", "match"), SUBSET_SIZE_ERRORS)
def test_subset_size_errors(n: int, match: str, tiny: CifarArrays) -> None:
    with pytest.raises(DataError, match=match):
        stratified_subset(tiny.train_y, n, 0)


def test_subset_class_too_small() -> None:
    labels = np.array([0] * 2 + [c for c in range(1, 10) for _ in range(10)])
    with pytest.raises(DataError, match=r"^subset size 50 needs 5 images of class 0 but only 2 exist$"):
        stratified_subset(labels, 50, 0)


# ------------------------------------------------------------------------------------------
# channel statistics, prepare, splits on disk
# ------------------------------------------------------------------------------------------
def _reference_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = x.astype(np.float64) / 255.0
    return f.mean(axis=(0, 1, 2)), f.std(axis=(0, 1, 2))


def test_channel_stats_match_numpy(tiny: CifarArrays) -> None:
    rng = np.random.default_rng(0)
    for x in (tiny.train_x, rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8), np.full((1, 2, 2, 3), 255, np.uint8)):
        mean, std = channel_stats(x)
        ref_mean, ref_std = _reference_stats(x)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(std, ref_std, rtol=1e-10, atol=1e-12)


def test_channel_stats_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="at least one image"):
        channel_stats(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        channel_stats(np.zeros((2, 32, 32, 3), np.float32))


def test_prepare(tiny: CifarArrays) -> None:
    (trx, trY), (tex, teY), stats, (vax, vaY) = prepare(tiny, 100, None, seed=3)
    assert vax.shape == (0, 32, 32, 3) and vaY.shape == (0,) and stats["n_val"] == 0  # val_split 0
    assert trx.shape == (100, 32, 32, 3) and trY.shape == (100,) and trY.dtype == np.int64
    assert tex.shape == (100, 32, 32, 3)
    idx = stratified_subset(tiny.train_y, 100, 3)
    np.testing.assert_array_equal(trx, tiny.train_x[idx])
    np.testing.assert_array_equal(trY, tiny.train_y[idx])
    ref_mean, ref_std = _reference_stats(trx)
    np.testing.assert_allclose(stats["mean"], ref_mean, rtol=1e-12)
    np.testing.assert_allclose(stats["std"], ref_std, rtol=1e-10)
    assert stats["classes"] == CLASSES
    assert (stats["n_train"], stats["n_test"]) == (100, 100)
    assert stats["train_per_class"] == {c: 10 for c in CLASSES}
    assert stats["test_per_class"] == {c: 10 for c in CLASSES}
    json.dumps(stats)  # plain JSON types only
    again = prepare(tiny, 100, None, seed=3)
    np.testing.assert_array_equal(again[0][0], trx)


def test_val_split_is_held_out_of_train_stratified(tiny: CifarArrays) -> None:
    (trx, trY), _, stats, (vax, vaY) = prepare(tiny, 200, None, seed=3, val_split=0.2)
    assert len(vaY) == 40 and len(trY) == 160 and stats["n_val"] == 40 and stats["n_train"] == 160
    assert np.bincount(vaY, minlength=10).tolist() == [4] * 10  # stratified
    # disjoint and together the 200-image subset
    subset = stratified_subset(tiny.train_y, 200, 3)
    pool = {tiny.train_x[i].tobytes() for i in subset}
    got = [x.tobytes() for x in np.concatenate([trx, vax])]
    assert len(set(got)) == 200 and set(got) == pool
    again = prepare(tiny, 200, None, seed=3, val_split=0.2)
    np.testing.assert_array_equal(again[3][0], vax)
    ref_mean, _ = _reference_stats(trx)  # statistics of the remaining train only
    np.testing.assert_allclose(stats["mean"], ref_mean, rtol=1e-12)


def test_save_and_load_split(tiny: CifarArrays, tmp_path: Path) -> None:
    path = tmp_path / "prepared" / "train.npz"
    save_split(path, tiny.train_x, tiny.train_y)
    x, y = load_split(path)
    np.testing.assert_array_equal(x, tiny.train_x)
    np.testing.assert_array_equal(y, tiny.train_y)
    with zipfile.ZipFile(path) as z:  # uncompressed
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    assert [p.name for p in path.parent.iterdir()] == ["train.npz"]


def test_save_split_refuses_bad_arrays_and_writes_nothing(tiny: CifarArrays, tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    with pytest.raises(DataError, match="expected uint8"):
        save_split(path, tiny.train_x.astype(np.float32), tiny.train_y)
    with pytest.raises(DataError, match="expected int64"):
        save_split(path, tiny.train_x, tiny.train_y.astype(np.int32))
    with pytest.raises(DataError, match="199 labels for 200 images"):
        save_split(path, tiny.train_x, tiny.train_y[:-1])
    assert list(tmp_path.iterdir()) == []


def _npz(path: Path, **arrays: Any) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_load_split_validates(tmp_path: Path) -> None:
    x = np.zeros((4, 32, 32, 3), np.uint8)
    y = np.zeros(4, np.int64)
    cases = [
        (_npz(tmp_path / "a.npz", x=x.astype(np.float32), y=y), r"x is float32 \(4, 32, 32, 3\), expected uint8"),
        (_npz(tmp_path / "b.npz", x=x[:, :, :, :1], y=y), r"x is uint8 \(4, 32, 32, 1\)"),
        (_npz(tmp_path / "c.npz", x=x, y=y.astype(np.int32)), r"y is int32 \(4,\), expected int64"),
        (_npz(tmp_path / "d.npz", x=x, y=y[:3]), r"3 labels for 4 images"),
        (_npz(tmp_path / "e.npz", x=x, y=y + 10), r"label 10 outside 0\.\.9"),
        (_npz(tmp_path / "f.npz", x=x), r"no 'y' array"),
        (_npz(tmp_path / "g.npz", x=x, y=np.array([None] * 4, dtype=object)), r"is not a readable \.npz"),
    ]
    (tmp_path / "h.npz").write_bytes(b"garbage")
    cases.append((tmp_path / "h.npz", r"is not a readable \.npz"))
    cases.append((tmp_path / "missing.npz", r"prepared split not found: .*missing\.npz"))
    for path, match in cases:
        with pytest.raises(DataError, match=match) as e:
            load_split(path)
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------
# the stage entry point (cifarlab.preprocess.load_params is replaced)
# ------------------------------------------------------------------------------------------
def test_main_writes_outputs(tiny_archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cifarlab import preprocess
    from cifarlab.core.paths import RAW_ARCHIVE, STATS_FILE, TEST_FILE, TRAIN_FILE

    p = SimpleNamespace(seed=1, data=SimpleNamespace(url="", md5="", train_subset=50, test_subset=20, val_split=0.2))
    monkeypatch.setattr(preprocess, "load_params", lambda *a, **k: p)  # the name preprocess.main calls
    monkeypatch.chdir(tmp_path)
    RAW_ARCHIVE.parent.mkdir(parents=True)
    RAW_ARCHIVE.write_bytes(tiny_archive[0].read_bytes())
    preprocess.main([])
    x, y = load_split(TRAIN_FILE)
    assert x.shape == (40, 32, 32, 3) and np.bincount(y).tolist() == [4] * 10  # 50 minus 20% val
    x, y = load_split(TEST_FILE)
    assert np.bincount(y).tolist() == [2] * 10
    stats = json.loads(STATS_FILE.read_text())
    assert stats["n_train"] == 40 and stats["n_val"] == 10 and stats["n_test"] == 20 and len(stats["mean"]) == 3
    assert sorted(p.name for p in TRAIN_FILE.parent.iterdir()) == ["stats.json", "test.npz", "train.npz", "val.npz"]


def test_main_reads_the_real_params_file(
    tiny_archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stand-in: the shipped params.yaml (run table and all) with a subset, validated for real."""
    import yaml

    from cifarlab import preprocess
    from cifarlab.core.paths import RAW_ARCHIVE, STATS_FILE, TRAIN_FILE

    d = yaml.safe_load((SHIPPED_PARAMS).read_text())
    d["data"].update(train_subset=30, test_subset=10, val_split=0.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))
    monkeypatch.chdir(tmp_path)
    RAW_ARCHIVE.parent.mkdir(parents=True)
    RAW_ARCHIVE.write_bytes(tiny_archive[0].read_bytes())
    preprocess.main([])
    stats = json.loads(STATS_FILE.read_text())
    assert (stats["n_train"], stats["n_val"], stats["n_test"]) == (30, 0, 10)
    arrays = read_archive(RAW_ARCHIVE)
    x, _ = load_split(TRAIN_FILE)
    np.testing.assert_array_equal(x, arrays.train_x[stratified_subset(arrays.train_y, 30, d["seed"])])  # params `seed`


def test_main_with_missing_archive_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cifarlab import preprocess

    p = SimpleNamespace(
        seed=0, data=SimpleNamespace(url="", md5="", train_subset=None, test_subset=None, val_split=0.0)
    )
    monkeypatch.setattr(preprocess, "load_params", lambda *a, **k: p)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="archive not found"):
        preprocess.main([])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# the real shared subset (5,000 train / 2,000 test), when it is beside the repository
# ------------------------------------------------------------------------------------------
def test_shared_subset_archive(shared_subset: Path) -> None:
    arrays = read_archive(shared_subset)
    assert arrays.train_x.shape == (5000, 32, 32, 3) and arrays.test_x.shape == (2000, 32, 32, 3)
    assert np.bincount(arrays.train_y).tolist() == [500] * 10
    assert np.bincount(arrays.test_y).tolist() == [200] * 10
    assert arrays.classes == tuple(CLASSES)
    (trx, trY), _, stats, _ = prepare(arrays, 1000, 500, seed=0)
    assert stats["train_per_class"] == {c: 100 for c in CLASSES}
    assert stats["test_per_class"] == {c: 50 for c in CLASSES}
    # natural images: mean intensity near the well-known CIFAR-10 values
    np.testing.assert_allclose(channel_stats(arrays.train_x)[0], [0.49, 0.48, 0.45], atol=0.03)
