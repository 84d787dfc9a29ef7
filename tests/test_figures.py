"""Report figures: structure of each figure, readability (labels that do not collide, 1-epoch runs on a
real axis, the smoke-run banner), PCA correctness/determinism, PNG reproducibility."""

import itertools
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer

from cifarlab.core.paths import CLASSES
from cifarlab.figures.common import HEATMAP_GID, NA, NOT_RUN, message_figure, save_figure, smoke_line, smoke_texts
from cifarlab.figures.comparison import comparison_figure, spread_ties
from cifarlab.figures.per_run import confusion_figure, curves_figure, pca_figure, pca_project
from cifarlab.figures.reports import grid_heatmaps, open_choices_figure, report_bars
from cifarlab.figures.studies import studies_figure


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def heatmaps(fig):
    return [ax for ax in fig.axes if ax.get_gid() == HEATMAP_GID]


def extents(fig, artists):
    """Display-space bounding boxes of drawn artists (the figure drawn once, as saved: the layout
    engine has placed everything by then)."""
    if not getattr(fig, "_drawn_for_test", False):
        fig.canvas.draw()
        fig._drawn_for_test = True
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists]


def overlapping(boxes):
    """Pairs of boxes that overlap by more than a pixel each way."""
    return [
        (i, j)
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2)
        if min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1
    ]


def cell_text(ax, i, j):
    """The annotation drawn at row i, column j of a heat map."""
    hits = [t.get_text() for t in ax.texts if tuple(t.get_position()) == (j, i)]
    assert len(hits) == 1, hits
    return hits[0]


# --------------------------------------------------------------------------- confusion


def test_confusion_figure_labels_counts_and_row_accuracy():
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 20, size=(10, 10))
    np.fill_diagonal(cm, 80)
    cm[3] = 0  # a class with no test images must not divide by zero
    fig = confusion_figure(cm.tolist(), CLASSES, "toy")
    (ax,) = heatmaps(fig)
    assert len(fig.axes) == 2  # heat map + colorbar
    xt = [t.get_text() for t in ax.get_xticklabels()]
    yt = [t.get_text() for t in ax.get_yticklabels()]
    assert xt == list(CLASSES)
    assert len(yt) == 10 and all(y.startswith(c) for y, c in zip(yt, CLASSES, strict=True))
    assert yt[0] == f"airplane ({100 * 80 / cm[0].sum():.1f}%)"
    assert yt[3] == f"cat ({NA})"
    assert len(ax.texts) == 100
    assert cell_text(ax, 2, 5) == str(cm[2, 5])
    # the darkest cells (the diagonal) get white text, the empty row black text
    assert cell_text(ax, 0, 0) == "80" and [t for t in ax.texts if t.get_position() == (0, 0)][0].get_color() == "white"
    assert [t for t in ax.texts if t.get_position() == (0, 3)][0].get_color() == "black"


def test_confusion_figure_rejects_wrong_shape():
    with pytest.raises(ValueError):
        confusion_figure(np.zeros((3, 3), int), CLASSES, "bad")


# --------------------------------------------------------------------------- PCA


def blobs(n_per=40, d=50, seed=0):
    """Three Gaussian blobs in d-D, centres 20 apart, unit noise: (3n, d) float32, (3n,) labels."""
    g = torch.Generator().manual_seed(seed)
    centres = 20 * torch.eye(3, d)
    x = torch.cat([c + torch.randn(n_per, d, generator=g) for c in centres])
    y = torch.arange(3).repeat_interleave(n_per)
    return x, y


def test_pca_project_separates_blobs():
    x, y = blobs()
    coords, ratio = pca_project(x, k=3)
    assert coords.shape == (120, 3) and ratio.shape == (3,)
    xy = coords[:, :2]
    means = np.stack([xy[y.numpy() == c].mean(0) for c in range(3)])
    within = np.mean([xy[y.numpy() == c].std(0).mean() for c in range(3)])
    between = min(np.linalg.norm(means[a] - means[b]) for a, b in ((0, 1), (0, 2), (1, 2)))
    assert between > 10 * within
    assert np.all(ratio > 0) and np.all(ratio <= 1)
    assert np.all(np.diff(ratio) <= 0) and ratio.sum() <= 1
    # two blob directions carry most of the variance; the third PC is just noise
    assert ratio[:2].sum() > 0.8 and ratio[2] < 0.05


