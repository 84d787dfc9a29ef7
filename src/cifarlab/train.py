"""Stage `train@<model>`: train one model with its recipe from params.yaml.

Writes data/checkpoints/<model>/{final,best}.pt, reports/history/<model>.csv (one row per
epoch; a DVC plot) and reports/timing/<model>.json (device, wall times, images/s: kept apart
because they vary run to run, while every other output is the same bit for bit on CPU).

After every epoch the full training state goes to data/resume/<model>.pt (atomically), so a
run killed mid-epoch resumes from its last finished epoch when started again (`dvc repro`),
with the same final numbers as a run never interrupted. The file is deleted once the run ends.

    python -m cifarlab.train resnet9        # what `dvc repro` runs for each entry of `models`
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

import torch
import yaml

from cifarlab import paths
from cifarlab.augment import BatchPipeline, normalization
from cifarlab.cli import run_main
from cifarlab.engine import (
    FitResult,
    Runtime,
    configure_threads,
    fit,
    history_rows,
    select_device,
    setup_device,
    time_train_step,
)
from cifarlab.errors import ParamsError
from cifarlab.io import atomic_write, write_json
from cifarlab.models import get_model, model_info
from cifarlab.params import ModelParams, Params, load_params

SUBSET_HINT = (
    "dvc exp run -S data.train_subset=5000 -S data.test_subset=2000 -S train.max_epochs=1 "
    "-S alexnet_transfer.pretrained=false"
)
SLOW_CPU_S = 15 * 60  # warn when a model alone would train longer than this on the CPU


def load_prepared(device: torch.device, with_val: bool = False):
    """The prepared splits as device tensors: x uint8 (N, 3, 32, 32), y int64 (N,); plus stats.

    Returns (train_x, train_y, test_x, test_y, stats), and val_x, val_y after them if with_val.
    """
    from cifarlab.preprocess import load_split

    stats = json.loads(paths.STATS_FILE.read_text())
    out = []
    for f in (paths.TRAIN_FILE, paths.TEST_FILE, *((paths.VAL_FILE,) if with_val else ())):
        x, y = load_split(f)  # x: (N, 32, 32, 3) uint8 HWC as stored
        out.append(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device))
        out.append(torch.from_numpy(y).to(device))
    return (*out[:4], stats, *out[4:])


def make_pipeline(mp: ModelParams, stats: dict, device: torch.device) -> BatchPipeline:
    mean, std = normalization(mp.recipe.normalize, stats["mean"], stats["std"])
    return BatchPipeline(mp.recipe.augment, mean, std, device)


def build_model(name: str, arch: dict, seed: int):
    """The model with its initial weights fixed by `seed`."""
    torch.manual_seed(seed)
    return get_model(name, **arch)


def format_duration(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def cpu_notice(name: str, mp: ModelParams, epochs: int, n_train: int, n_test: int, s_per_image: float) -> str | None:
    """A warning line when this CPU run would take long; None when it is quick."""
    # Testing costs about a third of a training step per image (forward only).
    est = s_per_image * epochs * (n_train + n_test / 3)
    if est < SLOW_CPU_S:
        return None
    return (
        f"warning: no GPU: training {name} for {epochs} epochs on {n_train} images will take about "
        f"{format_duration(est)} on this CPU (timed from one step). A full `dvc repro` is hours of GPU "
        f"work; for a quick CPU reproduction on a subset run: {SUBSET_HINT}"
    )


FULL_TRAIN, FULL_TEST = 50_000, 10_000
QUICK_IMAGE_EPOCHS = 200_000  # below this many training images in all, a CPU run is quick: skip timing


def full_run_notice(p: Params) -> str | None:
    """On a CPU, before any work: how long `dvc repro` with these params would train, if long.

    Times one training step of each listed model (a few seconds in all) and extrapolates to
    each recipe's epochs and the (subset) data size. None on CUDA or for a quick run.
    """
    if select_device().type != "cpu":
        return None
    configure_threads(p.train.num_threads)
    n_train = p.data.train_subset or FULL_TRAIN
    n_test = p.data.test_subset or FULL_TEST
    epochs = {m: p[m].epochs(p.train.max_epochs) for m in p.models}
    if sum(epochs.values()) * n_train < QUICK_IMAGE_EPOCHS:
        return None
    rt = Runtime(torch.device("cpu"), p.train)
    total = 0.0
    for m in p.models:
        mp = p[m]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random alexnet features are fine for a timing
            model = build_model(m, {**mp.arch, **({"pretrained": False} if "pretrained" in mp.arch else {})}, 0)
        pipe = BatchPipeline(mp.recipe.augment, (0.5,) * 3, (0.25,) * 3, rt.device)
        s_per_image = time_train_step(model, mp.recipe, pipe, rt, batch=min(mp.recipe.batch_size, 64))
        total += s_per_image * epochs[m] * (n_train + n_test / 3)
    if total < SLOW_CPU_S:
        return None
    return (
        f"warning: no GPU found: this `dvc repro` trains {len(p.models)} models for {sum(epochs.values())} "
        f"epochs in all on {n_train:,} images{'' if p.data.train_subset else ' (the full set)'}, about {format_duration(total)} on this CPU (timed from one "
        f"step per model). It is meant for a GPU; for a quick CPU reproduction on a subset run: {SUBSET_HINT}"
    )


def history_csv(result: FitResult) -> str:
    # No wall-time column: the history is a DVC output, the same bytes run to run (timing json has it)
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in history_rows(result.history)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def run_fingerprint(p: Params, spec: RunSpec, epochs: int, stats: dict, n: tuple[int, int, int],
                    device: torch.device) -> str:
    """A hash of everything that decides a run's numbers: a resume state from other params or
    data must not be continued (it is ignored, and the run starts over)."""
    mp = p[spec.model]
    key = {
        "model": spec.model, "arch": dict(mp.arch), "recipe": mp.recipe.model_dump(mode="json"),
        "epochs": epochs, "seed": spec.seed, "n_train_val_test": list(n),
        "mean": stats["mean"], "std": stats["std"], "device": device.type,
        "train": p.train.model_dump(mode="json", exclude={"num_threads", "eval_batch_size"}),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def load_resume(path, fingerprint: str, log) -> dict | None:
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


def save_checkpoint(path, name: str, arch: dict, state: dict, epoch: int) -> None:
    # Plain containers + tensors only, so evaluate can load it with weights_only=True.
    with atomic_write(path) as f:
        torch.save({"model": name, "arch": dict(arch), "epoch": epoch, "state_dict": state}, f)


def run(p: Params, spec: RunSpec, log=print, progress: dict | None = None) -> FitResult:
    """Train one run and write its outputs. `progress` (optional) is filled with the resume
    file's path and the last epoch saved there, for the caller's message if interrupted."""
    progress = {} if progress is None else progress
    name = spec.model
    mp = p[name]
    device = setup_device(p.train)
    train_x, train_y, test_x, test_y, stats, val_x, val_y = load_prepared(device, with_val=True)
    epochs = mp.epochs(p.train.max_epochs)
    rt = Runtime(device, p.train)
    pipe = make_pipeline(mp, stats, device)
    model = build_model(name, dict(mp.arch), spec.seed)
    log(f"train {spec.out}: {sum(t.numel() for t in model.parameters()):,} parameters, {epochs} epochs, "
        f"{train_x.shape[0]} train / {test_x.shape[0]} test images, device {device}")
    if device.type == "cpu":
        notice = cpu_notice(name, mp, epochs, train_x.shape[0], test_x.shape[0],
                            time_train_step(model, mp.recipe, pipe, rt, batch=min(mp.recipe.batch_size, 64)))
        if notice:
            log(notice)
    fingerprint = run_fingerprint(p, spec, epochs, stats, (train_x.shape[0], val_x.shape[0], test_x.shape[0]), device)
    resume_path = paths.RESUME_DIR / f"{spec.out}.pt"

    def save_state(snap: dict) -> None:
        with atomic_write(resume_path) as f:
            torch.save({**snap, "fingerprint": fingerprint}, f)
        progress["saved_epoch"] = snap["state"]["epoch"]

    progress["resume_path"] = resume_path
    result = fit(model, train_x, train_y, test_x, test_y, mp.recipe, epochs, spec.seed, pipe, rt, log=log, desc=spec.out,
                 val_x=val_x, val_y=val_y, resume=load_resume(resume_path, fingerprint, log), on_epoch_end=save_state)

    out = paths.CHECKPOINT_DIR / spec.out
    save_checkpoint(out / "final.pt", name, mp.arch, result.final_state, result.history[-1].epoch)
    save_checkpoint(out / "best.pt", name, mp.arch, result.best_state, result.best_epoch)
    val_ckpt = out / "val_best.pt"
    if result.val_best_state is not None:
        save_checkpoint(val_ckpt, name, mp.arch, result.val_best_state, result.val_best_epoch)
    elif val_ckpt.exists():  # a leftover from a run with a validation split: not this run's
        val_ckpt.unlink()
    with atomic_write(paths.HISTORY_DIR / f"{spec.out}.csv", "w") as f:
        f.write(history_csv(result))
    write_json(paths.TIMING_DIR / f"{spec.out}.json", {
        "model": name,
        "run": spec.run,
        "seed": spec.seed,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.train_seconds, 3),  # this process's share when it resumed
        "train_images_per_s": round(result.train_images / max(result.train_seconds, 1e-9), 1),
        "epoch_seconds": [round(h.seconds, 3) for h in result.history],
    })
    resume_path.unlink(missing_ok=True)  # every output is written: nothing left to resume
    return result


@dataclass(frozen=True)
class RunSpec:
    """Which run a train/evaluate call is: a model, an output id and its recipe overrides."""

    model: str
    run: str  # the run's name: the same for all its seeds (the report groups seeds by it)
    seed: int  # weight init, shuffling, augmentation, dropout
    out: str  # names data/checkpoints/<out>/, reports/{history,metrics,predictions}/<out>.*:
    #           the run name, plus -s<seed> for a seed other than params.yaml's `seed`
    overrides: Mapping[str, Any]  # recipe/architecture values that differ from params.yaml


def _parse_set(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ParamsError(f"bad --set {item!r}: expected KEY=VALUE, e.g. --set activation=tanh")
    parsed = yaml.safe_load(value)  # YAML typing, as params.yaml: 0.05 -> float, true -> bool
    if isinstance(parsed, (int, float)) and "_" in value:
        parsed = value  # YAML 1.1 reads 2_1_1 as the number 211; here it is a ratio string
    return key, parsed


def parse_stage_args(prog: str, doc: str, argv: list[str] | None) -> tuple[Params, RunSpec]:
    """The CLI shared by train and evaluate: a model name, an optional run id and overrides,
    then params validated with the overrides applied."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="the model (default: params.yaml `model`)")
    ap.add_argument("--run", help="run id for the output paths (default: the model name)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one key of the model's section for this run (repeatable)")
    ap.add_argument("--seed", type=int, help="train with this seed (default: params.yaml `seed`); "
                    "outputs get a -s<seed> suffix when it differs")
    ap.add_argument("--grid-cell", metavar="CELL",
                    help="also apply params.yaml grid_overrides.CELL (before --set)")
    ap.add_argument("--alexnet-run", metavar="VARIANT",
                    help="also apply params.yaml alexnet_runs.VARIANT (skip, epochs; before --set)")
    args = ap.parse_args(argv)
    overrides = {}
    if args.grid_cell:
        cells = load_params().grid_overrides
        if args.grid_cell not in cells:
            raise ParamsError(f"missing param 'grid_overrides.{args.grid_cell}'")
        overrides.update(cells[args.grid_cell])
    if args.alexnet_run:
        variants = load_params().alexnet_runs
        if args.alexnet_run not in variants:
            raise ParamsError(f"missing param 'alexnet_runs.{args.alexnet_run}' "
                              f"(known: {', '.join(variants)})")
        overrides.update(variants[args.alexnet_run].model_dump())
    overrides.update(_parse_set(item) for item in args.set)
    name = args.model
    if name is None:
        name = load_params().model
    model_info(name)  # an unknown name raises with the list of known ones
    p = load_params(model=name, overrides=overrides)
    if name not in p.recipes:
        raise ParamsError(f"missing param section '{name}' in params.yaml")
    run_id = args.run or name
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", run_id):
        raise ParamsError(f"bad --run {run_id!r}: letters, digits and _ . : - only (it names files)")
    seed = p.seed if args.seed is None else args.seed
    if seed < 0:
        raise ParamsError(f"bad --seed {seed}: a non-negative integer")
    out = run_id if seed == p.seed else f"{run_id}-s{seed}"
    return p, RunSpec(model=name, run=run_id, seed=seed, out=out, overrides=MappingProxyType(overrides))


def main(argv: list[str] | None = None) -> None:
    p, spec = parse_stage_args("python -m cifarlab.train", __doc__, argv)
    progress: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            run(p, spec, log=lambda s: print(s, file=sys.stderr, flush=True), progress=progress)
    except KeyboardInterrupt:
        saved = progress.get("saved_epoch")
        where = (f"epochs 1-{saved} are saved in {progress['resume_path']}; rerun (dvc repro) to resume from there"
                 if saved else "no epoch had finished; rerun (dvc repro) to start again")
        print(f"interrupted: train {spec.out} stopped cleanly; {where}", file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    run_main(main)
