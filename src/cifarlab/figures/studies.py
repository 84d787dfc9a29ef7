"""studies.png: what one change costs each recipe (the report's study sections), seed by seed."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from cifarlab.figures.common import message_figure, stacked_panels

ARM_COLORS = ("tab:blue", "tab:orange")  # baseline, variant


def studies_figure(panels: Sequence[dict], smoke: str | None = None) -> plt.Figure:
    """One panel per study, one pair of rows per run: each seed's best-epoch test top-1 (dots) and
    each arm's mean ± std (bar end and error bar), in %, the difference written beside it. The
    x range follows the data (the differences are a point or two, over recipes 15 points apart).

    panels: dicts with `title`, `arms` (baseline, variant names) and `runs`: dicts with `run` and
    `values` (two lists of fractions, baseline's and variant's seeds). The legend stands above
    each panel, right of its title: inside, it covered the dots. smoke: the smoke-run banner
    (common.smoke_line).
    """
    if not panels:
        return message_figure("no study runs folded yet (cifarlab fold --study)", smoke=smoke)
    fig, axes = stacked_panels([0.7 * len(p["runs"]) + 1.0 for p in panels], smoke=smoke)
    for ax, panel in zip(axes, panels, strict=True):
        runs = panel["runs"]
        every = 100 * np.concatenate([np.asarray(v, dtype=float) for r in runs for v in r["values"]] or [[0.0]])
        lo, hi = float(every.min()), float(every.max())
        pad = max(1.0, 0.08 * (hi - lo))
        for i, r in enumerate(runs):
            y0 = len(runs) - 1 - i  # the first run on top
            means = []
            for k, (arm, color) in enumerate(zip(panel["arms"], ARM_COLORS, strict=True)):
                vals = 100 * np.asarray(r["values"][k], dtype=float)
                yi = y0 + (0.17 if k == 0 else -0.17)
                if not len(vals):
                    means.append(None)
                    continue
                std = vals.std(ddof=1) if len(vals) > 1 else 0.0
                ax.errorbar(
                    vals.mean(),
                    yi,
                    xerr=std,
                    fmt="|",
                    color=color,
                    markersize=12,
                    capsize=3,
                    label=arm if i == 0 else None,
                )
                ax.plot(vals, np.full(len(vals), yi), "o", color=color, markersize=4, alpha=0.7)
                means.append(vals.mean())
            if None not in means:
                ax.text(hi + pad * 0.5, y0, f"{means[1] - means[0]:+.2f} pp", va="center", fontsize=8)
        ax.set_yticks(range(len(runs))[::-1], [r["run"] for r in runs], fontsize=8)
        ax.set(
            xlabel="test top-1 at the best epoch (%): seeds and mean ± std",
            xlim=(lo - pad, hi + pad * 3),
            ylim=(-0.6, len(runs) - 0.4),
        )
        ax.set_title(f"{panel['title']}: {panel['arms'][1]} - {panel['arms'][0]} per recipe", fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, borderaxespad=0.1)
        ax.grid(axis="x", alpha=0.3)
    return fig
