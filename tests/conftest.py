"""Shared fixtures: tiny CIFAR-10 archives built on the fly, and the optional shared subset."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # make `import cifar_archive` work whatever the rootdir/import mode
    sys.path.insert(0, str(TESTS_DIR))

from cifar_archive import make_cifar_archive  # noqa: E402

SUBSET_NAME = "cifar-10-python-subset.tar.gz"
SUBSET_MD5 = "588c08a7e1350b513a7e3dcc66806db2"


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, md5) of a tiny well-formed archive: 20 train and 10 test images per class."""
    path = tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz"
    md5 = make_cifar_archive(path)
    return path, md5


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
