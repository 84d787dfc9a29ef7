"""The `cifarlab` command and the run estimate (what `dvc repro` would run, and for how long)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers_cli import cifarlab, fake_dvc
from workspace import SHIPPED_PARAMS, pristine_root, pristine_stage_names

from cifarlab.core.durations import format_duration
from cifarlab.core.errors import ParamsError
from cifarlab.core.params import load_params
from cifarlab.tooling import estimate, repro_stages
from cifarlab.tooling.cli import set_params

ROOT = Path(__file__).resolve().parents[1]


def test_python_dash_m_cifarlab_is_the_command():
    out = subprocess.run([sys.executable, "-m", "cifarlab", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "usage: cifarlab" in out.stdout


def test_help_lists_every_subcommand():
    out = cifarlab("--help")
    assert out.returncode == 0
    for cmd in ("runs", "estimate", "fetch", "preprocess", "train", "evaluate", "plot", "pca", "experiment", "report"):
        assert f"    {cmd}" in out.stdout, cmd


def test_stage_subcommand_is_the_stage_module():
    out = cifarlab("train", "--help")
    assert out.returncode == 0 and "--run NAME" in out.stdout and "--seed K" in out.stdout
    bad = cifarlab("train", "--run", "no-such-run")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith(
        "error: unknown run 'no-such-run'; known runs (params.yaml `runs`, listed by `cifarlab runs`): lenet5, resnet9,"
    )


def test_unknown_subcommand_is_refused():
    out = cifarlab("trian")
    assert out.returncode == 2 and "invalid choice: 'trian'" in out.stderr


def test_runs_lists_the_run_table():
    out = cifarlab("runs")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    p = load_params(SHIPPED_PARAMS)
    assert lines[-1] == f"{len(p.runs)} runs, seed {p.seed}"
    cell = next(line for line in lines if line.startswith("resnet18-tanh-5_3_2-none "))
    assert cell.split()[1:3] == ["resnet18", "200"]
    assert "activation=tanh, lr_ratio=5:3:2, augment=none" in cell


@pytest.mark.slow  # dvc stage list and the planner over the whole graph
def test_the_plan_of_a_fresh_clone_is_every_stage_of_dvc_yaml_in_dvcs_order():
    """tooling.repro_stages (the one planner) == what DVC expands dvc.yaml into, each stage after those it needs."""
    listed = pristine_stage_names()
    walk = repro_stages.steps(pristine_root(), force=True)
    assert sorted(s.name for s in walk) == sorted(listed) and all(s.runs for s in walk)
    seen: set[str] = set()
    for s in walk:
        assert s.above <= seen, (s.name, sorted(s.above - seen)[:3])
        seen.add(s.name)


def test_split_stage_names():
    assert estimate.split_stage("train@lenet5") == ("train", "lenet5", None)
    assert estimate.split_stage("plot_seeds@resnet18-relu-2_1_1-none-7") == ("plot", "resnet18-relu-2_1_1-none", 7)
    assert estimate.split_stage("report") == ("report", None, None)


def test_plan_costs_epochs_times_images_and_sums_in_the_table():
    p = load_params(SHIPPED_PARAMS)
    times = {estimate.run_key(r): 1e-3 for r in p.runs.values()}
    costs = estimate.stage_costs(p, times, ["train@lenet5", "evaluate@lenet5", "report"])
    assert [c.stage for c in costs] == ["train@lenet5", "evaluate@lenet5", "report"]
    train = costs[0]
    assert train.epochs == 10
    assert train.seconds == pytest.approx(1e-3 * 10 * (50_000 + 10_000 / 3))
    text = estimate.table(costs, "this CPU")
    assert text.splitlines()[-1].startswith("total (3 stages, this CPU)")
    assert format_duration(sum(c.seconds for c in costs)) in text.splitlines()[-1]


def test_a_run_with_other_model_arguments_is_timed_apart():
    """cnn-wide (4x the channels) is not costed at cnn's rate; weights change no step's cost."""
    p = load_params(SHIPPED_PARAMS)
    assert estimate.run_key(p["cnn"]) == "cnn@64"
    assert estimate.run_key(p["cnn-wide"]) == "cnn(channels=64-128-256,hidden=512)@64"
    assert (
        estimate.timing_key("alexnet_transfer", 32, {"skip": True, "pretrained": True, "weights": None})
        == "alexnet_transfer(skip=True)@32"
    )
    keys = estimate.needed_keys(p, ["train@cnn", "train@cnn-wide", "evaluate@cnn"])
    assert sorted(keys) == ["cnn(channels=64-128-256,hidden=512)@64", "cnn@64"]
    assert keys["cnn(channels=64-128-256,hidden=512)@64"][1] == {"channels": (64, 128, 256), "hidden": 512}
    times = {"cnn@64": 1e-3, "cnn(channels=64-128-256,hidden=512)@64": 3e-3}
    narrow, wide = estimate.stage_costs(p, times, ["train@cnn", "train@cnn-wide"])
    assert wide.seconds == pytest.approx(3 * narrow.seconds)


def test_the_plan_costs_the_images_the_prepared_data_holds(tmp_path):
    """A 40,000 / 10,000 archive (the JPEG study's) costs 40,000 images an epoch, not 50,000;
    params.yaml's sizes when preprocess is about to run or nothing is prepared."""
    p = load_params(SHIPPED_PARAMS)
    assert estimate.data_sizes(p, ["train@cnn"], tmp_path) == (50_000, 10_000)
    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/stats.json").write_text(json.dumps({"n_train": 40_000, "n_val": 0, "n_test": 10_000}))
    assert estimate.data_sizes(p, ["train@cnn"], tmp_path) == (40_000, 10_000)
    assert estimate.data_sizes(p, ["preprocess", "train@cnn"], tmp_path) == (50_000, 10_000)
    (cost,) = estimate.stage_costs(p, {"cnn@64": 1e-3}, ["train@cnn"], sizes=(40_000, 10_000))
    assert cost.seconds == pytest.approx(1e-3 * 100 * (40_000 + 10_000 / 3))
    (tmp_path / "data/prepared/stats.json").write_text("{not json")
    assert estimate.data_sizes(p, ["train@cnn"], tmp_path) == (50_000, 10_000)


def fresh_clone_plan(root, targets, glob, changed=None):
    """The planner on this checkout as a fresh clone sees it: every stage of the targets runs."""
    return repro_stages.to_run(pristine_root(), targets, glob=glob, force=True)


# A stage's process starting as fast as on the idle machine the fixed costs were measured on
STARTUP = estimate.Startup(estimate.IDLE_STARTUP_S, 0.0, None)


def cached(monkeypatch, times_of):
    """The notice reads `times_of(train)` (seconds per image, by timing key) and STARTUP from the
    cache, timed now at load 0, on an idle machine (no stretch for the load)."""
    import time

    now = time.time()
    monkeypatch.setattr(
        estimate,
        "cached_times",
        lambda train, root=".": {k: estimate.StepTime(t, t, t / 3, 0.0, now) for k, t in times_of(train).items()},
    )
    monkeypatch.setattr(estimate, "cached_startup", lambda train, root=".": estimate.Startup(STARTUP.seconds, 0.0, now))
    monkeypatch.setattr(estimate, "loadavg", lambda: (0.0, 0.0, 0.0))


@pytest.mark.slow  # the planner over the whole graph, twice
def test_repro_notice_counts_every_stage_and_carries_the_data_url(monkeypatch, tmp_path):
    """The notice at the start of `dvc repro` on a CPU: all stages of a fresh clone, timed from
    the cache (no torch), and a subset command that keeps the user's own data.url."""
    d = yaml.safe_load((SHIPPED_PARAMS).read_text())
    d["data"]["url"] = "/data/cifar-10-python.tar.gz"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))
    p = load_params(tmp_path / "params.yaml")
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    # a path: the whole pipeline
    monkeypatch.setattr(estimate, "repro_call", lambda: estimate.ReproCall("dvc repro", ["dvc.yaml"]))
    monkeypatch.setattr(estimate, "to_run", fresh_clone_plan)
    cached(monkeypatch, lambda train: {estimate.run_key(r): 1e-3 for r in p.runs.values()})
    msg = estimate.repro_notice(p)
    n_stages = len(repro_stages.to_run(pristine_root(), force=True))
    first, subset, skip = msg.splitlines()
    assert first.startswith(
        f"warning: no GPU found: this `dvc repro` runs {n_stages} stages, {len(p.runs)} of them training"
    )
    # data.url is local: the subset command keeps it as it is
    assert subset.endswith(
        "cifarlab set data.train_subset=5000 data.test_subset=2000 train.max_epochs=1 "
        "alexnet_transfer.pretrained=false && dvc repro"
    )
    assert skip == "  to run without this notice: CIFARLAB_NO_NOTICE=1 dvc repro ..."


