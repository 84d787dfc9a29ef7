"""Turn a lent GPU into published runs: check the CUDA path, build or verify the full archive,
train full recipes in priority order under a wall-clock budget, pack what finished.

    python tools/gpu_reproduce.py --jpeg cifar10-jpeg.tar.gz --minutes 8 --pack $OUT/pack.tar.gz
    python tools/gpu_reproduce.py --archive cifar-10-python.tar.gz --minutes 60     # official layout
    cifarlab fold pack.tar.gz && python -m cifarlab.report                          # back home

Runs from the repository root, without DVC: it drives the stage modules (python -m
cifarlab.<stage>) in a workspace of its own, --workdir (default data/kit, git-ignored), whose
params.yaml is the repository's with data.url/data.md5 pointing at the archive. Each run is
resumable (train keeps data/resume/<run>.pt, saved every minute here: train.checkpoint_minutes=1),
so a second call with the same --workdir continues where the first stopped: finished runs are
skipped, an interrupted one resumes from its last saved epoch.

Priority (what no CPU can do first): resnet9, resnet, custom_resnet, then report 004's grid,
relu cells first, then leaky_relu, tanh, sigmoid; then the AlexNet runs; then the small-batch
recipes a CPU can do (cnn, hw2_cnn, dnn, lenet5). --runs overrides the list and its order.

Needs torch, numpy, pandas, matplotlib, Pillow (there on a lent GPU machine) and pydantic
and ruamel.yaml (not there: carry their wheels, docs/gpu.md). With --device cpu
it does the same on a CPU: the slow test of the round trip (run, pack, fold, report) uses that.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
GRID_ORDER = ("relu", "leaky_relu", "tanh", "sigmoid")
FIRST = ("resnet9", "resnet", "custom_resnet")
LAST = ("cnn", "hw2_cnn", "dnn", "lenet5")  # a 2-core CPU finishes these in hours


def say(msg: str) -> None:
    print(f"[gpu_reproduce {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def priority(runs: dict) -> list[str]:
    """Run names in the order a GPU should train them (see the module docstring)."""
    names = list(runs)

    def rank(name: str) -> tuple:
        model = runs[name].model
        if name in FIRST:
            return (0, FIRST.index(name))
        if model == "resnet18":
            act = name.split("-")[1] if "-" in name else ""
            return (1, GRID_ORDER.index(act) if act in GRID_ORDER else len(GRID_ORDER), names.index(name))
        if model in LAST:  # the small-batch recipes, each base run before its open-choice runs
            return (3, LAST.index(model), name != model, names.index(name))
        return (2, names.index(name))

    return sorted(names, key=rank)


def preflight(p, run_names: list[str], device_kind: str) -> None:
    """One training step of every model to be trained, on the device (bf16 and channels_last as
    params.yaml says, which is on for CUDA by default): stop with one line on a non-finite loss
    or an error, before any long work."""
    import torch

    from cifarlab.engine.augment import pipeline_for
    from cifarlab.engine.device import Runtime, check_gpu
    from cifarlab.engine.loop import build_model
    from cifarlab.engine.step import TrainStep

    device = torch.device(device_kind)
    check_gpu(device)
    rt = Runtime(device, p.train)
    # Eager: compiling all nine models would take minutes of the budget; a run whose compilation
    # fails stops at its first step with one line naming train.compile=false.
    rt.compile = False
    stats = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    seen = set()
    for name in run_names:
        run = p.runs[name]
        key = (run.model, json.dumps(dict(run.arch), sort_keys=True, default=str))
        if key in seen:
            continue
        seen.add(key)
        arch = dict(run.arch)
        if "pretrained" in arch:
            arch["pretrained"] = False  # the check needs no download; the run itself loads the weights
        recipe = run.recipe
        try:
            model = rt.prepare_model(build_model(run.model, arch, 0))
            step = TrainStep(model, recipe, pipeline_for(recipe, stats, device), rt, epochs=1, steps_per_epoch=1)
            g = torch.Generator(device=device).manual_seed(0)
            batch = min(recipe.batch_size, 64)
            x = torch.randint(0, 256, (batch, 3, 32, 32), generator=g, device=device, dtype=torch.uint8)
            y = torch.randint(0, 10, (batch,), generator=g, device=device)
            loss, _ = step(x, y, g)
            value = float(loss)
        except Exception as e:  # noqa: BLE001 - any failure of the path stops the kit, named
            fail(
                f"preflight: one {run.model} training step on {device_kind} failed: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}"
            )
        if not math.isfinite(value):
            fail(
                f"preflight: one {run.model} training step on {device_kind} gave loss {value} "
                f"(bf16={rt.bf16}, channels_last={rt.channels_last})"
            )
        say(f"preflight {run.model}: one step on {device_kind}, loss {value:.3f}")


def gpu_tests(device_kind: str) -> None:
    """The gpu-marked tests too, where pytest is installed (a lent GPU machine has none: skipped, said)."""
    import importlib.util

    if device_kind != "cuda":
        return
    if importlib.util.find_spec("pytest") is None or not (REPO / "tests").is_dir():
        say("preflight: pytest not installed here, gpu-marked tests skipped (the per-model steps above ran)")
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    # -o addopts=: pyproject's addopts ask for pytest-xdist workers; a GPU machine may lack xdist,
    # and the gpu tests share one device: one process
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode not in (0, 5):  # 5: none collected
        fail(f"preflight: gpu-marked tests failed: {last} (run: pytest -m gpu)")
    say(f"preflight: gpu-marked tests: {last}")


def archive(args, work: Path) -> Path:
    """The official-layout archive to train on: --archive as given, or built from --jpeg once."""
    if args.archive:
        if not args.archive.is_file():
            fail(f"--archive {args.archive}: no such file")
        return args.archive.resolve()
    built = work / "cifar-10-python.tar.gz"
    if not built.is_file():
        converter = args.converter
        if not converter.is_file():
            fail(
                f"--converter {converter}: no such file (the tool that builds the official layout from "
                "the JPEG copy: ../shared/tools/cifar10_from_jpeg.py)"
            )
        say(f"building the official layout from {args.jpeg} ...")
        tmp = built.with_suffix(".part.gz")
        done = subprocess.run(
            [sys.executable, str(converter), str(tmp), "--src", str(args.jpeg)],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            fail(f"{converter} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        os.replace(tmp, built)
    return built.resolve()


def write_params(work: Path, url: Path, md5: str, assignments: list[str]) -> None:
    """work/params.yaml: the repository's, data.url/md5 at the archive, plus --set assignments."""
    from cifarlab.tooling.cli import set_params

    target = work / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    # Save the resume state every minute (not every 10): --minutes stops training mid-run, and
    # a GPU epoch takes seconds, so the next call should lose at most a minute of it.
    set_params(tmp, [f"data.url={url}", f'data.md5="{md5}"', "train.checkpoint_minutes=1", *assignments])
    os.replace(tmp, target)


