"""How long `dvc repro` would take on this machine: the stages it would run, each timed.

    cifarlab estimate            # per-stage table of what `dvc repro` would run now
    cifarlab estimate plot@lenet5 plot@dnn   # of what `dvc repro plot@lenet5 plot@dnn` would run

The stages are DVC's own plan (tooling.repro_stages): what `dvc repro TARGETS` would run, in its order
(`cifarlab estimate plot@lenet5`; the notice before the first training stage of a `dvc repro
plot@lenet5` or a `dvc exp run experiment -S model=lenet5` reads that command's own targets).

On a CPU each network is timed now, beside whatever else the machine runs (tooling.timing): the
MEAN of its training steps, the mean of the slower half of them, and its test pass; and the
start-up of a stage's process (the interpreter, torch). (The fastest of three steps, kept as the
fastest ever seen in a cache every checkout shared, and no start-up, made estimates 4-24x
optimistic on a busy 2-core machine.) A training stage costs DVC's share of a
stage, that start-up, train.py's own step timing, and per epoch a training pass and a test pass.
Every time is a range: its lower end at the mean step, its upper end at the slower half's (and,
for a recipe that stops early, custom_resnet, from the epochs its report's run trained to the
recipe's maximum: core.early_stop). The image counts are the prepared data's (data_sizes).

The timings are cached in ~/.cache/cifarlab/timings.json, keyed by machine (CPU, cores, threads,
torch, numerics, instruction caps) and by the checkout's training code (cache_key), each with the
load average it was timed beside and when. `cifarlab estimate` always times anew and replaces
them; the notice (tooling.notice) reads them without importing torch, and times anew (quickly, in
a child process) what is missing, older than CACHE_MAX_AGE_S or timed beside another load than
now's (like_now). On a GPU with a committed benchmarks/bench_gpu.py result, the plan uses it instead.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from cifarlab.core.cifar10 import FULL_TEST, FULL_TRAIN
from cifarlab.core.durations import LONG_CPU_RUN_S, format_duration
from cifarlab.core.early_stop import REFERENCE_FILE, EpochRange, epoch_range
from cifarlab.core.errors import DataError
from cifarlab.core.gpus import visible_gpus
from cifarlab.core.io import read_json_object, write_json
from cifarlab.core.params import OFFICIAL_MD5, Params, TrainParams
from cifarlab.core.provenance import ISA_ENV, cpu_name
from cifarlab.dvc_internals import lock_stages, parse_dvc_args, read_lock
from cifarlab.tooling.repro_stages import to_run

TIMING_BATCH = 64  # images per timed step (or the recipe's batch when smaller): cnn's step ran 1.4x
# slower per image at 32 than at its recipe's 64, resnet18's 1.15x at 64 against its 128
# Stages that train nothing, in seconds on an idle 2-core CPU (the subset run; they barely depend
# on the data size): not worth timing each time. Stretched by how much slower than IDLE_STARTUP_S a
# stage process starts now (busy_factor).
FIXED_SECONDS = {"fetch": 5.0, "preprocess": 15.0, "plot": 4.0, "report": 15.0, "experiment": 1.0}
# A stage's start-up (`python -c "import cifarlab.train"`) up to which the fixed costs stand as
# measured: 1.5 s on the idle 2-core Xeon, 2.5-6 s beside a load of 2-4, 15-50 s beside two trainings
IDLE_STARTUP_S = 3.0
# DVC's own work around a stage's command (its status, hashing the outputs, dvc.lock), seconds
DVC_STAGE_S = 1.0
# What a training stage's process does besides its start-up and its steps: read the prepared
# data, build the model, check the bf16 in effect, write checkpoints, history and timing
TRAIN_PROCESS_S = 2.0
# train.py times its own step on a CPU before training (engine.step.time_train_step: 2 warm-up
# steps, then at least 2 steps and 1 s of them, at min(batch, 64))
OWN_TIMING_STEPS, OWN_TIMING_MIN_S = 4, 1.0
EVAL_PASSES = 4  # evaluate: the final and best epochs' test passes, the best's again flipped (2 passes)
CACHE_MAX_AGE_S = 24 * 3600  # the notice re-times a cached timing older than this
SUBSET_DEMO = "data.train_subset=5000 data.test_subset=2000 train.max_epochs=1 alexnet_transfer.pretrained=false"


def subset_hint(data_url: str) -> str:
    """The command for a quick CPU reproduction. It keeps data.url as it is; a remote one gets the
    offline alternative beside it (a machine that cannot reach it would fail on it again)."""
    command = f"cifarlab set {SUBSET_DEMO} && dvc repro"
    if urllib.parse.urlparse(data_url).scheme in ("http", "https"):
        command += (
            " (offline: first cifarlab set data.url=/path/to/cifar-10-python.tar.gz data.md5=<its md5>, "
            "docs/data.md: a local copy of CIFAR-10)"
        )
    return command


# --------------------------------------------------------------------------- stage costs


@dataclass(frozen=True)
class StepTime:
    """One network timed on this machine: seconds per image of its training step, the mean over
    the timed steps (train_s) and over their slower half (slow_s), and of its test pass (eval_s);
    the 1-minute load average it was timed beside and when (time.time()), where known."""

    train_s: float
    slow_s: float
    eval_s: float
    load: float | None = None
    when: float | None = None


def as_step(t: StepTime | float) -> StepTime:
    """A StepTime; a bare seconds-per-image (a GPU benchmark's rate) as one with no spread, its
    test pass a third of a training step."""
    return t if isinstance(t, StepTime) else StepTime(t, t, t / 3)


@dataclass(frozen=True)
class Startup:
    """Seconds a stage's process takes to start here (a new interpreter importing cifarlab.train,
    torch with it), the load average beside it and when."""

    seconds: float
    load: float | None = None
    when: float | None = None


@dataclass(frozen=True)
class StageCost:
    stage: str
    run: str | None  # the run a per-run stage belongs to
    seed: int | None
    epochs: int  # training epochs, the most the recipe allows (0: trains nothing)
    seconds: float  # the upper end: at `epochs`, the slower half of the timed steps
    stop: EpochRange | None = None  # early stopping: the epochs expected, below `epochs`
    expected_seconds: float | None = None  # the lower end: at stop.expected epochs, the mean step

    @property
    def low_epochs(self) -> int:
        return self.stop.expected if self.stop else self.epochs

    @property
    def low_seconds(self) -> float:
        return self.seconds if self.expected_seconds is None else self.expected_seconds


def span(low: float, high: float, fmt=format_duration) -> str:
    """'1h10m-4h30m', or one value where both ends print the same."""
    a, b = fmt(low), fmt(high)
    return a if a == b else f"{a}-{b}"


def total_span(costs: list[StageCost]) -> tuple[str, str]:
    """(epochs, time) of all `costs` together: ranges where an early-stopping run is among them."""
    return (
        span(sum(c.low_epochs for c in costs), sum(c.epochs for c in costs), lambda n: f"{n:,}"),
        span(sum(c.low_seconds for c in costs), sum(c.seconds for c in costs)),
    )


def early_stops(costs: list[StageCost]) -> str | None:
    """'early stopping: custom_resnet ~77 epochs expected (...), up to 300' for the runs that stop
    early (each run once, its seeds with it); None when none does."""
    said = {}
    for c in costs:
        if c.stop is not None:
            said.setdefault(c.run, f"{c.run} {c.stop.describe().removeprefix('early stopping: ')}")
    return f"early stopping: {'; '.join(said.values())}" if said else None


def split_stage(name: str) -> tuple[str, str | None, int | None]:
    """'train@lenet5' -> ('train', 'lenet5', None); 'train_seeds@lenet5-1' -> ('train', 'lenet5', 1)."""
    kind, _, key = name.partition("@")
    if kind.endswith("_seeds") and key:
        run, _, seed = key.rpartition("-")
        return kind.removesuffix("_seeds"), run, int(seed)
    return kind, key or None, None


@dataclass(frozen=True)
class ReproCall:
    """The `dvc repro` / `dvc exp run` a stage's process runs under, as DVC's parser reads it."""

    command: str  # "dvc repro" or "dvc exp run"
    targets: list[str]
    glob: bool = False
    single_item: bool = False  # `dvc repro --single-item`: that one stage (cifarlab repro's workers)
    known: bool = True  # False: its stages are not on its command line (a queued experiment's exec-run)


def repro_call(chain: list[tuple[int, str, list[str]]] | None = None) -> ReproCall | None:
    """The command this process runs under, from its dvc ancestors (tooling.notice.dvc_processes:
    Linux /proc; DVC runs a stage through a shell), nearest first: the first `dvc repro` or `dvc
    exp run` among them, read with DVC's own parser (a `dvc exp run --temp` runs its stages under
    a `dvc exp exec-run` of its own). None where none is found (another OS, run by hand); one
    with known=False where a dvc command above is neither (a queued experiment's worker)."""
    from cifarlab.tooling.notice import dvc_processes

    chain = dvc_processes() if chain is None else chain
    if not chain:
        return None
    for _pid, _start, args in chain:
        try:
            parsed = parse_dvc_args(list(args))
        except (SystemExit, Exception):  # noqa: BLE001 - an argv DVC itself would refuse: nothing known
            continue
        cmd = getattr(parsed, "cmd", None)
        if cmd == "repro" or (cmd == "run" and "exp" in args):
            return ReproCall(
                "dvc repro" if cmd == "repro" else "dvc exp run",
                list(parsed.targets or []),
                bool(getattr(parsed, "glob", False)),
                bool(getattr(parsed, "single_item", False)),
            )
    return ReproCall("dvc", [], known=False)


def repro_targets() -> tuple[list[str], bool] | None:
    """(targets, glob) of the `dvc repro` / `dvc exp run` this process runs under (repro_call),
    or None."""
    call = repro_call()
    return None if call is None or not call.known else (call.targets, call.glob)


def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # not on this OS
        return (0.0, 0.0, 0.0)


# A cached timing stands for now only beside a load like now's: the load per core (at least 1: a
# core to spare costs nothing) within this factor of the one it was timed beside. The load
# predicts a step poorly (beside two trainings at load 5-7 on 2 cores, steps ran 3-40x slower
# than idle), so a timing from other conditions is timed anew, never stretched.
LOAD_TOLERANCE = 1.5


def like_now(timed_load: float | None, cores: int | None = None) -> bool:
    """Whether a timing taken beside `timed_load` (1-minute load average) stands for now."""
    if timed_load is None:
        return False
    cores = cores or os.cpu_count() or 1
    then, now = max(1.0, timed_load / cores), max(1.0, loadavg()[0] / cores)
    return max(then, now) / min(then, now) <= LOAD_TOLERANCE


def _data_changes(p: Params) -> bool:
    """Whether data.md5 differs from the one dvc.lock recorded for fetch (or nothing is recorded)."""
    fetch = lock_stages(read_lock()).get("fetch") or {}
    recorded = ((fetch.get("params") or {}).get("params.yaml") or {}).get("data.md5")
    return recorded != p.data.md5


def data_sizes(p: Params, stages: list[str], root: str | Path = ".") -> tuple[int, int]:
    """(training images, test images) the stages will see. The prepared data's own counts
    (data/prepared/stats.json) when preprocess is not about to replace them: an archive of
    another size (40,000 / 10,000 for the JPEG study's) then costs what it holds. Otherwise
    what params.yaml asks of the official archive."""
    if "preprocess" not in stages:
        try:
            stats = read_json_object(Path(root) / "data/prepared/stats.json")
            n_train, n_test = int(stats["n_train"]), int(stats["n_test"])
            if n_train > 0 and n_test > 0:
                return n_train, n_test
        except (DataError, ValueError, KeyError, TypeError):
            pass  # not prepared yet, or not ours to read: params.yaml's sizes
    return params_sizes(p)


def sizes_assumed(p: Params, stages: list[str]) -> bool:
    """Whether data_sizes' training count is the official archive's by assumption: preprocess is
    about to read another archive (data.md5 not the official one) and no subset fixes the count.
    The train stage's own warning counts the images preprocess prepared."""
    return "preprocess" in stages and p.data.md5 != OFFICIAL_MD5 and p.data.train_subset is None


def params_sizes(p: Params) -> tuple[int, int]:
    """(training images, test images) params.yaml asks of the official archive."""
    n_train = p.data.train_subset or FULL_TRAIN
    return n_train - round(n_train * p.data.val_split), p.data.test_subset or FULL_TEST


def busy_factor(startup: Startup | None) -> float:
    """How much slower than on an idle machine a stage starts now (>= 1; 1 unmeasured): the
    fixed costs (FIXED_SECONDS, DVC's share) stretch with it."""
    return 1.0 if startup is None else max(1.0, startup.seconds / IDLE_STARTUP_S)


def stage_costs(
    p: Params,
    s_per_image: dict[str, StepTime | float],
    stages: list[str],
    setup_seconds: dict[str, float] | None = None,
    sizes: tuple[int, int] | None = None,
    reference: str | Path = REFERENCE_FILE,
    startup: Startup | None = None,
) -> list[StageCost]:
    """The cost of each stage in `stages` (names as `dvc stage list` prints them, in the order
    tooling.repro_stages gives them), each a range (StageCost.low_seconds, .seconds).

    s_per_image: timing key -> StepTime (or bare seconds per training image: a GPU benchmark's);
    setup_seconds: timing key -> seconds a training run of that model spends once before its
    epochs (AlexNet's frozen features, computed once per run: see engine/features.py;
    benchmarks/bench_gpu.py measures it); sizes: (training, test) images (data_sizes),
    params.yaml's when not given; reference: the published numbers, whose best test-loss epoch
    sets an early-stopping run's expected epochs. startup: a stage process's start-up measured
    here (a CPU): with it, a stage also costs DVC's share, its start-up and its process's own
    work (train.py times its step first); without it (a GPU benchmark), its images alone."""
    setup_seconds = setup_seconds or {}
    n_train, n_test = params_sizes(p) if sizes is None else sizes
    busy = busy_factor(startup)
    overhead = 0.0 if startup is None else DVC_STAGE_S * busy + startup.seconds
    costs = []
    for name in stages:
        kind, run, seed = split_stage(name)
        epochs, stop, low = 0, None, None
        seconds = FIXED_SECONDS.get(kind, 0.0) * busy
        if run is not None and kind in ("train", "evaluate", "pca"):
            spec = p[run]
            key = run_key(p[run])
            t = as_step(s_per_image[key])
            slow = t.slow_s / t.train_s if t.train_s > 0 else 1.0  # the slower half against the mean
            if kind == "train":
                epochs = spec.epochs(p.train.max_epochs)
                fixed = setup_seconds.get(key, 0.0)
                if startup is not None:
                    own_timing = max(
                        OWN_TIMING_STEPS * min(spec.recipe.batch_size, TIMING_BATCH) * t.train_s, OWN_TIMING_MIN_S
                    )
                    fixed += overhead + TRAIN_PROCESS_S * busy + own_timing
                per_epoch = n_train * t.train_s + n_test * t.eval_s
                seconds = fixed + slow * per_epoch * epochs
                stop = epoch_range(run, spec, p.train.max_epochs, reference)
                if stop is None or stop.expected >= epochs:
                    stop = None  # capped (train.max_epochs) at or below the expected stop: no range
                    low = fixed + per_epoch * epochs
                else:
                    low = fixed + per_epoch * stop.expected
            else:  # up to EVAL_PASSES test passes (final, best, best flipped) or one feature pass
                passes = EVAL_PASSES if kind == "evaluate" else 1
                if startup is None:
                    seconds = 5.0 + t.train_s * n_test * (2 / 3 if kind == "evaluate" else 1 / 3)
                else:
                    seconds = overhead + slow * passes * n_test * t.eval_s
                    low = overhead + passes * n_test * t.eval_s
        elif startup is not None and kind in FIXED_SECONDS:
            seconds += DVC_STAGE_S * busy
        if low is not None and abs(low - seconds) < 1e-9 and stop is None:
            low = None
        costs.append(StageCost(name, run, seed, epochs, seconds, stop, low))
    return costs


def table(costs: list[StageCost], device: str) -> str:
    """A per-stage text table with a total line; an early-stopping run shows the range of its
    epochs and time (the total a range too), and a line under the table says where it comes from."""
    rows = [
        (c.stage, span(c.low_epochs, c.epochs, str) if c.epochs else "", span(c.low_seconds, c.seconds)) for c in costs
    ]
    total = (f"total ({len(costs)} stages, {device})", *total_span(costs))
    w = max([len("stage"), len(total[0])] + [len(r[0]) for r in rows])
    we = max([6] + [len(r[1]) for r in rows] + [len(total[1])])
    wt = max([9] + [len(r[2]) for r in rows] + [len(total[2])])
    lines = [f"{'stage':<{w}}  {'epochs':>{we}}  {'time':>{wt}}", f"{'-' * w}  {'-' * we}  {'-' * wt}"]
    lines += [f"{s:<{w}}  {e:>{we}}  {t:>{wt}}" for s, e, t in rows]
    lines.append(f"{total[0]:<{w}}  {total[1]:>{we}}  {total[2]:>{wt}}")
    lines += [
        f"{c.stage}: {span(c.low_seconds, c.seconds)} ({c.stop.describe()}; expected: {c.stop.source()})"
        for c in costs
        if c.stop
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- GPU measurements

BENCH_RESULTS = Path("benchmarks/results")  # benchmarks/bench_gpu.py's JSON files, committed


def times_from_bench(p: Params, bench: dict) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    """From a bench_gpu.py result: (timing key -> seconds per training image, timing key -> setup
    seconds per run, model -> "compiled" | "eager") for every run of `p` whose model it measured.
    The compiled rate where measured (what training runs), else the eager one. A model is timed
    at its recipe's batch and default arguments; runs of it with another batch or other
    arguments (cnn-wide's channels) get the same rate (a rough estimate)."""
    rows = {r["model"]: r for r in bench.get("models", [])}
    times, setup, source = {}, {}, {}
    for run in p.runs:
        model = p[run].model
        row = rows.get(model, {})
        ips = row.get("compiled_images_per_s") or row.get("eager_images_per_s")
        if not ips:
            continue
        key = run_key(p[run])
        times[key] = 1 / ips
        source[model] = "compiled" if row.get("compiled_images_per_s") else "eager"
        if isinstance(row.get("features"), dict):  # AlexNet: its frozen features, once per run
            setup[key] = row["features"]["seconds_full_set"]
    return times, setup, source


def find_bench(device_name: str, results: Path = BENCH_RESULTS) -> tuple[Path, dict] | None:
    """The newest full (not --tiny) bench_gpu.py result measured on a device named `device_name`."""
    found = []
    for f in sorted(results.glob("*.json")):
        try:
            d = read_json_object(f)
        except DataError:
            continue
        if not d.get("tiny") and (d.get("device") or {}).get("name") == device_name:
            found.append((str(d.get("when", "")), f, d))
    if not found:
        return None
    _, f, d = max(found, key=lambda t: (t[0], str(t[1])))
    return f, d


# --------------------------------------------------------------------------- timing


# Model arguments that change no step's cost: the weights are random when timing (timing.measure)
UNTIMED_ARGS = frozenset({"pretrained", "weights"})


def timing_key(model: str, batch_size: int, arch: dict | None = None) -> str:
    """'cnn@32', or 'cnn(channels=64-128-256,hidden=512)@32' for a run whose model arguments
    differ from the model's defaults: a wider network is another step to time, not cnn's."""
    args = ",".join(
        f"{k}={'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
        for k, v in sorted((arch or {}).items())
        if k not in UNTIMED_ARGS
    )
    return f"{model}{f'({args})' if args else ''}@{min(batch_size, TIMING_BATCH)}"


def run_key(run) -> str:
    """The timing key of a run of the run table (p[name]): its model, arguments and batch."""
    return timing_key(run.model, run.recipe.batch_size, dict(run.arch))


def machine_key(train: TrainParams) -> str:
    """What a timing is valid for: CPU model, cores, threads, torch build, GPU presence, numerics,
    and any cap on the instructions torch may use (on one 2-core Xeon with AMX, busy, a bf16 step of
    custom_resnet ran at 12 images/s, and at 2 under ONEDNN_MAX_CPU_ISA=AVX2)."""
    cpu = cpu_name()
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    gpu = "gpu" if has_gpu() else "cpu"
    caps = "".join(f"|{k}={os.environ[k]}" for k in ISA_ENV if os.environ.get(k))
    return (
        f"{cpu}|{os.cpu_count()} cores|{train.num_threads or 'default'} threads|torch {torch_version}|{gpu}|"
        f"{numerics_label(train)}{caps}"
    )


def numerics_label(train: TrainParams) -> str:
    """'bf16+channels_last+fused', 'fp32', ...: what a timing was measured in (it changes the speed)."""
    parts = ["bf16" if train.bf16 else "fp32"] + [
        k for k in ("channels_last", "fused_optimizer", "compile") if getattr(train, k)
    ]
    return "+".join(parts)


# The numerics switch that decides a CPU's speed: bf16 + channels_last where bf16 is native (AMX,
# AVX512-BF16: 1.3-3.8x fp32), fp32 where it is emulated (5-10x slower than fp32). Which one a CPU
# has is measured: `cifarlab estimate` times both (other_numerics), whatever the flags say.
FASTER_FACTOR = 1.5  # bf16 suggested only when its measured time is at least this much shorter
# fp32 suggested when bf16 measures slower than fp32 by more than the noise of a timing on a busy
# machine (+-8% run to run, docs/training.md): native bf16 is 1.3x fp32 or faster on every model timed
BF16_SLOWER_FACTOR = 1.1


def alternative_numerics(train: TrainParams, native_bf16: str) -> dict | None:
    """The train.* keys this CPU likely trains faster with, from the bf16 in effect
    (engine.device.bf16_in_effect), or None when train has them already: a guess for code that
    cannot time both (tests, benchmarks); `cifarlab estimate` measures instead."""
    if train.bf16 and native_bf16 == "none":
        return {"bf16": False, "channels_last": False}
    if not train.bf16 and native_bf16 != "none":
        return {"bf16": True, "channels_last": True}
    return None


def other_numerics(train: TrainParams) -> dict:
    """The train.* keys of the other precision, the one `cifarlab estimate` times beside the params':
    fp32 contiguous for bf16, bf16 + channels_last for fp32."""
    return {"bf16": not train.bf16, "channels_last": not train.bf16}


def faster_hint(costs: list[StageCost], alt_costs: list[StageCost], alt: dict) -> str | None:
    """One line when `alt` (its stages costed from measured steps: alt_costs) is faster than the
    params' settings (costs): fp32 where bf16 measured slower (emulated bf16, or a loaded machine,
    whatever the CPU's flags say), bf16 where it measured much faster (native)."""
    total_s, alt_total_s = sum(c.seconds for c in costs), sum(c.seconds for c in alt_costs)
    if alt_total_s <= 0:
        return None
    factor = total_s / alt_total_s
    if factor < (FASTER_FACTOR if alt["bf16"] else BF16_SLOWER_FACTOR):
        return None
    ours, theirs = ("fp32", "bf16") if alt["bf16"] else ("bf16", "fp32")
    # what was measured, not what the flags say: on a loaded machine a native-bf16 CPU can time
    # fp32 faster (threads descheduled mid-step), and the line must not call its bf16 emulated
    why = f"{theirs} measured faster than {ours} on this CPU now"
    sets = " ".join(f"train.{k}={str(v).lower()}" for k, v in alt.items())
    return (
        f"hint: {why}: these stages take {total_span(costs)[1]} in {ours}, {total_span(alt_costs)[1]} "
        f"in {theirs} ({factor:.1f}x faster, measured); to use {theirs}: cifarlab set {sets}"
    )


def has_gpu() -> bool:
    """A GPU this process may use (core.gpus: found without importing torch, which the notice at
    the start of every `dvc repro` and the step-time cache's key must not wait for)."""
    return bool(visible_gpus())


def cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cifarlab" / "timings.json"


# What a training step runs, in a checkout: its timings are valid for that code only
TIMED_CODE = ("src/cifarlab/engine", "src/cifarlab/models", "src/cifarlab/train.py")


def code_hash(root: str | Path = ".") -> str:
    """A short hash of the checkout's training code (TIMED_CODE): a checkout whose step code
    differs (another branch, an edit) gets timings of its own."""
    h = hashlib.sha256()
    for rel in TIMED_CODE:
        path = Path(root) / rel
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            try:
                h.update(f"{f.relative_to(root)}\0".encode() + f.read_bytes() + b"\0")
            except OSError:
                continue
    return h.hexdigest()[:16]


def cache_key(train: TrainParams, root: str | Path = ".") -> str:
    """What a cached timing is valid for: this machine and numerics (machine_key) and the
    checkout's training code (code_hash)."""
    return f"{machine_key(train)}|code {code_hash(root)}"


def _read_cache() -> dict:
    try:
        return read_json_object(cache_file())
    except DataError:
        return {}


def _fresh(record: object, now: float) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("when"), (int, float))
        and 0 <= now - record["when"] <= CACHE_MAX_AGE_S
    )