def test_repro_notice_counts_the_stages_of_the_targets_only(monkeypatch):
    """`dvc repro plot@lenet5 plot@dnn` on a fresh clone: 8 stages, 2 trainings, not the 185 of
    the whole pipeline; the remote default data.url gets the offline alternative in the hint."""
    p = load_params(SHIPPED_PARAMS)
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    monkeypatch.setattr(estimate, "repro_call", lambda: estimate.ReproCall("dvc repro", ["plot@lenet5", "plot@dnn"]))
    monkeypatch.setattr(estimate, "to_run", fresh_clone_plan)
    cached(monkeypatch, lambda train: {estimate.run_key(r): 1e-3 for r in p.runs.values()})
    msg = estimate.repro_notice(p)
    assert msg.startswith("warning: no GPU found: this `dvc repro` runs 8 stages, 2 of them training (110 epochs")
    assert "(offline: first cifarlab set data.url=/path/to/cifar-10-python.tar.gz" in msg
    assert "the official count" not in msg  # the official archive's count is known


def test_repro_notice_says_when_the_image_count_is_assumed(monkeypatch):
    """Before preprocess has read an archive other than the official one (the JPEG study's holds
    40,000 training images), the notice's 50,000 is the official count, and it says so."""
    p = load_params(SHIPPED_PARAMS)
    other = p.model_copy(update={"data": p.data.model_copy(update={"md5": "01f100387b9de03dba3dc67c9ea1854b"})})
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    monkeypatch.setattr(estimate, "repro_call", lambda: estimate.ReproCall("dvc repro", ["plot@lenet5", "plot@dnn"]))
    monkeypatch.setattr(estimate, "to_run", fresh_clone_plan)
    cached(monkeypatch, lambda train: {estimate.run_key(r): 1e-3 for r in p.runs.values()})
    first = estimate.repro_notice(other).splitlines()[0]
    assert "(110 epochs on 50,000 images, the official count: data.url's archive is counted when preprocess " in first
    # a subset fixes the count whatever the archive
    subset = other.model_copy(update={"data": other.data.model_copy(update={"train_subset": 5000})})
    assert not estimate.sizes_assumed(subset, ["preprocess", "train@lenet5"])
    assert not estimate.sizes_assumed(other, ["train@lenet5"])  # prepared: data_sizes reads its counts


