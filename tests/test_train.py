"""CPU smoke training: the stages end to end on a tiny archive the tests build themselves."""

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest
import torch
import yaml
from helpers_bad_inputs import BAD_STAGE_ARGS
from workspace import shipped, write_params

from cifarlab import evaluate, plot, train
from cifarlab.engine.loop import EpochStats, time_left

ROOT = Path(__file__).resolve().parents[1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Workdir(NamedTuple):
    """The test's folder (its working directory) and what a test puts there."""

    path: Path
    params: Callable  # params(runs, **changes): params.yaml, small_params at 2 epochs in the shipped numerics
    prepare: Callable  # the data fetch and preprocess make of params.yaml

    def prepared(self, runs, **changes) -> None:
        """params(), then the data every training test starts from."""
        self.params(runs, **changes)
        self.prepare()

    def run_pipeline(self, runs) -> None:
        self.prepare()
        for r in runs:
            train.main(["--run", r])
            evaluate.main(["--run", r])
            plot.main(["--run", r])


@pytest.fixture
def workdir(tmp_path, monkeypatch, small_params, prepare) -> Workdir:
    monkeypatch.chdir(tmp_path)

    def params(runs, **changes):
        """Only `runs` of the run table (names, or a {name: entry} mapping for runs of the test's
        own); `changes` change sections (small_params)."""
        changes["train"] = {"max_epochs": 2, **changes.get("train", {})}
        write_params(tmp_path, small_params(runs, fast=False, **changes))

    return Workdir(tmp_path, params, prepare)


@pytest.mark.slow  # the whole pipeline in-process, the report included
def test_smoke_pipeline_writes_metrics_history_checkpoints_and_figures(workdir, capsys):
    tmp = workdir.path
    # small batch so the tiny set gives several steps an epoch
    workdir.params(["lenet5"], lenet5={"batch_size": 16, "lr": 0.003})
    workdir.run_pipeline(["lenet5"])
    epoch_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lenet5 epoch ")]
    assert len(epoch_lines) == 2, epoch_lines
    assert re.search(r"\| \d+\.\ds \| \d+m\d\ds left$", epoch_lines[0]), epoch_lines  # the time still to run
    assert re.search(r"\| \d+\.\ds$", epoch_lines[1]), epoch_lines  # none after the last epoch

    m = json.loads((tmp / "reports/metrics/lenet5.json").read_text())
    details = json.loads((tmp / "reports/details/lenet5.json").read_text())
    # the DVC metrics file holds scalars only (dvc exp show stays readable); the rest is in details
    assert {k: sorted(v) for k, v in m.items()} == {w: ["epoch", "loss", "top1", "top3"] for w in ("best", "final")}
    assert (details["run"], details["model"], details["seed"]) == ("lenet5", "lenet5", 23)
    assert (details["recipe_epochs"], details["epochs_cap"], details["random_features"]) == (10, 2, False)
    for which in ("final", "best"):
        r = {**details[which], **m[which]}
        assert {k: details[which][k] for k in m[which]} == m[which]
        assert 0 <= r["top1"] <= r["top3"] <= 1
        assert r["loss"] > 0
        assert len(r["confusion"]) == 10 and sum(map(sum, r["confusion"])) == details["n_test"] == 100
        assert set(r["per_class_top1"]) == {
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        }
    assert m["final"]["epoch"] == 2 and m["best"]["epoch"] in (1, 2)
    # the tiny archive's classes differ by colour: 2 epochs must beat chance (10%) clearly
    assert m["best"]["top1"] > 0.2

    h = pd.read_csv(tmp / "reports/history/lenet5.csv")
    assert list(h.columns) == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"]
    assert h["epoch"].tolist() == [1, 2]
    assert h["test_acc"].max() == pytest.approx(m["best"]["top1"], abs=1e-6)
    assert h["test_acc"].iloc[-1] == pytest.approx(m["final"]["top1"], abs=1e-6)

    ckpt = torch.load(tmp / "data/checkpoints/lenet5/final.pt", weights_only=True)
    assert ckpt["model"] == "lenet5" and ckpt["epoch"] == 2
    preds = pd.read_csv(tmp / "reports/predictions/lenet5.csv")
    assert len(preds) == 100 and list(preds.columns) == ["actual", "predicted"]
    assert (tmp / "reports/figures/runs/curves_lenet5.png").stat().st_size > 1000
    assert (tmp / "reports/figures/runs/confusion_lenet5.png").stat().st_size > 1000

    # the report stage: the published number (reports/reference.yaml) beside this run's best top-1
    import shutil

    from cifarlab import report

    shutil.copy(shipped("reports/reference.yaml"), tmp / "reports/reference.yaml")
    report.main([])
    readme = (tmp / "reports/README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `lenet5` | top-1"))
    ref = yaml.safe_load(shipped("reports/reference.yaml").read_text())["numbers"]
    published = next(n["value"] for n in ref if n["run"] == "lenet5" and n["metric"] == "top1")
    assert f"{100 * published:.2f}%" in row and f"{100 * m['best']['top1']:.2f}%" in row
    assert "Smoke run" in readme and "epochs capped at 2 (recipe: 10)" in readme
    assert '<img src="figures/runs/curves_lenet5.png" alt="learning curves: lenet5"' in readme
    assert (tmp / "reports/figures/comparison.png").stat().st_size > 1000
    for n in range(5):
        assert (tmp / f"reports/figures/report_00{n}.png").exists()
    assert (tmp / "reports/figures/grid_resnet18.png").exists()


