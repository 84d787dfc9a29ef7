"""Report figures: structure of each figure, PCA correctness/determinism, PNG reproducibility."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer

from cifarlab.core.paths import CLASSES
from cifarlab.figures.common import HEATMAP_GID, NA, save_figure
from cifarlab.figures.comparison import comparison_figure
from cifarlab.figures.reports import grid_heatmaps, report_bars
from cifarlab.figures.runs import confusion_figure, curves_figure, pca_figure, pca_project
from cifarlab.figures.studies import studies_figure


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def heatmaps(fig):
    return [ax for ax in fig.axes if ax.get_gid() == HEATMAP_GID]


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
    assert len(yt) == 10 and all(y.startswith(c) for y, c in zip(yt, CLASSES))
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
    np.testing.assert_allclose(ratio, s[:3] ** 2 / (xc ** 2).sum(), rtol=1e-6)
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
    reported = {(a, r, g): 0.85 + 0.01 * i + 0.001 * j for i, a in enumerate(ACTS)
                for j, r in enumerate(RATIOS) for g in AUGS}
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


def test_grid_heatmaps_nothing_run_yet():
    fig = grid_heatmaps({}, {}, ACTS, RATIOS, AUGS)
    assert all(t.get_text() == NA for ax in heatmaps(fig) for t in ax.texts)


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
    assert bar_count(report_bars([{"label": "a", "reported": 0.5, "reproduced": 0.4},
                                  {"label": "b", "reported": 0.6, "reproduced": None}], "t")) == 2 * 2


def test_studies_figure_shows_every_seed_and_the_difference_per_recipe():
    panels = [{"title": "What JPEG costs", "arms": ("lossless", "jpeg"), "runs": [
                   {"run": "hw2_cnn", "values": ([0.78, 0.79, 0.785], [0.77, 0.765, 0.772])},
                   {"run": "cnn", "values": ([0.7348], [])}]},  # the variant not run yet: no difference
              {"title": "What bf16 costs", "arms": ("fp32", "bf16"), "runs": [
                   {"run": "lenet5", "values": ([0.61, 0.64], [0.62, 0.63])}]}]
    fig = studies_figure(panels)
    jpeg, bf16 = fig.axes
    by_height = sorted(zip(jpeg.get_yticks(), (t.get_text() for t in jpeg.get_yticklabels())), reverse=True)
    assert [label for _, label in by_height] == ["hw2_cnn", "cnn"]  # the first run on top
    assert [t.get_text() for t in jpeg.get_legend().get_texts()] == ["lossless", "jpeg"]
    assert [t.get_text() for t in jpeg.texts] == ["-1.60 pp"] and [t.get_text() for t in bf16.texts] == ["+0.00 pp"]
    dots = [line for line in jpeg.lines if line.get_marker() == "o"]
    assert sorted(len(line.get_xdata()) for line in dots) == [1, 3, 3]  # a dot per seed
    lo, hi = jpeg.get_xlim()
    assert lo < 76.5 and hi > 79 and hi - lo < 15  # the data's range, not 0-100
    (ax,) = studies_figure([]).axes
    assert "no study runs" in ax.texts[0].get_text()


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
    comp = comparison_figure({"m": {"reported": 0.9, "best": 0.88, "final": 0.87}},
                             {"m": pd.DataFrame({"epoch": [1], "test_acc": [0.88]})})
    comp_bars = _legend_colors(comp.axes[0])
    assert bars["reported"] == comp_bars["reported"]
    assert bars["reproduced"] == comp_bars["best epoch (on test)"]
    assert bars["final epoch"] == comp_bars["final epoch"]
    assert len({bars["reported"], bars["reproduced"], bars["final epoch"]}) == 3


def test_comparison_figure_bars_per_run_and_curves():
    """top1[run] = {"reported", "best", "final"} (fractions; reported None: no published number)
    -> three bars per run in %, in run order; one test-accuracy curve per history given."""
    top1 = {"a": {"reported": 0.9, "best": 0.88, "final": 0.87},
            "b": {"reported": None, "best": 0.61, "final": 0.6}}
    hists = {"a": pd.DataFrame({"epoch": [1, 2], "test_acc": [0.5, 0.88]})}
    fig = comparison_figure(top1, hists)
    ax_b, ax_c = fig.axes
    heights = {c.get_label(): [p.get_height() for p in c.patches]
               for c in ax_b.containers if isinstance(c, BarContainer)}
    assert heights["reported"] == pytest.approx([90.0])  # none published: no bar (a 0% bar reads as measured)
    na = [t for t in ax_b.texts if t.get_text() == "n/a"]
    assert len(na) == 1 and na[0].get_position()[0] == pytest.approx(1 - 0.27)  # where b's reported bar would be
    assert heights["best epoch (on test)"] == pytest.approx([88.0, 61.0])
    assert heights["final epoch"] == pytest.approx([87.0, 60.0])
    assert [t.get_text() for t in ax_b.get_xticklabels()] == ["a", "b"]
    (line,) = ax_c.get_lines()
    assert line.get_label() == "a" and list(line.get_ydata()) == pytest.approx([50.0, 88.0])


def test_curves_figure_loss_and_accuracy_panels():
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.2], "test_loss": [2.1, 1.6, 1.4],
                         "train_acc": [0.3, 0.5, 0.6], "test_acc": [0.28, 0.55, 0.52]})
    fig = curves_figure("run-x", hist)
    ax_l, ax_a = fig.axes
    assert ax_l.get_title() == "run-x: loss" and ax_a.get_title() == "run-x: accuracy"
    assert [ln.get_label() for ln in ax_a.get_lines()] == ["train", "test"]
    assert list(ax_a.get_lines()[1].get_ydata()) == pytest.approx([28.0, 55.0, 52.0])
    assert [t.get_text() for t in ax_a.texts] == ["best 55.00% @ 2"]  # the best test epoch


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
    _, ax_c = comparison_figure(top1, hists).axes
    looks = [(tuple(line.get_color()), line.get_linestyle()) for line in ax_c.get_lines()]
    assert len(looks) == 45 and len(set(looks)) == 45