# custom_resnet's recipe: 300 epochs at most, early stopping after 15 without a test-loss gain;
# report 001's run had its lowest test loss at epoch 62 (reports/reference.yaml), so it stopped at 77.
MOST, PATIENCE, BEST = 300, 15, 62
EXPECTED = BEST + PATIENCE


def test_the_expected_stop_of_custom_resnet_is_its_published_best_epoch_plus_the_patience(tmp_path):
    from cifarlab.core.early_stop import REFERENCE_FILE, epoch_range, published_best_loss_epoch

    p = load_params(SHIPPED_PARAMS)
    mp = p["custom_resnet"]
    assert (mp.recipe.epochs, mp.recipe.early_stopping_patience) == (MOST, PATIENCE)
    assert published_best_loss_epoch("custom_resnet", pristine_root() / REFERENCE_FILE) == BEST
    r = epoch_range("custom_resnet", mp, None, pristine_root() / REFERENCE_FILE)
    assert (r.expected, r.most) == (EXPECTED, MOST)
    assert r.describe() == f"early stopping: ~{EXPECTED} epochs expected, up to {MOST}"
    # no published number (a run the reports never had, or no reports/ here): the fewest epochs
    # early stopping allows; train.max_epochs caps both ends; no early stopping: no range
    r = epoch_range("custom_resnet", mp, None, tmp_path / "none.yaml")
    assert (r.expected, r.best_epoch) == (1 + PATIENCE, None)
    assert r.describe() == f"early stopping: at least {1 + PATIENCE} epochs, up to {MOST}"
    assert epoch_range("custom_resnet", mp, 50, pristine_root() / REFERENCE_FILE).most == 50
    assert epoch_range("cnn", p["cnn"], None, pristine_root() / REFERENCE_FILE) is None
    (cost,) = estimate.stage_costs(
        p,
        {estimate.run_key(p["custom_resnet"]): 1e-3},
        ["train@custom_resnet"],
        reference=pristine_root() / REFERENCE_FILE,
    )
    assert (cost.low_epochs, cost.epochs) == (EXPECTED, MOST)
    # capped below the expected stop (a smoke run): no range
    smoke = p.model_copy(update={"train": p.train.model_copy(update={"max_epochs": 50})})
    (capped,) = estimate.stage_costs(
        smoke,
        {estimate.run_key(p["custom_resnet"]): 1e-3},
        ["train@custom_resnet"],
        reference=pristine_root() / REFERENCE_FILE,
    )
    assert (capped.stop, capped.low_epochs, capped.epochs) == (None, 50, 50)


