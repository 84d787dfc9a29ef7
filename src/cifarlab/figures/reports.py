"""Figures of the report stage per published report: bars of reported vs reproduced top-1, the
report-004 grid as heat maps, and the spread over the settings a report left open."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from cifarlab.figures.common import (
    HEATMAP_GID,
    NA,
    NOT_RUN,
    SERIES_COLORS,
    add_title,
    dark,
    message_figure,
    stacked_panels,
)


def _grid_panel(
    ax,
    values: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    cmap,
    norm,
    fmt: str,
    title: str,
    empty: bool = False,
):
    """One (R, C) heat map with NaN cells hatched and marked n/a, or, `empty` (none of its runs
    has run), hatched all over and marked "not run yet" once; returns the image."""
    ax.set_gid(HEATMAP_GID)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    if empty:  # the whole panel hatched, "not run yet" once: twelve n/a marks say it twelve times
        ax.add_patch(
            Rectangle(
                (-0.5, -0.5), values.shape[1], values.shape[0], fill=False, hatch="//", edgecolor="0.85", linewidth=0
            )
        )
        ax.text(
            0.5,
            0.5,
            NOT_RUN,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=10,
            color="0.35",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 3},
        )
    for i in range(values.shape[0] * (not empty)):
        for j in range(values.shape[1]):
            v = values[i, j]
            if math.isnan(v):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.75", linewidth=0))
                ax.text(j, i, NA, ha="center", va="center", fontsize=8, color="0.4")
            else:
                # round first, + 0.0 turns -0.0 into 0.0: no "-0.00" cells
                ax.text(
                    j,
                    i,
                    format(round(v, 2) + 0.0, fmt),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark(v, norm, cmap) else "black",
                )
    ax.set_xticks(range(len(cols)), list(cols))
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_title(title, fontsize=9)
    return im


def grid_heatmaps(
    reproduced: Mapping[tuple[str, str, str], float],
    reported: Mapping[tuple[str, str, str], float],
    activations: Sequence[str],
    ratios: Sequence[str],
    augments: Sequence[str],
    smoke: str | None = None,
    published: bool = False,
) -> plt.Figure:
    """Report 004's grid as heat maps; keys are (activation, ratio, augment), values top-1 fractions.

    Row 1: reproduced top-1 (%), one (activations x ratios) panel per augmentation, one
    shared colour scale so panels compare. Row 2: reproduced - reported in percentage
    points on a diverging scale centred at 0. Cells missing from a mapping (not run yet)
    or None/NaN are hatched and marked n/a; an augmentation none of whose cells has run says
    "not run yet" once per panel. With no cell run at all: one message, no panels, no colour
    bars (a scale of nothing), naming what is missing: published runs (`published`: the report
    draws reports/published/, and a run of one's own is in its "Your runs") or runs of this
    workspace. smoke: the smoke-run banner (common.smoke_line).
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
    if all(np.isnan(t).all() for t in rep):
        runs = (
            f"the grid's {len(activations) * len(ratios) * len(augments)} runs ({len(activations)} activations x "
            f"{len(ratios)} lr-step ratios x {len(augments)} augmentations)"
        )
        fig = message_figure(
            f"not published yet: none of {runs} is in reports/published/"
            if published
            else f"{NOT_RUN}: none of {runs} has run in this workspace"
        )
        fig.set_size_inches(7, 2.5 + (0.4 if smoke else 0))
        add_title(fig, "ResNet-18 grid (report 004)", smoke)
        return fig
    diff = [r - table(reported, a) for r, a in zip(rep, augments, strict=True)]  # NaN if either side missing
    present = np.concatenate([t.ravel() for t in rep])
    present = present[~np.isnan(present)]
    lo, hi = float(present.min()), float(present.max())  # something ran: the message figure above otherwise
    if hi - lo < 2:  # one cell, or cells a hair apart: a scale 2 points wide around them, not 10.0-10.2
        lo, hi = (lo + hi) / 2 - 1, (lo + hi) / 2 + 1
    norm_rep = Normalize(vmin=lo, vmax=hi)
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
        empty = bool(np.isnan(rep[k]).all())
        im_r = _grid_panel(
            axes[0, k], rep[k], activations, ratios, cmap_rep, norm_rep, ".2f", f"reproduced top-1 (%): {aug}", empty
        )
        im_d = _grid_panel(
            axes[1, k],
            diff[k],
            activations,
            ratios,
            cmap_diff,
            norm_diff,
            "+.2f",
            f"reproduced - reported (pp): {aug}",
            empty,
        )
        axes[1, k].set_xlabel("lr-step ratio")
    axes[0, 0].set_ylabel("activation")
    axes[1, 0].set_ylabel("activation")
    add_title(fig, "ResNet-18 grid (report 004)", smoke)
    fig.colorbar(im_r, ax=list(axes[0]), label="top-1 (%)", shrink=0.9)
    fig.colorbar(im_d, ax=list(axes[1]), label="percentage points", shrink=0.9)
    return fig


# (row key, legend label, SERIES_COLORS key): "reproduced" is the best epoch on test
_SERIES = (
    ("reported", "reported", "reported"),
    ("reproduced", "reproduced", "best"),
    ("final", "final epoch", "final"),
)


def report_bars(rows: Sequence[dict], title: str, smoke: str | None = None) -> plt.Figure:
    """Grouped bars per model: reported vs reproduced (vs final when any row has it), in %.

    rows: dicts with `label`, `reported`, `reproduced` (fractions or None), optional `std`
    (fraction, seed-to-seed standard deviation of `reproduced`, drawn as an error bar) and
    optional `final`. Reported and reproduced are always drawn (a report none of whose runs has
    run yet shows its reported bars beside n/a marks), final epoch when any row has it; a row
    without a value gets an empty bar marked n/a, so every group has the same slots. No rows: a
    figure that says so. smoke: the smoke-run banner (common.smoke_line).
    """
    if not rows:
        fig = message_figure("no run of this report to show yet")
        add_title(fig, title, smoke)
        return fig
    series = [
        (key, name, color)
        for key, name, color in _SERIES
        if key != "final" or any(r.get(key) is not None for r in rows)
    ]
    labels = [str(r["label"]) for r in rows]
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.3 * len(rows) * len(series) / 2 + 2), 4.4 + (0.4 if smoke else 0)), layout="constrained"
    )
    w = 0.8 / max(len(series), 1)
    x = np.arange(len(rows))
    for i, (key, name, color) in enumerate(series):
        vals = [r.get(key) for r in rows]
        heights = [100 * v if v is not None else 0.0 for v in vals]
        yerr = None
        if key == "reproduced" and any(r.get("std") is not None for r in rows):
            # NaN, not 0: matplotlib draws no cap at all for a NaN error
            yerr = [100 * r["std"] if r.get("std") is not None and r.get(key) is not None else np.nan for r in rows]
        bars = ax.bar(
            x + (i - (len(series) - 1) / 2) * w,
            heights,
            w,
            yerr=yerr,
            capsize=3,
            label=name,
            color=SERIES_COLORS[color],
        )
        text = []
        for r, v in zip(rows, vals, strict=True):
            if v is None:
                text.append(NA)
            elif key == "reproduced" and r.get("std") is not None:
                text.append(f"{100 * v:.2f}±{100 * r['std']:.2f}")
            else:
                text.append(f"{100 * v:.2f}")
        ax.bar_label(bars, labels=text, fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, labels, rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center")
    # room above a bar near 100% for its label, vertical: "95.23±0.12" is twice "95.23"
    ax.set(ylabel="test top-1 (%)", ylim=(0, 122 if any(r.get("std") is not None for r in rows) else 112))
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(title, pad=20)
    ax.grid(axis="y", alpha=0.3)
    # above the axes: inside, it would cover bars or the n/a marks at 0
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series), frameon=False)
    add_title(fig, smoke=smoke)
    return fig


