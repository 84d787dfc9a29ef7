"""Checkpoint files of a run, and its per-epoch history as CSV; the resume state is in
engine/resume.py, which writes its files with `serialized` and `write_file` below.

data/checkpoints/<out>/{final,best,val_best}.pt hold plain containers and tensors only
({model, arch, epoch, state_dict}), so they load with torch.load(weights_only=True).

A checkpoint that cannot be written is an output missing: `OutputWriteError`, one line.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cifarlab.core.errors import CifarlabError, DataError, one_line
from cifarlab.core.io import atomic_write
from cifarlab.models import get_model, model_info

if TYPE_CHECKING:  # annotations only: loop imports engine.resume, which imports this module
    from cifarlab.engine.loop import EpochStats, FitResult


class OutputWriteError(CifarlabError):
    """A run's output (a checkpoint) could not be written: disk full, no permission."""


def serialized(obj) -> memoryview:
    """torch.save of `obj` into memory. Written to a file directly, a write that fails inside
    torch.save (disk full) surfaces as torch's RuntimeError ("unexpected pos 13184 vs 13136",
    seen on a full tmpfs), not as the OSError it is; as bytes, the write's own OSError names the
    cause. Costs a second copy of the state in memory while it is written (134 MB for resnet18's
    resume state). Also gives the size before anything is written (resume.ResumeWriter's room check)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()


def write_file(path: Path, data: memoryview) -> None:
    with atomic_write(path) as f:  # temp file, fsync, rename: a failed write leaves no part of itself
        f.write(data)


def error_reason(err: Exception, target: Path) -> str:
    """The error's cause, and the path it names when that is not `target` or its temp file."""
    why = getattr(err, "strerror", None) or one_line(err, 200)
    name = getattr(err, "filename", None)
    if name is not None and Path(name) != target and not Path(name).name.startswith(f".{target.name}."):
        why += f" ({name})"
    return why


def history_csv(result: FitResult) -> str:
    """One row per epoch (epoch, losses, accuracies, lr); no wall-time column: the history is a
    DVC output, the same bytes run to run (reports/timing/<out>.json has the times)."""
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in history_rows(result.history)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def history_rows(history: list[EpochStats]) -> list[dict]:
    """One dict per epoch; the val_* columns only when a validation split was used."""
    rows = [asdict(h) for h in history]
    if all(h.val_acc is None for h in history):
        for r in rows:
            del r["val_loss"], r["val_acc"]
    return rows


def save_checkpoint(path: Path, model: str, arch: dict, state: dict, epoch: int, diverged: dict | None = None) -> None:
    """`diverged`: the run's divergence record ({"epoch", "step", "lr", "train_loss"}), if it diverged.
    A checkpoint is an output of the run: one that cannot be written fails it (OutputWriteError)."""
    data = serialized({"model": model, "arch": dict(arch), "epoch": epoch, "state_dict": state, "diverged": diverged})
    try:
        write_file(path, data)
    except OSError as err:
        raise OutputWriteError(
            f"cannot write {path} ({error_reason(err, path)}); make room (or fix the permissions) "
            "there and rerun `dvc repro`"
        ) from err


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by `save_checkpoint`; DataError (one line) if missing or foreign."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path} (run the train stage first: dvc repro)") from None
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file fails in torch.load in many ways: one line
        raise DataError(f"cannot load checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or not {"model", "arch", "epoch", "state_dict"} <= ckpt.keys():
        raise DataError(f"{path} is not a cifarlab checkpoint (needs model, arch, epoch, state_dict)")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """The checkpoint's model with its weights (no pretrained download: every weight is in it)."""
    arch = dict(ckpt["arch"])
    if "pretrained" in model_info(ckpt["model"]).arch_params:
        arch["pretrained"] = False
        arch["weights"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "random weights" warning does not apply here
        model = get_model(ckpt["model"], **arch)
    model.load_state_dict(ckpt["state_dict"])
    return model