def test_time_left_is_the_epochs_to_go_at_the_recent_pace():
    def history(*seconds):
        return [
            EpochStats(epoch=i + 1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.5, lr=0.1, seconds=s)
            for i, s in enumerate(seconds)
        ]

    assert time_left(history(30.0), 3) == " | 1m00s left"  # 2 epochs x 30 s
    # the first epoch (compilation) is left out once there are others; then the last 5 epochs count
    assert time_left(history(500.0, 10.0, 20.0), 13) == " | 2m30s left"  # 10 x 15 s
    assert time_left(history(9.0, 100, 100, 3, 3, 3, 3, 3), 10) == " | 0m06s left"  # 2 x 3 s
    assert time_left(history(90.0, 90.0), 2) == ""


def test_time_left_with_early_stopping_is_a_range_from_the_early_stop_to_the_last_epoch():
    history = [
        EpochStats(epoch=i + 1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.5, lr=0.1, seconds=90.0)
        for i in range(14)
    ]
    # 286 epochs to go at 90 s; 11 more without a new best loss stop it at epoch 25
    assert time_left(history, 300, stops_in=11) == " | 16m30s-7h09m left (stops at epoch 25 without a new best loss)"
    assert time_left(history, 20, stops_in=11) == " | 9m00s left"  # the recipe ends first: no range
    assert time_left(history, 300, stops_in=0) == ""  # stopping at this epoch


def test_the_epoch_log_counts_down_to_the_early_stop_and_stops_there():
    """fit's epoch lines name the epoch the run stops at if the test loss never improves, and it
    stops there: patience 2, and a learning rate too small to move a float32 weight keeps every
    epoch's test loss the same, so epoch 1 stays the best."""
    from cifarlab.core.params import Recipe, TrainParams
    from cifarlab.engine.augment import BatchPipeline
    from cifarlab.engine.device import Runtime
    from cifarlab.engine.loop import fit

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    recipe = Recipe(optimizer="sgd", lr=1e-30, batch_size=16, epochs=10, early_stopping_patience=2)
    cpu = torch.device("cpu")
    rt = Runtime(cpu, TrainParams(bf16=False, channels_last=False, num_threads=1))
    pipe = BatchPipeline("none", (0.5,) * 3, (0.25,) * 3, cpu)
    lines: list[str] = []
    result = fit(model, x, y, x, y, recipe, epochs=10, seed=0, pipe=pipe, rt=rt, log=lines.append)
    epoch_lines = [s for s in lines if "/10: train loss" in s]
    assert [h.epoch for h in result.history] == [1, 2, 3] and result.stopped_early
    assert epoch_lines[0].endswith("left (stops at epoch 3 without a new best loss)")
    assert epoch_lines[1].endswith("left (stops at epoch 3 without a new best loss)")
    assert "left" not in epoch_lines[2]  # it stops here
    assert lines[-1].endswith("early stop at epoch 3: no test-loss gain for 2 epochs")