def test_pca_project_matches_exact_svd_and_is_deterministic():
    # rank-3 signal with distinct scales (10, 5, 2) plus small noise: a clear spectral gap,
    # where the randomized sketch must agree with the exact SVD
    g = torch.Generator().manual_seed(1)
    basis, _ = torch.linalg.qr(torch.randn(50, 3, generator=g))  # (50, 3) orthonormal
    latent = torch.randn(200, 3, generator=g) * torch.tensor([10.0, 5.0, 2.0])
    x = latent @ basis.T + 0.05 * torch.randn(200, 50, generator=g) + 3.0  # (200, 50), offset: centering matters
    coords, ratio = pca_project(x.numpy(), k=3)
    xc = x.double().numpy() - x.double().numpy().mean(0)
    s = np.linalg.svd(xc, compute_uv=False)
    np.testing.assert_allclose(ratio, s[:3] ** 2 / (xc**2).sum(), rtol=1e-6)
    assert ratio.sum() > 0.99
    np.testing.assert_allclose(np.abs(coords).sum(0), np.abs(xc @ np.linalg.svd(xc)[2][:3].T).sum(0), rtol=1e-6)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    again, ratio2 = pca_project(x, k=3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    assert np.array_equal(coords, again) and np.array_equal(ratio, ratio2)


def test_pca_project_rejects_bad_k():
    with pytest.raises(ValueError):
        pca_project(np.zeros((5, 2)), k=3)


def test_pca_figure_panels_legend_and_axis_labels():
    x, y = blobs(n_per=15)
    fig = pca_figure(x, y, CLASSES, "toy")
    assert len(fig.axes) == 2
    names = sorted(ax.name for ax in fig.axes)
    assert names == ["3d", "rectilinear"]
    ax2 = next(ax for ax in fig.axes if ax.name == "rectilinear")
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == list(CLASSES[:3])
    ratio = fig.explained_ratio
    assert ax2.get_xlabel() == f"PC1 ({100 * ratio[0]:.1f}% var)"
    ax3 = next(ax for ax in fig.axes if ax.name == "3d")
    assert ax3.get_zlabel().startswith("PC3 (")


# --------------------------------------------------------------------------- report 004 grid

ACTS = ("sigmoid", "tanh", "relu", "leaky_relu")
RATIOS = ("2:1:1", "5:3:2", "5:4:1")
AUGS = ("none", "crop_flip_blur_color", "crop_flip")


def test_grid_heatmaps_panels_missing_cells_and_differences():
    reported = {
        (a, r, g): 0.85 + 0.01 * i + 0.001 * j for i, a in enumerate(ACTS) for j, r in enumerate(RATIOS) for g in AUGS
    }
    reproduced = {k: v - 0.005 for k, v in reported.items()}
    reproduced[("relu", "5:4:1", "crop_flip")] = 0.9523  # made-up values, not the published ones
    reported[("relu", "5:4:1", "crop_flip")] = 0.9465
    del reproduced[("tanh", "2:1:1", "none")]  # not run yet
    reproduced[("sigmoid", "5:3:2", "none")] = None  # or run without a result
    del reported[("leaky_relu", "2:1:1", "crop_flip")]  # nothing to compare with
    reproduced[("tanh", "5:4:1", "crop_flip")] = reported[("tanh", "5:4:1", "crop_flip")] - 1e-12  # rounds to 0
    fig = grid_heatmaps(reproduced, reported, ACTS, RATIOS, AUGS)
    maps = heatmaps(fig)
    assert len(maps) == 6 and len(fig.axes) == 8  # 6 heat maps + one colorbar per row
    for ax in maps:
        assert ax.get_images()[0].get_array().shape == (4, 3)
        assert len(ax.texts) == 12
        assert [t.get_text() for t in ax.get_yticklabels()] == list(ACTS)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(RATIOS)
    titles = [ax.get_title() for ax in maps]
    rep = {aug: maps[titles.index(f"reproduced top-1 (%): {aug}")] for aug in AUGS}
    dif = {aug: maps[titles.index(f"reproduced - reported (pp): {aug}")] for aug in AUGS}
    assert cell_text(rep["crop_flip"], 2, 2) == "95.23"
    assert cell_text(dif["crop_flip"], 2, 2) == "+0.58"  # 95.23 - 94.65 points
    assert cell_text(dif["none"], 0, 0) == "-0.50"
    assert cell_text(rep["none"], 1, 0) == NA and cell_text(dif["none"], 1, 0) == NA
    assert cell_text(rep["none"], 0, 1) == NA
    assert cell_text(dif["crop_flip"], 1, 2) == "+0.00"  # never "-0.00"
    assert cell_text(rep["crop_flip"], 3, 0) == "87.50" and cell_text(dif["crop_flip"], 3, 0) == NA
    # the diverging scale is centred on 0
    norm = dif["none"].get_images()[0].norm
    assert norm.vmin == -norm.vmax


def test_grid_heatmaps_nothing_run_yet_says_so_once_without_colour_bars():
    reported = {(a, r, g): 0.9 for a in ACTS for r in RATIOS for g in AUGS}
    fig = grid_heatmaps({}, reported, ACTS, RATIOS, AUGS)
    assert heatmaps(fig) == [] and len(fig.axes) == 1  # no panels of n/a, no colour bar of nothing
    (text,) = fig.axes[0].texts
    assert text.get_text().startswith(NOT_RUN) and "36 runs" in text.get_text()
    assert text.get_text().endswith("has run in this workspace")
    assert fig.get_suptitle() == "ResNet-18 grid (report 004)"
    # drawn from reports/published/: what is missing is a published run, not a run of one's own
    (text,) = grid_heatmaps({}, reported, ACTS, RATIOS, AUGS, published=True).axes[0].texts
    assert text.get_text().startswith("not published yet: none of the grid's 36 runs")
    assert text.get_text().endswith("is in reports/published/")


def test_grid_heatmaps_augmentation_not_run_says_so_once_per_panel():
    reported = {(a, r, g): 0.9 for a in ACTS for r in RATIOS for g in AUGS}
    reproduced = {("relu", "2:1:1", "none"): 0.91, ("tanh", "5:3:2", "crop_flip"): 0.88}
    fig = grid_heatmaps(reproduced, reported, ACTS, RATIOS, AUGS)
    maps = heatmaps(fig)
    assert len(maps) == 6 and len(fig.axes) == 8  # two colour bars: something ran
    by_title = {ax.get_title(): ax for ax in maps}
    for row in ("reproduced top-1 (%)", "reproduced - reported (pp)"):
        empty = by_title[f"{row}: crop_flip_blur_color"]
        assert [t.get_text() for t in empty.texts] == [NOT_RUN]
        ran = [t.get_text() for t in by_title[f"{row}: none"].texts]
        assert len(ran) == 12 and ran.count(NA) == 11  # per-cell n/a where some cells ran


# --------------------------------------------------------------------------- report bars


def bar_count(fig):
    (ax,) = fig.axes
    return sum(len(c) for c in ax.containers if isinstance(c, BarContainer))


def test_report_bars_counts_and_labels():
    rows = [
        {"label": "lenet", "reported": 0.62, "reproduced": 0.6321, "std": 0.004, "final": 0.61},
        {"label": "vgg", "reported": None, "reproduced": 0.91},
        {"label": "resnet", "reported": 0.95, "reproduced": None},
    ]
    fig = report_bars(rows, "report 001")
    assert bar_count(fig) == 3 * 3
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reported", "reproduced", "final epoch"]
    labels = [t.get_text() for t in ax.texts]
    assert "63.21±0.40" in labels and "62.00" in labels and labels.count(NA) == 1 + 1 + 2
    assert (
        bar_count(
            report_bars(
                [
                    {"label": "a", "reported": 0.5, "reproduced": 0.4},
                    {"label": "b", "reported": 0.6, "reproduced": None},
                ],
                "t",
            )
        )
        == 2 * 2
    )


def test_report_bars_not_run_yet_shows_n_a_beside_every_reported_bar():
    """Report 003 before its runs: the reproduced slots are there, marked n/a (they were left out,
    and the figure read as if reproduced were no part of it)."""
    rows = [
        {"label": f"alexnet-{i}", "reported": 0.8, "reproduced": None, "std": None, "final": None} for i in range(4)
    ]
    fig = report_bars(rows, "Report 003")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["reported", "reproduced"]
    assert [t.get_text() for t in ax.texts].count(NA) == 4
    (ax,) = report_bars([], "Report 004").axes  # no rows (grid cells not run): says so
    assert "no run" in ax.texts[0].get_text()


def test_studies_figure_shows_every_seed_and_the_difference_per_recipe():
    panels = [
        {
            "title": "What JPEG costs",
            "arms": ("lossless", "jpeg"),
            "runs": [
                {"run": "hw2_cnn", "values": ([0.78, 0.79, 0.785], [0.77, 0.765, 0.772])},
                {"run": "cnn", "values": ([0.7348], [])},
            ],
        },  # the variant not run yet: no difference
        {
            "title": "What bf16 costs",
            "arms": ("fp32", "bf16"),
            "runs": [{"run": "lenet5", "values": ([0.61, 0.64], [0.62, 0.63])}],
        },
    ]
    fig = studies_figure(panels)
    jpeg, bf16 = fig.axes
    by_height = sorted(
        zip(jpeg.get_yticks(), (t.get_text() for t in jpeg.get_yticklabels()), strict=True), reverse=True
    )
    assert [label for _, label in by_height] == ["hw2_cnn", "cnn"]  # the first run on top
    assert [t.get_text() for t in jpeg.get_legend().get_texts()] == ["lossless", "jpeg"]
    assert [t.get_text() for t in jpeg.texts] == ["-1.60 pp"] and [t.get_text() for t in bf16.texts] == ["+0.00 pp"]
    dots = [line for line in jpeg.lines if line.get_marker() == "o"]
    assert sorted(len(line.get_xdata()) for line in dots) == [1, 3, 3]  # a dot per seed
    lo, hi = jpeg.get_xlim()
    assert lo < 76.5 and hi > 79 and hi - lo < 15  # the data's range, not 0-100
    (ax,) = studies_figure([]).axes
    assert "no study runs" in ax.texts[0].get_text()


def test_studies_legend_stays_off_the_data():
    panels = [
        {
            "title": "What JPEG costs",
            "arms": ("lossless", "jpeg"),
            "runs": [
                {"run": r, "values": ([0.6 + 0.1 * i, 0.61 + 0.1 * i], [0.59 + 0.1 * i, 0.6 + 0.1 * i])}
                for i, r in enumerate(("lenet5", "hw2_cnn", "cnn"))
            ],
        }
    ]
    fig = studies_figure(panels)
    (ax,) = fig.axes
    legend, axes_box, title = extents(fig, [ax.get_legend(), ax, ax.title])
    assert legend.y0 >= axes_box.y1 - 1  # above the panel
    assert overlapping([legend, title]) == []


def _legend_colors(ax) -> dict[str, tuple]:
    """legend label -> the RGBA of its bars."""
    out = {}
    for c in ax.containers:
        if isinstance(c, BarContainer):
            out[c.get_label()] = to_rgba(c.patches[0].get_facecolor())
    return out


def test_reported_and_reproduced_have_one_colour_in_every_bar_chart():
    rows = [{"label": "m", "reported": 0.9, "reproduced": 0.88, "final": 0.87}]
    bars = _legend_colors(report_bars(rows, "t").axes[0])
    comp = comparison_figure(
        {"m": {"reported": 0.9, "best": 0.88, "final": 0.87}}, {"m": pd.DataFrame({"epoch": [1], "test_acc": [0.88]})}
    )
    comp_bars = _legend_colors(comp.axes[0])
    assert bars["reported"] == comp_bars["reported"]
    assert bars["reproduced"] == comp_bars["best epoch (on test)"]
    assert bars["final epoch"] == comp_bars["final epoch"]
    assert len({bars["reported"], bars["reproduced"], bars["final epoch"]}) == 3


def test_comparison_figure_bars_per_run_and_curves():
    """top1[run] = {"reported", "best", "final"} (fractions; reported None: no published number)
    -> three horizontal bars per run in %, a row per run in run order (the first on top); one
    test-accuracy curve per history given."""
    top1 = {"a": {"reported": 0.9, "best": 0.88, "final": 0.87}, "b": {"reported": None, "best": 0.61, "final": 0.6}}
    hists = {"a": pd.DataFrame({"epoch": [1, 2], "test_acc": [0.5, 0.88]})}
    fig = comparison_figure(top1, hists)
    ax_b, ax_c = fig.axes
    widths = {c.get_label(): [p.get_width() for p in c.patches] for c in ax_b.containers if isinstance(c, BarContainer)}
    assert widths["reported"] == pytest.approx([90.0])  # none published: no bar (a 0% bar reads as measured)
    na = [t for t in ax_b.texts if t.get_text() == "n/a"]
    assert len(na) == 1 and na[0].get_position()[1] == pytest.approx(1 - 0.27)  # where b's reported bar would be
    assert widths["best epoch (on test)"] == pytest.approx([88.0, 61.0])
    assert widths["final epoch"] == pytest.approx([87.0, 60.0])
    assert [t.get_text() for t in ax_b.get_yticklabels()] == ["a", "b"]
    assert ax_b.get_ylim()[0] > ax_b.get_ylim()[1]  # inverted: "a" on top
    values = sorted(t.get_text() for t in ax_b.texts if t.get_text() != "n/a")
    assert values == ["60.0", "61.0", "87.0", "88.0", "90.0"]  # each bar's value at its end
    (line,) = ax_c.get_lines()
    assert line.get_label() == "a" and list(line.get_ydata()) == pytest.approx([50.0, 88.0])


# the published run table: 21 runs, names as long as they get
RUN_NAMES = [
    "cnn",
    "cnn-dropout_half",
    "cnn-no_batchnorm",
    "cnn-sgd_lr1e-2",
    "cnn-wide",
    "dnn",
    "dnn-hidden_512_256_128",
    "dnn-no_batchnorm",
    "hw2_cnn",
    "hw2_cnn-batch50",
    "hw2_cnn-sgd",
    "lenet5",
    "lenet5-batch256",
    "lenet5-classic",
    "lenet5-norm_none",
    "lenet5-sgd_lr1e-1",
    "lenet5-sgd_lr1e-2",
    "lenet5-sgd_lr1e-3",
    "lenet5-sigmoid",
    "lenet5-tanh",
    "resnet9",
]


def test_comparison_is_readable_at_21_runs():
    """Run names, value labels and legends do not overlap one another or the curves (the old figure:
    slanted names on top of each other, rotated values colliding, a 21-entry legend on the curves)."""
    rng = np.random.default_rng(0)
    top1 = {
        n: {"reported": 0.7 if i % 4 == 0 else None, "best": 0.7 + 0.001 * i, "final": 0.7}
        for i, n in enumerate(RUN_NAMES)
    }  # near-equal values: labels as close as they come
    hists = {n: pd.DataFrame({"epoch": np.arange(1, 31), "test_acc": 0.5 + 0.3 * rng.random(30)}) for n in RUN_NAMES}
    fig = comparison_figure(top1, hists)
    ax_b, *curves = fig.axes
    assert [t.get_text() for t in ax_b.get_yticklabels()] == RUN_NAMES
    assert overlapping(extents(fig, ax_b.get_yticklabels())) == []
    values = [t for t in ax_b.texts]  # the value at each bar's end, and the n/a marks
    assert len(values) == 3 * len(RUN_NAMES)
    assert overlapping(extents(fig, values)) == []
    assert overlapping(extents(fig, [ax_b.get_legend(), ax_b.title])) == []
    # a panel per recipe and its variants, every run in one; each legend beside its panel
    assert sorted(line.get_label() for ax in curves for line in ax.get_lines()) == sorted(RUN_NAMES)
    assert len(curves) == 5
    for ax in curves:
        legend, box = extents(fig, [ax.get_legend(), ax])
        assert legend.x0 >= box.x1  # outside the data
    boxes = extents(fig, curves + [c.get_legend() for c in curves] + [ax_b])
    assert overlapping(boxes) == []  # nor on one another


def one_epoch(acc: float, loss: float = 2.3) -> pd.DataFrame:
    return pd.DataFrame(
        {"epoch": [1], "train_loss": [loss], "test_loss": [loss], "train_acc": [acc], "test_acc": [acc]}
    )


def test_comparison_one_epoch_runs_are_visible_and_ties_set_apart():
    names = ["lenet5", "lenet5-sigmoid", "lenet5-tanh", "lenet5-classic"]
    accs = [0.10, 0.10, 0.10, 0.23]  # three tied at chance
    top1 = {n: {"reported": None, "best": a, "final": a} for n, a in zip(names, accs, strict=True)}
    fig = comparison_figure(top1, {n: one_epoch(a) for n, a in zip(names, accs, strict=True)})
    _, ax = fig.axes
    lo, hi = ax.get_xlim()
    assert lo == 0 and hi >= 2  # a real epoch axis, not 0.96-1.04
    lines = ax.get_lines()
    assert all(line.get_markersize() >= 6 for line in lines)
    dots = extents(fig, lines)
    assert overlapping(dots) == []  # the tied runs side by side, not on top of each other
    assert [t.get_text() for t in ax.texts] == ["3 runs at 10.0%"]
    ylo, yhi = ax.get_ylim()
    assert ylo <= 10 - 2 and yhi >= 23 + 2


def test_spread_ties_centres_tied_points_and_leaves_others():
    offsets, ties = spread_ties([(1, 10.0), (1, 10.01), (1, 23.0), (1, 10.0)], step=0.1)
    assert offsets == pytest.approx([-0.1, 0.0, 0.0, 0.1])
    assert ties == [(pytest.approx(1.1), 10.0, 3)]


def test_curves_figure_loss_and_accuracy_panels():
    hist = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [2.0, 1.5, 1.2],
            "test_loss": [2.1, 1.6, 1.4],
            "train_acc": [0.3, 0.5, 0.6],
            "test_acc": [0.28, 0.55, 0.52],
        }
    )
    fig = curves_figure("run-x", hist)
    ax_l, ax_a = fig.axes
    assert fig.get_suptitle() == "run-x" and ax_l.get_title() == "loss"
    assert ax_a.get_title() == "accuracy (best test: 55.00% @ epoch 2)"  # the best test epoch
    assert [ln.get_label() for ln in ax_a.get_lines()] == ["train", "test", "best test epoch"]
    assert list(ax_a.get_lines()[1].get_ydata()) == pytest.approx([28.0, 55.0, 52.0])
    assert list(ax_a.get_lines()[2].get_xydata()[0]) == pytest.approx([2, 55.0])  # ringed
    assert smoke_texts(fig) == []


