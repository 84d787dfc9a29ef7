"""Stage `train@<run>`: train one run of the run table with its recipe.

    python -m cifarlab.train --run lenet5 [--seed 1]

Writes data/checkpoints/<out>/{final,best}.pt (and val_best.pt with a validation split),
reports/history/<out>.csv (one row per epoch; a DVC plot) and reports/timing/<out>.json (device
and its name, torch/CUDA versions, code version, wall times, images/s: apart because they vary
run to run, while every other output is the same bit for bit on CPU). <out> is the run name, or
<run>-s<seed> for an extra seed.

Every `train.checkpoint_minutes` (after the epoch that crosses it; 0 = every epoch) the full
training state goes to data/resume/<out>.pt (atomically, from a background thread), so a run
killed mid-epoch resumes from its last saved epoch when started again (`dvc repro`), with the
same final numbers as a run never interrupted. The files are deleted once the run ends.
"""

from __future__ import annotations

import sys
import warnings

import torch

from cifarlab.core import paths
from cifarlab.core.durations import LONG_CPU_RUN_S, format_duration
from cifarlab.core.early_stop import EpochRange, epoch_range
from cifarlab.core.io import atomic_write, write_json
from cifarlab.core.params import Params, Run
from cifarlab.core.provenance import code_version, cpu_name
from cifarlab.core.runs import stage_args
from cifarlab.core.stage_main import run_main
from cifarlab.data.prepared import load_prepared
from cifarlab.engine.augment import pipeline_for
from cifarlab.engine.checkpoints import history_csv, save_checkpoint
from cifarlab.engine.device import Runtime, bf16_in_effect, setup_device
from cifarlab.engine.features import cacheable, cached_inputs
from cifarlab.engine.loop import FitResult, build_model, fit
from cifarlab.engine.resume import ResumeWriter, close_quietly, load_resume, run_fingerprint, state_path
from cifarlab.engine.step import time_train_step


def cpu_notice(
    out: str,
    epochs: int,
    n_train: int,
    n_test: int,
    s_per_image: float,
    stop: EpochRange | None = None,
    done: int = 0,
) -> str | None:
    """A one-line warning when this CPU run of one (run, seed) could take long; None when quick.
    An epoch is a training pass plus a test pass at about a third of a training step per image.
    With early stopping (`stop`), a range: the epochs expected to the recipe's `epochs`. A run
    resuming with `done` epochs saved counts the epochs left. At the fastest step timed
    (engine.step.time_train_step), so a lower bound, and says so: the notice before a long dvc
    repro and `cifarlab estimate` give the mean step's range."""
    per_epoch = s_per_image * (n_train + n_test / 3)
    left = epochs - done
    est = per_epoch * left
    if est < LONG_CPU_RUN_S:
        return None
    why = "at its fastest step timed here; `cifarlab estimate`: the expected range"
    what = f"{epochs} epochs" if not done else f"epochs {done + 1}-{epochs} (1-{done} saved)"
    if stop is None or stop.expected >= epochs:
        return (
            f"warning: no GPU: training {out} for {what} on {n_train:,} images will take at least "
            f"{format_duration(est)} on this CPU ({why})"
        )
    low = max(stop.expected - done, 1)  # past the expected stop, it may stop after any epoch
    return (
        f"warning: no GPU: training {out} for up to {what} on {n_train:,} images will take at least "
        f"{format_duration(per_epoch * low)}-{format_duration(est)} on this CPU "
        f"({stop.describe()}; {why})"
    )


def batch_notice(spec: Run, n_train: int) -> str | None:
    """A one-line warning when the recipe's batch is larger than the training split: the epoch is
    then one step on the whole split (torch.split gives one short batch), which trains at about
    chance. A warning, not a refusal: a smoke run on a small subset still checks the pipeline so
    (CI's subset reproduction trains resnet9's batch of 400 on 250 images)."""
    batch = spec.recipe.batch_size
    if batch <= n_train:
        return None
    key = f"runs.{spec.name}.batch_size" if "batch_size" in spec.overrides else f"{spec.model}.batch_size"
    return (
        f"warning: train {spec.out}: batch_size {batch:,} is larger than the training split ({n_train:,} "
        f"images), so every epoch is a single step on all of them; set {key} to at most {n_train:,} "
        f"(e.g. cifarlab set {key}={min(64, max(1, n_train // 4))}) or a larger data.train_subset"
    )


