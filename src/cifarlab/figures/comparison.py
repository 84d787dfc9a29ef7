"""comparison.png: every run's reported, best and final top-1 as bars, beside its test-accuracy curve."""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from cifarlab.figures.common import NA, SERIES_COLORS

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
