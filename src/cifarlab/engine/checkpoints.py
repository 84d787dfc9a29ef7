"""Checkpoint and resume-state files of a run, and its per-epoch history as CSV.

data/checkpoints/<out>/{final,best,val_best}.pt hold plain containers and tensors only
({model, arch, epoch, state_dict}), so they load with torch.load(weights_only=True).
data/resume/<out>.pt is the full training state after the last finished epoch (see
`engine.loop.TrainState`), tagged with a fingerprint of everything that decides the run's
numbers, so a state saved under other params or data is never continued.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Callable

import torch

from cifarlab.core.errors import DataError
from cifarlab.core.io import atomic_write
from cifarlab.core.params import TrainParams
from cifarlab.core.runs import RunSpec
from cifarlab.engine.loop import FitResult, history_rows
from cifarlab.models import get_model, model_info


def history_csv(result: FitResult) -> str:
    """One row per epoch (epoch, losses, accuracies, lr); no wall-time column: the history is a
    DVC output, the same bytes run to run (reports/timing/<out>.json has the times)."""
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in history_rows(result.history)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def run_fingerprint(spec: RunSpec, train: TrainParams, epochs: int, stats: dict, n: tuple[int, int, int],
                    device: torch.device) -> str:
    """sha256 of everything that decides a run's numbers (recipe, architecture, epochs, seed,
    split sizes and statistics, device kind, the train keys that change numbers, CPU threads included)."""
    mp = spec.params
    key = {
        "model": spec.model, "arch": dict(mp.arch), "recipe": mp.recipe.model_dump(mode="json"),
        "epochs": epochs, "seed": spec.seed, "n_train_val_test": list(n),
        "mean": stats["mean"], "std": stats["std"], "device": device.type,
        "train": train.model_dump(mode="json", exclude={"eval_batch_size"}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def load_resume(path: Path, fingerprint: str, log: Callable[[str], None]) -> dict | None:
    """The saved state at `path` if it belongs to this exact run, else None (with a note why)."""
    if not path.exists():
        return None
    try:
        snap = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or damaged file: never fatal, the run just starts over
        log(f"ignoring {path}: unreadable ({str(e).splitlines()[0][:200]}); starting from epoch 1")
        return None
    if not isinstance(snap, dict) or snap.get("fingerprint") != fingerprint:
        log(f"ignoring {path}: saved by a run with other params or data; starting from epoch 1")
        return None
    log(f"resuming from {path}: epochs 1-{snap['state']['epoch']} already done")
    return snap


def save_checkpoint(path: Path, model: str, arch: dict, state: dict, epoch: int, diverged: dict | None = None) -> None:
    """`diverged`: the run's divergence record ({"epoch", "step", "lr", "train_loss"}), if it diverged."""
    with atomic_write(path) as f:
        torch.save({"model": model, "arch": dict(arch), "epoch": epoch, "state_dict": state, "diverged": diverged}, f)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by `save_checkpoint`; DataError (one line) if missing or foreign."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path} (run the train stage first: dvc repro)") from None
    except Exception as e:  # a truncated or foreign file: say which, in one line
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