def test_curves_figure_one_epoch_is_a_visible_point_on_a_real_axis():
    fig = curves_figure("lenet5", one_epoch(0.10))
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo == 0 and hi >= 2
        train, test = ax.get_lines()[:2]
        assert train.get_markersize() >= 6 and test.get_markersize() > train.get_markersize()
        assert test.get_markerfacecolor() == "none"  # open: the train dot shows through where they tie
    ylo, yhi = fig.axes[1].get_ylim()
    assert ylo <= 7 and yhi >= 13  # not a hair-thin band around 10%


def test_curves_figure_of_a_diverged_run():
    """Diverged: its last epoch has no losses (NaN, or inf) and no test number; the axes keep to
    the finite numbers. Diverged in the first epoch: no test number at all, no best marked."""
    hist = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [2.0, np.inf, np.nan],
            "test_loss": [2.2, 2.0, np.nan],
            "train_acc": [0.27, 0.22, 0.19],
            "test_acc": [0.25, 0.22, np.nan],
        }
    )
    ax_l, ax_a = curves_figure("dnn-no_batchnorm", hist).axes
    assert np.isfinite(ax_l.get_ylim()).all() and ax_l.get_ylim()[1] < 3
    assert ax_a.get_title() == "accuracy (best test: 25.00% @ epoch 1)"
    first = pd.DataFrame(
        {"epoch": [1], "train_loss": [np.nan], "test_loss": [np.nan], "train_acc": [0.1], "test_acc": [np.nan]}
    )
    _, ax_a = curves_figure("x", first).axes
    assert ax_a.get_title() == "accuracy" and len(ax_a.get_lines()) == 2


