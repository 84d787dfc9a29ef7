"""Helpers shared by the pack, fold and study tests (test_published.py, test_pack_untrusted.py,
test_fold_atomic.py, test_studies.py): a checkout as fold and pack read it, a finished run's files,
and a pack rewritten member by member."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from workspace import ROOT, SHIPPED_PARAMS, shipped

from cifarlab.core.params_file import read_params_file
from cifarlab.reporting import published
from cifarlab.reporting.reference import load_reference

REFERENCE = load_reference(shipped("reports/reference.yaml"))
JPEG_FULL = published.JPEG_FULL_CONTENT_MD5
NUMERICS = {
    "precision": "bf16",
    "memory_format": "channels_last",
    "compile": False,
    "fused_optimizer": True,
    "cpu_bf16": "amx_bf16",
}


def checkout(dest: Path) -> Path:
    """What fold and pack read of a checkout: params.yaml, dvc.yaml and the code."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIPPED_PARAMS, dest / "params.yaml")
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def finished_run(
    ws: Path, out: str = "lenet5", run: str = "lenet5", seed: int = 23, top1: float = 0.6, content_md5: str = JPEG_FULL
) -> None:
    """The files a finished (run, seed) leaves in a workspace, as train/evaluate/plot write them."""
    block = {"epoch": 10, "top1": top1, "top3": 0.9, "loss": 1.1}
    raw = read_params_file(ws / "params.yaml") if (ws / "params.yaml").is_file() else None
    entry = raw["runs"][run] if raw else {}
    recipe_epochs = entry.get("epochs", raw[entry["model"]]["epochs"]) if raw else 10  # as evaluate records it
    files = {
        f"reports/metrics/{out}.json": {"final": block, "best": block},
        f"reports/details/{out}.json": {
            "run": run,
            "model": run,
            "report": "000",
            "seed": seed,
            "n_train": 50000,
            "n_test": 10000,
            "n_val": 0,
            "recipe_epochs": recipe_epochs,
            "epochs_cap": None,
            "diverged": None,
            "data": {"archive_md5": "7b63e107647e6929a34fbe9b0e49048f", "content_md5": content_md5},
        },
        f"reports/timing/{out}.json": {
            "device": "cpu",
            "device_name": "Test CPU",
            "torch": "2.x",
            "cuda": None,
            "cudnn": None,
            "num_threads": 2,
            "epochs_run": 10,
            "stopped_early": False,
            "code": {"commit": "a" * 40, "code_commit": "b" * 40, "dirty": False},
            "epoch_seconds": [5.0] * 10,
            "wall_seconds": 50.0,
            "resumed_after": [4],  # stopped once, resumed from its saved epoch 4
            "numerics": NUMERICS,
        },
    }
    for rel, obj in files.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(json.dumps(obj))
    (ws / "reports/history").mkdir(parents=True, exist_ok=True)
    (ws / f"reports/history/{out}.csv").write_text("epoch,test_acc\n1,0.5\n")
    (ws / "reports/figures/runs").mkdir(parents=True, exist_ok=True)
    (ws / f"reports/figures/runs/curves_{out}.png").write_bytes(b"\x89PNG fake")


def repack(src: Path, dest: Path, edit) -> Path:
    """`src` with its members passed through edit(members: dict name -> bytes), written to `dest`."""
    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    edit(members)
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest
