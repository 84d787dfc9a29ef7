"""GPU benchmark: what cifarlab's engine achieves on one GPU, in one call that fits 8 minutes.

    python benchmarks/bench_gpu.py --archive cifar-10-python.tar.gz --json $OUT/bench_gpu.json
    python benchmarks/bench_gpu.py --tiny            # the same code on a CPU, random data, seconds

Sections, in this order (each timed against --budget-minutes, default 7.5, compilation included;
one that would not fit is recorded as skipped, one that fails is recorded with its error, and the
JSON is rewritten after every section, so a cut-off run still leaves what it measured):

1. peak: the GPU's measured bf16 matmul throughput (TFLOP/s, 8192^3 matmuls): the ceiling the
   models' achieved TFLOP/s are read against.
2. models: every registered model with its params.yaml recipe at the recipe's batch size (one
   representative run each): training FLOPs per image (torch.utils.flop_counter, forward +
   backward), images/s eager and compiled (`train.compile`, its mode; compile seconds apart),
   achieved TFLOP/s and % of peak. alexnet_transfer is measured as it trains (engine/features.py):
   the frozen features once (images/s of `embed`) and head steps on them.
3. determinism: resnet18 compiled, `train.deterministic` true vs false, images/s.
4. bit identity: two runs of 300 resnet18 steps (compiled, deterministic), sha256 of the weights;
   a third with torch.utils.deterministic.fill_uninitialized_memory = False.
5. resnet9 vs airbench: cifarlab's resnet9 recipe (20 epochs, batch 400) trained with `fit`,
   seconds to 93% and to 94% test top-1 (first epoch at or above; "not reached" otherwise), and
   the `airbench` package's airbench93 / airbench94 on the same data and GPU (their own timers'
   scope: training and TTA evaluation; a warm-up run first, as airbench does). airbench reads a
   ./cifar10 folder and downloads it when missing: the folder is written here from the archive,
   so nothing is fetched.
6. projection: the wall time of every training run of params.yaml and of the whole reproduction,
   from the compiled images/s (eager where compile failed), by `cifarlab estimate`'s own plan.

--tiny: CPU, random images, batch <= 8, 2 timed steps, models lenet5, resnet9, resnet18 and
alexnet_transfer (at 64x64) unless --models says otherwise, lenet5 for sections 3-4, compilation
with the "eager" backend (graph capture without code generation), resnet9 for one epoch of 64
images, no airbench, fp32 on a CPU that emulates bf16: the same code paths in about a minute, so
this script cannot rot between GPU sessions (a slow test).

Needs torch, numpy, pydantic, ruamel.yaml (+ airbench for section 5) and the archive in
the official layout for section 5 (--archive; without it, section 5 is skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _common.py beside it, however this is run
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import ROOT, Case, make_log, representative_runs, run_header, save_json
from torch.utils.flop_counter import FlopCounterMode

from cifarlab.core.durations import format_duration
from cifarlab.core.params import load_params
from cifarlab.core.provenance import cpu_name
from cifarlab.core.runs import resolve
from cifarlab.engine.augment import pipeline_for
from cifarlab.engine.device import (
    Runtime,
    bf16_in_effect,
    configure_determinism,
    setup_device,
    synchronize,
)
from cifarlab.engine.features import cacheable, embed_all
from cifarlab.engine.loop import build_model, fit
from cifarlab.tooling import estimate

TARGETS = (0.93, 0.94)
# Order of the compiled measurements: the models that decide the total first (report 004's grid
# is 97% of the arithmetic), then resnet9 (the airbench comparison), then the rest.
COMPILE_ORDER = (
    "resnet18",
    "resnet9",
    "custom_resnet",
    "resnet",
    "alexnet_transfer",
    "cnn",
    "hw2_cnn",
    "dnn",
    "lenet5",
)
log = make_log("bench_gpu")


class Bench:
    def __init__(self, args):
        self.args = args
        self.tiny = args.tiny
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget_minutes * 60
        self.result: dict = {"tiny": self.tiny, "sections": {}}
        self.json = args.json

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.result["elapsed_seconds"] = round(time.monotonic() - self.t0, 1)
        save_json(self.json, self.result)

    def section(self, name: str, fn, needs_s: float) -> None:
        """Run one section if `needs_s` seconds (its estimate) are left; record ok/skipped/error."""
        if self.left() < needs_s:
            self.result["sections"][name] = f"skipped: {self.left():.0f}s of budget left, needs ~{needs_s:.0f}s"
            log(f"{name}: skipped (budget)")
        else:
            t = time.monotonic()
            try:
                fn()
                self.result["sections"][name] = f"ok in {time.monotonic() - t:.1f}s"
            except Exception as err:  # noqa: BLE001 - one failing section must not lose the others
                self.result["sections"][name] = f"error: {type(err).__name__}: {err}"[:500]
                log(f"{name}: FAILED: {type(err).__name__}: {err}")
                traceback.print_exc()
        self.save()


def header(device: torch.device, p) -> dict:
    cuda = device.type == "cuda"
    return {
        "device": {
            "type": device.type,
            "name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
            "capability": list(torch.cuda.get_device_capability(device)) if cuda else None,
            "memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else None,
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "cudnn": torch.backends.cudnn.version() if cuda else None,
        },
        **run_header(p),
    }


def peak_tflops(device: torch.device, tiny: bool) -> dict:
    """Measured dense matmul throughput: bf16 n^3 on CUDA (fp32 on a CPU), best of 3 rounds."""
    n, dtype, iters = (512, torch.float32, 3) if tiny or device.type != "cuda" else (8192, torch.bfloat16, 20)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "tflops": round(2 * n**3 * iters / best / 1e12, 2)}


def timed(case: Case, rt: Runtime, steps: int) -> dict:
    """First step (compilation, if any) timed apart, one more warm-up, then `steps` steps
    synchronised once, after the last (the GPU runs them back to back, as in training): images/s."""
    t = case.time_steps(rt, steps=steps, each=False)
    return {
        "first_step_seconds": round(t.first_s, 3),
        "images_per_s": round(t.images_per_s(case.batch), 1),
        "loss_finite": bool(torch.isfinite(t.loss).item()),
    }


def embed_rate(case: Case, n: int) -> dict:
    """AlexNet's frozen features: images/s of embed_all over n images, and its FLOPs per image."""
    rt = case.runtime(compile=False)
    model = rt.prepare_model(case.build())
    x = case.x.repeat(math.ceil(n / case.batch), 1, 1, 1)[:n]
    embed_all(model, x[: rt.eval_batch_size], case.pipe, rt)  # warm-up
    synchronize(case.device)
    t = time.perf_counter()
    embed_all(model, x, case.pipe, rt)
    synchronize(case.device)
    dt = time.perf_counter() - t
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.embed(case.pipe(case.x, None, train=False))
    return {
        "images": n,
        "images_per_s": round(n / dt, 1),
        "flops_per_image": counter.get_total_flops() / case.batch,
        "seconds_full_set": round(60_000 / (n / dt), 2),
    }