# --------------------------------------------------------------------------- saving


def test_save_figure_is_byte_reproducible(tmp_path):
    rows = [{"label": "m", "reported": 0.9, "reproduced": 0.88}]
    save_figure(report_bars(rows, "t"), tmp_path / "a.png")
    save_figure(report_bars(rows, "t"), tmp_path / "b" / "b.png")
    a, b = (tmp_path / "a.png").read_bytes(), (tmp_path / "b" / "b.png").read_bytes()
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert a == b
    assert plt.get_fignums() == []  # save_figure closes what it wrote


def test_comparison_curves_never_share_colour_and_style():
    """Past matplotlib's 10-colour cycle two curves drew alike (cnn and lenet5-sigmoid): each
    curve of 45 gets its own (colour, line style)."""
    top1 = {f"r{i}": {"reported": None, "best": 0.5, "final": 0.5} for i in range(45)}
    hists = {f"r{i}": pd.DataFrame({"epoch": [1, 2], "test_acc": [0.4, 0.5]}) for i in range(45)}
    top1 = {f"r-{i}": v for i, v in enumerate(top1.values())}  # one recipe's variants: one panel
    hists = {f"r-{i}": v for i, v in enumerate(hists.values())}
    _, ax_c = comparison_figure(top1, hists).axes
    looks = [(tuple(line.get_color()), line.get_linestyle()) for line in ax_c.get_lines()]
    assert len(looks) == 45 and len(set(looks)) == 45


