"""Throughput benchmark: cifarlab's on-device batch augmentation vs torchvision's DataLoader,
and each registered model's training throughput. One run, same data, same torch thread count.

    python benchmarks/bench_throughput.py                       # everything, defaults
    python benchmarks/bench_throughput.py --models resnet9 dnn --json bench.json
    python benchmarks/bench_throughput.py --skip-models --repeats 5

1. Training-data throughput (images/s): per-sample random crop (zero pad 4) + horizontal flip +
   normalize into float (B, 3, 32, 32) batches of 128, one full epoch over N images:
     baseline  torch DataLoader (shuffle, `--workers` workers, persistent) over a Dataset built
               like torchvision.datasets.CIFAR10 (uint8 HWC numpy array, Image.fromarray per
               item) with Compose([RandomCrop(32, 4), RandomHorizontalFlip(), ToTensor(), Normalize]);
     cifarlab  uint8 (N, 3, 32, 32) tensor on the device, torch.randperm with a seeded generator,
               x[idx] per batch, BatchPipeline("crop_flip", mean, std, device)(x[idx], gen): the
               exact calls engine.fit makes.
   Both also fetch the labels and consume every batch (summed into an accumulator read at the
   end). One warm-up epoch each (it starts the DataLoader's persistent workers, so worker start-up
   is not timed), then `--repeats` timed epochs, baseline and cifarlab ALTERNATING so that a
   burst of load from other processes hits both. Reported: median images/s and the ratio of the
   medians (plus the range of the per-repeat ratios).
2. Model training throughput (images/s): each model in `--models` built with its params.yaml
   arch options (alexnet_transfer with pretrained=False), its recipe's pipeline, optimizer and
   per-batch schedule, batch = min(recipe batch_size, --max-batch); `--steps` timed steps after
   `--warmup-steps`, each exactly engine.fit's step (augment + forward + loss + backward + grad
   clip + optimizer + scheduler).

Timings are not results: they vary from run to run and with the other load on the machine
(the header prints the load average before and after). Run from anywhere; the repository root
is found from this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # works without `pip install -e .` too
    sys.path.insert(0, str(ROOT / "src"))

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cifarlab.core import paths
from cifarlab.core.params import load_params
from cifarlab.core.provenance import cpu_name
from cifarlab.engine.augment import (
    BatchPipeline,
    pipeline_for,
)
from cifarlab.engine.device import Runtime, select_device, synchronize
from cifarlab.engine.loop import build_model
from cifarlab.engine.step import TrainStep, time_steps
from cifarlab.models import list_models

BATCH = 128  # the data benchmark's batch size (both paths)
NO_STATS = ((0.5,) * 3, (0.5,) * 3)  # mean, std when there is no data/prepared/stats.json


# ---------------------------------------------------------------------------------------------
# data


class CifarLikeDataset(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: numpy HWC uint8 -> PIL -> transform."""

    def __init__(self, data_hwc: np.ndarray, targets: list[int], transform):
        self.data = data_hwc
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.data[i])
        return self.transform(img), self.targets[i]


def load_data(n: int, seed: int, random_only: bool):
    """(x_hwc uint8 (n, 32, 32, 3) numpy, y int64 (n,) numpy, (mean, std), description)."""
    train_file = ROOT / paths.TRAIN_FILE
    stats_file = ROOT / paths.STATS_FILE
    if not random_only and train_file.is_file():
        from cifarlab.data.prepared import load_split

        x, y = load_split(train_file)
        if n < len(x):
            x, y = x[:n], y[:n]
        stats = NO_STATS
        if stats_file.is_file():
            s = json.loads(stats_file.read_text())
            stats = (tuple(s["mean"]), tuple(s["std"]))
        return np.ascontiguousarray(x), np.asarray(y, dtype=np.int64), stats, f"{len(x)} images of {paths.TRAIN_FILE}"
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.int64)
    why = "--random-data" if random_only else f"no {paths.TRAIN_FILE}"
    return x, y, NO_STATS, f"{n} random uint8 images ({why})"


def baseline_epoch(loader: DataLoader) -> tuple[float, float]:
    """(seconds, checksum) of one epoch of the DataLoader."""
    acc = torch.zeros((), dtype=torch.float64)
    acc_y = torch.zeros((), dtype=torch.int64)
    t0 = time.perf_counter()
    for xb, yb in loader:
        acc += xb.sum()
        acc_y += yb.sum()
    checksum = float(acc) + float(acc_y)
    return time.perf_counter() - t0, checksum


