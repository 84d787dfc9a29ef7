"""What every figure shares: the byte-reproducible PNG writer, series colours, n/a marks, cell contrast."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.colors import Normalize

from cifarlab.core.io import atomic_write

# One colour per kind of number in every bar chart (comparison.png, report_<NNN>.png), so
# "reported" reads the same everywhere: the published number in grey, the reproduction in colour.
SERIES_COLORS = {"reported": "0.6", "best": "tab:blue", "final": "tab:orange"}
# Heat-map axes carry this gid so callers and tests can tell them from the colorbar axes
# that matplotlib adds beside them.
HEATMAP_GID = "heatmap"
NA = "n/a"  # where a number would stand but there is none (not run, diverged, no published value)


def dark(value: float, norm: Normalize, cmap) -> bool:
    """True where the cell colour is dark enough that its annotation should be white."""
    r, g, b, _ = cmap(norm(value))
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # perceived luminance (ITU-R BT.601)


def message_figure(text: str) -> plt.Figure:
    """A figure that only says why there is nothing to draw (a declared output must exist)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    return fig


def stacked_panels(heights: list[float], width: float = 7.5) -> tuple[plt.Figure, list]:
    """A figure of one full-width panel per entry, stacked, each `heights[i]` inches tall (the
    open-choice and study figures: a panel per published number or study, a row per setting)."""
    fig, axes = plt.subplots(len(heights), 1, figsize=(width, sum(heights)), layout="constrained",
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    return fig, list(axes[:, 0])


def save_png(fig: plt.Figure, path: Path) -> None:
    # Fixed metadata so the same data gives the same bytes (no creation date/software stamp).
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def save_figure(fig: plt.Figure, path: Path | str) -> None:
    """Write `fig` as a PNG with fixed metadata (byte-reproducible) and close it."""
    save_png(fig, Path(path))