# --------------------------------------------------------------------------- smoke-run banner

SMOKE_DETAILS = {
    "run": "lenet5",
    "seed": 23,
    "n_train": 250,
    "n_test": 100,
    "epochs_cap": 1,
    "recipe_epochs": 10,
    "random_features": False,
}
FULL_DETAILS = {
    "run": "lenet5",
    "seed": 23,
    "n_train": 50000,
    "n_test": 10000,
    "epochs_cap": None,
    "recipe_epochs": 10,
    "random_features": False,
}


def test_smoke_line_says_what_the_report_calls_a_smoke_run():
    from cifarlab.core.cifar10 import FULL_TEST, FULL_TRAIN
    from cifarlab.reporting import records

    assert (FULL_TRAIN, FULL_TEST) == (50_000, 10_000)  # CIFAR-10's splits: fewer is a smoke run
    cases = [
        FULL_DETAILS,
        SMOKE_DETAILS,
        {**FULL_DETAILS, "n_test": 2000},
        {**FULL_DETAILS, "epochs_cap": 3},
        {**FULL_DETAILS, "random_features": True},
        {"run": "old", "seed": None},
    ]
    for rec in cases:  # the same rule as the README's notes
        assert (smoke_line([rec]) is None) == (records.smoke_notes(rec) == []), rec
    assert smoke_line([SMOKE_DETAILS]) == (
        "smoke run: 1 epoch (recipe: 10), 250 train / 100 test images; not the published recipe"
    )
    full = [{**FULL_DETAILS, "run": f"r{i}"} for i in range(5)]
    assert smoke_line([SMOKE_DETAILS, *full]).startswith("lenet5 is a smoke run: 1 epoch")  # which, when few
    many = [{**SMOKE_DETAILS, "run": f"s{i}"} for i in range(4)]
    assert smoke_line(many + full).startswith("smoke runs (4 of 9 runs): ")
    assert smoke_line([]) is None


