"""Shared fixtures: tiny CIFAR-10 archives built on the fly, params.yaml cut down for tests, the
data `fetch` + `preprocess` make of them (once a session), and the optional shared subset."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # make `import cifar_archive` work whatever the rootdir/import mode
    sys.path.insert(0, str(TESTS_DIR))

# pytest-xdist runs a worker per core: each worker's torch (and the stages and tools it starts)
# gets its share of the cores, not all of them. Threads beyond the free cores cost far more than
# they give (engine/device.configure_threads); measured on 2 busy cores, a custom_resnet
# forward and backward pass took 0.06 CPU-seconds in 1 thread and 7.8 in 2. Set before
# torch is imported (the test modules import it); a stage still sets train.num_threads itself.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import workspace  # noqa: E402 - after tests/ joins sys.path and OMP_NUM_THREADS is set (above)
from cifar_archive import make_cifar_archive  # noqa: E402 - after tests/ joins sys.path (above)

SUBSET_NAME = "cifar-10-python-subset.tar.gz"
SUBSET_MD5 = "588c08a7e1350b513a7e3dcc66806db2"


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, md5) of a tiny well-formed archive: 20 train and 10 test images per class."""
    path = tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz"
    md5 = make_cifar_archive(path)
    return path, md5


@pytest.fixture
def small_params(tiny_archive: tuple[Path, str]):
    """small_params(runs=..., archive=..., fast=..., **changes) -> dict: the shipped params.yaml cut
    down to seconds of CPU work (workspace.small_params), its data the tiny archive unless archive=
    names another (path, md5); workspace.write_params writes it."""

    def make(runs=workspace.RUNS, archive: tuple[Path, str] | None = None, fast: bool = True, **changes) -> dict:
        return workspace.small_params(runs, tiny_archive if archive is None else archive, fast, **changes)

    return make


@pytest.fixture(scope="session")
def _prepared_data() -> dict[str, Path]:
    """(seed, data section) -> the data/ folder fetch and preprocess made for them this session."""
    return {}


@pytest.fixture
def prepare(_prepared_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """prepare(directory=cwd): data/ as `fetch` + `preprocess` write it for directory/params.yaml.
    The two stages run once a session (per pytest-xdist worker) for each seed and data section
    (url, md5, subsets, val_split: all they read) and each test gets a copy of what they wrote, so
    a test can change it, as it could its own."""

    def prepare(directory: Path | None = None) -> Path:
        from cifarlab import fetch, preprocess

        directory = Path.cwd() if directory is None else directory
        text = (directory / "params.yaml").read_text()
        d = yaml.safe_load(text)
        key = json.dumps([d["seed"], d["data"]], sort_keys=True)
        if key not in _prepared_data:
            root = tmp_path_factory.mktemp("prepared")
            (root / "params.yaml").write_text(text)
            with contextlib.chdir(root):
                fetch.main([])
                preprocess.main([])
            _prepared_data[key] = root / "data"
        shutil.copytree(_prepared_data[key], directory / "data", dirs_exist_ok=True)
        return directory / "data"

    return prepare


def shared_subset_path() -> Path | None:
    """The shared offline subset archive (../shared/data beside the repository), if present."""
    candidate = TESTS_DIR.parents[1] / "shared" / "data" / SUBSET_NAME
    return candidate if candidate.is_file() else None


@pytest.fixture(scope="session")
def shared_subset() -> Path:
    """Path of the shared 5000/2000 subset archive; skips the test when it is not there."""
    path = shared_subset_path()
    if path is None:
        pytest.skip(f"shared data ({SUBSET_NAME}) not present beside the repository")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip cleanly where CUDA is absent (CI has no GPU)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return  # don't pay torch's import for a run that has no GPU tests
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in gpu_items:
        item.add_marker(skip)
