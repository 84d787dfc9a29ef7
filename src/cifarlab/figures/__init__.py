"""Every figure cifarlab draws: a run's learning curves and confusion matrix, the feature PCA,
the comparison of all runs, the report-004 grid as heat maps, and per-report bars of reported
vs reproduced top-1.

Every `*_figure`/`grid_heatmaps`/`report_bars` function is pure: it takes data and returns a
matplotlib Figure; only `save_figure` touches the disk (through save_png, so the PNG
bytes are reproducible). Heat-map axes carry `gid == HEATMAP_GID` so callers and tests can
tell them from the colorbar axes that matplotlib adds beside them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import pandas as pd  # noqa: E402

from cifarlab.core.io import atomic_write  # noqa: E402

# One colour per kind of number in every bar chart (comparison.png, report_<NNN>.png), so
# "reported" reads the same everywhere: the published number in grey, the reproduction in colour.
SERIES_COLORS = {"reported": "0.6", "best": "tab:blue", "final": "tab:orange"}


def curves_figure(name: str, hist: pd.DataFrame) -> plt.Figure:
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-"), ("test", "--")):
        ax_l.plot(hist["epoch"], hist[f"{split}_loss"], style, marker="o", ms=3, label=split)
        ax_a.plot(hist["epoch"], 100 * hist[f"{split}_acc"], style, marker="o", ms=3, label=split)
    if hist["test_acc"].notna().any():  # a run that diverged in its first epoch has no test number
        best = hist["test_acc"].idxmax()
        ax_a.annotate(f"best {100 * hist['test_acc'][best]:.2f}% @ {hist['epoch'][best]}",
                      (hist["epoch"][best], 100 * hist["test_acc"][best]),
                      textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax_l.set(title=f"{name}: loss", xlabel="epoch", ylabel="cross-entropy")
    ax_a.set(title=f"{name}: accuracy", xlabel="epoch", ylabel="top-1 (%)")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


LINE_STYLES = ("-", "--", ":", "-.")


def series_style(i: int) -> tuple[tuple, str]:
    """(colour, line style) of the i-th curve of a figure: tab20's ten dark hues, then their ten
    light twins, then the same colours dashed, dotted, dash-dotted: 80 curves before any two look
    alike (matplotlib's default cycle repeats after 10: cnn and lenet5-sigmoid drew in one colour)."""
    k = i % 20
    return plt.get_cmap("tab20")((k % 10) * 2 + k // 10), LINE_STYLES[(i // 20) % len(LINE_STYLES)]


def comparison_figure(top1: Mapping[str, Mapping[str, float | None]], hists: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Bars of reported / best / final test top-1 per run (top1[run] = {"reported", "best", "final"},
    fractions, None = none), beside every run's test-accuracy curve (hists[run]: its history)."""
    names = list(top1)
    fig, (ax_b, ax_c) = plt.subplots(1, 2, figsize=(13, 4.5))
    x = range(len(names))
    w = 0.27
    series = [  # the order and colours of report_bars
        ("reported", "reported", [top1[n]["reported"] for n in names]),
        ("best", "best epoch (on test)", [top1[n]["best"] for n in names]),
        ("final", "final epoch", [top1[n]["final"] for n in names]),
    ]
    for i, (key, label, vals) in enumerate(series):
        # None (no published number, or a diverged run): no bar, "n/a" where it would stand, so
        # it is not read as a measured 0%
        at = [k + (i - 1) * w for k in x]
        have = [(a, 100 * v) for a, v in zip(at, vals) if v is not None]
        bars = ax_b.bar([a for a, _ in have], [v for _, v in have], w, label=label, color=SERIES_COLORS[key])
        ax_b.bar_label(bars, fmt="%.1f", fontsize=6, rotation=90, padding=2)
        for a, v in zip(at, vals):
            if v is None:
                ax_b.text(a, 1, NA, rotation=90, ha="center", va="bottom", fontsize=6, color="0.4")
    ax_b.set_xticks(list(x), names, rotation=30, ha="right")
    ax_b.set(ylabel="test top-1 (%)", ylim=(0, 105), title="reproduced vs reported")
    ax_b.legend(fontsize=8, loc="upper left")
    for i, (n, h) in enumerate(hists.items()):
        color, style = series_style(i)
        ax_c.plot(h["epoch"], 100 * h["test_acc"], marker="o", ms=2, label=n, color=color, linestyle=style)
    ax_c.set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy per epoch")
    ax_c.grid(alpha=0.3)
    ax_c.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def message_figure(text: str) -> plt.Figure:
    """A figure that only says why there is nothing to draw (a declared output must exist)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    return fig


def save_png(fig: plt.Figure, path: Path) -> None:
    # Fixed metadata so the same data gives the same bytes (no creation date/software stamp).
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


HEATMAP_GID = "heatmap"
PCA_SEED = 0  # pca_lowrank draws a random sketch; a fixed seed makes the figure reproducible
NA = "n/a"


def _dark(value: float, norm: Normalize, cmap) -> bool:
    """True where the cell colour is dark enough that its annotation should be white."""
    r, g, b, _ = cmap(norm(value))
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # perceived luminance (ITU-R BT.601)


# --------------------------------------------------------------------------- confusion matrix


def confusion_figure(confusion: list[list[int]] | np.ndarray, classes: Sequence[str], title: str) -> plt.Figure:
    """Heat map of a (C, C) confusion matrix: rows = true class, columns = predicted class.

    Each cell is annotated with its count; each y tick label carries the class's recall
    (diagonal / row sum), which is the per-class accuracy the reports quote.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    c = len(classes)
    if cm.shape != (c, c):
        raise ValueError(f"confusion must be ({c}, {c}) for {c} classes, got {cm.shape}")
    rows = cm.sum(axis=1)  # (C,) true examples per class
    total = int(cm.sum())
    acc = f"{100 * np.trace(cm) / total:.2f}%" if total else NA

    fig, ax = plt.subplots(figsize=(0.75 * c + 3, 0.65 * c + 2))
    ax.set_gid(HEATMAP_GID)
    cmap = plt.get_cmap("Blues")
    norm = Normalize(vmin=0, vmax=max(int(cm.max()), 1))
    im = ax.imshow(cm, cmap=cmap, norm=norm)
    for i in range(c):
        for j in range(c):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if _dark(cm[i, j], norm, cmap) else "black")
    ylabels = [f"{name} ({100 * cm[i, i] / rows[i]:.1f}%)" if rows[i] else f"{name} ({NA})"
               for i, name in enumerate(classes)]
    ax.set_xticks(range(c), list(classes), rotation=45, ha="right")
    ax.set_yticks(range(c), ylabels)
    ax.set(xlabel="predicted class", ylabel="true class (per-class accuracy)",
           title=f"{title} (top-1 {acc})")
    fig.colorbar(im, ax=ax, label="test images")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- PCA of features


def pca_project(features: torch.Tensor | np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, D) features on their first k principal components.

    Returns coords (N, k) and explained_ratio (k,): each PC's share of the total variance
    of the centered data (singular value squared / sum of squared centered entries).
    Deterministic: torch.pca_lowrank's random sketch is drawn under a fixed seed inside a
    forked RNG (the caller's global RNG state is untouched), and each PC's sign is fixed so
    its largest-magnitude coordinate is positive.
    """
    # float64 on the CPU: 10k x 512 features fit easily, and the variance shares stay exact
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}")
    n, d = x.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k={k} must be in [1, min(N, D)={min(n, d)}]")
    # pca_lowrank's docs ask for "a slightly overestimated rank": sketch a few more
    # directions than we keep, so the k-th PC is as accurate as the first.
    q = min(k + 4, n, d)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PCA_SEED)
        _, s, v = torch.pca_lowrank(x, q=q, center=True, niter=4)
    centered = x - x.mean(dim=0, keepdim=True)  # (N, D)
    coords = centered @ v[:, :k]  # (N, k)
    # sign of a PC is arbitrary; pin it so reruns/other seeds give the same picture
    flip = torch.sign(coords.gather(0, coords.abs().argmax(dim=0, keepdim=True)))  # (1, k)
    coords = coords * torch.where(flip == 0, torch.ones_like(flip), flip)
    total = float((centered ** 2).sum())
    ratio = (s[:k] ** 2) / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    return coords.numpy(), ratio.numpy()


def pca_figure(features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | Sequence[int],
               classes: Sequence[str], title: str) -> plt.Figure:
    """Two panels: PC1 vs PC2 and PC1-PC3 in 3-D, one colour per class (legend names them).

    labels (N,) are indices into `classes`. Axis labels carry each PC's explained-variance
    share; the ratios are also attached as `fig.explained_ratio` (3,).
    """
    coords, ratio = pca_project(features, k=3)  # (N, 3), (3,)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64).ravel()
    if y.shape[0] != coords.shape[0]:
        raise ValueError(f"{y.shape[0]} labels for {coords.shape[0]} feature rows")
    axis = [f"PC{i + 1} ({100 * r:.1f}% var)" for i, r in enumerate(ratio)]
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")

    fig = plt.figure(figsize=(13, 5.5))
    ax2 = fig.add_subplot(1, 2, 1)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    small = 8 if len(y) > 2000 else 14  # marker area: keep 10k test points readable
    for cls in np.unique(y):
        m = y == cls
        name = classes[cls]
        ax2.scatter(coords[m, 0], coords[m, 1], s=small, alpha=0.6, color=cmap(cls), label=name)
        ax3.scatter(coords[m, 0], coords[m, 1], coords[m, 2], s=small, alpha=0.6, color=cmap(cls), label=name)
    ax2.set(xlabel=axis[0], ylabel=axis[1], title="PC1 vs PC2")
    ax2.grid(alpha=0.3)
    # a fixed corner: loc="best" scans every point and is slow on the 10k test set
    ax2.legend(fontsize=7, markerscale=2, loc="upper right")
    ax3.set(xlabel=axis[0], ylabel=axis[1], zlabel=axis[2], title="PC1-PC3")
    fig.suptitle(f"{title} (first 3 PCs explain {100 * ratio.sum():.1f}% of the variance)")
    fig.tight_layout()
    fig.explained_ratio = ratio
    return fig


# --------------------------------------------------------------------------- report 004 grid


def _grid_panel(ax, values: np.ndarray, rows: Sequence[str], cols: Sequence[str], cmap, norm,
                fmt: str, title: str):
    """One (R, C) heat map with NaN cells hatched and marked n/a; returns the image."""
    ax.set_gid(HEATMAP_GID)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if math.isnan(v):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                       edgecolor="0.75", linewidth=0))
                ax.text(j, i, NA, ha="center", va="center", fontsize=8, color="0.4")
            else:
                # round first, + 0.0 turns -0.0 into 0.0: no "-0.00" cells
                ax.text(j, i, format(round(v, 2) + 0.0, fmt), ha="center", va="center", fontsize=8,
                        color="white" if _dark(v, norm, cmap) else "black")
    ax.set_xticks(range(len(cols)), list(cols))
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_title(title, fontsize=9)
    return im


def grid_heatmaps(reproduced: Mapping[tuple[str, str, str], float], reported: Mapping[tuple[str, str, str], float],
                  activations: Sequence[str], ratios: Sequence[str], augments: Sequence[str]) -> plt.Figure:
    """Report 004's grid as heat maps; keys are (activation, ratio, augment), values top-1 fractions.

    Row 1: reproduced top-1 (%), one (activations x ratios) panel per augmentation, one
    shared colour scale so panels compare. Row 2: reproduced - reported in percentage
    points on a diverging scale centred at 0. Cells missing from a mapping (not run yet)
    or None/NaN are hatched and marked n/a.
    """
    def table(src: Mapping, aug: str) -> np.ndarray:  # (A, R) in %, NaN where missing
        out = np.full((len(activations), len(ratios)), np.nan)
        for i, act in enumerate(activations):
            for j, r in enumerate(ratios):
                v = src.get((act, r, aug))
                if v is not None and not math.isnan(v):
                    out[i, j] = 100 * v
        return out

    rep = [table(reproduced, a) for a in augments]
    diff = [r - table(reported, a) for r, a in zip(rep, augments)]  # NaN if either side missing
    present = np.concatenate([t.ravel() for t in rep])
    present = present[~np.isnan(present)]
    lo, hi = (float(present.min()), float(present.max())) if present.size else (0.0, 100.0)
    norm_rep = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    deltas = np.concatenate([t.ravel() for t in diff])
    span = float(np.nanmax(np.abs(deltas))) if np.any(~np.isnan(deltas)) else 0.0
    norm_diff = Normalize(vmin=-max(span, 0.5), vmax=max(span, 0.5))  # symmetric: 0 is white
    cmap_rep = plt.get_cmap("viridis")
    cmap_diff = plt.get_cmap("RdBu")  # red = below the report, blue = above

    n = len(augments)
    # constrained layout leaves room for the row colorbars (tight_layout would let them
    # squeeze the panels until tick labels overlap the neighbouring panel)
    fig, axes = plt.subplots(2, n, figsize=(3.8 * n + 1.5, 6.5), squeeze=False, layout="constrained")
    for k, aug in enumerate(augments):
        im_r = _grid_panel(axes[0, k], rep[k], activations, ratios, cmap_rep, norm_rep, ".2f",
                           f"reproduced top-1 (%): {aug}")
        im_d = _grid_panel(axes[1, k], diff[k], activations, ratios, cmap_diff, norm_diff, "+.2f",
                           f"reproduced - reported (pp): {aug}")
        axes[1, k].set_xlabel("lr-step ratio")
    axes[0, 0].set_ylabel("activation")
    axes[1, 0].set_ylabel("activation")
    fig.suptitle("ResNet-18 grid (report 004)")
    fig.colorbar(im_r, ax=list(axes[0]), label="top-1 (%)", shrink=0.9)
    fig.colorbar(im_d, ax=list(axes[1]), label="percentage points", shrink=0.9)
    return fig


# --------------------------------------------------------------------------- per-report bars


# (row key, legend label, SERIES_COLORS key): "reproduced" is the best epoch on test
_SERIES = (("reported", "reported", "reported"), ("reproduced", "reproduced", "best"), ("final", "final epoch", "final"))


def report_bars(rows: Sequence[dict], title: str) -> plt.Figure:
    """Grouped bars per model: reported vs reproduced (vs final when any row has it), in %.

    rows: dicts with `label`, `reported`, `reproduced` (fractions or None), optional `std`
    (fraction, seed-to-seed standard deviation of `reproduced`, drawn as an error bar) and
    optional `final`. A series is drawn when any row has a value for it; a row without one
    gets an empty bar marked n/a, so every group has the same slots.
    """
    series = [(key, name, color) for key, name, color in _SERIES if any(r.get(key) is not None for r in rows)]
    labels = [str(r["label"]) for r in rows]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(rows) * max(len(series), 1) / 2 + 2), 4.4),
                           layout="constrained")
    w = 0.8 / max(len(series), 1)
    x = np.arange(len(rows))
    for i, (key, name, color) in enumerate(series):
        vals = [r.get(key) for r in rows]
        heights = [100 * v if v is not None else 0.0 for v in vals]
        yerr = None
        if key == "reproduced" and any(r.get("std") is not None for r in rows):
            # NaN, not 0: matplotlib draws no cap at all for a NaN error
            yerr = [100 * r["std"] if r.get("std") is not None and r.get(key) is not None else np.nan
                    for r in rows]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * w, heights, w, yerr=yerr, capsize=3, label=name,
                      color=SERIES_COLORS[color])
        text = []
        for r, v in zip(rows, vals):
            if v is None:
                text.append(NA)
            elif key == "reproduced" and r.get("std") is not None:
                text.append(f"{100 * v:.2f}±{100 * r['std']:.2f}")
            else:
                text.append(f"{100 * v:.2f}")
        ax.bar_label(bars, labels=text, fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, labels, rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center")
    ax.set(ylabel="test top-1 (%)", ylim=(0, 112))
    ax.set_title(title, pad=20)
    ax.grid(axis="y", alpha=0.3)
    if series:  # above the axes: inside, it would cover bars or the n/a marks at 0
        ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series), frameon=False)
    return fig


def save_figure(fig: plt.Figure, path: Path | str) -> None:
    """Write `fig` as a PNG with fixed metadata (byte-reproducible) and close it."""
    save_png(fig, Path(path))


def open_choices_figure(rows: Sequence[dict]) -> plt.Figure:
    """One panel per published number: every setting's seeds (dots) and mean ± std (bar and
    error bar), in %, with the published value as a dashed line across; settings that cover it
    (reporting.open_choices: >= 3 seeds, the value within their range) in green.

    rows: dicts with `base` (run name), `published` (fraction) and `settings`: dicts with `label`,
    `values` (fractions, one per seed that left a number) and `covers` (bool).
    """
    if not rows:
        return message_figure("no open choices declared (params.yaml open_choices)")
    heights = [0.45 * len(r["settings"]) + 1.2 for r in rows]
    fig, axes = plt.subplots(len(rows), 1, figsize=(7.5, sum(heights)), layout="constrained",
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        settings = row["settings"]
        y = np.arange(len(settings))[::-1]  # the default on top
        for yi, s in zip(y, settings):
            vals = 100 * np.asarray(s["values"], dtype=float)
            color = "tab:green" if s["covers"] else "tab:blue"
            if len(vals):
                std = vals.std(ddof=1) if len(vals) > 1 else np.nan
                ax.barh(yi, vals.mean(), xerr=std, height=0.6, color=color, alpha=0.35, capsize=3)
                ax.plot(vals, np.full(len(vals), yi), "o", color=color, markersize=3)
                ax.text(vals.mean(), yi, f" {vals.mean():.2f} (n={len(vals)})", va="center", fontsize=7)
            else:
                ax.text(0.5, yi, NA + " (not run yet)", va="center", fontsize=7, color="0.4")
        ax.axvline(100 * row["published"], color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"published {100 * row['published']:.2f}%")
        ax.set_yticks(y, [s["label"] for s in settings], fontsize=7)
        ax.set(xlabel="test top-1 (%)", xlim=(0, 100))
        ax.set_title(f"{row['base']}: settings the report left open", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
    return fig
