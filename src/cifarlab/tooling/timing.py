"""Each network's training step and test pass, and a stage process's start-up, timed now on this
machine, beside whatever else it runs (imports torch; `tooling.estimate` turns them into stage
times and caches them).

    python -m cifarlab.tooling.timing [--startup] RUN...   # time these runs' networks anew (params.yaml's
                                                           # numerics, quickly) and the start-up, cached

(the notice's timing: the notice itself never imports torch).
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
import time
import warnings
from contextvars import ContextVar
from pathlib import Path

from cifarlab.core.params import Params, TrainParams
from cifarlab.engine.augment import BatchPipeline
from cifarlab.engine.device import Runtime, bf16_in_effect, select_device, setup_device
from cifarlab.engine.loop import build_model, predict
from cifarlab.engine.step import time_model_steps
from cifarlab.tooling.estimate import (
    Startup,
    StepTime,
    as_step,
    cached_startup,
    cached_times,
    find_bench,
    loadavg,
    needed_keys,
    store_times,
    times_from_bench,
)

# engine.step.time_model_steps, the one timing loop: its warm-up steps untimed (oneDNN primitives,
# the allocator, the optimizer's state), then at least MIN_STEPS and MIN_TIMED_S seconds of steps (a
# lenet5 step takes ~5 ms), up to its step cap. Their MEAN is the estimate, and the mean of their
# slower half its upper end: on a busy 2-core VM one step ran 2x another a minute later, and the
# fastest of three made estimates 4-24x optimistic.
MIN_STEPS, MIN_TIMED_S = 4, 2.0
# The other precision, timed for the hint's ratio only: fewer steps, no test pass
QUICK_STEPS, QUICK_TIMED_S = 2, 0.5
# A test pass: one batch of at most EVAL_IMAGES images (engine.loop.predict, at the eval batch),
# once untimed, then for at least MIN_EVAL_S
EVAL_IMAGES, MIN_EVAL_S = 256, 0.5
# What a training stage's process imports before its first step
STARTUP_CODE = "import cifarlab.train"
# Whether `measure` times quickly (set by step_times): apart from its arguments, so that measure
# keeps the (train, keys, log) signature tests fake
_quick: ContextVar[bool] = ContextVar("quick", default=False)


def summarize(step_s: list[float], batch: int) -> tuple[float, float]:
    """(mean seconds per image, mean seconds per image of the slower half of the steps)."""
    slow = sorted(step_s)[len(step_s) // 2 :]
    return sum(step_s) / (len(step_s) * batch), sum(slow) / (len(slow) * batch)


def time_network(model, recipe, pipe: BatchPipeline, rt: Runtime, batch: int, quick: bool = False) -> StepTime:
    """One network's training step (time_model_steps, on a copy of `model`) and test pass, now."""
    import torch

    steps, seconds = (QUICK_STEPS, QUICK_TIMED_S) if quick else (MIN_STEPS, MIN_TIMED_S)
    timed = time_model_steps(model, recipe, pipe, rt, batch, steps, seconds)
    train_s, slow_s = summarize(timed.step_s, batch)
    eval_s = train_s / 3
    if not quick:
        model = rt.prepare_model(copy.deepcopy(model))
        g = torch.Generator(device=rt.device).manual_seed(0)
        n = min(EVAL_IMAGES, rt.eval_batch_size)
        xe = torch.randint(0, 256, (n, 3, 32, 32), generator=g, device=rt.device, dtype=torch.uint8)
        predict(model, xe, pipe, rt).sum().item()  # untimed: the eval batch's own primitives
        k, start = 0, time.perf_counter()
        while k < 1 or time.perf_counter() - start < MIN_EVAL_S:
            predict(model, xe, pipe, rt).sum().item()  # .item(): done (a GPU's pass is asynchronous)
            k += 1
        eval_s = (time.perf_counter() - start) / (k * n)
    return StepTime(train_s, slow_s, eval_s)