def run(p: Params, spec: Run, log=print, progress: dict | None = None) -> FitResult:
    """Train one (run, seed) and write its outputs. `progress` (optional) is filled with the
    resume file's path and the last epoch saved there, for the caller's message if interrupted."""
    progress = {} if progress is None else progress
    device = setup_device(p.train)
    # The model first: a bad architecture option fails before any data is read.
    model = build_model(spec.model, dict(spec.arch), spec.seed)
    train_x, train_y, test_x, test_y, stats, val_x, val_y = load_prepared(device, with_val=True)
    epochs = spec.epochs(p.train.max_epochs)
    rt = Runtime(device, p.train)
    pipe = pipeline_for(spec.recipe, stats, device)
    log(
        f"train {spec.out}: {sum(t.numel() for t in model.parameters()):,} parameters, {epochs} epochs, "
        f"{train_x.shape[0]} train / {test_x.shape[0]} test images, device {device}"
    )
    notice = batch_notice(spec, train_x.shape[0])
    if notice:
        log(notice)
    feature_cache = cacheable(model, spec.recipe)
    # Saved epochs first (a Ctrl-C during the step timing or the feature pass below must name
    # them; the CPU warning counts the epochs left); the fingerprint holds the settings in
    # effect: the compile mode if compiled, the feature batch if cached.
    fingerprint = run_fingerprint(
        spec,
        p.train,
        epochs,
        stats,
        (train_x.shape[0], val_x.shape[0], test_x.shape[0]),
        device,
        compiled=rt.compile_mode if rt.compile else None,
        feature_batch=rt.eval_batch_size if feature_cache else None,
    )
    resume_path = state_path(spec.out)
    resume = load_resume(resume_path, fingerprint, log)
    progress["resume_path"] = resume_path
    if resume is not None:
        progress["saved_epoch"] = resume["state"]["epoch"]
    if device.type == "cpu":
        s_per_image = time_train_step(model, spec.recipe, pipe, rt, batch=min(spec.recipe.batch_size, 64))
        notice = cpu_notice(
            spec.out,
            epochs,
            train_x.shape[0],
            test_x.shape[0],
            s_per_image,
            epoch_range(spec.name, spec, p.train.max_epochs),
            done=progress.get("saved_epoch", 0),
        )
        if notice:
            log(notice)
    if feature_cache:  # frozen features: computed once here, the head trained on them
        (train_x, test_x, val_x), pipe = cached_inputs(
            rt.prepare_model(model), spec.recipe, pipe, rt, train_x, test_x, val_x
        )
        log(
            f"train {spec.out}: frozen features computed once, {tuple(train_x.shape)} train "
            f"{str(train_x.dtype).removeprefix('torch.')}; training the head on them"
        )
    writer = ResumeWriter(resume_path, fingerprint, p.train.checkpoint_minutes)
    try:
        result = fit(
            model,
            train_x,
            train_y,
            test_x,
            test_y,
            spec.recipe,
            epochs,
            spec.seed,
            pipe,
            rt,
            log=log,
            desc=spec.out,
            val_x=val_x,
            val_y=val_y,
            resume=resume,
            on_epoch_end=writer,
        )
    except BaseException:  # killed or interrupted: the write in flight still lands, and is reported
        close_quietly(writer, log)
        if writer.saved_epoch is not None:
            progress["saved_epoch"] = writer.saved_epoch
        raise
    # A resume state that failed to write (disk full) must not fail a finished run: it is deleted next.
    close_quietly(writer, log)

    out = paths.CHECKPOINT_DIR / spec.out
    div = result.diverged
    best_state, best_epoch = result.best_state, result.best_epoch
    if best_state is None:  # diverged in its first epoch: no epoch to call best
        best_state, best_epoch = result.final_state, result.history[-1].epoch
    save_checkpoint(out / "final.pt", spec.model, spec.arch, result.final_state, result.history[-1].epoch, div)
    save_checkpoint(out / "best.pt", spec.model, spec.arch, best_state, best_epoch, div)
    val_ckpt = out / "val_best.pt"
    if result.val_best_state is not None:
        save_checkpoint(val_ckpt, spec.model, spec.arch, result.val_best_state, result.val_best_epoch)
    elif val_ckpt.exists():  # a leftover from a run with a validation split: not this run's
        val_ckpt.unlink()
    with atomic_write(paths.HISTORY_DIR / f"{spec.out}.csv", "w") as f:
        f.write(history_csv(result))
    write_json(
        paths.TIMING_DIR / f"{spec.out}.json",
        {
            "model": spec.model,
            "run": spec.name,
            "seed": spec.seed,
            "device": device.type,
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None,  # the CUDA the build targets
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "num_threads": torch.get_num_threads(),
            # The run's numerics (bf16 or fp32, memory format, compiled step, fused optimizer) and,
            # on a CPU, the bf16 in effect for this process ("amx_bf16", "avx512_bf16" or "none":
            # emulated, slow) with the check that found it (bf16_check)
            "numerics": run_numerics(rt, device),
            "feature_cache": feature_cache,
            "code": code_version(),  # git commit and whether src/ had uncommitted changes
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "diverged": div,
            "train_seconds": round(result.train_seconds, 3),  # this process's share when it resumed
            # every epoch's training and test pass, resumed parts included: the run's wall time
            "wall_seconds": round(sum(h.seconds for h in result.history), 3),
            "train_images_per_s": round(result.train_images / max(result.train_seconds, 1e-9), 1),
            "epoch_seconds": [round(h.seconds, 3) for h in result.history],
            # the last saved epoch of each resume ([] = never stopped): `cifarlab pack` carries it
            "resumed_after": result.resumed_after,
        },
    )
    writer.remove()  # every output is written: nothing left to resume
    return result


def run_numerics(rt: Runtime, device: torch.device) -> dict:
    numerics = {
        "precision": rt.precision,
        "memory_format": rt.memory_format,
        "compile": rt.compile_mode if rt.compile else False,
        "fused_optimizer": rt.fused_optimizer,
        "cpu_bf16": None,
    }
    if device.type == "cpu":
        numerics.update(bf16_in_effect())  # cpu_bf16 and bf16_check
    return numerics


def main(argv: list[str] | None = None) -> None:
    p, spec = stage_args("python -m cifarlab.train", __doc__, argv)
    progress: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            run(p, spec, log=lambda s: print(s, file=sys.stderr, flush=True), progress=progress)
    except KeyboardInterrupt:
        saved = progress.get("saved_epoch")
        where = (
            f"epochs 1-{saved} are saved in {progress['resume_path']}; rerun (dvc repro) to resume from there"
            if saved
            else "no epoch had finished; rerun (dvc repro) to start again"
        )
        print(f"interrupted: train {spec.out} stopped cleanly; {where}", file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    run_main(main)
