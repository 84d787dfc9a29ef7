"""Seconds per training image of each model on this machine, timed from real training steps
(imports torch; `tooling.estimate` turns them into stage times and caches them).
"""

from __future__ import annotations

import warnings

from cifarlab.core.params import Params, TrainParams
from cifarlab.engine.augment import BatchPipeline
from cifarlab.engine.device import Runtime, bf16_in_effect, select_device, setup_device
from cifarlab.engine.loop import build_model
from cifarlab.engine.step import time_train_step
from cifarlab.tooling.estimate import STEPS, cached_times, find_bench, needed_keys, store_times, times_from_bench


def measure(train: TrainParams, keys: dict[str, tuple[str, dict, object]], log=None) -> dict[str, float]:
    """Seconds per training image for each key in the numerics of `train`: the fastest of STEPS
    steps after a warm-up (the least disturbed by whatever else the machine runs, as timeit
    advises). log(line): called after each model, with its time."""
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
        batch = int(key.rsplit("@", 1)[1])
        if "pretrained" in arch:
            arch = {**arch, "pretrained": False, "weights": None}  # random weights time the same
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(model_name, arch, 0)
        pipe = BatchPipeline(recipe.augment, (0.5,) * 3, (0.25,) * 3, device)
        out[key] = time_train_step(model, recipe, pipe, rt, batch=batch, steps=STEPS)
        if log is not None:
            log(
                f"timed {key} ({rt.precision}, {rt.memory_format}{', compiled' if rt.compile else ''}): "
                f"{1 / out[key]:,.0f} images/s"
            )
    return out


def step_times(
    p: Params, stages: list[str], remeasure: bool = False, train: TrainParams | None = None, log=None
) -> dict[str, float]:
    """Seconds per image for every model the stages train, in the numerics of `train` (default
    p.train): cached ones reused unless `remeasure`; the rest timed here (torch imported) and
    added to the cache."""
    train = p.train if train is None else train
    keys = needed_keys(p, stages)
    have = {} if remeasure else cached_times(train)
    missing = {k: v for k, v in keys.items() if k not in have}
    if missing:
        have = {**have, **store_times(train, measure(train, missing, log))}  # the fastest seen of each
    return {k: have[k] for k in keys}


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
