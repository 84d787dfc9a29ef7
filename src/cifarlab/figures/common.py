"""What every figure shares: the byte-reproducible PNG writer, series colours, n/a marks, cell contrast,
the smoke-run banner."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.colors import Normalize
from matplotlib.text import Annotation

from cifarlab.core.cifar10 import FULL_TEST, FULL_TRAIN
from cifarlab.core.io import atomic_write

# One colour per kind of number in every bar chart (comparison.png, report_<NNN>.png), so
# "reported" reads the same everywhere: the published number in grey, the reproduction in colour.
SERIES_COLORS = {"reported": "0.6", "best": "tab:blue", "final": "tab:orange"}
# Heat-map axes carry this gid so callers and tests can tell them from the colorbar axes
# that matplotlib adds beside them.
HEATMAP_GID = "heatmap"
NA = "n/a"  # where a number would stand but there is none (not run, diverged, no published value)
NOT_RUN = "not run yet"  # a whole panel with nothing in it: said once, not as a field of n/a marks

# The smoke-run banner: a red line on top of every figure drawn from a data subset or capped epochs,
# so a figure copied out of the report cannot pass for the published recipe's.
SMOKE_GID = "smoke-banner"
SMOKE_COLOR = "tab:red"
BANNER_PT = 10


def dark(value: float, norm: Normalize, cmap) -> bool:
    """True where the cell colour is dark enough that its annotation should be white."""
    r, g, b, _ = cmap(norm(value))
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # perceived luminance (ITU-R BT.601)


def _span(values: Iterable) -> str:
    vs = sorted(set(values))
    return f"{vs[0]:,}" if len(vs) == 1 else f"{vs[0]:,}-{vs[-1]:,}"


def _is_smoke(rec: Mapping) -> bool:
    """Whether one run's record (a details file, or a report record: the same keys) says it is not
    the recipe as published; the rule of reporting.records.smoke_notes."""
    n_train, n_test = rec.get("n_train"), rec.get("n_test")
    return (
        (n_train is not None and n_train < FULL_TRAIN)
        or (n_test is not None and n_test < FULL_TEST)
        or rec.get("epochs_cap") is not None
        or bool(rec.get("random_features"))
    )


def smoke_line(records: Iterable[Mapping]) -> str | None:
    """The banner of a figure drawn from these runs' records (details files, or the report's
    records: run, n_train, n_test, epochs_cap, recipe_epochs, random_features), e.g.
    "smoke run: 1 epoch (recipe: 10), 250 train / 100 test images; not the published recipe";
    where only some runs are smoke runs, it names them (up to 3) or counts them. None when every
    one is a full run (or says nothing: older files)."""
    records = list(records)
    smoke = [r for r in records if _is_smoke(r)]
    if not smoke:
        return None
    parts = []
    caps = [r["epochs_cap"] for r in smoke if r.get("epochs_cap") is not None]
    if caps:
        recipe = [r["recipe_epochs"] for r in smoke if r.get("epochs_cap") is not None and r.get("recipe_epochs")]
        parts.append(
            f"{_span(caps)} epoch{'' if max(caps) == 1 else 's'}" + (f" (recipe: {_span(recipe)})" if recipe else "")
        )
    subset = [
        r for r in smoke if (r.get("n_train") or FULL_TRAIN) < FULL_TRAIN or (r.get("n_test") or FULL_TEST) < FULL_TEST
    ]
    if subset:
        train, test = ([r[k] for r in subset if r.get(k) is not None] for k in ("n_train", "n_test"))
        parts.append(f"{_span(train) if train else '?'} train / {_span(test) if test else '?'} test images")
    if any(r.get("random_features") for r in smoke):
        parts.append("random AlexNet features")
    runs = list(dict.fromkeys(str(r.get("run")) for r in records))
    mine = list(dict.fromkeys(str(r.get("run")) for r in smoke))
    if len(mine) == len(runs):
        head = "smoke run"
    elif len(mine) <= 3:  # a figure of published runs and a few of this workspace's: which ones
        head = f"{', '.join(mine)} {'is a smoke run' if len(mine) == 1 else 'are smoke runs'}"
    else:
        head = f"smoke runs ({len(mine)} of {len(runs)} runs)"
    return f"{head}: {', '.join(parts)}; not the published recipe"


def add_title(fig: plt.Figure, title: str | None = None, smoke: str | None = None) -> None:
    """The figure's title on top (`fig.suptitle`), and above it, where `smoke` is given, the
    smoke-run banner in red (a Text with gid SMOKE_GID). The figure needs a layout engine that
    makes room for the suptitle (constrained layout), or a tight_layout after this call."""
    if not smoke:
        if title:
            fig.suptitle(title)
        return
    # wrapped to the figure's width (bold 10 pt: about 0.62 em a character), at word breaks
    banner = textwrap.fill(smoke, max(20, int(fig.get_figwidth() * 72 / (BANNER_PT * 0.62))))
    if not title:
        fig.suptitle(banner, color=SMOKE_COLOR, fontsize=BANNER_PT, fontweight="bold", gid=SMOKE_GID)
        return
    # one suptitle, so the layout leaves room for all of it: the banner's lines left blank and the
    # banner drawn over them in red (one Text has one colour)
    sup = fig.suptitle("\n" * (banner.count("\n") + 1) + title)
    fig.add_artist(
        Annotation(
            banner,
            xy=(0.5, 1.0),
            xycoords=sup,
            ha="center",
            va="top",
            color=SMOKE_COLOR,
            fontsize=BANNER_PT,
            fontweight="bold",
            gid=SMOKE_GID,
        )
    )


def smoke_texts(fig: plt.Figure) -> list[str]:
    """The smoke-run banners on `fig`, unwrapped (tests, and anyone checking a figure)."""
    return [t.get_text().replace("\n", " ") for t in fig.findobj(lambda a: a.get_gid() == SMOKE_GID)]


def message_figure(text: str, smoke: str | None = None) -> plt.Figure:
    """A figure that only says why there is nothing to draw (a declared output must exist)."""
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, wrap=True)
    add_title(fig, smoke=smoke)
    return fig


def stacked_panels(heights: list[float], width: float = 7.5, smoke: str | None = None) -> tuple[plt.Figure, list]:
    """A figure of one full-width panel per entry, stacked, each `heights[i]` inches tall (the
    open-choice and study figures: a panel per published number or study, a row per setting).
    smoke: the smoke-run banner (smoke_line), on a 0.4-inch strip added on top."""
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(width, sum(heights)),
        layout="constrained",
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    if smoke:
        fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.4)
        add_title(fig, smoke=smoke)
    return fig, list(axes[:, 0])


def save_png(fig: plt.Figure, path: Path) -> None:
    # Fixed metadata so the same data gives the same bytes (no creation date/software stamp).
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def save_figure(fig: plt.Figure, path: Path | str) -> None:
    """Write `fig` as a PNG with fixed metadata (byte-reproducible) and close it."""
    save_png(fig, Path(path))