def stage(work: Path, module: str, *args: str, timeout: float | None = None) -> int:
    """Run one stage module in the kit's workspace with this checkout's code; returns its exit
    code (124 when the budget ran out: the stage was interrupted cleanly with SIGINT)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    # A background shell starts children with SIGINT ignored; train needs it to stop cleanly.
    proc = subprocess.Popen(
        [sys.executable, "-m", f"cifarlab.{module}", *args],
        cwd=work,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 124


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python tools/gpu_reproduce.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--archive", type=Path, help="an archive in the official layout (cifar-10-python.tar.gz)")
    src.add_argument(
        "--jpeg", type=Path, help="the JPEG copy (cifar10-jpeg.tar.gz): the official layout is built from it"
    )
    ap.add_argument(
        "--converter",
        type=Path,
        default=REPO.parent / "shared" / "tools" / "cifar10_from_jpeg.py",
        help="the JPEG -> official layout tool (default: ../shared/tools/cifar10_from_jpeg.py)",
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget for training (default 60)")
    ap.add_argument("--runs", nargs="+", metavar="RUN", help="runs to train, in this order (default: all, by priority)")
    ap.add_argument(
        "--workdir", type=Path, default=REPO / "data" / "kit", help="the kit's workspace (default data/kit)"
    )
    ap.add_argument("--pack", type=Path, help="write the finished runs' pack here (default: <workdir>/pack.tar.gz)")
    ap.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the round trip without a GPU (tests)"
    )
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="extra params.yaml values for the "
        "workspace (tests: data subsets); a published run must match main's recipe to be folded",
    )
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    deadline = time.monotonic() + 60 * args.minutes
    sys.path.insert(0, str(SRC))
    for name in ("pydantic", "ruamel.yaml", "torch"):  # not on a lent GPU machine unless carried
        try:
            importlib.import_module(name)
        except ImportError as e:
            fail(f"{e.name} is missing: carry its wheel (docs/gpu.md) and put it on PYTHONPATH")
    from cifarlab.engine.device import select_device

    if args.device == "cuda" and select_device().type != "cuda":
        fail("no CUDA device: this kit trains on a GPU (--device cpu runs the same steps on a CPU, slowly)")
    from cifarlab.core.params import load_params
    from cifarlab.tooling.packs import pack

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = archive(args, work)
    from cifarlab.data.cifar_io import archive_identity
    from cifarlab.reporting.published import JPEG_FULL_CONTENT_MD5, KNOWN_DATA

    ids = archive_identity(data)  # 170 MB read once: names the data and gives data.md5
    md5 = ids["archive_md5"]
    if args.jpeg and ids["content_md5"] != JPEG_FULL_CONTENT_MD5:
        fail(
            f"{data} holds other images than the full JPEG-derived set (content md5 {ids['content_md5']}, "
            f"expected {JPEG_FULL_CONTENT_MD5}): delete it and check --jpeg"
        )
    say(f"data: {data} ({KNOWN_DATA.get(ids['content_md5'], 'content md5 ' + ids['content_md5'])}, md5 {md5})")
    # On a GPU the compiled step (CUDA graphs) is the fast path; in params, so provenance says so
    compiled = ["train.compile=true"] if args.device == "cuda" else []
    write_params(work, data, md5, [*compiled, *args.set])
    p = load_params(work / "params.yaml")
    order = args.runs or priority(dict(p.runs))
    unknown = [r for r in order if r not in p.runs]
    if unknown:
        fail(f"--runs {unknown[0]}: not a run of params.yaml (cifarlab runs lists them)")
    preflight(p, order, args.device)
    gpu_tests(args.device)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the stages pick CUDA when they see it
    # fetch's work (copy, md5 check) without its stage: the stage's notice is about `dvc repro`
    from cifarlab.core import paths
    from cifarlab.data.download import fetch

    raw = work / paths.RAW_ARCHIVE
    fetch(str(data), md5, raw)
    stats_file = work / paths.STATS_FILE
    stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    if (stats.get("source") or {}).get("archive_md5") != md5:  # not prepared from this archive yet
        if stage(work, "preprocess") != 0:
            fail("stage preprocess failed (its message is above)")
    finished, stopped = [], None
    for i, run in enumerate(order, 1):
        if (work / "reports/metrics" / f"{run}.json").is_file():
            finished.append(run)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            stopped = run
            break
        say(f"[{i}/{len(order)}] {run}: training ({left / 60:.1f} min of budget left)")
        t0 = time.monotonic()
        rc = stage(work, "train", "--run", run, timeout=left)
        if rc == 124:
            say(
                f"{run}: budget spent after {(time.monotonic() - t0) / 60:.1f} min; its finished epochs are saved, "
                "the next call resumes it"
            )
            stopped = run
            break
        if rc != 0 or stage(work, "evaluate", "--run", run) != 0 or stage(work, "plot", "--run", run) != 0:
            say(f"{run}: failed (message above); going on with the next run")
            continue
        m = json.loads((work / "reports/metrics" / f"{run}.json").read_text())
        top1 = (m.get("best") or {}).get("top1")
        say(
            f"{run}: done in {(time.monotonic() - t0) / 60:.1f} min, best top-1 "
            f"{'n/a' if top1 is None else f'{100 * top1:.2f}%'}"
        )
        finished.append(run)
    if stopped:
        say(f"stopped at {stopped}: call again with the same --workdir to continue")
    if not finished:
        say("no run finished: nothing to pack")
        return
    dest = args.pack or work / "pack.tar.gz"
    pack(work, dest, finished, code_root=REPO)
    say(f"fold it where you publish: cifarlab fold {dest} && python -m cifarlab.report")


if __name__ == "__main__":
    main()
