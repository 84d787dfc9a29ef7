"""What bench_cpu.py and bench_gpu.py share: the repository's paths, the run measured for each
model, one model's training step on random data (timed by engine.step.time_steps, the project's
one step timer), their log lines and their JSON files.

Not a script: each benchmark imports it from this folder (a script's own folder is on sys.path),
so it travels wherever benchmarks/ does (the GPU kit: docs/gpu.md).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # works without `pip install -e .` too
    sys.path.insert(0, str(ROOT / "src"))

import torch
from torch.utils.flop_counter import FlopCounterMode

from cifarlab.core.provenance import code_version
from cifarlab.core.runs import resolve
from cifarlab.engine.augment import pipeline_for
from cifarlab.engine.device import Runtime, configure_determinism
from cifarlab.engine.features import FeaturePipeline, cacheable, embed_all
from cifarlab.engine.loop import build_model
from cifarlab.engine.step import StepTiming, TrainStep, time_steps
from cifarlab.models import list_models

# Untimed steps before the timed ones: the first timed apart (compilation, if any), the second
# because CUDA graphs are recorded on the first replays
WARMUP = 2


def make_log(name: str):
    """log(msg): one line '[name HH:MM:SS] msg' on stdout, flushed (a cut-off run keeps it)."""

    def log(msg: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    return log


def save_json(path: Path, result: dict) -> None:
    """Write `result` to `path` at once (a temporary file, then renamed): a run cut off mid-write
    leaves the previous version whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    tmp.replace(path)


def run_header(p) -> dict:
    """What every result records beside its device: the code, params.yaml's train section, when."""
    return {
        "code": code_version(ROOT),
        "train_params": p.train.model_dump(mode="json"),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def representative_runs(p) -> dict[str, str]:
    """model -> the run measured for it: the run named like the model, else the first relu/none
    one of the table (report 004's default cell), else its first run."""
    out = {}
    for model in list_models():
        runs = [r for r in p.runs if p[r].model == model]
        if not runs:
            continue
        pick = [r for r in runs if r == model] or [r for r in runs if "relu-2_1_1-crop_flip" in r and "blur" not in r]
        out[model] = (pick or runs)[0]
    return out


class Case:
    """One model, its recipe, random data of one batch shape, and steps to time.

    tiny: bench_gpu.py --tiny's CPU check: batch <= 8, AlexNet at 64x64, compilation with the
    "eager" backend (graph capture without code generation).
    """

    def __init__(self, p, run: str, device: torch.device, tiny: bool = False):
        self.run, self.spec = run, resolve(p, run)
        self.model_name = self.spec.model
        self.recipe = self.spec.recipe
        arch = dict(self.spec.arch)
        if "pretrained" in arch:  # random frozen weights cost the same; nothing to download
            arch.update(pretrained=False, weights=None)
            if tiny:
                arch["image_size"] = 64
        self.arch = arch
        self.batch = min(self.recipe.batch_size, 8) if tiny else self.recipe.batch_size
        self.device, self.p, self.tiny = device, p, tiny
        stats = {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
        self.pipe = pipeline_for(self.recipe, stats, device)
        g = torch.Generator(device=device).manual_seed(0)
        self.x = torch.randint(0, 256, (self.batch, 3, 32, 32), generator=g, device=device, dtype=torch.uint8)
        self.y = torch.randint(0, 10, (self.batch,), generator=g, device=device)

    def build(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random AlexNet features: intended here
            return build_model(self.model_name, self.arch, 0)

    def runtime(self, **train) -> Runtime:
        """The numerics of params.yaml's train section with `train` keys changed (compile=True,
        bf16=False, ...); train.deterministic applied to the device (a no-op on a CPU)."""
        cfg = self.p.train.model_copy(update=train)
        configure_determinism(self.device, cfg.deterministic)
        rt = Runtime(self.device, cfg)
        if self.tiny:
            rt.compile_backend = "eager"
        return rt

    def step_fn(self, rt: Runtime):
        """(TrainStep, its inputs): for a cacheable model (AlexNet) the head on features."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = rt.prepare_model(self.build())
            x, pipe = self.x, self.pipe
            if cacheable(model, self.recipe):
                x, pipe = embed_all(model, self.x, self.pipe, rt), FeaturePipeline()
            return TrainStep(model, self.recipe, pipe, rt, epochs=1, steps_per_epoch=1000), x

    def time_steps(self, rt: Runtime, **how) -> StepTiming:
        """A fresh step in `rt`'s numerics, timed after WARMUP steps; `how`: time_steps's
        steps, min_seconds, max_steps, each."""
        step, x = self.step_fn(rt)
        return time_steps(step, (x, self.y), torch.Generator(device=self.device).manual_seed(1), warmup=WARMUP, **how)

    def flops_per_image(self, rt: Runtime) -> float:
        """Training FLOPs per image (forward + backward; as the model trains: AlexNet's head only,
        its features counted apart) by torch's FlopCounterMode, on one step in `rt` (eager)."""
        step, x = self.step_fn(rt)
        with FlopCounterMode(display=False) as counter:
            step(x, self.y, torch.Generator(device=self.device).manual_seed(1))
        return counter.get_total_flops() / self.batch