def smoke_figures(smoke):
    """One of every figure, drawn with this banner (None: a full run)."""
    rows = [{"label": "lenet5", "reported": 0.47, "reproduced": 0.1, "final": 0.1}]
    top1 = {"lenet5": {"reported": 0.47, "best": 0.1, "final": 0.1}}
    x, y = blobs(n_per=10)
    choices = [
        {"base": "lenet5", "published": 0.47, "settings": [{"label": "lenet5", "values": [0.1], "covers": False}]}
    ]
    studies = [
        {"title": "What JPEG costs", "arms": ("lossless", "jpeg"), "runs": [{"run": "cnn", "values": ([0.1], [0.1])}]}
    ]
    return {
        "report": report_bars(rows, "Report 000", smoke=smoke),
        "report (none)": report_bars([], "Report 004", smoke=smoke),
        "comparison": comparison_figure(top1, {"lenet5": one_epoch(0.1)}, smoke=smoke),
        "grid": grid_heatmaps({("relu", "2:1:1", "none"): 0.1}, {}, ACTS, RATIOS, AUGS, smoke=smoke),
        "grid (none)": grid_heatmaps({}, {}, ACTS, RATIOS, AUGS, smoke=smoke),
        "open choices": open_choices_figure(choices, smoke=smoke),
        "studies": studies_figure(studies, smoke=smoke),
        "curves": curves_figure("lenet5", one_epoch(0.1), smoke=smoke),
        "confusion": confusion_figure(np.eye(10, dtype=int), CLASSES, "lenet5", smoke=smoke),
        "pca": pca_figure(x, y, CLASSES, "lenet5", smoke=smoke),
        "message": message_figure("diverged", smoke=smoke),
    }


