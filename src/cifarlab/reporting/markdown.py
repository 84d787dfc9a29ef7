"""Markdown building blocks of the report: number formatting (fmt_*) and tables, images, cells."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ACCURACY_METRICS = ("top1", "top3")
METRIC_LABELS = {"top1": "top-1", "top3": "top-3", "loss": "loss"}
NOT_RUN = "not run"
DASH = "—"  # an empty cell: nothing to show (not a number that is missing)


def rounded(x: float, digits: int) -> float:
    """x rounded to `digits` decimals for display; + 0.0 so it never prints as "-0.00"."""
    return round(x, digits) + 0.0


def fmt_value(metric: str, v: float | None) -> str:
    """A single number: accuracies as percentages (2 decimals), losses raw (4 decimals)."""
    if v is None:
        return DASH
    if metric in ACCURACY_METRICS:
        return f"{rounded(100 * v, 2):.2f}%"
    return f"{rounded(v, 4):.4f}"


def fmt_summary(metric: str, s: Mapping | None) -> str:
    """ "92.10%" for one seed, "92.10 ± 0.21% (n=3)" for several; "not run" for none."""
    if s is None or s["n"] == 0:
        return NOT_RUN
    if s["n"] == 1:
        return fmt_value(metric, s["mean"])
    if metric in ACCURACY_METRICS:
        return f"{rounded(100 * s['mean'], 2):.2f} ± {rounded(100 * s['std'], 2):.2f}% (n={s['n']})"
    return f"{rounded(s['mean'], 4):.4f} ± {rounded(s['std'], 4):.4f} (n={s['n']})"


def fmt_diff(metric: str, reproduced: float | None, reported: float | None) -> str:
    """reproduced - reported: percentage points for accuracies, raw for losses."""
    if reproduced is None or reported is None:
        return DASH
    if metric in ACCURACY_METRICS:
        return f"{rounded(100 * (reproduced - reported), 2):+.2f} pp"
    return f"{rounded(reproduced - reported, 4):+.4f}"


def fmt_seed(seed: Any) -> str:
    return "unrecorded" if seed is None else str(seed)


def fmt_epochs(epochs: Sequence[Any]) -> str:
    """One epoch when all seeds agree, else each seed's in seed order."""
    if not epochs:
        return DASH
    shown = [DASH if e is None else str(e) for e in epochs]
    return shown[0] if len(set(shown)) == 1 else ", ".join(shown)


def fmt_result(metric: str, s: Mapping | None, st: Mapping) -> str:
    """fmt_summary, but "diverged (epoch E)" where no seed left a number because training diverged.

    st: stats.run_stats of the run (its `diverged` lists the epochs at which seeds diverged).
    """
    if (s is None or s["n"] == 0) and st.get("diverged"):
        return f"diverged (epoch {fmt_epochs(st['diverged'])})"
    return fmt_summary(metric, s)


def md_cell(value: Any) -> str:
    return str(value).replace("\n", " ").replace("|", "\\|")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub pipe table (no alignment tricks: renders everywhere)."""
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def figure_src(name: str) -> str:
    """A figure's path from reports/README.md; name: relative to reports/figures, which may leave
    it ("../published/figures/x.png" -> "published/figures/x.png")."""
    return posixpath.normpath(posixpath.join("figures", name))


def md_image(alt: str, name: str) -> str:
    return f"![{alt}]({figure_src(name)})"


def html_image(alt: str, name: str, width: str) -> str:
    """An <img> (Markdown images cannot be sized); width: a share of the page, e.g. "40%"."""
    return f'<img src="{figure_src(name)}" alt="{alt}" width="{width}">'