def fake_timer(monkeypatch, tmp_path, bf16_s: float, fp32_s: float):
    """Every timed step costs `bf16_s` (bf16) or `fp32_s` (fp32) seconds per image (its test pass a
    third of that), a stage starts in STARTUP; a fresh cache; no GPU."""
    from cifarlab.tooling import timing

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    monkeypatch.setattr(
        timing, "measure", lambda train, keys, log=None: {k: bf16_s if train.bf16 else fp32_s for k in keys}
    )
    monkeypatch.setattr(timing, "measure_startup", lambda root=".": STARTUP)


def train_fixed(p, run: str, s_img: float) -> float:
    """What a CPU training stage costs besides its epochs, at STARTUP: DVC's share, the start-up,
    the process's own work and train.py's own step timing (4 steps at min(batch, 64), 1 s at least)."""
    own = max(4 * min(p[run].recipe.batch_size, 64) * s_img, 1.0)
    return estimate.DVC_STAGE_S + STARTUP.seconds + estimate.TRAIN_PROCESS_S + own


def test_estimate_of_custom_resnet_is_a_range_from_its_expected_stop_to_its_300_epochs(monkeypatch, tmp_path):
    """`cifarlab estimate plot@custom_resnet`: the training row and the total are ranges whose lower
    end is the expected early stop (77 epochs) and whose upper end the recipe's 300, from the timed step."""
    s_img = 2e-3  # seconds per training image, bf16 (the default)
    fake_timer(monkeypatch, tmp_path, bf16_s=s_img, fp32_s=s_img)
    out = cifarlab("estimate", "--all", "plot@custom_resnet")
    assert out.returncode == 0, out.stderr
    p = load_params(SHIPPED_PARAMS)
    per_epoch = s_img * (50_000 + 10_000 / 3)  # a training pass, and a test pass at a third of a step
    fixed = train_fixed(p, "custom_resnet", s_img)
    low, high = format_duration(fixed + EXPECTED * per_epoch), format_duration(fixed + MOST * per_epoch)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("timed now on this checkout, beside what else runs (load average ")
    row = next(line for line in lines if line.startswith("train@custom_resnet "))
    assert row.split()[1:] == [f"{EXPECTED}-{MOST}", f"{low}-{high}"]
    assert (
        f"train@custom_resnet: {low}-{high} (early stopping: ~{EXPECTED} epochs expected, up to {MOST}; "
        f"expected: the published best test loss at epoch {BEST}"
    ) in out.stdout
    # the total: fetch 5 s, preprocess 15 s, plot 4 s, each with DVC's share; evaluate DVC's share,
    # its start-up and four test passes (final, best, best flipped); plus the range
    dvc = estimate.DVC_STAGE_S
    rest = 5 + 15 + 4 + 3 * dvc + dvc + STARTUP.seconds + 4 * 10_000 * s_img / 3
    total = next(line for line in lines if line.startswith("total (5 stages, this CPU)"))
    low, high = format_duration(rest + fixed + EXPECTED * per_epoch), format_duration(rest + fixed + MOST * per_epoch)
    assert total.split()[-2:] == [f"{EXPECTED}-{MOST}", f"{low}-{high}"]
    assert "hint:" not in out.stdout  # both precisions timed the same: nothing to advise


