"""Learning-rate schedules of the recipes, read off at chosen epochs."""

import pytest
import torch
from workspace import SHIPPED_PARAMS

from cifarlab.core.params import Recipe, load_params
from cifarlab.engine.schedules import make_optimizer, make_scheduler, ratio_milestones

PARAMS = SHIPPED_PARAMS


def lrs_per_epoch(recipe: Recipe, epochs: int, steps_per_epoch: int = 3) -> list[float]:
    """The lr in effect at the start of each epoch (index 0 = epoch 1)."""
    w = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([w], recipe)
    sched, when = make_scheduler(opt, recipe, epochs, steps_per_epoch)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            opt.step()
            if sched is not None and when == "batch":
                sched.step()
        if sched is not None and when == "epoch":
            sched.step()
    return out


@pytest.mark.parametrize(
    "ratio, epochs, expected",
    [
        ((2, 1, 1), 200, [100, 150]),
        ((5, 3, 2), 200, [100, 160]),
        ((5, 4, 1), 200, [100, 180]),
        ((2, 1, 1), 30, [15, 22]),
        ((2, 1, 1), 2, [1]),
    ],
)
def test_ratio_milestones(ratio, epochs, expected):
    assert ratio_milestones(ratio, epochs) == expected


def recipe(**kw):
    base = dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=8, epochs=200)
    return Recipe(**{**base, **kw})


def test_resnet18_multistep_2_1_1():
    lrs = lrs_per_epoch(recipe(schedule="multistep", lr_ratio=(2, 1, 1)), 200)
    # epoch e (1-based) is lrs[e-1]: 0.1 for epochs 1-100, 0.01 for 101-150, 0.001 after
    assert lrs[99] == pytest.approx(0.1)
    assert lrs[100] == pytest.approx(0.01)
    assert lrs[149] == pytest.approx(0.01)
    assert lrs[150] == pytest.approx(0.001)
    assert lrs[199] == pytest.approx(0.001)


def test_resnet18_multistep_5_4_1():
    lrs = lrs_per_epoch(recipe(schedule="multistep", lr_ratio=(5, 4, 1)), 200)
    assert lrs[179] == pytest.approx(0.01) and lrs[180] == pytest.approx(0.001)


def test_custom_resnet_step_every_30_epochs():
    lrs = lrs_per_epoch(recipe(optimizer="adam", lr=1e-3, schedule="step", step_size=30, gamma=0.1), 70)
    assert lrs[29] == pytest.approx(1e-3)
    assert lrs[30] == pytest.approx(1e-4)
    assert lrs[60] == pytest.approx(1e-5)


def test_resnet9_onecycle_peaks_at_30_percent_and_anneals():
    p = load_params(PARAMS)
    r = p["resnet9"].recipe
    lrs = lrs_per_epoch(r, 20, steps_per_epoch=10)
    assert lrs[0] == pytest.approx(r.lr / 25)  # OneCycle starts at max_lr / div_factor
    peak = max(range(20), key=lambda i: lrs[i])
    assert peak == 6  # step 60 of 200 (pct_start 0.3) is the start of epoch 7
    assert lrs[6] == pytest.approx(r.lr, rel=1e-3)  # the exact peak is at step 59, one step earlier
    assert lrs[19] < r.lr / 50  # start of the last epoch: nearly annealed to max_lr / 25e4


def test_constant_schedule():
    assert set(lrs_per_epoch(recipe(schedule="constant"), 5)) == {0.1}


@pytest.mark.parametrize("ratio, drops", [("2_1_1", (100, 150)), ("5_3_2", (100, 160)), ("5_4_1", (100, 180))])
def test_resnet18_runs_step_where_their_ratio_says(ratio, drops):
    """The run table's report-004 runs: each run's lr_ratio override sets its milestones."""
    p = load_params(PARAMS)
    r = p[f"resnet18-relu-{ratio}-none"].recipe
    assert r.schedule == "multistep" and r.epochs == 200
    lrs = lrs_per_epoch(r, r.epochs, steps_per_epoch=1)
    first, second = drops
    assert lrs[first - 1] == pytest.approx(r.lr) and lrs[first] == pytest.approx(r.lr * r.gamma)
    assert lrs[second - 1] == pytest.approx(r.lr * r.gamma) and lrs[second] == pytest.approx(r.lr * r.gamma**2)
    assert lrs[-1] == pytest.approx(r.lr * r.gamma**2)


def test_capped_run_compresses_its_schedule():
    p = load_params(PARAMS)
    run = p["resnet18-relu-5_3_2-none"]
    epochs = run.epochs(30)
    assert epochs == 30
    assert ratio_milestones(run.recipe.lr_ratio, epochs) == [15, 24]
