"""How long things take, as people read it: one format for every message and table, and the
threshold past which a run is "long" and warned about up front."""

from __future__ import annotations

LONG_CPU_RUN_S = 15 * 60  # a CPU run (or `dvc repro`) longer than this gets a warning up front


def format_duration(seconds: float) -> str:
    """A duration for a message or a table: 1h05m, 4m30s (to the nearest second)."""
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"
