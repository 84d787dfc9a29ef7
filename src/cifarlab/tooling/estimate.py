"""How long `dvc repro` would take on this machine: the stages it would run, each timed.

    cifarlab estimate            # per-stage table of what `dvc repro` would run now
    cifarlab estimate plot@lenet5 plot@dnn   # of what `dvc repro plot@lenet5 plot@dnn` would run

The stages are DVC's own plan (tooling.repro_stages): what `dvc repro TARGETS` would run, in its order
(`cifarlab estimate plot@lenet5`; the notice at the start of a `dvc repro plot@lenet5` reads that
command's targets).
Each training stage costs epochs x (train images + test images / 3) x seconds per image of its
model, with its run's arguments, at its batch size; a test pass costs about a third of a training
step per image. A recipe that stops early (custom_resnet) costs a range, from the epochs its
report's run trained to the recipe's maximum (core.early_stop), and so does every total it is in.
The image counts are the prepared data's (data_sizes). Seconds per image come from timing a few
real training steps of each model on this machine (fastest of STEPS after a warm-up, the least
disturbed by other load); on a CPU in both precisions, bf16 and fp32, so a hint says which trains
faster here as measured, not as the CPU's flags suggest. They are cached per machine in
~/.cache/cifarlab/step_times.json, so the notice at the start of `dvc repro` (fetch) reads them
without importing torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cifarlab.core.cifar10 import FULL_TEST, FULL_TRAIN
from cifarlab.core.durations import LONG_CPU_RUN_S, format_duration
from cifarlab.core.early_stop import REFERENCE_FILE, EpochRange, epoch_range
from cifarlab.core.errors import DataError
from cifarlab.core.gpus import visible_gpus
from cifarlab.core.io import read_json_object, write_json
from cifarlab.core.params import Params, TrainParams
from cifarlab.core.provenance import ISA_ENV, cpu_name
from cifarlab.dvc_internals import lock_stages, parse_dvc_args, read_lock
from cifarlab.tooling.repro_stages import to_run

STEPS = 3  # timed steps per model after one warm-up; the fastest is kept
TIMING_BATCH = 32  # images per timed step (or the recipe's batch when smaller)
# Stages that train nothing, in seconds on a 2-core CPU (measured on the subset run; they barely
# depend on the data size): not worth timing each time.
FIXED_SECONDS = {"fetch": 5.0, "preprocess": 15.0, "plot": 4.0, "report": 15.0, "experiment": 1.0}
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
class StageCost:
    stage: str
    run: str | None  # the run a per-run stage belongs to
    seed: int | None
    epochs: int  # training epochs, the most the recipe allows (0: trains nothing)
    seconds: float  # at `epochs`
    stop: EpochRange | None = None  # early stopping: the epochs expected, below `epochs`
    expected_seconds: float | None = None  # at stop.expected epochs

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


def repro_targets() -> tuple[list[str], bool] | None:
    """(targets, glob) of the `dvc repro` / `dvc exp run` this process runs under, read from its
    ancestors' command lines (Linux /proc; DVC runs a stage through a shell) with DVC's own
    parser; None where none is found (another OS, a stage run by hand)."""
    pid = os.getppid()
    for _ in range(6):  # python <- sh <- dvc, with room for wrappers (nice, timeout, a queue worker)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        args = [a.decode(errors="replace") for a in argv if a]
        for i, a in enumerate(args):
            if Path(a).name.startswith("dvc") and args[i + 1 : i + 2] in (["repro"], ["exp"]):
                try:
                    parsed = parse_dvc_args(args[i + 1 :])
                except (SystemExit, Exception):  # noqa: BLE001 - an argv DVC itself would refuse: no targets known
                    return None
                return list(getattr(parsed, "targets", None) or []), bool(getattr(parsed, "glob", False))
        pid = int(status.rsplit(")", 1)[1].split()[1])  # field 4 (ppid), after the command name in parens
        if pid <= 1:
            return None
    return None


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


def params_sizes(p: Params) -> tuple[int, int]:
    """(training images, test images) params.yaml asks of the official archive."""
    n_train = p.data.train_subset or FULL_TRAIN
    return n_train - round(n_train * p.data.val_split), p.data.test_subset or FULL_TEST


def stage_costs(
    p: Params,
    s_per_image: dict[str, float],
    stages: list[str],
    setup_seconds: dict[str, float] | None = None,
    sizes: tuple[int, int] | None = None,
    reference: str | Path = REFERENCE_FILE,
) -> list[StageCost]:
    """The cost of each stage in `stages` (names as `dvc stage list` prints them, in the order
    tooling.repro_stages gives them).

    s_per_image: timing key -> seconds per training image; setup_seconds: timing key -> seconds a
    training run of that model spends once before its epochs (AlexNet's frozen features, computed
    once per run: see engine/features.py; benchmarks/bench_gpu.py measures it); sizes: (training,
    test) images (data_sizes), params.yaml's when not given; reference: the published numbers,
    whose best test-loss epoch sets an early-stopping run's expected epochs."""
    setup_seconds = setup_seconds or {}
    n_train, n_test = params_sizes(p) if sizes is None else sizes
    costs = []
    for name in stages:
        kind, run, seed = split_stage(name)
        epochs, seconds, stop, low = 0, FIXED_SECONDS.get(kind, 0.0), None, None
        if run is not None and kind in ("train", "evaluate", "pca"):
            spec = p[run]
            key = run_key(p[run])
            s_img = s_per_image[key]
            if kind == "train":
                epochs = spec.epochs(p.train.max_epochs)
                seconds = setup_seconds.get(key, 0.0) + s_img * epochs * (n_train + n_test / 3)
                stop = epoch_range(run, spec, p.train.max_epochs, reference)
                if stop is not None and stop.expected < epochs:
                    low = setup_seconds.get(key, 0.0) + s_img * stop.expected * (n_train + n_test / 3)
                else:
                    stop = None  # capped (train.max_epochs) at or below the expected stop: no range
            else:  # up to two test passes (final, best) or one feature pass
                seconds = 5.0 + s_img * n_test * (2 / 3 if kind == "evaluate" else 1 / 3)
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
    params' settings (costs): fp32 where bf16 measured slower (emulated, whatever the CPU's flags
    say), bf16 where it measured much faster (native)."""
    total_s, alt_total_s = sum(c.seconds for c in costs), sum(c.seconds for c in alt_costs)
    if alt_total_s <= 0:
        return None
    factor = total_s / alt_total_s
    if factor < (FASTER_FACTOR if alt["bf16"] else BF16_SLOWER_FACTOR):
        return None
    ours, theirs = ("fp32", "bf16") if alt["bf16"] else ("bf16", "fp32")
    why = "this CPU runs bf16 natively" if alt["bf16"] else "bf16 is emulated on this CPU"
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
    return base / "cifarlab" / "step_times.json"


def cached_times(train: TrainParams) -> dict[str, float]:
    try:
        return read_json_object(cache_file()).get(machine_key(train), {})
    except DataError:
        return {}


def store_times(train: TrainParams, times: dict[str, float]) -> dict[str, float]:
    """Add `times` to this machine's cache, keeping the faster of an old and a new time for the same
    key: a step timed while other work ran is only ever slower (a dnn step timed beside two
    trainings and CI came out 8x slow here). Returns the cached times of `train`'s numerics."""
    path = cache_file()
    try:
        data = read_json_object(path)
    except DataError:
        data = {}
    mine = data.setdefault(machine_key(train), {})
    for key, seconds in times.items():
        mine[key] = min(seconds, mine.get(key, seconds))
    write_json(path, data)
    return dict(mine)