def test_estimate_hints_fp32_where_bf16_measures_slower_whatever_the_cpu_flags_say(monkeypatch, tmp_path):
    """bf16 timed 3x slower than fp32 (emulated: a VM, ONEDNN_MAX_CPU_ISA) on a CPU whose flags
    list amx_bf16: the hint names the measured times and the command, from the timings alone."""
    from cifarlab.core import provenance

    fake_timer(monkeypatch, tmp_path, bf16_s=3e-3, fp32_s=1e-3)
    monkeypatch.setattr(provenance, "cpu_flags", lambda: {"amx_bf16", "avx512_bf16"})
    out = cifarlab("estimate", "--all", "plot@lenet5")
    assert out.returncode == 0, out.stderr
    p = load_params(SHIPPED_PARAMS)
    stages = ["fetch", "preprocess", "train@lenet5", "evaluate@lenet5", "plot@lenet5"]  # dvc repro plot@lenet5
    assert f"total ({len(stages)} stages, this CPU)" in out.stdout
    costs = estimate.stage_costs(p, {estimate.run_key(p["lenet5"]): 3e-3}, stages, startup=STARTUP)
    fp32 = estimate.stage_costs(p, {estimate.run_key(p["lenet5"]): 1e-3}, stages, startup=STARTUP)
    bf16_s, fp32_s = sum(c.seconds for c in costs), sum(c.seconds for c in fp32)
    hint = out.stdout.splitlines()[-1]
    assert hint == (
        f"hint: fp32 measured faster than bf16 on this CPU now: these stages take {format_duration(bf16_s)} in bf16, "
        f"{format_duration(fp32_s)} in fp32 ({bf16_s / fp32_s:.1f}x faster, measured); "
        "to use fp32: cifarlab set train.bf16=false train.channels_last=false"
    )


def test_repro_notice_gives_an_early_stopping_run_as_a_range_and_the_measured_hint(monkeypatch):
    """`dvc repro plot@custom_resnet` on a CPU: epochs and time as ranges naming the expected stop,
    then the fp32 hint where the cached fp32 steps are faster than the bf16 ones."""
    p = load_params(SHIPPED_PARAMS)
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    monkeypatch.setattr(estimate, "repro_call", lambda: estimate.ReproCall("dvc repro", ["plot@custom_resnet"]))
    monkeypatch.setattr(estimate, "to_run", fresh_clone_plan)
    keys = [estimate.run_key(r) for r in p.runs.values()]
    cached(monkeypatch, lambda train: {k: 2e-3 if train.bf16 else 1e-3 for k in keys})
    msg = estimate.repro_notice(p, pristine_root())
    notice, subset, hint, skip = msg.splitlines()
    s_img, dvc = 2e-3, estimate.DVC_STAGE_S
    per_epoch = s_img * (50_000 + 10_000 / 3)
    rest = (
        5 + 15 + 4 + 3 * dvc + dvc + STARTUP.seconds + 4 * 10_000 * s_img / 3 + train_fixed(p, "custom_resnet", s_img)
    )
    assert (
        f"({EXPECTED}-{MOST} epochs on 50,000 images): about {format_duration(rest + EXPECTED * per_epoch)}-"
        f"{format_duration(rest + MOST * per_epoch)} on this CPU (early stopping: custom_resnet ~{EXPECTED} epochs "
        f"expected, up to {MOST}) (steps timed "
    ) in notice
    assert notice.endswith(", beside a load like now's; `cifarlab estimate` times them fully and shows each stage)")
    assert subset.startswith("  it is meant for a GPU; for a quick CPU reproduction on a subset: cifarlab set ")
    assert (
        hint.startswith("  hint: fp32 measured faster than bf16 on this CPU now: ")
        and "(2.0x faster, measured)" in hint
    )
    assert skip == "  to run without this notice: CIFARLAB_NO_NOTICE=1 dvc repro ..."