def measure_models(bench: Bench, p, device: torch.device, cases: dict[str, Case], compiled: bool) -> None:
    steps = 2 if bench.tiny else 20
    rows = bench.result.setdefault("models", [])
    by_model = {r["model"]: r for r in rows}
    order = [m for m in COMPILE_ORDER if m in cases] + [m for m in cases if m not in COMPILE_ORDER]
    for name in order:
        case = cases[name]
        row = by_model.get(name)
        if row is None:
            row = {"model": name, "run": case.run, "batch": case.batch, "augment": case.recipe.augment}
            rows.append(row)
            by_model[name] = row
        key = "compiled" if compiled else "eager"
        if compiled and bench.left() < (20 if bench.tiny else 75):
            row[key] = "skipped: budget"
            continue
        try:
            if not compiled:
                row["flops_per_image"] = case.flops_per_image(case.runtime(compile=False))
                if cacheable(case.build(), case.recipe):
                    row["features"] = embed_rate(case, 256 if bench.tiny else 20_000)
            r = timed(case, case.runtime(compile=compiled), steps)
            row[key] = r
            row[f"{key}_images_per_s"] = r["images_per_s"]
            peak = bench.result.get("peak", {}).get("tflops")
            tf = row.get("flops_per_image", 0.0) * r["images_per_s"] / 1e12  # 0 if the eager count failed
            row[f"{key}_tflops"] = round(tf, 3)
            if peak:
                row[f"{key}_pct_peak"] = round(100 * tf / peak, 2)
            log(
                f"{name:17s} {key:8s} batch {case.batch:4d}: {r['images_per_s']:>10,.0f} images/s "
                f"({tf:.2f} TFLOP/s; first step {r['first_step_seconds']:.1f}s)"
            )
        except Exception as err:  # noqa: BLE001 - record and go on with the next model
            row[key] = f"error: {type(err).__name__}: {err}"[:400]
            log(f"{name} {key}: FAILED: {type(err).__name__}: {err}")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        bench.save()


