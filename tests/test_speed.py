"""The GPU-speed features, checked on the CPU: a compiled training step, AlexNet's frozen features
computed once, and the resume state written every few minutes from a thread of its own.
(benchmarks/bench_gpu.py measures what they buy on a GPU; its --tiny run is the last test.)"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from workspace import SHIPPED_PARAMS

from cifarlab.core.params import Recipe, TrainParams
from cifarlab.engine.augment import BatchPipeline
from cifarlab.engine.device import Runtime
from cifarlab.engine.features import FeaturePipeline, cacheable, cached_inputs
from cifarlab.engine.loop import fit
from cifarlab.engine.resume import ResumeWriter, load_resume
from cifarlab.engine.step import TrainStep
from cifarlab.models import get_model

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n,), generator=g),
    )


@pytest.mark.slow
def test_compiled_step_follows_the_eager_loss_trajectory_on_lenet5():
    """train.compile=true on CPU, in fp32 (test_numerics.py: bf16): 3 steps of lenet5 (two full
    batches of 64, then a remainder batch of 20, its own static graph) give the eager losses within
    1e-5 relative: the same arithmetic, fused by inductor into other kernels whose float rounding
    may differ."""
    torch.set_num_threads(1)
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=64, epochs=1)
    pipe = BatchPipeline("none", (0.5,) * 3, (0.25,) * 3, CPU)
    x, y = images(148, seed=0)
    batches = [slice(0, 64), slice(64, 128), slice(128, 148)]
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = get_model("lenet5")
        rt = Runtime(CPU, TrainParams(compile=compiled, num_threads=1, bf16=False, channels_last=False))
        assert rt.compile is compiled
        step = TrainStep(model, recipe, pipe, rt, epochs=1, steps_per_epoch=len(batches))
        losses[compiled] = [step(x[b], y[b], torch.Generator().manual_seed(1))[0].item() for b in batches]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)
    assert losses[False][2] < losses[False][0]  # it trained: not three evaluations of one model


def test_a_failing_compile_names_the_way_out(monkeypatch):
    from cifarlab.core.errors import CifarlabError

    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("inductor: no working C++ compiler\nfound on PATH")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    rt = Runtime(CPU, TrainParams(compile=True))
    step = TrainStep(
        get_model("lenet5"),
        Recipe(optimizer="sgd", lr=0.1, batch_size=4, epochs=1),
        BatchPipeline("none", None, None, CPU),
        rt,
        epochs=1,
        steps_per_epoch=1,
    )
    x, y = images(4, seed=0)
    with pytest.raises(
        CifarlabError,
        match=r"^torch.compile failed \(RuntimeError: inductor: no working C\+\+ "
        r"compiler found on PATH\); set train.compile=false to train eagerly$",
    ):
        step(x, y, torch.Generator())


def alexnet(seed: int = 0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random features: the point here
        return get_model("alexnet_transfer", pretrained=False, image_size=64, skip=True)


@pytest.mark.slow  # AlexNet's head trained twice, 2 epochs each
def test_cached_alexnet_features_train_to_the_same_metrics_as_the_uncached_model():
    """Random frozen features, 96 train / 40 test images, 2 epochs: the head trained on features
    computed once ends with the test accuracy of every epoch and the weights of the head trained
    on images (which recomputes the features each step), within float rounding."""
    torch.set_num_threads(1)
    recipe = Recipe(optimizer="adam", lr=1e-3, batch_size=16, epochs=2, normalize="imagenet")
    (trx, tr_y), (tex, te_y) = images(96, seed=1), images(40, seed=2)
    rt = Runtime(CPU, TrainParams(num_threads=1))
    results = {}
    for cache in (False, True):
        model = rt.prepare_model(alexnet())
        pipe = BatchPipeline("none", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), CPU)
        train_x, test_x = trx, tex
        if cache:
            (train_x, test_x), pipe = cached_inputs(model, recipe, pipe, rt, trx, tex)
            assert train_x.shape == (96, 9216) and isinstance(pipe, FeaturePipeline)
        results[cache] = fit(
            model, train_x, tr_y, test_x, te_y, recipe, epochs=2, seed=5, pipe=pipe, rt=rt, log=lambda s: None
        )
    plain, cached = results[False], results[True]
    assert [h.test_acc for h in cached.history] == [h.test_acc for h in plain.history]
    for a, b in zip(cached.history, plain.history, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.test_loss == pytest.approx(b.test_loss, rel=1e-5)
    assert cached.final_state.keys() == plain.final_state.keys()  # the whole model's checkpoint
    for k, v in plain.final_state.items():
        torch.testing.assert_close(cached.final_state[k], v, rtol=1e-4, atol=1e-6)
    assert plain.history[-1].train_loss < plain.history[0].train_loss


def test_features_are_cached_only_without_augmentation():
    model = alexnet()
    assert cacheable(model, Recipe(optimizer="adam", lr=1e-3, batch_size=8, epochs=1, augment="none"))
    assert not cacheable(model, Recipe(optimizer="adam", lr=1e-3, batch_size=8, epochs=1, augment="crop_flip"))
    assert not cacheable(get_model("lenet5"), Recipe(optimizer="adam", lr=1e-3, batch_size=8, epochs=1))


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def snapshot_of(epoch: int, best_epoch: int, taken: list[int]):
    def snap():
        taken.append(epoch)
        best = {"w": torch.full((3,), float(best_epoch))}
        return {
            "state": {
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_state": best,
                "val_best_epoch": None,
                "val_best_state": None,
            },
            "history": [],
            "model": {"w": torch.full((3,), float(epoch))},
        }

    return snap


def test_resume_state_is_written_every_n_minutes_and_best_weights_only_when_they_change(tmp_path):
    clock, taken = Clock(), []
    path = tmp_path / "run.pt"
    w = ResumeWriter(path, "fp", minutes=1.0, clock=clock)
    for epoch, t, best in [(1, 30, 1), (2, 61, 2), (3, 90, 2), (4, 125, 2), (5, 200, 5)]:
        clock.t = t
        w(epoch, snapshot_of(epoch, best, taken))
        w.wait()
        if epoch == 2:
            best_inode = (tmp_path / "run.best_state-fp-e2.pt").stat().st_ino
        if epoch == 4:  # rewritten main file, same best epoch: its weights file untouched
            assert (tmp_path / "run.best_state-fp-e2.pt").stat().st_ino == best_inode
    w.close()
    assert taken == [2, 4, 5]  # only when a minute had passed since the last save: no copy otherwise
    assert w.saved_epoch == 5
    assert sorted(f.name for f in tmp_path.iterdir()) == ["run.best_state-fp-e5.pt", "run.pt"]  # e2's superseded
    snap = load_resume(path, "fp", log=lambda s: None)
    assert snap["state"]["epoch"] == 5 and snap["state"]["val_best_state"] is None
    torch.testing.assert_close(snap["state"]["best_state"]["w"], torch.full((3,), 5.0))
    assert load_resume(path, "other", log=lambda s: None) is None
    (tmp_path / "run.best_state-fp-e5.pt").unlink()  # a state naming a missing file is not continued
    notes = []
    assert load_resume(path, "fp", log=notes.append) is None
    assert "best_state file run.best_state-fp-e5.pt is unreadable" in notes[0]
    w.remove()
    assert not list(tmp_path.iterdir())


def test_zero_minutes_saves_every_epoch(tmp_path):
    taken = []
    w = ResumeWriter(tmp_path / "r.pt", "fp", minutes=0, clock=Clock())
    for e in (1, 2, 3):
        w(e, snapshot_of(e, 1, taken))
    w.close()
    assert taken == [1, 2, 3] and w.saved_epoch == 3


@pytest.mark.slow
def test_bench_gpu_tiny_runs_on_cpu_and_writes_its_json(tmp_path):
    """Run from a copy of the project, as the GPU kit carries it (docs/gpu.md): what bench_gpu.py
    imports beside it (benchmarks/_common.py) must travel with it."""
    from workspace import project_copy

    home = tmp_path / "home"
    home.mkdir()
    project_copy(home)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(home / "benchmarks/bench_gpu.py"), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    res = json.loads(out.read_text())
    assert res["tiny"] is True and res["device"]["type"] == "cpu"
    from cifarlab.engine.device import bf16_in_effect

    assert res["train_params"]["bf16"] is (bf16_in_effect()["cpu_bf16"] != "none")  # fp32 where bf16 would be emulated
    models = {m["model"] for m in res["models"]}
    assert models == {"lenet5", "resnet9", "resnet18", "alexnet_transfer"}  # --tiny's models
    for m in res["models"]:
        assert m["eager_images_per_s"] > 0, m
    assert res["bit_identity"]["identical"] is True
    assert res["projection"]["total_seconds"] > 0
    assert "images/s" in proc.stdout  # the printed table


def test_estimate_reads_a_committed_gpu_benchmark_for_this_gpu(tmp_path):
    """`cifarlab estimate` on a GPU plans with bench_gpu.py's compiled images/s (eager where not
    compiled) and AlexNet's one pass of features per run."""
    import json

    from cifarlab.core.params import load_params
    from cifarlab.tooling import estimate

    p = load_params(SHIPPED_PARAMS)
    bench = {
        "device": {"name": "NVIDIA H200"},
        "when": "2026-11-29 20:00:00 UTC",
        "models": [
            {"model": "resnet18", "eager_images_per_s": 5000.0, "compiled_images_per_s": 10000.0},
            {"model": "alexnet_transfer", "eager_images_per_s": 2000.0, "features": {"seconds_full_set": 3.0}},
        ],
    }
    times, setup, source = estimate.times_from_bench(p, bench)
    assert source == {"resnet18": "compiled", "alexnet_transfer": "eager"}
    cell, alex = "resnet18-relu-2_1_1-none", "alexnet_transfer-skip-high"
    (c1, c2) = estimate.stage_costs(p, times, {f"train@{cell}", f"train@{alex}"}, setup)
    by_run = {c.run: c.seconds for c in (c1, c2)}
    assert by_run[cell] == pytest.approx(200 * (50_000 + 10_000 / 3) / 10_000)
    assert by_run[alex] == pytest.approx(3.0 + 100 * (50_000 + 10_000 / 3) / 2_000)

    results = tmp_path / "results"
    results.mkdir()
    for name, d in {
        "a_tiny.json": {**bench, "tiny": True, "when": "2026-12-31"},
        "b_other.json": {**bench, "device": {"name": "NVIDIA A100"}, "when": "2026-12-31"},
        "c_old.json": {**bench, "when": "2026-01-01"},
        "d_new.json": bench,
    }.items():
        (results / name).write_text(json.dumps(d))
    (results / "e_broken.json").write_text("{")
    path, found = estimate.find_bench("NVIDIA H200", results)
    assert path.name == "d_new.json" and found == bench
    assert estimate.find_bench("Tesla T4", results) is None