def test_a_run_stopped_twice_records_where_it_resumed_and_ends_as_if_never_stopped():
    """fit resumed from epoch 1's saved state, then again from epoch 3's (each through torch.save
    and a weights_only load, as data/resume/ holds it) records resumed_after [1, 3]; an
    uninterrupted run records []; both end with the same history and weights."""
    import io

    from cifarlab.core.params import Recipe, TrainParams
    from cifarlab.engine.augment import BatchPipeline
    from cifarlab.engine.device import Runtime
    from cifarlab.engine.loop import fit

    x = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(48) % 10
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=4)
    cpu = torch.device("cpu")
    rt = Runtime(cpu, TrainParams(bf16=False, channels_last=False, num_threads=1))
    pipe = BatchPipeline("crop_flip", (0.5,) * 3, (0.25,) * 3, cpu)

    def run(resume=None, save_at=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.2), torch.nn.Linear(3 * 8 * 8, 10))
        saved = {}

        def on_epoch_end(epoch, snapshot):
            if epoch == save_at:
                buf = io.BytesIO()
                torch.save(snapshot(), buf)
                saved["state"] = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)

        result = fit(
            model, x, y, x, y, recipe, 4, 0, pipe, rt, log=lambda _: None, resume=resume, on_epoch_end=on_epoch_end
        )
        return result, saved.get("state")

    whole, _ = run()
    _, after_1 = run(save_at=1)
    once, after_3 = run(resume=after_1, save_at=3)
    twice, _ = run(resume=after_3)
    assert (whole.resumed_after, once.resumed_after, twice.resumed_after) == ([], [1], [1, 3])
    strip = [(h.train_loss, h.train_acc, h.test_loss, h.test_acc, h.lr) for h in whole.history]
    assert [(h.train_loss, h.train_acc, h.test_loss, h.test_acc, h.lr) for h in twice.history] == strip
    assert all(torch.equal(whole.final_state[k], v) for k, v in twice.final_state.items())


@pytest.mark.slow  # two trainings of hw2_cnn
def test_training_is_bit_identical_on_cpu(workdir):
    """Same params + same data -> the same checkpoint bytes and the same metrics, twice."""
    tmp = workdir.path
    workdir.prepared(["hw2_cnn"], hw2_cnn={"batch_size": 32})  # dropout + BN: RNG-sensitive
    digests = []
    for _ in range(2):
        train.main(["--run", "hw2_cnn"])
        evaluate.main(["--run", "hw2_cnn"])
        # every output but the timing file, byte for byte: what DVC hashes into dvc.lock
        digests.append(
            {
                str(f.relative_to(tmp)): sha(f)
                for d in ("data/checkpoints", "reports")
                for f in sorted((tmp / d).rglob("*"))
                if f.is_file() and "timing" not in f.parts
            }
        )
        assert not (tmp / "data/resume/hw2_cnn.pt").exists()  # a finished run leaves no resume state
    assert len(digests[0]) == 6  # final.pt, best.pt, history, metrics, details, predictions
    assert digests[0] == digests[1]


def test_another_seed_is_another_file_of_the_same_run(workdir):
    """--seed repeats a run: other weights, files <run>-s<seed>, metrics grouped by run name."""
    tmp = workdir.path
    workdir.prepared(["lenet5"])
    train.main(["--run", "lenet5"])
    train.main(["--run", "lenet5", "--seed", "24"])
    evaluate.main(["--run", "lenet5", "--seed", "24"])
    assert sha(tmp / "data/checkpoints/lenet5-s24/final.pt") != sha(tmp / "data/checkpoints/lenet5/final.pt")
    m = json.loads((tmp / "reports/details/lenet5-s24.json").read_text())
    assert (m["run"], m["seed"]) == ("lenet5", 24)


def test_train_unknown_run_is_refused_naming_the_runs(workdir):
    from cifarlab.core.errors import ParamsError

    tmp = workdir.path
    workdir.params(["lenet5", "dnn"])
    with pytest.raises(
        ParamsError,
        match=r"unknown run 'vgg'; known runs \(params.yaml `runs`, listed by `cifarlab runs`\): lenet5, dnn$",
    ):
        train.main(["--run", "vgg"])
    assert not (tmp / "data").exists()


def test_cpu_notice_of_one_run():
    from cifarlab.train import cpu_notice

    msg = cpu_notice("resnet18-relu-2_1_1-none", 200, 50000, 10000, s_per_image=0.01)
    assert msg.startswith("warning: no GPU: training resnet18-relu-2_1_1-none for 200 epochs on 50,000 images")
    assert cpu_notice("lenet5", 1, 100, 100, s_per_image=0.001) is None


