"""comparison.png: every run's reported, best and final top-1 as bars, beside the test-accuracy curves
of each recipe and its variants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from cifarlab.figures.common import NA, SERIES_COLORS, add_title

LINE_STYLES = ("-", "--", ":", "-.")
BAR_ROW_IN = 0.5  # inches per run in the bar panel: three bars, each a 7-pt value label high
BAR_W = 0.27  # a bar's height in rows (three per run)


def series_style(i: int) -> tuple[tuple, str]:
    """(colour, line style) of the i-th curve of a figure: tab20's ten dark hues, then their ten
    light twins, then the same colours dashed, dotted, dash-dotted: 80 curves before any two look
    alike (matplotlib's default cycle repeats after 10: cnn and lenet5-sigmoid drew in one colour)."""
    k = i % 20
    return plt.get_cmap("tab20")((k % 10) * 2 + k // 10), LINE_STYLES[(i // 20) % len(LINE_STYLES)]


def family(run: str) -> str:
    """The recipe a run varies: its name up to the first "-" (lenet5-sigmoid -> lenet5)."""
    return run.split("-")[0]


def spread_ties(
    points: Sequence[tuple[float, float]], step: float = 0.12, width: float = 0.8
) -> tuple[list[float], list[tuple[float, float, int]]]:
    """x offsets that set apart single points drawn on one spot (same epoch, same top-1 to 0.05
    points: 1-epoch runs tied at chance, 10%), centred on the spot, `step` apart (closer when
    many share it, `width` in all at most); and (x, y, count) of every spot shared by several."""
    spots: dict[tuple[float, float], list[int]] = {}
    for i, (x, y) in enumerate(points):
        spots.setdefault((x, round(2 * y, 1)), []).append(i)
    offsets = [0.0] * len(points)
    ties = []
    for (x, _), members in spots.items():
        m = len(members)
        if m < 2:
            continue
        d = min(step, width / (m - 1))
        for j, i in enumerate(members):
            offsets[i] = (j - (m - 1) / 2) * d
        ties.append((x + (m - 1) / 2 * d, points[members[0]][1], m))
    return offsets, ties


def _bars(ax, top1: Mapping[str, Mapping[str, float | None]]) -> None:
    """Horizontal bars, a row per run (the first on top), its name on the y axis and each value at
    its bar's end; a missing value (no published number, a diverged run) is an n/a in its slot."""
    names = list(top1)
    series = [  # the order and colours of report_bars
        ("reported", "reported", [top1[n]["reported"] for n in names]),
        ("best", "best epoch (on test)", [top1[n]["best"] for n in names]),
        ("final", "final epoch", [top1[n]["final"] for n in names]),
    ]
    for i, (key, label, vals) in enumerate(series):
        at = [k + (i - 1) * BAR_W for k in range(len(names))]
        have = [(a, 100 * v) for a, v in zip(at, vals, strict=True) if v is not None]
        bars = ax.barh([a for a, _ in have], [v for _, v in have], BAR_W, label=label, color=SERIES_COLORS[key])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        for a, v in zip(at, vals, strict=True):
            if v is None:  # not a bar of 0: that would read as a measured 0%
                ax.text(1, a, NA, ha="left", va="center", fontsize=7, color="0.4")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the first run on top
    ax.set_xlim(0, 108)  # room for a label right of a bar near 100%
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("test top-1 (%)")
    ax.set_title("reproduced vs reported", pad=24)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, borderaxespad=0.2)


def _curves(ax, runs: Sequence[tuple[int, str, pd.DataFrame]], title: str) -> None:
    """Test top-1 per epoch of some runs (index, name, history): runs of one or two epochs as
    large dots, those on one spot set apart and counted; the epoch axis from 0 to at least 2."""
    singles = []
    last = 2
    ys = []
    for i, name, h in runs:
        h = h[h["test_acc"].notna()]
        x, y = h["epoch"].to_numpy(dtype=float), 100 * h["test_acc"].to_numpy(dtype=float)
        if len(x):
            last, ys = max(last, float(x.max())), ys + list(y)
        if len(x) == 1:
            singles.append((i, name, float(x[0]), float(y[0])))
            continue
        color, style = series_style(i)
        ax.plot(x, y, marker="o", ms=6 if len(x) <= 3 else 2.5, label=name, color=color, linestyle=style)
    offsets, ties = spread_ties([(x, y) for _, _, x, y in singles], step=0.04 * last)
    for (i, name, x, y), dx in zip(singles, offsets, strict=True):
        color, _ = series_style(i)
        ax.plot(
            [x + dx],
            [y],
            marker="o",
            ms=7,
            linestyle="none",
            label=name,
            color=color,
            markeredgecolor="black",
            markeredgewidth=0.5,
        )
    for x, y, m in ties:
        ax.annotate(
            f"{m} runs at {y:.1f}%",
            (x, y),
            textcoords="offset points",
            xytext=(8, 0),
            va="center",
            fontsize=7,
            color="0.3",
        )
    ax.set_xlim(0, last * 1.03)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ys:
        lo, hi = min(ys), max(ys)
        pad = max(3.0, 0.1 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad))
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if runs:  # outside, right of the curves: inside it covers them
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0)


def comparison_figure(
    top1: Mapping[str, Mapping[str, float | None]], hists: Mapping[str, pd.DataFrame], smoke: str | None = None
) -> plt.Figure:
    """Bars of reported / best / final test top-1 per run (top1[run] = {"reported", "best", "final"},
    fractions, None = none), beside every run's test-accuracy curve (hists[run]: its history), a
    panel per recipe and its variants (family()). smoke: the smoke-run banner (common.smoke_line)."""
    groups: dict[str, list[tuple[int, str, pd.DataFrame]]] = {}
    for name, h in hists.items():  # each panel's curves in their own colours from the first, dark, on
        g = groups.setdefault(family(name), [])
        g.append((len(g), name, h))
    heights = [max(1.9, 0.15 * len(g) + 1.0) for g in groups.values()] or [3.0]
    total = max(4.5, BAR_ROW_IN * len(top1) + 1.6, sum(heights))
    fig = plt.figure(figsize=(14, total + (0.4 if smoke else 0)), layout="constrained")
    gs = fig.add_gridspec(len(heights), 2, width_ratios=(1, 1.3), height_ratios=heights)
    _bars(fig.add_subplot(gs[:, 0]), top1)
    if not groups:
        ax = fig.add_subplot(gs[0, 1])
        ax.axis("off")
        ax.text(0.5, 0.5, "no per-epoch history (reports/history/) to draw", ha="center", va="center")
    for k, (fam, runs) in enumerate(groups.items()):
        ax = fig.add_subplot(gs[k, 1])
        what = fam if len(runs) == 1 and runs[0][1] == fam else f"{fam} and its variants"
        _curves(ax, runs, f"{what}: test top-1 per epoch")
        if k == len(groups) - 1:
            ax.set_xlabel("epoch")
    add_title(fig, smoke=smoke)
    return fig