def determinism_cost(bench: Bench, case: Case) -> None:
    steps = 2 if bench.tiny else 20
    out = {}
    for det in (True, False):
        out[f"deterministic_{str(det).lower()}"] = timed(
            case, case.runtime(compile=case.device.type == "cuda" or bench.tiny, deterministic=det), steps
        )
    on, off = out["deterministic_true"]["images_per_s"], out["deterministic_false"]["images_per_s"]
    out["cost_pct"] = round(100 * (off - on) / off, 1)  # how much slower deterministic is
    configure_determinism(case.device, case.p.train.deterministic)
    bench.result["determinism"] = {"model": case.model_name, "batch": case.batch, **out}
    log(f"deterministic on {on:,.0f} vs off {off:,.0f} images/s ({out['cost_pct']}% cost)")


def weights_sha(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def bit_identity(bench: Bench, case: Case, steps: int) -> None:
    """Two runs of `steps` steps from the same seed (deterministic, compiled as training is): same
    weights bit for bit? A third with fill_uninitialized_memory off (skips filling new tensors with
    NaN under deterministic mode; faster where it matters): the same bytes too?"""
    import torch.utils.deterministic as tud

    def one_run() -> str:
        rt = case.runtime(compile=case.device.type == "cuda" or bench.tiny, deterministic=True)
        step, x = case.step_fn(rt)
        gen = torch.Generator(device=case.device).manual_seed(3)
        xs = [torch.roll(x, shifts=i, dims=0) for i in range(4)]  # four distinct batches, cycled
        ys = [torch.roll(case.y, shifts=i, dims=0) for i in range(4)]
        for i in range(steps):
            step(xs[i % 4], ys[i % 4], gen)
        synchronize(case.device)
        return weights_sha(step.model)

    fill = tud.fill_uninitialized_memory
    try:
        a, b = one_run(), one_run()
        tud.fill_uninitialized_memory = False
        c = one_run()
    finally:
        tud.fill_uninitialized_memory = fill
        configure_determinism(case.device, case.p.train.deterministic)
    bench.result["bit_identity"] = {
        "model": case.model_name,
        "steps": steps,
        "batch": case.batch,
        "identical": a == b,
        "fill_uninitialized_memory_false_identical": a == c,
        "sha256": [a, b, c],
    }
    log(
        f"bit identity over {steps} {case.model_name} steps: {'identical' if a == b else 'DIFFERENT'}; "
        f"fill_uninitialized_memory=False: {'same bytes' if a == c else 'different bytes'}"
    )


def load_data(args, device: torch.device):
    """(train_x, train_y, test_x, test_y) uint8 NCHW / int64 on device, and the stats; the archive's
    (--archive) or, in --tiny mode, random images."""
    if args.archive is None:
        g = torch.Generator().manual_seed(0)
        n_train, n_test = (64, 32)
        xs = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
        ys = torch.randint(0, 10, (n_train + n_test,), generator=g)
        stats = {"mean": [0.5] * 3, "std": [0.25] * 3}
        return (
            xs[:n_train].to(device),
            ys[:n_train].to(device),
            xs[n_train:].to(device),
            ys[n_train:].to(device),
            stats,
            None,
        )
    from cifarlab.data.cifar_io import channel_stats, read_archive

    a = read_archive(args.archive)
    mean, std = channel_stats(a.train_x)

    def t(x):
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)

    return (
        t(a.train_x),
        torch.from_numpy(a.train_y).to(device),
        t(a.test_x),
        torch.from_numpy(a.test_y).to(device),
        {"mean": mean.tolist(), "std": std.tolist()},
        a,
    )