def needed_keys(p: Params, stages: list[str]) -> dict[str, tuple[str, dict, object]]:
    """timing key -> (model, arch, recipe) for every training stage in `stages`."""
    keys = {}
    for name in stages:
        kind, run, _ = split_stage(name)
        if run is not None and kind in ("train", "evaluate", "pca"):
            r = p[run]
            keys.setdefault(run_key(r), (r.model, dict(r.arch), r.recipe))
    return keys


def repro_notice(p: Params, root: str | Path = ".") -> str | None:
    """fetch's start-of-run notice: on a machine without a GPU, what this `dvc repro` will run and
    for how long, if long; None otherwise. Torch is imported only in a child process, and only
    when this machine has no cached timing for a model to be trained."""
    if has_gpu():
        return None
    targets, glob = repro_targets() or ([], False)  # `dvc repro plot@lenet5 plot@dnn`: those and what they need
    # fetch runs this notice, and preprocess comes next: they run when data.md5 is new (asking DVC
    # would hash the archive fetch is about to replace)
    data_changed = _data_changes(p)
    stages = to_run(
        root, targets or None, glob, changed=lambda name: data_changed if name in ("fetch", "preprocess") else None
    )
    keys = needed_keys(p, stages)
    if not keys:
        return None
    if any(k not in cached_times(p.train) for k in keys):
        subprocess.run([sys.executable, "-m", "cifarlab", "estimate", "--quiet"], check=False)
    times = cached_times(p.train)
    if any(k not in times for k in keys):
        return None  # timing failed: say nothing rather than something wrong
    sizes = data_sizes(p, stages, root)
    reference = Path(root) / REFERENCE_FILE
    costs = stage_costs(p, times, stages, sizes=sizes, reference=reference)
    total = sum(c.seconds for c in costs)  # the most: early-stopping runs at their recipe's maximum
    if total < LONG_CPU_RUN_S:
        return None
    n_train = sum(1 for c in costs if c.epochs)
    if p.data.train_subset is None and p.train.max_epochs is None:
        hint = f"It is meant for a GPU; for a quick CPU reproduction on a subset run: {subset_hint(p.data.url)}"
    else:  # already a smoke run: the knobs that make it shorter
        hint = "Lower data.train_subset or train.max_epochs, or name fewer stages (dvc repro plot@lenet5), to go faster"
    epochs, duration = total_span(costs)
    stops = early_stops(costs)
    notice = (
        f"warning: no GPU found: this `dvc repro` runs {len(costs)} stages, {n_train} of them training "
        f"({epochs} epochs on {sizes[0]:,} images), about {duration} on this CPU"
        f"{f' ({stops})' if stops else ''} (`cifarlab estimate` shows each stage). {hint}"
    )
    alt = other_numerics(p.train)
    alt_times = cached_times(p.train.model_copy(update=alt))
    if all(k in alt_times for k in keys):  # timed by `cifarlab estimate` in the other precision
        faster = faster_hint(costs, stage_costs(p, alt_times, stages, sizes=sizes, reference=reference), alt)
        if faster:
            notice += "\n" + faster
    return notice