def cached_times(train: TrainParams, root: str | Path = ".") -> dict[str, StepTime]:
    """The timings of this machine, numerics and checkout code timed within CACHE_MAX_AGE_S."""
    entry = _read_cache().get(cache_key(train, root))
    times = entry.get("times") if isinstance(entry, dict) else None
    now, out = time.time(), {}
    for key, record in (times or {}).items():
        if _fresh(record, now):
            try:
                out[key] = StepTime(**record)
            except TypeError:
                continue  # another layout: timed anew
    return out


def cached_startup(train: TrainParams, root: str | Path = ".") -> Startup | None:
    """The stage start-up timed here within CACHE_MAX_AGE_S, or None."""
    entry = _read_cache().get(cache_key(train, root))
    record = entry.get("startup") if isinstance(entry, dict) else None
    if not _fresh(record, time.time()):
        return None
    try:
        return Startup(**record)
    except TypeError:
        return None


def store_times(
    train: TrainParams, times: dict[str, StepTime], root: str | Path = ".", startup: Startup | None = None
) -> None:
    """Put `times` (and `startup`) in the cache, replacing what it held for them: the latest timing
    is what the machine does now, never the fastest ever seen."""
    data = _read_cache()
    key = cache_key(train, root)
    entry = data.get(key) if isinstance(data.get(key), dict) else {}
    entry.setdefault("times", {})
    entry["times"].update({k: asdict(t) for k, t in times.items()})
    if startup is not None:
        entry["startup"] = asdict(startup)
    data[key] = entry
    write_json(cache_file(), data)