def seconds_to(history, target: float) -> float | None:
    total = 0.0
    for h in history:
        total += h.seconds
        if h.test_acc is not None and h.test_acc >= target:
            return round(total, 2)
    return None


def resnet9_vs_airbench(bench: Bench, p, device: torch.device) -> None:
    data = load_data(bench.args, device)
    train_x, train_y, test_x, test_y, stats, arrays = data
    spec = resolve(p, "resnet9")
    recipe = spec.recipe
    epochs = 1 if bench.tiny else recipe.epochs
    rt = Runtime(device, p.train)
    if bench.tiny:
        rt.compile_backend = "eager"
    configure_determinism(device, p.train.deterministic)
    model = build_model("resnet9", dict(spec.arch), spec.seed)
    t = time.perf_counter()
    res = fit(
        model,
        train_x,
        train_y,
        test_x,
        test_y,
        recipe,
        epochs,
        spec.seed,
        pipeline_for(recipe, stats, device),
        rt,
        log=log,
        desc="resnet9",
    )
    out = {
        "cifarlab_resnet9": {
            "epochs": epochs,
            "batch": recipe.batch_size,
            "compiled": rt.compile,
            "n_train": int(train_x.shape[0]),
            "wall_seconds": round(time.perf_counter() - t, 2),
            "best_top1": max((h.test_acc for h in res.history if h.test_acc is not None), default=None),
            "final_top1": res.history[-1].test_acc,
            "diverged": res.diverged,
            **{f"seconds_to_{round(100 * x)}": seconds_to(res.history, x) for x in TARGETS},
        }
    }
    bench.result["resnet9_vs_airbench"] = out
    bench.save()
    del model, res
    if device.type != "cuda":
        out["airbench"] = "skipped: airbench needs CUDA"
        return
    if bench.args.skip_airbench:
        out["airbench"] = "skipped: --skip-airbench"
        return
    if arrays is None:
        out["airbench"] = "skipped: no --archive"
        return
    try:
        out["airbench"] = run_airbench(arrays)
    finally:
        configure_determinism(device, p.train.deterministic)
    for k in (93, 94):
        ours, theirs = out["cifarlab_resnet9"][f"seconds_to_{k}"], out["airbench"].get(f"seconds_to_{k}")
        if ours and theirs:
            out[f"ratio_to_{k}"] = round(ours / theirs, 1)  # how many times longer cifarlab's recipe takes


def resnet9_seconds(bench: Bench, p) -> float:
    """What section 5 needs: resnet9's full recipe at its measured compiled (else eager) rate,
    its test passes, a minute of compilation, and ~40 s for airbench's four trainings; 10 minutes
    when resnet9 was not measured (so the section is skipped rather than cut off)."""
    if bench.tiny:
        return 20
    row = next((r for r in bench.result.get("models", []) if r["model"] == "resnet9"), {})
    ips = row.get("compiled_images_per_s") or row.get("eager_images_per_s")
    if not ips:
        return 600
    epochs = resolve(p, "resnet9").recipe.epochs
    return 60 + 40 + 1.2 * epochs * (50_000 + 10_000 / 3) / ips


def run_airbench(arrays) -> dict:
    """airbench93 / airbench94 (the PyPI package) on the archive's images: its ./cifar10 folder
    written from them first (train.pt/test.pt: uint8 NHWC images, int64 labels), so it downloads
    nothing. Seconds: wall clock of training plus its TTA evaluation, synchronized, after
    airbench's warm-up run (its own timer also leaves out loading the data to the GPU; ours not)."""
    from importlib import metadata

    import airbench  # optional: carried as a wheel to the GPU machine

    out = {"version": metadata.version("airbench")}
    home = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            os.makedirs("cifar10")
            for name, x, y in (("train", arrays.train_x, arrays.train_y), ("test", arrays.test_x, arrays.test_y)):
                torch.save(
                    {"images": torch.from_numpy(x), "labels": torch.from_numpy(y), "classes": list(arrays.classes)},
                    f"cifar10/{name}.pt",
                )
            # airbench as its authors run it: not under cifarlab's deterministic mode (which also
            # fills every new tensor with NaN), cuDNN autotuning on
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
            test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            for k, train_fn, warm in (
                (93, airbench.train93, airbench.warmup93),
                (94, airbench.train94, airbench.warmup94),
            ):
                with contextlib.redirect_stdout(io.StringIO()):
                    warm(verbose=True)  # airbench's warm-up: verbose makes it stop after its first steps
                torch.cuda.synchronize()
                t = time.perf_counter()
                model = train_fn(verbose=False)  # training only: no per-epoch evaluation
                acc = airbench.evaluate(model, test_loader, tta_level=2)  # its final TTA evaluation
                torch.cuda.synchronize()
                secs = time.perf_counter() - t
                out[f"airbench{k}"] = {"seconds": round(secs, 2), "top1_tta": round(acc, 4)}
                out[f"seconds_to_{k}"] = round(secs, 2) if acc >= k / 100 else None
                log(f"airbench{k}: {secs:.2f}s, {100 * acc:.2f}% (TTA)")
        finally:
            os.chdir(home)
    return out