def project_epoch(x: torch.Tensor, y: torch.Tensor, pipe: BatchPipeline, gen: torch.Generator) -> tuple[float, float]:
    """(seconds, checksum) of one epoch of engine.fit's data path: randperm, x[idx], pipe."""
    device = x.device
    acc = torch.zeros((), dtype=torch.float64, device=device)
    acc_y = torch.zeros((), dtype=torch.int64, device=device)
    synchronize(device)
    t0 = time.perf_counter()
    perm = torch.randperm(x.shape[0], generator=gen, device=device)
    for idx in torch.split(perm, BATCH):
        xb = pipe(x[idx], gen, train=True)
        yb = y[idx]
        acc += xb.sum()
        acc_y += yb.sum()
    checksum = float(acc) + float(acc_y)  # also synchronizes a CUDA device
    return time.perf_counter() - t0, checksum


def bench_data(x_hwc, y_np, stats, device, args) -> dict:
    n = len(x_hwc)
    mean, std = stats
    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    ds = CifarLikeDataset(x_hwc, y_np.tolist(), tf)
    loader = DataLoader(
        ds,
        batch_size=BATCH,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    x = torch.from_numpy(x_hwc).permute(0, 3, 1, 2).contiguous().to(device)  # as train.load_prepared
    y = torch.from_numpy(y_np).to(device)
    pipe = BatchPipeline("crop_flip", mean, std, device)
    gen = torch.Generator(device=device).manual_seed(args.seed)

    baseline_epoch(loader)  # warm-up: starts the persistent workers
    project_epoch(x, y, pipe, gen)  # warm-up: allocator, kernels
    base_s, proj_s = [], []
    for _ in range(args.repeats):  # alternate, so a burst of outside load hits both
        base_s.append(baseline_epoch(loader)[0])
        proj_s.append(project_epoch(x, y, pipe, gen)[0])
    del loader  # shuts the persistent workers down

    def summary(secs):
        ips = [n / s for s in secs]
        return {
            "median_images_per_s": statistics.median(ips),
            "min_images_per_s": min(ips),
            "max_images_per_s": max(ips),
            "epoch_seconds": secs,
        }

    base, proj = summary(base_s), summary(proj_s)
    pair = [b / p for b, p in zip(base_s, proj_s, strict=True)]  # per-repeat speedup: baseline s / project s
    return {
        "images": n,
        "batch": BATCH,
        "repeats": args.repeats,
        "baseline": {"name": f"DataLoader + PIL transforms ({args.workers} workers)", **base},
        "project": {"name": f"cifarlab BatchPipeline ({device.type})", **proj},
        "ratio": proj["median_images_per_s"] / base["median_images_per_s"],
        "ratio_per_repeat": pair,
    }


# ---------------------------------------------------------------------------------------------
# models


def bench_model(name: str, mp, x: torch.Tensor, y: torch.Tensor, stats, rt: Runtime, args) -> dict:
    """engine.fit's training step, timed: `args.steps` steps after `args.warmup_steps`."""
    device = rt.device
    arch = dict(mp.arch)
    if name == "alexnet_transfer":
        arch["pretrained"] = False  # random frozen features cost the same; no weights download
        arch["weights"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alexnet_transfer's RandomFeaturesWarning
        model = build_model(name, arch, args.seed)
    recipe = mp.recipe
    pipe = pipeline_for(mp.recipe, {"mean": stats[0], "std": stats[1]}, device)
    bs = min(recipe.batch_size, args.max_batch)
    model = rt.prepare_model(model)
    step_fn = TrainStep(model, recipe, pipe, rt, recipe.epochs, max(1, math.ceil(x.shape[0] / bs)))
    gen = torch.Generator(device=device).manual_seed(args.seed)
    torch.manual_seed(args.seed)
    perm = torch.randperm(x.shape[0], generator=gen, device=device)
    batches = list(torch.split(perm, bs))
    model.train()

    def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:  # step i's batch, gathered as engine.fit does
        idx = batches[i % len(batches)]
        return x.index_select(0, idx), y.index_select(0, idx)

    # each step synchronised and timed on its own, its batch's gather included
    total = time_steps(step_fn, batch, gen, warmup=args.warmup_steps, steps=args.steps).total_s
    return {
        "model": name,
        "batch": bs,
        "recipe_batch": recipe.batch_size,
        "augment": recipe.augment,
        "steps": args.steps,
        "images_per_s": bs * args.steps / total,
        "seconds_per_step": total / args.steps,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# ---------------------------------------------------------------------------------------------
# report


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {os.cpu_count()} logical cores)"


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def print_data(d: dict) -> None:
    print(f"\n1. Training-data throughput: crop (pad 4) + flip + normalize -> float batches of {d['batch']}")
    print(
        f"   {d['images']} images per epoch; median of {d['repeats']} epoch(s) after 1 warm-up each, "
        "paths alternating\n"
    )
    w = max(len(d["baseline"]["name"]), len(d["project"]["name"]))
    print(f"   {'path':<{w}}  {'images/s':>10}  {'min':>10}  {'max':>10}")
    for k in ("baseline", "project"):
        r = d[k]
        print(
            f"   {r['name']:<{w}}  {r['median_images_per_s']:>10,.0f}  {r['min_images_per_s']:>10,.0f}  "
            f"{r['max_images_per_s']:>10,.0f}"
        )
    pr = d["ratio_per_repeat"]
    print(f"\n   ratio cifarlab / baseline: {d['ratio']:.1f}x  (per-repeat ratios {min(pr):.1f}x .. {max(pr):.1f}x)")


def print_models(rows: list[dict], steps: int, warmup: int, device: torch.device) -> None:
    print(
        f"\n2. Model training throughput on {device.type}: {steps} timed step(s) after {warmup} warm-up "
        "(augment + forward + backward + optimizer, as engine.fit)\n"
    )
    print(
        f"   {'model':<18} {'batch':>5} {'(recipe)':>8}  {'augment':<20} {'params':>11}  {'images/s':>9}  {'s/step':>7}"
    )
    for r in rows:
        print(
            f"   {r['model']:<18} {r['batch']:>5} {'(' + str(r['recipe_batch']) + ')':>8}  {r['augment']:<20} "
            f"{r['parameters']:>11,}  {r['images_per_s']:>9,.1f}  {r['seconds_per_step']:>7.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50_000, help="images per data epoch (default 50000)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(T) in this process (default: leave torch's default)",
    )
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the baseline (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per data path (default 3)")
    ap.add_argument(
        "--models", nargs="*", default=None, help="models to time (default: all registered); give no names to skip"
    )
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per model (default 3)")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--max-batch", type=int, default=128, help="cap on the recipe batch size (default 128)")
    ap.add_argument("--skip-data", action="store_true", help="skip the data-throughput part")
    ap.add_argument("--skip-models", action="store_true", help="skip the model part (same as --models with no names)")
    ap.add_argument("--random-data", action="store_true", help="random images even if data/prepared exists")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available, as engine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    for k in ("images", "repeats", "steps", "max_batch"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.workers < 0 or args.warmup_steps < 0 or (args.threads is not None and args.threads < 1):
        ap.error("--workers/--warmup-steps must be >= 0, --threads >= 1")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else select_device()
    p = load_params(ROOT / "params.yaml")
    models = [] if args.skip_models else list_models() if args.models is None else args.models
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(list_models())}")

    x_hwc, y_np, stats, data_desc = load_data(args.images, args.seed, args.random_data)
    header = {
        "device": device_name(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy_env": os.environ.get("OMP_WAIT_POLICY"),
        "data": data_desc,
        "mean_std": stats,
        "loadavg_start": loadavg(),
    }
    print("cifarlab throughput benchmark (timings vary run to run and with other load on the machine)")
    print(
        f"device {header['device']} | torch {header['torch']} | torchvision {header['torchvision']} | "
        f"python {header['python']}"
    )
    print(
        f"torch threads {header['threads']} (interop {header['interop_threads']}) | data: {data_desc} | "
        f"load average at start {header['loadavg_start']}"
    )
    out: dict = {"header": header}

    if not args.skip_data:
        out["data"] = bench_data(x_hwc, y_np, stats, device, args)
        print_data(out["data"])

    if models:
        rt = Runtime(device, p.train)
        x = torch.from_numpy(x_hwc).permute(0, 3, 1, 2).contiguous().to(device)
        y = torch.from_numpy(y_np).to(device)
        rows = []
        for name in models:
            if name not in p.recipes:
                print(f"skipping {name}: no section in params.yaml", file=sys.stderr)
                continue
            rows.append(bench_model(name, p.recipes[name], x, y, stats, rt, args))
        out["models"] = rows
        print_models(rows, args.steps, args.warmup_steps, device)

    header["loadavg_end"] = loadavg()
    print(f"\nload average at end {header['loadavg_end']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