def test_a_batch_larger_than_the_training_split_is_named_at_train_start(workdir, capsys):
    """lenet5.batch_size=5000 on 200 training images is one step an epoch: the run says so in one
    line, with the key that sets the batch (the run's entry, where it does) and the way out."""
    from cifarlab.core.params import load_params
    from cifarlab.core.runs import resolve
    from cifarlab.train import batch_notice

    runs = {"lenet5": {"model": "lenet5"}, "lenet5-b300": {"model": "lenet5", "batch_size": 300}}
    workdir.prepared(runs, lenet5={"batch_size": 5000})
    capsys.readouterr()
    train.main(["--run", "lenet5"])
    named = [line for line in capsys.readouterr().err.splitlines() if "training split" in line]
    assert named == [
        "warning: train lenet5: batch_size 5,000 is larger than the training split (200 images), so "
        "every epoch is a single step on all of them; set lenet5.batch_size to at most 200 "
        "(e.g. cifarlab set lenet5.batch_size=50) or a larger data.train_subset"
    ]
    p = load_params()
    assert "set runs.lenet5-b300.batch_size to at most 200 " in batch_notice(resolve(p, "lenet5-b300"), 200)
    assert "train lenet5-s7: batch_size 5,000 " in batch_notice(resolve(p, "lenet5", 7), 200)
    assert batch_notice(resolve(p, "lenet5-b300"), 300) is None  # a batch of the whole split: no word


@pytest.mark.gpu
def test_cuda_bf16_channels_last_training_learns(workdir):
    """On a GPU: the bf16 + channels_last path trains and its metrics are sane."""
    tmp = workdir.path
    workdir.params(["resnet9"], resnet9={"batch_size": 32})
    workdir.run_pipeline(["resnet9"])
    m = json.loads((tmp / "reports/metrics/resnet9.json").read_text())
    run = json.loads((tmp / "reports/timing/resnet9.json").read_text())
    assert run["device"] == "cuda" and run["device_name"]
    assert m["best"]["top1"] > 0.2


@pytest.mark.gpu
def test_cuda_deterministic_training_repeats_bit_for_bit(workdir):
    """On a GPU with train.deterministic (default): two runs give the same checkpoint bytes."""
    tmp = workdir.path
    workdir.prepared(["resnet9"], resnet9={"batch_size": 32})
    digests = []
    for _ in range(2):
        train.main(["--run", "resnet9"])
        digests.append(sha(tmp / "data/checkpoints/resnet9/final.pt"))
    assert digests[0] == digests[1]