def projection(bench: Bench, p) -> None:
    """Every train stage of params.yaml, timed by `cifarlab estimate`'s plan from the compiled
    images/s (eager where compiled is missing); AlexNet's runs add their features' one pass."""
    times, setup, source = estimate.times_from_bench(p, bench.result)
    stages = {f"train@{r}" for r in p.runs if estimate.run_key(p[r]) in times}
    costs = estimate.stage_costs(p, times, stages, setup)
    missing = sorted(set(p.runs) - {c.run for c in costs})
    bench.result["projection"] = {
        "runs": {c.run: round(c.seconds, 1) for c in costs},
        "from": source,
        "not_measured": missing,
        "total_seconds": round(sum(c.seconds for c in costs), 1),
        "note": "training stages only, full data (50,000 train + test passes), params.yaml epochs, one GPU, one run "
        "after another; evaluate/plot/report add about a minute",
    }
    log(
        f"projected: {len(costs)} training runs, {format_duration(sum(c.seconds for c in costs))}"
        + (f" ({len(missing)} not measured)" if missing else "")
    )


def table(res: dict) -> str:
    lines = [
        f"device {res.get('device', {}).get('name')}, torch {res.get('versions', {}).get('torch')}, "
        f"peak {res.get('peak', {}).get('tflops')} TFLOP/s ({res.get('peak', {}).get('dtype')})",
        "",
        "| model | batch | GFLOP/img | eager images/s | compiled images/s | x | compiled TFLOP/s | % peak "
        "| first compiled step s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res.get("models", []):
        e, c = r.get("eager_images_per_s"), r.get("compiled_images_per_s")
        first = r["compiled"]["first_step_seconds"] if isinstance(r.get("compiled"), dict) else r.get("compiled", "")
        lines.append(
            f"| {r['model']} | {r['batch']} | {r.get('flops_per_image', 0) / 1e9:.3f} | "
            f"{e or r.get('eager', '')} | {c or ''} | {f'{c / e:.2f}' if c and e else ''} | "
            f"{r.get('compiled_tflops', '')} | {r.get('compiled_pct_peak', '')} | {first} |"
        )
    if "determinism" in res:
        d = res["determinism"]
        lines += [
            "",
            f"deterministic on/off ({d['model']}): {d['deterministic_true']['images_per_s']:,} vs "
            f"{d['deterministic_false']['images_per_s']:,} images/s, cost {d['cost_pct']}%",
        ]
    if "bit_identity" in res:
        b = res["bit_identity"]
        lines.append(
            f"bit identity, {b['steps']} {b['model']} steps: {b['identical']} "
            f"(fill_uninitialized_memory=False same bytes: {b['fill_uninitialized_memory_false_identical']})"
        )
    if "resnet9_vs_airbench" in res:
        r = res["resnet9_vs_airbench"]
        c = r["cifarlab_resnet9"]
        best = f"{100 * c['best_top1']:.2f}%" if c.get("best_top1") is not None else "none"
        lines.append(
            f"cifarlab resnet9: to 93% {c['seconds_to_93'] or 'not reached'} s, to 94% "
            f"{c['seconds_to_94'] or 'not reached'} s (best {best}, {c['wall_seconds']} s)"
        )
        lines.append(f"airbench: {r.get('airbench')}")
    if "projection" in res:
        pr = res["projection"]
        lines.append(
            f"projected full reproduction: {format_duration(pr['total_seconds'])} "
            f"({len(pr['runs'])} training runs; not measured: {', '.join(pr['not_measured']) or 'none'})"
        )
    lines.append("sections: " + "; ".join(f"{k} {v}" for k, v in res.get("sections", {}).items()))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU, random data, seconds: the slow test's mode")
    ap.add_argument("--archive", type=Path, help="CIFAR-10 in the official layout (section 5 trains on it)")
    ap.add_argument(
        "--json", type=Path, help="where the results go (default benchmarks/results/bench_gpu_<device>.json)"
    )
    ap.add_argument("--budget-minutes", type=float, default=7.5, help="wall-clock budget, compilation included (7.5)")
    ap.add_argument("--models", nargs="+", help="only these models (default: every registered one)")
    ap.add_argument("--identity-steps", type=int, default=300, help="resnet18 steps per bit-identity run (300)")
    ap.add_argument("--identity-model", default="resnet18", help="the model of sections 3-4 (resnet18)")
    ap.add_argument("--skip-airbench", action="store_true", help="section 5 without airbench")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # relative paths are the caller's: resolve them before moving to the repository root
    args.archive = args.archive.resolve() if args.archive else None
    args.json = args.json.resolve() if args.json else None
    if args.tiny:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a GPU machine
    os.chdir(ROOT)  # params.yaml, code version
    p = load_params()
    alt = estimate.alternative_numerics(p.train, bf16_in_effect()["cpu_bf16"])
    if args.tiny and alt and not alt["bf16"]:
        # --tiny checks the code paths, not the numbers: on a CPU that emulates bf16 (5-10x slower
        # than fp32) it runs what `cifarlab estimate` advises, fp32, as the end-to-end tests do;
        # tests/test_numerics.py covers bf16
        p = p.model_copy(update={"train": p.train.model_copy(update=alt)})
        log("--tiny: this CPU emulates bf16: fp32 and contiguous memory")
    device = setup_device(p.train)
    if device.type != "cuda" and not args.tiny:
        sys.exit("error: no CUDA device: bench_gpu.py measures a GPU (use --tiny to check it on a CPU)")
    if args.json is None:
        slug = "".join(
            c if c.isalnum() else "-" for c in (torch.cuda.get_device_name() if device.type == "cuda" else "cpu")
        ).lower()
        args.json = ROOT / "benchmarks" / "results" / f"bench_gpu_{slug}{'_tiny' if args.tiny else ''}.json"
    if args.tiny:
        args.identity_steps = min(args.identity_steps, 3)
        args.models = args.models or ["lenet5", "resnet9", "resnet18", "alexnet_transfer"]
        args.identity_model = "lenet5"
    bench = Bench(args)
    bench.result.update(header(device, p))
    log(f"{bench.result['device']['name']}, torch {torch.__version__}, budget {args.budget_minutes} min -> {args.json}")
    bench.section("peak", lambda: bench.result.update(peak=peak_tflops(device, args.tiny)), 5)
    reps = representative_runs(p)
    cases = {m: Case(p, run, device, tiny=args.tiny) for m, run in reps.items() if not args.models or m in args.models}
    bench.section("models_eager", lambda: measure_models(bench, p, device, cases, compiled=False), 10)
    first = {m: cases[m] for m in ("resnet18", "resnet9") if m in cases}
    bench.section("compiled_resnets", lambda: measure_models(bench, p, device, first, compiled=True), 120)
    if args.identity_model in cases:
        case = cases[args.identity_model]
        bench.section("determinism", lambda: determinism_cost(bench, case), 10 if args.tiny else 60)
        bench.section("bit_identity", lambda: bit_identity(bench, case, args.identity_steps), 10 if args.tiny else 60)
    if "resnet9" in p.runs:
        bench.section("resnet9_vs_airbench", lambda: resnet9_vs_airbench(bench, p, device), resnet9_seconds(bench, p))
    rest = {m: c for m, c in cases.items() if m not in first}
    bench.section("compiled_rest", lambda: measure_models(bench, p, device, rest, compiled=True), 20)
    bench.section("projection", lambda: projection(bench, p), 0)
    print(table(bench.result), flush=True)
    log(f"done in {time.monotonic() - bench.t0:.0f}s -> {args.json}")


if __name__ == "__main__":
    main()