def test_train_warns_of_an_early_stopping_run_as_a_range():
    from cifarlab.core.early_stop import EpochRange
    from cifarlab.train import cpu_notice

    s_img = 2e-3
    per_epoch = s_img * (50_000 + 10_000 / 3)
    msg = cpu_notice("custom_resnet", MOST, 50_000, 10_000, s_img, EpochRange(EXPECTED, MOST, PATIENCE, BEST))
    assert msg == (
        f"warning: no GPU: training custom_resnet for up to {MOST} epochs on 50,000 images will take "
        f"at least {format_duration(EXPECTED * per_epoch)}-{format_duration(MOST * per_epoch)} on this CPU "
        f"(early stopping: ~{EXPECTED} epochs expected, up to {MOST}; at its fastest step timed here; "
        "`cifarlab estimate`: the expected range)"
    )


def test_a_resumed_run_is_warned_of_the_epochs_it_has_left():
    """custom_resnet resuming after 14 saved epochs: the range runs from the expected stop to the
    recipe's end, both counted from epoch 15; past the expected stop, from one more epoch."""
    from cifarlab.core.early_stop import EpochRange
    from cifarlab.train import cpu_notice

    s_img = 2e-3
    per_epoch = s_img * (50_000 + 10_000 / 3)
    stop = EpochRange(EXPECTED, MOST, PATIENCE, BEST)
    msg = cpu_notice("custom_resnet", MOST, 50_000, 10_000, s_img, stop, done=14)
    assert msg.startswith(
        f"warning: no GPU: training custom_resnet for up to epochs 15-{MOST} (1-14 saved) on 50,000 images will "
        f"take at least {format_duration((EXPECTED - 14) * per_epoch)}-{format_duration((MOST - 14) * per_epoch)} "
    )
    late = cpu_notice("custom_resnet", MOST, 50_000, 10_000, s_img, stop, done=EXPECTED + 5)
    assert f"at least {format_duration(per_epoch)}-{format_duration((MOST - EXPECTED - 5) * per_epoch)} " in late
    plain = cpu_notice("resnet", 100, 50_000, 10_000, s_img, done=5)
    assert (
        f"for epochs 6-100 (1-5 saved) on 50,000 images will take at least {format_duration(95 * per_epoch)} " in plain
    )
    assert cpu_notice("resnet", 100, 50_000, 10_000, s_img, done=100) is None  # nothing left to train