def open_choices_figure(rows: Sequence[dict], smoke: str | None = None) -> plt.Figure:
    """One panel per published number: every setting's seeds (dots) and mean ± std (tick and
    error bar), in %, with the published value as a dashed line and each setting's distance from
    it in a column right of the panel; settings that cover it (reporting.open_choices: >= 3 seeds,
    the value within their range) in green. Each panel's x range is its data and the published
    value, padded by a point or 6% of the span: settings a point apart stay apart.

    rows: dicts with `base` (run name), `published` (fraction) and `settings`: dicts with `label`,
    `values` (fractions, one per seed that left a number) and `covers` (bool). smoke: the
    smoke-run banner (common.smoke_line).
    """
    if not rows:
        return message_figure("no open choices declared (params.yaml open_choices)", smoke=smoke)
    fig, axes = stacked_panels([0.4 * len(r["settings"]) + 1.2 for r in rows], smoke=smoke)
    for ax, row in zip(axes, rows, strict=True):
        settings, pub = row["settings"], 100 * row["published"]
        every = 100 * np.concatenate([np.asarray(s["values"], dtype=float) for s in settings] + [[row["published"]]])
        lo, hi = float(every.min()), float(every.max())
        pad = max(1.0, 0.06 * (hi - lo))
        y = np.arange(len(settings))[::-1]  # the default on top
        for yi, s in zip(y, settings, strict=True):
            vals = 100 * np.asarray(s["values"], dtype=float)
            color = "tab:green" if s["covers"] else "tab:blue"
            if not len(vals):
                ax.text(lo - pad, yi, f" {NA} (not run yet)", va="center", fontsize=7, color="0.4")
                continue
            std = vals.std(ddof=1) if len(vals) > 1 else 0.0
            ax.errorbar(vals.mean(), yi, xerr=std, fmt="|", color=color, markersize=12, capsize=3)
            ax.plot(vals, np.full(len(vals), yi), "o", color=color, markersize=4, alpha=0.7)
            # in a column right of the axes (x in axes units): the x range stays the data's own
            ax.text(
                1.01,
                yi,
                f"{vals.mean():.2f} ({vals.mean() - pub:+.2f} pp, n={len(vals)})",
                transform=ax.get_yaxis_transform(),
                clip_on=False,
                va="center",
                fontsize=7,
            )
        ax.axvline(pub, color="tab:red", linestyle="--", linewidth=1.2, label=f"published {pub:.2f}%")
        ax.set_yticks(y, [s["label"] for s in settings], fontsize=7)
        ax.set(
            xlabel="test top-1 (%): seeds and mean ± std", xlim=(lo - pad, hi + pad), ylim=(-0.6, len(settings) - 0.4)
        )
        # the published value in the title, not a legend: a legend inside the panel covers dots
        ax.set_title(f"{row['base']}: settings the report left open; dashed: published {pub:.2f}%", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    return fig