def test_every_figure_of_a_smoke_run_carries_the_banner_and_a_full_run_none():
    banner = smoke_line([SMOKE_DETAILS])
    for name, fig in smoke_figures(banner).items():
        assert smoke_texts(fig) == [banner], name
        (text,) = fig.findobj(lambda a: a.get_gid() == "smoke-banner")
        assert text.get_color() == "tab:red"
        # on top: above every panel (titles, tick labels and legends included), and above the
        # figure's own title where it has one (that title's last line)
        (box,) = extents(fig, [text])
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            assert box.y0 >= ax.get_tightbbox(renderer).y1 - 1, (name, ax)
        if fig.get_suptitle() != text.get_text():
            sup = fig._suptitle.get_window_extent(renderer)
            assert box.y0 >= sup.y0 + 0.9 * fig._suptitle.get_fontsize() * fig.dpi / 72, name
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width, name  # wrapped to the figure's width
        plt.close(fig)
    for name, fig in smoke_figures(None).items():
        assert smoke_texts(fig) == [], name


def test_plot_stage_puts_the_banner_on_a_smoke_runs_figures(tmp_path, monkeypatch):
    from cifarlab import plot
    from cifarlab.core import paths

    for d in ("details", "history", "figures"):
        (tmp_path / d).mkdir()
    monkeypatch.setattr(paths, "DETAILS_DIR", tmp_path / "details")
    monkeypatch.setattr(paths, "HISTORY_DIR", tmp_path / "history")
    monkeypatch.setattr(paths, "RUN_FIGURES_DIR", tmp_path / "figures")
    one_epoch(0.1).to_csv(tmp_path / "history" / "lenet5.csv", index=False)
    drawn = []
    monkeypatch.setattr(plot, "save_png", lambda fig, path: drawn.append((path.name, smoke_texts(fig))))
    for details, banner in ((SMOKE_DETAILS, [smoke_line([SMOKE_DETAILS])]), (FULL_DETAILS, [])):
        best = {"epoch": 1, "confusion": np.eye(10, dtype=int).tolist()}
        (tmp_path / "details" / "lenet5.json").write_text(json.dumps({**details, "best": best, "classes": CLASSES}))
        drawn.clear()
        plot.main(["--run", "lenet5"])
        assert drawn == [("curves_lenet5.png", banner), ("confusion_lenet5.png", banner)]