@pytest.mark.slow  # dvc repro --dry over the whole graph, once per target set
def test_the_plan_of_targets_is_what_dvc_repro_targets_runs(monkeypatch):
    """The stages of `dvc repro TARGETS` (dvc repro --dry lists them), in the planner's view."""
    monkeypatch.chdir(pristine_root())  # DVC resolves a stage target against the working directory
    for targets, glob in (
        (["plot@lenet5", "plot@dnn"], False),
        (["evaluate@cnn"], False),
        (["plot@resnet18-relu-5_3_2-*"], True),
        (["experiment"], False),
    ):
        ours = repro_stages.to_run(pristine_root(), targets, glob=glob, force=True)
        dry = subprocess.run(
            [sys.executable, "-m", "dvc", "repro", "--dry", "--force", *(["--glob"] if glob else []), *targets],
            cwd=pristine_root(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        theirs = re.findall(r"Running stage '([^']+)'", dry)
        assert sorted(ours) == sorted(theirs), (targets, ours, theirs)  # the order of independent stages varies
    with pytest.raises(ParamsError, match="plot@nope: no such stage"):
        repro_stages.to_run(pristine_root(), ["plot@nope"])


def test_repro_targets_reads_the_dvc_command_this_process_runs_under(tmp_path):
    """A stage's process finds the targets of the `dvc repro` that started it (through the shell
    DVC runs it in): a `dvc` script standing in for DVC's console script."""
    run = fake_dvc(tmp_path, "from cifarlab.tooling.estimate import repro_targets; print(repro_targets())")

    assert run("repro", "plot@lenet5", "plot@dnn") == "(['plot@lenet5', 'plot@dnn'], False)"
    assert run("repro", "--glob", "plot@resnet18-*") == "(['plot@resnet18-*'], True)"
    assert run("exp", "run", "experiment", "-S", "model=dnn") == "(['experiment'], False)"
    assert run("status") == "None"


def test_fetch_imports_no_torch():
    code = "import sys; import cifarlab.fetch; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_timing_cache_is_per_machine_and_checkout_code_and_keeps_the_latest(monkeypatch, tmp_path):
    """The cache the field report blamed kept the fastest step ever seen, for every checkout: now
    each timing replaces the last, under a key of machine, numerics and the checkout's training code,
    with the load it was timed beside and when; older than CACHE_MAX_AGE_S, it is timed anew."""
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = pristine_root()
    p = load_params(SHIPPED_PARAMS)
    assert estimate.cached_times(p.train, root) == {}
    now = time.time()
    t = estimate.StepTime(0.001, 0.0015, 0.0004, 3.5, now)
    estimate.store_times(p.train, {"lenet5@64": t}, root, startup=STARTUP)
    assert estimate.cached_times(p.train, root) == {"lenet5@64": t}
    data = json.loads((tmp_path / "cache/cifarlab/timings.json").read_text())
    (key,) = data
    assert key == estimate.cache_key(p.train, root) and key.startswith(estimate.machine_key(p.train))
    assert "torch" in key and f"|code {estimate.code_hash(root)}" in key
    assert data[key]["times"]["lenet5@64"]["load"] == 3.5 and data[key]["times"]["lenet5@64"]["when"] == now
    # a slower time (the machine is busier now) replaces the faster one: what the machine does now
    slower = estimate.StepTime(0.004, 0.005, 0.001, 5.0, now)
    estimate.store_times(p.train, {"lenet5@64": slower, "dnn@64": t}, root)
    assert estimate.cached_times(p.train, root) == {"lenet5@64": slower, "dnn@64": t}
    # other numerics: another key; a checkout whose step code differs: none of these
    assert estimate.cached_times(p.train.model_copy(update={"bf16": False}), root) == {}
    other = tmp_path / "other"
    (other / "src/cifarlab/engine").mkdir(parents=True)
    (other / "src/cifarlab/engine/step.py").write_text("# another step\n")
    assert estimate.cached_times(p.train, other) == {}
    # stale after CACHE_MAX_AGE_S
    monkeypatch.setattr(estimate.time, "time", lambda: now + estimate.CACHE_MAX_AGE_S + 1)
    assert estimate.cached_times(p.train, root) == {} and estimate.cached_startup(p.train, root) is None


def test_set_edits_params_keeping_comments_and_validates_first(tmp_path):
    original = (SHIPPED_PARAMS).read_text()
    (tmp_path / "params.yaml").write_text(original)
    out = cifarlab(
        "set",
        "data.train_subset=5000",
        "++runs.lenet5.lr=0.01",
        "runs.resnet18-relu-5_3_2-none.lr_ratio=5:4:1",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "params.yaml: data.train_subset = 5000"
    text = (tmp_path / "params.yaml").read_text()
    assert "  train_subset: 5000  # null = all 50,000" in text  # the comment survives
    assert "  test_subset: null" in text  # untouched nulls stay null
    assert "  lenet5: {model: lenet5, lr: 0.01}" in text
    p = load_params(tmp_path / "params.yaml")
    assert p.data.train_subset == 5000 and p["lenet5"].recipe.lr == 0.01
    assert p["resnet18-relu-5_3_2-none"].recipe.lr_ratio == (5.0, 4.0, 1.0)
    # a bad value: one line, exit 2, the file unchanged
    before = (tmp_path / "params.yaml").read_bytes()
    bad = cifarlab("set", "data.test_subset=2000", "lenet5.lr=fast", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: bad value for 'lenet5.lr': 'fast'")
    assert (tmp_path / "params.yaml").read_bytes() == before
    unknown = cifarlab("set", "dta.url=x", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown param 'dta'" in unknown.stderr


def test_set_writes_a_list_as_typed_and_setting_it_back_restores_the_file(tmp_path):
    """`cifarlab set seeds=[1, 2]` writes `seeds: [1, 2]` on its line (not a block list, whose last
    item would carry away the blank line below it), and `seeds=[]` gives back the file byte for byte."""
    params = tmp_path / "params.yaml"
    params.write_bytes((SHIPPED_PARAMS).read_bytes())
    set_params(params, ["seeds=[1, 2]", "pca=[]"])
    text = params.read_text()
    assert "\nseeds: [1, 2]\n" in text and "\npca: []\n" in text
    assert len(text.splitlines()) == len((SHIPPED_PARAMS).read_text().splitlines())
    pca = yaml.safe_load((SHIPPED_PARAMS).read_text())["pca"]
    set_params(params, ["seeds=[]", f"pca=[{', '.join(pca)}]"])
    assert params.read_bytes() == (SHIPPED_PARAMS).read_bytes()


def test_params_are_read_as_yaml_1_2_like_dvc(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with ruamel and drops quotes: an unquoted ratio must
    still read as a ratio (YAML 1.1 would make 2:1:1 the base-60 number 7261)."""
    text = (SHIPPED_PARAMS).read_text().replace('lr_ratio: "2:1:1"', "lr_ratio: 2:1:1")
    (tmp_path / "params.yaml").write_text(text)
    p = load_params(tmp_path / "params.yaml")
    assert p["resnet18-relu-2_1_1-none"].recipe.lr_ratio == (2.0, 1.0, 1.0)


def test_set_stores_a_local_data_url_normalized(tmp_path):
    """`cifarlab set data.url=$PWD/../x` stores the path it names, not .../main/../x."""
    params = tmp_path / "params.yaml"
    params.write_bytes((SHIPPED_PARAMS).read_bytes())
    set_params(params, [f"data.url={tmp_path}/sub/../cifar.tar.gz"])
    assert yaml.safe_load(params.read_text())["data"]["url"] == f"{tmp_path}/cifar.tar.gz"
    set_params(params, ["data.url=https://example.org/a/../cifar.tar.gz"])  # a URL is the server's to resolve
    assert yaml.safe_load(params.read_text())["data"]["url"] == "https://example.org/a/../cifar.tar.gz"


def test_runs_table_shows_an_epoch_cap_beside_the_recipe():
    """`cifarlab runs` under train.max_epochs=1 says "1 of 100", not a bare 1 beside epochs=100."""
    from cifarlab.core.params import load_params, validate
    from cifarlab.core.params_file import read_params_file
    from cifarlab.tooling.cli import runs_table

    full = runs_table(load_params(SHIPPED_PARAMS, check_models=False))
    raw = read_params_file(SHIPPED_PARAMS)
    raw["train"]["max_epochs"] = 1
    capped = runs_table(validate(raw, check_models=False))
    dnn = [line.split() for line in (full, capped)[1].splitlines() if line.startswith("dnn ")][0]
    assert dnn[:5] == ["dnn", "dnn", "1", "of", "100"]
    assert [line.split()[:3] for line in full.splitlines() if line.startswith("dnn ")] == [["dnn", "dnn", "100"]]
    assert "train.max_epochs = 1: every run stops there" in capped and "max_epochs" not in full
