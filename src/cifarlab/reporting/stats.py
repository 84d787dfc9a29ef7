"""Statistics the report shows: summaries over seeds, the seed-range verdict, reproduced vs published values."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

from cifarlab.reporting.records import counted
from cifarlab.reporting.reference import GRID_REPORT, numbers_of, ordered_unique, primary


def summarize(values: Iterable[float | None]) -> dict:
    """mean, std (sample, ddof=1; None below 2 values), n, min, max of the values that are not None."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "min": None, "max": None}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if n >= 2 else None,
        "n": n,
        "min": min(vals),
        "max": max(vals),
    }


def within_spread(reported: float, summary: Mapping) -> bool | None:
    """Whether the published value lies in [min, max] of the seeds; None below 2 seeds."""
    if summary["n"] < 2:
        return None
    return summary["min"] <= reported <= summary["max"]


def run_stats(recs: Sequence[dict], metric: str) -> dict:
    """One run's numbers for one metric over its seeds: best, final, val summaries and epochs."""
    recs = counted(recs)
    with_val = [r for r in recs if r["val"] is not None]
    return {
        "best": summarize(r["best"].get(metric) for r in recs),
        "final": summarize(r["final"].get(metric) for r in recs),
        "val": summarize(r["val"].get(metric) for r in with_val) if with_val else None,
        "best_epochs": [r["best"].get("epoch") for r in recs],
        "val_epochs": [r["val"].get("epoch") for r in with_val],
        "seeds": [r["seed"] for r in recs],
        "diverged": [r["diverged_epoch"] for r in recs if r.get("diverged_epoch") is not None],
    }


def grid_values(
    reference: Mapping, runs: Mapping[str, list[dict]]
) -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, str, str], float]]:
    """(reproduced, reported) top-1 fractions keyed (activation, ratio "2:1:1", augment).

    A cell maps to its run through reference.yaml's `run` (resnet18-<act>-2_1_1-<augment>);
    reproduced = mean over seeds of the `best` top-1, present only for cells that ran.
    """
    reproduced, reported = {}, {}
    for n in numbers_of(reference, GRID_REPORT):
        if "activation" not in n or n["metric"] != "top1":
            continue
        key = (n["activation"], str(n["ratio"]), n["augment"])
        reported[key] = n["value"]
        s = run_stats(runs.get(n["run"], []), "top1")["best"]
        if s["n"]:
            reproduced[key] = s["mean"]
    return reproduced, reported


def bar_rows(reference: Mapping, runs: Mapping[str, list[dict]], report: str) -> list[dict]:
    """Rows for figures.report_bars: one per run with a published top-1 (report 004: cells that ran)."""
    entries = numbers_of(reference, report)
    rows = []
    for run in ordered_unique(n["run"] for n in entries if n["metric"] == "top1"):
        ref = primary(entries, run, "top1")
        st = run_stats(runs.get(run, []), "top1")
        if report == GRID_REPORT and not st["best"]["n"]:
            continue  # 36 bars of which most are empty help nobody; the grid table shows them
        label = run
        if "activation" in ref:
            label = f"{ref['activation']} {ref['ratio']} {ref['augment']}"
        rows.append(
            {
                "label": label,
                "reported": ref["value"],
                "reproduced": st["best"]["mean"],
                "std": st["best"]["std"],
                "final": st["final"]["mean"],
            }
        )
    return rows


def table_coverage(run_table: Iterable[str], seeds: Sequence, runs: Mapping[str, list[dict]] | None = None) -> dict:
    """How much of a run table has results in `runs` (group_runs; None: none yet). The run table
    is params.yaml `runs` as `cifarlab runs` lists and counts it, each run trained with every seed
    of `seeds` (`seed`, then `seeds`), so a count here and that command's agree.

    Returns `of` (the table's runs), `runs` (those with a result of any seed, in table order),
    `outputs` (the table's (run, seed) pairs), `results` (those with a result) and `outside`
    (runs with a result that the table does not list, sorted).
    """
    table, runs = list(run_table), runs or {}
    have = {(run, r["seed"]) for run, recs in runs.items() for r in counted(recs)}
    ran = {run for run, _ in have}
    return {
        "of": len(table),
        "runs": [run for run in table if run in ran],
        "outputs": len(table) * len(seeds),
        "results": sum((run, s) in have for run in table for s in seeds),
        "outside": sorted(ran - set(table)),
    }