def measure(train: TrainParams, keys: dict[str, tuple[str, dict, object]], log=None) -> dict[str, StepTime]:
    """Each key's training step (mean and slower half) and test pass in the numerics of `train`,
    now, beside whatever else runs, with the load average beside it (quick, see step_times: fewer
    steps, no test pass). log(line): after each network."""
    quick = _quick.get()
    device = setup_device(train)
    rt = Runtime(device, train)
    if rt.bf16 and device.type == "cpu" and log is not None and keys:
        bf16 = bf16_in_effect()
        log(
            f"bf16 in effect on this CPU: {bf16['cpu_bf16'] if bf16['cpu_bf16'] != 'none' else 'none (emulated)'} "
            f"({bf16['bf16_check']})"
        )
    out = {}
    for key, (model_name, arch, recipe) in sorted(keys.items()):
        load = loadavg()[0]
        batch = int(key.rsplit("@", 1)[1])
        if "pretrained" in arch:
            arch = {**arch, "pretrained": False, "weights": None}  # random weights time the same
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(model_name, arch, 0)
        pipe = BatchPipeline(recipe.augment, (0.5,) * 3, (0.25,) * 3, device)
        t = time_network(model, recipe, pipe, rt, batch, quick)
        out[key] = StepTime(t.train_s, t.slow_s, t.eval_s, load, time.time())
        if log is not None:
            tested = "" if quick else f", testing {1 / t.eval_s:,.0f}"
            log(
                f"timed {key} ({rt.precision}, {rt.memory_format}{', compiled' if rt.compile else ''}): "
                f"{1 / t.train_s:,.0f} images/s training (mean step; slower half {1 / t.slow_s:,.0f}){tested}"
            )
    return out


def step_times(
    p: Params,
    stages: list[str],
    remeasure: bool = False,
    train: TrainParams | None = None,
    log=None,
    root: str | Path = ".",
    quick: bool = False,
) -> dict[str, StepTime]:
    """Each network the stages train, in the numerics of `train` (default p.train): all timed now
    with `remeasure` (cifarlab estimate), else the fresh cached ones and the rest timed now. What
    is timed replaces the cache's. quick: fewer steps and no test pass (the other precision, for
    the hint's ratio)."""
    train = p.train if train is None else train
    keys = needed_keys(p, stages)
    have = {} if remeasure else cached_times(train, root)
    missing = {k: v for k, v in keys.items() if k not in have}
    if missing:
        load, token = loadavg()[0], _quick.set(quick)
        try:
            measured = measure(train, missing, log)
        finally:
            _quick.reset(token)
        timed = {}
        for k, t in measured.items():  # a bare seconds-per-image (a test's fake) as a StepTime
            t = as_step(t)
            timed[k] = t if t.when is not None else dataclasses.replace(t, load=load, when=time.time())
        store_times(train, timed, root)
        have = {**have, **timed}
    return {k: have[k] for k in keys}


def measure_startup(root: str | Path = ".") -> Startup:
    """Seconds a new interpreter takes here, now, to import a training stage's module (torch)."""
    load = loadavg()[0]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", STARTUP_CODE], cwd=root, check=True, capture_output=True)
    return Startup(time.perf_counter() - start, load, time.time())


def startup_time(p: Params, remeasure: bool = False, root: str | Path = ".") -> Startup:
    """The stage start-up: measured now with `remeasure`, else the fresh cached one or measured now."""
    cached = None if remeasure else cached_startup(p.train, root)
    if cached is not None:
        return cached
    startup = measure_startup(root)
    store_times(p.train, {}, root, startup=startup)
    return startup


def gpu_bench(p: Params, stages: list[str]) -> tuple[dict[str, float], dict[str, float], str] | None:
    """(seconds per image, setup seconds, a note naming the file) from benchmarks/bench_gpu.py's
    result for this GPU, when one is committed and covers every model the stages train; else None
    (the caller times steps itself)."""
    import torch

    if select_device().type != "cuda":
        return None
    found = find_bench(torch.cuda.get_device_name())
    if found is None:
        return None
    path, bench = found
    times, setup, source = times_from_bench(p, bench)
    if any(k not in times for k in needed_keys(p, stages)):
        return None
    kinds = sorted(set(source.values()))
    return (
        times,
        setup,
        (
            f"seconds per image: {path} ({' and '.join(kinds)} steps, measured "
            f"{bench.get('when', '?')}; AlexNet's features once per run)"
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """Time the networks of the named runs anew (params.yaml's numerics) and, with --startup, the
    stage start-up, and cache them; prints nothing. The notice's timing: quick (a few steps each,
    no test pass: the whole pipeline has 21 networks); `cifarlab estimate` times them fully."""
    from cifarlab.core.params import load_params

    args = sys.argv[1:] if argv is None else argv
    p = load_params(check_models=False)
    runs = [a for a in args if a in p.runs]
    if runs:
        step_times(p, [f"train@{r}" for r in runs], remeasure=True, quick=True)
    if "--startup" in args:
        startup_time(p, remeasure=True)


if __name__ == "__main__":
    main()