def needed_keys(p: Params, stages: list[str]) -> dict[str, tuple[str, dict, object]]:
    """timing key -> (model, arch, recipe) for every training stage in `stages`."""
    keys = {}
    for name in stages:
        kind, run, _ = split_stage(name)
        if run is not None and kind in ("train", "evaluate", "pca"):
            r = p[run]
            keys.setdefault(run_key(r), (r.model, dict(r.arch), r.recipe))
    return keys


def timed_runs(p: Params, keys: dict) -> list[str]:
    """One run of the run table per timing key (what `python -m cifarlab.tooling.timing` takes)."""
    runs: dict[str, str] = {}
    for name, run in p.runs.items():
        runs.setdefault(run_key(run), name)
    return [runs[k] for k in keys if k in runs]


def repro_notice(p: Params, root: str | Path = ".") -> str | None:
    """The notice before a long `dvc repro` / `dvc exp run` (tooling.notice runs it first in fetch
    and in every training stage, once per dvc process): on a machine without a GPU, what that
    command's stages still to run are and how long they take, when over LONG_CPU_RUN_S at the upper
    end; None otherwise. The stage running it (DVC_STAGE) counts as running; the others as DVC's
    status says. Timings from the cache where timed beside a load like now's (like_now), within
    CACHE_MAX_AGE_S; the others timed now, quickly, in a child process (torch is never imported here)."""
    if has_gpu():
        return None
    call = repro_call()
    if call is not None and (not call.known or call.single_item):
        return None  # a queued experiment (nobody reads its terminal), one stage of `cifarlab repro`
    command = call.command if call is not None else "dvc repro"
    targets, glob = (call.targets, call.glob) if call is not None else ([], False)
    here = os.environ.get("DVC_STAGE")  # the stage running this notice: it runs, DVC holds it
    # run by hand: fetch and preprocess run when data.md5 is new (asking DVC would hash the archive)
    data_changed = _data_changes(p) if not here else None

    def changed(name: str) -> bool | None:
        if name == here:
            return True
        return data_changed if data_changed is not None and name in ("fetch", "preprocess") else None

    stages = to_run(root, targets or None, glob=glob, changed=changed)
    keys = needed_keys(p, stages)
    if not keys:
        return None
    times, startup = cached_times(p.train, root), cached_startup(p.train, root)
    stale = [k for k in keys if k not in times or not like_now(times[k].load)]
    restart = startup is None or not like_now(startup.load)
    if stale or restart:  # timed here, now, in a child process (torch), and cached
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cifarlab.tooling.timing",
                *(["--startup"] if restart else []),
                *timed_runs(p, stale),
            ],
            cwd=root,
            check=False,
            stdout=subprocess.DEVNULL,
        )
        times, startup = cached_times(p.train, root), cached_startup(p.train, root)
    if startup is None or any(k not in times for k in keys):
        return None  # timing failed: say nothing rather than something wrong
    now = time.time()
    oldest = min([times[k].when or now for k in keys] + [startup.when or now])
    sizes = data_sizes(p, stages, root)
    reference = Path(root) / REFERENCE_FILE
    costs = stage_costs(p, times, stages, sizes=sizes, reference=reference, startup=startup)
    if sum(c.seconds for c in costs) < LONG_CPU_RUN_S:  # the upper end
        return None
    n_train = sum(1 for c in costs if c.epochs)
    epochs, duration = total_span(costs)
    assumed = (
        ", the official count: data.url's archive is counted when preprocess reads it"
        if sizes_assumed(p, stages)
        else ""
    )
    stops = early_stops(costs)
    when = format_duration(now - oldest)
    lines = [
        f"warning: no GPU found: this `{command}` runs {len(costs)} stage{'s' * (len(costs) != 1)}, {n_train} "
        f"of them training ({epochs} epoch{'s' * (epochs != '1')} on {sizes[0]:,} images{assumed}): about {duration} "
        "on this CPU"
        f"{f' ({stops})' if stops else ''} (steps timed within {when}, beside a load like now's; `cifarlab "
        "estimate` times them fully and shows each stage)"
    ]
    if p.data.train_subset is None and p.train.max_epochs is None:
        lines.append(f"  it is meant for a GPU; for a quick CPU reproduction on a subset: {subset_hint(p.data.url)}")
    else:  # already a smoke run: the knobs that make it shorter
        lines.append(
            "  to go faster: lower data.train_subset or train.max_epochs, or name fewer stages (dvc repro plot@lenet5)"
        )
    alt = other_numerics(p.train)
    alt_times = cached_times(p.train.model_copy(update=alt), root)
    if all(k in alt_times and like_now(alt_times[k].load) for k in keys):  # timed by `cifarlab estimate`
        alt_costs = stage_costs(p, alt_times, stages, sizes=sizes, reference=reference, startup=startup)
        faster = faster_hint(costs, alt_costs, alt)
        if faster:
            lines.append(f"  {faster}")
    lines.append(f"  to run without this notice: CIFARLAB_NO_NOTICE=1 {command} ...")
    return "\n".join(lines)
