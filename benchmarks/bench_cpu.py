"""CPU benchmark: every model's training step in the four numerics a run can have, side by side,
against the CPU's own measured GEMM rates, in one process.

    python benchmarks/bench_cpu.py                        # every model, under 10 minutes on 2 cores
    python benchmarks/bench_cpu.py --models resnet9 cnn --seconds 2

Per registered model, at its recipe's batch size (one representative run each, the same as
bench_gpu.py's: _common.representative_runs), one training step (augment, forward, loss, backward, clip, optimizer
step, schedule: engine.step.TrainStep, what `fit` runs) in:

    fp32       fp32 eager, contiguous, foreach optimizer  (every CPU run before train.bf16 applied on CPUs)
    bf16       bf16 autocast, contiguous                  (train.bf16 alone)
    bf16_cl    bf16 + channels_last + fused optimizer     (params.yaml's defaults: what a run trains in)
    compiled   bf16_cl + torch.compile of the step        (train.compile=true; inductor's C++ backend)

Columns: images/s (median step after a warm-up; the first step, compilation included, timed
apart, from a cold compile cache), training GFLOP per image (torch.utils.flop_counter on one
fp32 step: forward + backward), achieved GFLOP/s and its share of the fp32 and bf16 GEMM rates
measured here (n^3 matmuls, n up to 4096, best of 3), and the projected wall time of the run's
full recipe (epochs x (50,000 training images + 10,000 test images at a third of a step's cost
each), plus the first step's compilation).
The header holds the CPU's name and flags (amx_bf16, avx512_bf16: native bf16; without either,
bf16 is emulated and slower than fp32), thread count, torch and oneDNN versions, code version.

The JSON goes to benchmarks/results/bench_cpu_<cpu>.json (committed: docs/training.md's CPU table quotes
it) and is rewritten after every model, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# A cold compile cache of its own: the compiled variant's first step is then a full compilation,
# whatever this machine compiled before (inductor reads this when torch._inductor is imported)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench_cpu_inductor_"))
if str(Path(__file__).resolve().parent) not in sys.path:  # _common.py beside it, however this is run
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _common import ROOT, Case, make_log, representative_runs, run_header, save_json

from cifarlab.core.durations import format_duration
from cifarlab.core.params import load_params
from cifarlab.core.provenance import cpu_flags, cpu_name
from cifarlab.engine.device import bf16_in_effect, configure_threads
from cifarlab.tooling.estimate import FULL_TEST, FULL_TRAIN

VARIANTS = {  # name -> train.* keys (on top of params.yaml's train section)
    "fp32": {"bf16": False, "channels_last": False, "fused_optimizer": False, "compile": False},
    "bf16": {"bf16": True, "channels_last": False, "fused_optimizer": False, "compile": False},
    "bf16_cl": {"bf16": True, "channels_last": True, "fused_optimizer": True, "compile": False},
    "compiled": {"bf16": True, "channels_last": True, "fused_optimizer": True, "compile": True},
}
# The models that decide a full reproduction's time first, so a budget cut loses the small ones
ORDER = ("resnet9", "resnet18", "custom_resnet", "resnet", "hw2_cnn", "cnn", "alexnet_transfer", "dnn", "lenet5")
SHOWN_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
log = make_log("bench_cpu")


def gemm_gflops(dtype: torch.dtype, max_n: int = 4096, rounds: int = 3, min_seconds: float = 0.5) -> dict:
    """Dense n^3 matmul GFLOP/s in `dtype`, best of `rounds` (each >= min_seconds): the ceiling.

    n doubles from 256 toward `max_n` while a matmul of the next size (8x the FLOPs) is projected
    under 2 s. At 300 GFLOP/s (fp32 or native bf16 on 2 cores) that reaches 4096 (0.4 s a
    matmul); emulated bf16 (no amx_bf16/avx512_bf16) runs near 1 GFLOP/s, where one 4096^3
    matmul (137 GFLOP) would take minutes, and stops at 512 or 1024 (1024 on a 2-core AMD EPYC).
    Returns {"gflops": rate, "n": n}.
    """
    n = 256
    while True:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: oneDNN/AMX kernel selection for this shape
        t = time.perf_counter()
        a @ b
        if n >= max_n or 8 * (time.perf_counter() - t) >= 2.0:
            break
        n *= 2
    best = 0.0
    for _ in range(rounds):
        t, k = time.perf_counter(), 0
        while k == 0 or time.perf_counter() - t < min_seconds:
            a @ b
            k += 1
        best = max(best, 2 * n**3 * k / (time.perf_counter() - t) / 1e9)
    return {"gflops": round(best, 1), "n": n}


def onednn_version() -> str | None:
    m = re.search(r"oneDNN v([\d.]+)", torch.__config__.show())
    return m.group(1) if m else None


def header(p, threads: int) -> dict:
    flags = cpu_flags()
    return {
        "device": {
            "type": "cpu",
            "name": cpu_name(),
            **bf16_in_effect(),  # cpu_bf16, bf16_check
            "flags": {f: f in flags for f in SHOWN_FLAGS},
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "versions": {"torch": torch.__version__, "onednn": onednn_version(), "python": platform.python_version()},
        **run_header(p),
        "variants": VARIANTS,
    }


def time_variant(case: Case, variant: str, seconds: float) -> dict:
    """First step timed apart (compilation, if any), one warm-up, then steps for >= `seconds`
    (at least 3): images/s of the median step (robust to a disturbed step on a shared machine)."""
    t = case.time_steps(case.runtime(**VARIANTS[variant]), steps=3, min_seconds=seconds)
    return {
        "images_per_s": round(case.batch / statistics.median(t.step_s), 1),
        "steps": t.steps,
        "first_step_seconds": round(t.first_s, 2),
        "loss_finite": bool(torch.isfinite(t.loss).item()),
    }


def projected_seconds(case: Case, ips: float, first_step: float = 0.0) -> float:
    """The run's full recipe at `ips` training images/s: epochs x (train + test passes at a third of
    a training step per image), plus one compilation (compiled variant: its first step)."""
    epochs = case.spec.epochs(None)
    return epochs * (FULL_TRAIN + FULL_TEST / 3) / ips + first_step


def measure(res: dict, case: Case, gemm: dict, seconds: float, deadline: float, save) -> None:
    row = {
        "model": case.model_name,
        "run": case.run,
        "batch": case.batch,
        "epochs": case.spec.epochs(None),
        "variants": {},
    }
    res["models"].append(row)
    # training FLOPs per image, counted on one fp32 step
    row["gflop_per_image"] = round(case.flops_per_image(case.runtime(**VARIANTS["fp32"])) / 1e9, 4)
    for variant in VARIANTS:
        # compilation takes 10-60 s per model on 2 cores: skipped when the budget cannot hold it
        if variant == "compiled" and deadline - time.monotonic() < 90:
            row["variants"][variant] = {"skipped": "budget"}
            continue
        try:
            r = time_variant(case, variant, seconds)
        except Exception as err:  # noqa: BLE001 - record and go on with the next variant
            row["variants"][variant] = {"error": f"{type(err).__name__}: {err}"[:300]}
            log(f"{case.model_name} {variant}: FAILED: {type(err).__name__}: {err}")
            continue
        gf = row["gflop_per_image"] * r["images_per_s"]
        r.update(
            gflops=round(gf, 1),
            pct_fp32_gemm=round(100 * gf / gemm["fp32"], 1),
            pct_bf16_gemm=round(100 * gf / gemm["bf16"], 1),
            projected_seconds=round(
                projected_seconds(case, r["images_per_s"], r["first_step_seconds"] if variant == "compiled" else 0.0)
            ),
        )
        row["variants"][variant] = r
        own = "fp32" if variant == "fp32" else "bf16"  # the ceiling of the variant's own matmuls
        log(
            f"{case.model_name:16s} {variant:8s} batch {case.batch:4d}: {r['images_per_s']:>9,.1f} images/s, "
            f"{gf:7.1f} GFLOP/s ({r[f'pct_{own}_gemm']:.0f}% of {own} GEMM), "
            f"first step {r['first_step_seconds']:.1f}s, "
            f"full recipe {format_duration(r['projected_seconds'])}"
        )
    v = row["variants"]
    base = v.get("fp32", {}).get("images_per_s")
    for r in v.values():
        if base and "images_per_s" in r:
            r["x_fp32"] = round(r["images_per_s"] / base, 2)
    timed = {n: r["projected_seconds"] for n, r in v.items() if "projected_seconds" in r}
    row["fastest_full_recipe"] = min(timed, key=timed.get) if timed else None
    save()


def gemm_line(res: dict) -> str:
    g, n = res["gemm_gflops"], res.get("gemm_n", {"fp32": 4096, "bf16": 4096})
    return ", ".join(f"GEMM {k} {g[k]:,.1f} GFLOP/s ({n[k]}^3)" for k in ("fp32", "bf16"))


def table(res: dict) -> str:
    d = res["device"]
    native = d["cpu_bf16"] if d["cpu_bf16"] != "none" else "none (bf16 emulated)"
    lines = [
        f"{d['name']}, native bf16: {native}, {d['threads']} threads, torch {res['versions']['torch']}, "
        + gemm_line(res),
        "",
        "| model (batch) | GFLOP/img | fp32 img/s | bf16 img/s | bf16+CL img/s | compiled img/s | best x fp32 "
        "| bf16+CL GFLOP/s (% bf16 GEMM) | compile s | full recipe fp32 -> bf16+CL (compiled) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["models"]:
        v = r["variants"]

        def ips(name, v=v):
            x = v.get(name, {})
            return f"{x['images_per_s']:,.0f}" if "images_per_s" in x else next(iter(x.values()), "")

        best = max((x.get("x_fp32", 0) for x in v.values()), default=0)
        cl = v.get("bf16_cl", {})
        comp = v.get("compiled", {})
        proj = " -> ".join(
            format_duration(v[n]["projected_seconds"])
            for n in ("fp32", "bf16_cl")
            if "projected_seconds" in v.get(n, {})
        )
        if "projected_seconds" in comp:
            proj += f" ({format_duration(comp['projected_seconds'])})"
        lines.append(
            f"| {r['model']} ({r['batch']}) | {r['gflop_per_image']:.3f} | {ips('fp32')} | {ips('bf16')} | "
            f"{ips('bf16_cl')} | {ips('compiled')} | {best:.1f}x | "
            f"{cl.get('gflops', '')} ({cl.get('pct_bf16_gemm', '')}%) | {comp.get('first_step_seconds', '')} | {proj} |"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", help="only these models (default: every registered one)")
    ap.add_argument("--seconds", type=float, default=2.5, help="timed seconds per model and variant (2.5)")
    ap.add_argument("--threads", type=int, help="torch threads (default: params.yaml train.num_threads)")
    ap.add_argument(
        "--budget-minutes",
        type=float,
        default=9.0,
        help="compiled variants are skipped once less than 90 s of this is left (9)",
    )
    ap.add_argument("--json", type=Path, help="default benchmarks/results/bench_cpu_<cpu>_<threads>t.json")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.json = args.json.resolve() if args.json else None
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a GPU machine
    os.chdir(ROOT)  # params.yaml, code version
    t0 = time.monotonic()
    deadline = t0 + args.budget_minutes * 60
    p = load_params()
    threads = configure_threads(args.threads or p.train.num_threads)
    if args.json is None:
        slug = re.sub(r"[^a-z0-9]+", "-", cpu_name().lower()).strip("-")
        args.json = ROOT / "benchmarks" / "results" / f"bench_cpu_{slug}_{threads}t.json"
    res = header(p, threads)
    res["models"] = []

    def save() -> None:
        res["elapsed_seconds"] = round(time.monotonic() - t0, 1)
        save_json(args.json, res)

    log(
        f"{res['device']['name']} (native bf16: {res['device']['cpu_bf16']}), {threads} threads, "
        f"torch {torch.__version__} -> {args.json}"
    )
    gemm = {"fp32": gemm_gflops(torch.float32), "bf16": gemm_gflops(torch.bfloat16)}
    res["gemm_gflops"] = {k: v["gflops"] for k, v in gemm.items()}
    res["gemm_n"] = {k: v["n"] for k, v in gemm.items()}
    log(gemm_line(res))
    save()
    reps = representative_runs(p)
    models = [m for m in ORDER if m in reps] + [m for m in reps if m not in ORDER]
    for m in models:
        if args.models and m not in args.models:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case = Case(p, reps[m], torch.device("cpu"))
        measure(res, case, res["gemm_gflops"], args.seconds, deadline, save)
    print(table(res), flush=True)
    log(f"done in {time.monotonic() - t0:.0f}s -> {args.json}")


if __name__ == "__main__":
    main()