def test_deterministic_switches_cuda_settings_and_leaves_cpu_alone(monkeypatch):
    """configure_determinism needs no GPU to set its flags; on CPU it changes nothing."""
    from cifarlab.engine.device import configure_determinism

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        configure_determinism(torch.device("cpu"), True)
        assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        configure_determinism(torch.device("cuda"), True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        configure_determinism(torch.device("cuda"), False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
        torch.backends.cudnn.deterministic = False


def test_a_run_of_the_table_applies_its_overrides_and_writes_under_its_name(workdir):
    """A run is its model's recipe with the entry's keys replaced; files are named by the run."""
    tmp = workdir.path
    runs = {
        "lenet5-tanh-sgd": {"model": "lenet5", "activation": "tanh", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
    }
    workdir.prepared(runs, lenet5={"batch_size": 32})
    train.main(["--run", "lenet5-tanh-sgd"])
    evaluate.main(["--run", "lenet5-tanh-sgd"])
    d = json.loads((tmp / "reports/details/lenet5-tanh-sgd.json").read_text())
    assert d["run"] == "lenet5-tanh-sgd" and d["model"] == "lenet5"
    assert d["overrides"] == {"activation": "tanh", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
    ckpt = torch.load(tmp / "data/checkpoints/lenet5-tanh-sgd/final.pt", weights_only=True)
    assert ckpt["arch"] == {"activation": "tanh"}
    h = pd.read_csv(tmp / "reports/history/lenet5-tanh-sgd.csv")
    assert h["lr"].tolist() == [0.05, 0.05]  # the override, not the section's 0.001
    assert not (tmp / "reports/metrics/lenet5.json").exists()


@pytest.mark.parametrize("argv, message", BAD_STAGE_ARGS)
def test_bad_stage_arguments_are_refused_before_work(workdir, argv, message, capsys):
    from cifarlab.core.errors import ParamsError

    tmp = workdir.path
    workdir.params(["lenet5"])
    with pytest.raises((ParamsError, SystemExit)) as e:
        train.main(argv)
    text = str(e.value) if e.type is ParamsError else capsys.readouterr().err
    assert message in text
    assert not (tmp / "data").exists()


@pytest.mark.slow  # AlexNet trained, evaluated and projected in-process
def test_alexnet_cell_trains_evaluates_and_projects_its_features(workdir, monkeypatch):
    """Report 003's skip variant, small: random features (pretrained=false), 64x64 inputs; its
    PCA figure carries the smoke banner that says so, read from the run's details."""
    from cifarlab import pca

    banners = []
    draw = pca.pca_figure
    monkeypatch.setattr(
        pca, "pca_figure", lambda *a, smoke=None, **k: banners.append(smoke) or draw(*a, smoke=smoke, **k)
    )

    tmp = workdir.path
    workdir.prepared(
        {"alexnet_transfer-skip-low": {"model": "alexnet_transfer", "skip": True, "epochs": 1}},
        alexnet_transfer={"image_size": 64, "batch_size": 50},
    )
    args = ["--run", "alexnet_transfer-skip-low"]  # as dvc.yaml's train@, evaluate@, plot@, pca@ run it
    with pytest.warns(UserWarning, match="RANDOM"):
        train.main(args)
    evaluate.main(args)
    plot.main(args)
    pca.main(args)
    m = json.loads((tmp / "reports/details/alexnet_transfer-skip-low.json").read_text())
    assert m["overrides"] == {"skip": True, "epochs": 1} and m["final"]["epoch"] == 1
    assert m["random_features"] is True and m["epochs_cap"] is None  # 1 epoch is the run's own count
    assert len(banners) == 1 and "random" in banners[0].lower(), banners
    for fig in (
        "pca_alexnet_transfer-skip-low_2d3d",
        "curves_alexnet_transfer-skip-low",
        "confusion_alexnet_transfer-skip-low",
    ):
        assert (tmp / f"reports/figures/runs/{fig}.png").stat().st_size > 1000


def test_pca_refuses_a_model_without_features(workdir):
    from cifarlab import pca
    from cifarlab.core.errors import ParamsError

    workdir.prepared(["lenet5"])
    train.main(["--run", "lenet5"])
    with pytest.raises(ParamsError, match="no feature embedding"):
        pca.main(["--run", "lenet5"])


@pytest.mark.slow  # the pipeline in-process, 3 epochs
def test_val_split_selects_an_epoch_and_reports_test_at_it(workdir):
    """data.val_split > 0: history has val columns; metrics get a `val` block (test @ val-best)."""
    tmp = workdir.path
    workdir.params(["lenet5"], lenet5={"batch_size": 16, "lr": 0.003})
    d = yaml.safe_load((tmp / "params.yaml").read_text())
    d["data"]["val_split"] = 0.2
    d["train"]["max_epochs"] = 3
    (tmp / "params.yaml").write_text(yaml.safe_dump(d))
    workdir.run_pipeline(["lenet5"])
    h = pd.read_csv(tmp / "reports/history/lenet5.csv")
    assert {"val_loss", "val_acc"} <= set(h.columns)
    m = json.loads((tmp / "reports/details/lenet5.json").read_text())
    assert m["n_train"] == 160
    val_epoch = int(h["epoch"][h["val_acc"].idxmax()])
    assert m["val"]["epoch"] == val_epoch and "validation" in m["val"]["selected_by"]
    assert m["val"]["top1"] == pytest.approx(h["test_acc"][val_epoch - 1], abs=1e-6)
    assert m["val"]["top1"] <= m["best"]["top1"]  # best-on-test is the optimistic one


def _strict_json(path: Path):
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow  # the whole pipeline in-process for two runs, the report included
def test_a_diverged_run_is_recorded_as_diverged_and_the_stages_go_on(workdir, capsys):
    """lr 1e30 (a slipped exponent for 1e-3): the loss goes non-finite; training stops after that
    epoch with one line, every stage still succeeds, no NaN reaches any JSON file, and the report
    says "diverged (epoch 1)" where the number would be."""
    import shutil

    from cifarlab import report

    tmp = workdir.path
    workdir.params(["lenet5", "dnn"], lenet5={"lr": 1e30, "batch_size": 16})
    workdir.run_pipeline(["lenet5", "dnn"])  # raises if a stage fails
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("diverged:")]
    assert len(lines) == 1 and lines[0].startswith(
        "diverged: lenet5 epoch 1, step 2 of 13"
    )  # step 1 is still sane and "lr 1e+30" in lines[0]
    h = pd.read_csv(tmp / "reports/history/lenet5.csv")
    assert h["epoch"].tolist() == [1]  # stopped after the epoch it diverged in (max_epochs is 2)
    m = _strict_json(tmp / "reports/metrics/lenet5.json")
    assert m["diverged"] is True and m["diverged_epoch"] == 1
    assert m["final"] == {"epoch": 1, "top1": None, "top3": None, "loss": None}
    shutil.copy(shipped("reports/reference.yaml"), tmp / "reports/reference.yaml")
    report.main([])
    for f in (tmp / "reports").rglob("*.json"):
        _strict_json(f)  # no NaN / Infinity anywhere
    readme = (tmp / "reports/README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `lenet5` | top-1"))
    assert "diverged (epoch 1)" in row
    dnn = _strict_json(tmp / "reports/metrics/dnn.json")  # the other run trained as usual
    assert "diverged" not in dnn and dnn["final"]["top1"] > 0


def test_json_writer_never_writes_nan_or_infinity(tmp_path):
    from cifarlab.core.io import write_json

    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf"), -float("inf")], "c": {"d": (2.5,)}})
    assert _strict_json(tmp_path / "x.json") == {"a": None, "b": [1.0, None, None], "c": {"d": [2.5]}}


@pytest.mark.slow  # two trainings of cnn, one in 2 threads
def test_thread_count_is_hashed_when_it_changes_the_bytes(workdir):
    """Two runs that differ only in train.num_threads: equal bytes, or a stage hash that differs
    (train.num_threads is a param of the train and evaluate stages), never different bytes under
    the same hash."""
    tmp = workdir.path
    digests = {}
    for threads in (1, 2):
        workdir.prepared(["cnn"], cnn={"batch_size": 16})
        d = yaml.safe_load((tmp / "params.yaml").read_text())
        d["train"]["num_threads"] = threads
        (tmp / "params.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
        train.main(["--run", "cnn"])
        digests[threads] = sha(tmp / "data/checkpoints/cnn/final.pt")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    hashed = {name: "train.num_threads" in stages[name]["do"]["params"] for name in ("train", "evaluate")}
    assert digests[1] == digests[2] or all(hashed.values()), (digests, hashed)
    assert all(hashed.values())  # and it is hashed anyway: the bytes may differ on other machines


CU129_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


def test_gpu_preflight_stops_on_a_gpu_the_torch_build_cannot_run(monkeypatch):
    """A Pascal GPU (sm_61) under a CUDA 12.9 torch build: one line naming the GPU, its sm, the
    build's architectures and the CUDA 12.6 base image, before any work (faked on the CPU)."""
    from cifarlab.core.errors import CifarlabError
    from cifarlab.core.params import TrainParams
    from cifarlab.engine.device import setup_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce GTX 1080 Ti")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: CU129_ARCHS)
    monkeypatch.setattr(torch, "__version__", "2.8.0+cu129")
    with pytest.raises(CifarlabError) as e:
        setup_device(TrainParams())
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("GPU NVIDIA GeForce GTX 1080 Ti is sm_61, but this torch 2.8.0+cu129")
    assert "sm_75, sm_80" in msg and "BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.6-cudnn9-runtime" in msg


@pytest.mark.parametrize(
    "capability, archs, runs",
    [
        ((9, 0), CU129_ARCHS, True),  # H100/H200: its own sm_90
        ((8, 9), ["sm_80", "sm_86"], True),  # Ada runs Ampere sm_86 binaries (same major, lower minor)
        ((7, 0), CU129_ARCHS, False),  # V100 under cu129: dropped
        ((12, 1), ["sm_90", "compute_90"], True),  # PTX of a lower version JIT-compiles
        ((6, 1), ["sm_50", "sm_60", "sm_70"], True),
    ],
)
def test_gpu_arch_rule(capability, archs, runs):
    from cifarlab.engine.device import gpu_arch_problem

    assert (gpu_arch_problem("gpu", capability, archs, "t") is None) == runs


def test_epoch_ticker_logs_progress_at_most_once_a_period_without_a_terminal():
    """Under a logged `dvc repro` (no terminal, no progress bar) a long epoch says it is moving:
    one line per period of the clock, with the step count and a projection; none before."""
    from cifarlab.engine.loop import EpochTicker

    now = [0.0]
    lines = []
    tick = EpochTicker("resnet9 epoch 3/20", 100, lines.append, every=60.0, clock=lambda: now[0])
    for step, t in ((10, 30.0), (20, 61.0), (30, 90.0), (50, 125.0)):
        now[0] = t
        tick(step)
    assert lines == [
        "resnet9 epoch 3/20: step 20 of 100 (20%), 1m01s in, ~4m04s left in the epoch",
        "resnet9 epoch 3/20: step 50 of 100 (50%), 2m05s in, ~2m05s left in the epoch",
    ]
