"""One section of the report per published report: its tables, figures and statements, in markdown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from cifarlab.core.paths import CONFUSION_FIGURE, CURVES_FIGURE, GRID_FIGURE, PCA_FIGURE, REPORT_FIGURE
from cifarlab.reporting.markdown import (
    DASH,
    METRIC_LABELS,
    NOT_RUN,
    fmt_diff,
    fmt_epochs,
    fmt_result,
    fmt_seed,
    fmt_summary,
    fmt_value,
    html_image,
    md_image,
    md_table,
    rounded,
)
from cifarlab.reporting.records import counted
from cifarlab.reporting.reference import (
    ALEXNET_REPORT,
    GRID_REPORT,
    REPORT_TITLES,
    grid_axes,
    numbers_of,
    ordered_unique,
    primary,
)
from cifarlab.reporting.stats import run_stats, within_spread

COLLAPSE_FIGURES = 6  # more runs with figures than this in one report: fold them into <details>

# A run's figures side by side (HTML <img>: Markdown images cannot be sized), as a share of
# the page width: curves are wide and short, the confusion matrix square.
RUN_FIGURE_WIDTH = {"curves": "58%", "confusion": "40%", "pca": "98%"}


def comparison_table(
    entries: Sequence[dict], runs: Mapping[str, list[dict]], miss_notes: Mapping[str, str] | None = None
) -> str:
    """One row per published number: reported vs reproduced (best, final, val-selected).
    miss_notes: run -> what a "no" of its seed-range verdict is followed by (the JPEG study)."""
    stats = {(n["run"], n["metric"]): run_stats(runs.get(n["run"], []), n["metric"]) for n in entries}
    has_val = any(s["val"] is not None for s in stats.values())
    header = [
        "run",
        "metric",
        "reported",
        "reproduced (best epoch)",
        "reproduced at final epoch",
        "difference",
        "epoch (reported / reproduced best)",
        "seeds",
        "within seed range",
    ]
    if has_val:
        header.append("test @ val-selected epoch")
    header.append("note")
    rows = []
    for n in entries:
        metric, ref = n["metric"], n["value"]
        st = stats[(n["run"], metric)]
        best = st["best"]
        ran = best["n"] > 0
        inside = within_spread(ref, best) if ran else None
        row = [
            f"`{n['run']}`",
            METRIC_LABELS[metric],
            fmt_value(metric, ref),
            fmt_result(metric, best, st),
            fmt_result(metric, st["final"], st) if ran or st["diverged"] else NOT_RUN,
            fmt_diff(metric, best["mean"], ref),
            f"{DASH if n.get('epoch') is None else n['epoch']} / {fmt_epochs(st['best_epochs']) if ran else DASH}",
            ", ".join(fmt_seed(s) for s in st["seeds"]) if ran else DASH,
            DASH if inside is None else ("yes" if inside else "no"),
        ]
        if ran and best["mean"] < ref and inside is not True and metric == "top1" and (miss_notes or {}).get(n["run"]):
            row[-1] += f"; {miss_notes[n['run']]}"
        if has_val:
            v = st["val"]
            row.append(f"{fmt_summary(metric, v)} @ epoch {fmt_epochs(st['val_epochs'])}" if v else DASH)
        row.append(n.get("note") or "")
        rows.append(row)
    return md_table(header, rows)


def grid_table(reference: Mapping, runs: Mapping[str, list[dict]]) -> str:
    """Report 004's 36 cells: augmentation x activation rows, ratio columns; "reproduced (reported)"."""
    activations, ratios, augments = grid_axes(reference)
    by_key = {
        (n["activation"], str(n["ratio"]), n["augment"]): n
        for n in numbers_of(reference, GRID_REPORT)
        if "activation" in n and n["metric"] == "top1"
    }
    rows = []
    for aug in augments:
        for act in activations:
            row = [f"`{aug}`", f"`{act}`"]
            for ratio in ratios:
                n = by_key.get((act, ratio, aug))
                if n is None:
                    row.append(DASH)
                    continue
                st = run_stats(runs.get(n["run"], []), "top1")
                s = st["best"]
                ref = f"{rounded(100 * n['value'], 2):.2f}"
                if not s["n"]:
                    row.append(f"{fmt_result('top1', s, st)} ({ref})")
                elif s["n"] == 1:
                    row.append(f"{rounded(100 * s['mean'], 2):.2f} ({ref})")
                else:
                    row.append(
                        f"{rounded(100 * s['mean'], 2):.2f} ± {rounded(100 * s['std'], 2):.2f} (n={s['n']}) ({ref})"
                    )
            rows.append(row)
    return md_table(["augmentation", "activation"] + ratios, rows)


def alexnet_table(reference: Mapping, runs: Mapping[str, list[dict]]) -> str:
    """Report 003's 2x2: epochs (low/high) x skip (without/with); top-1 and top-3, "reproduced (reported)"."""
    entries = numbers_of(reference, ALEXNET_REPORT)
    rows = []
    for budget in ("low", "high"):
        row = [f"{budget} epoch"]
        for skip in ("noskip", "skip"):
            run = f"alexnet_transfer-{skip}-{budget}"
            lines = []
            for metric in ("top1", "top3"):
                ref = primary(entries, run, metric)
                st = run_stats(runs.get(run, []), metric)["best"]
                reported = fmt_value(metric, ref["value"]) if ref else DASH
                lines.append(
                    f"{METRIC_LABELS[metric]} {fmt_result(metric, st, run_stats(runs.get(run, []), metric))} "
                    f"(reported {reported})"
                )
            row.append("<br>".join(lines))
        rows.append(row)
    return md_table(["", "without skip", "with skip"], rows)


# A test loss "rises after" its lowest point when the mean of its last TREND_EPOCHS epochs is over
# RISE above the lowest mean of TREND_EPOCHS consecutive epochs. Means, not single epochs: the
# lecture resnet's test loss jumps 0.60-1.34 between epochs at its constant lr 0.1, so a single
# epoch's minimum is an outlier that nearly any last epoch sits 5% above. Over the published
# histories, 5-epoch means keep converged curves under it (dnn: 0-2%, resnet: 1%) and flag the
# ones that overfit (hw2_cnn: 40-50%, dnn without batch norm: 10-11%).
TREND_EPOCHS = 5
RISE = 0.05


def curve_check(claim: Mapping, seeds: Sequence[tuple[int, Sequence[float]]]) -> str:
    """What the histories say about a claim on the test-loss curve (a statement's `curve`:
    {metric: test_loss, epoch: E}): per seed the epoch of the lowest test loss and whether the
    loss rises after it (the mean of the last TREND_EPOCHS epochs over RISE above the lowest such
    mean; fewer epochs when the history is shorter). seeds: (seed, the test loss of epochs 1..N).
    "" when no seed has a history."""
    seeds = [(seed, list(losses)) for seed, losses in seeds if len(losses)]
    if not seeds:
        return ""
    cells, rises = [], 0
    for seed, losses in sorted(seeds, key=lambda s: s[0]):
        low = min(range(len(losses)), key=losses.__getitem__)  # first epoch at the minimum
        w = min(TREND_EPOCHS, len(losses))
        means = [sum(losses[i : i + w]) / w for i in range(len(losses) - w + 1)]
        up = means[-1] / min(means) - 1
        rises += up > RISE
        cells.append(f"seed {seed}: epoch {low + 1} of {len(losses)} ({losses[low]:.4f}), last {w} epochs {up:+.0%}")
    verdict = (
        f"rises after it in {rises} of {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
        if rises
        else "rises after it in none of the seeds"
    )
    return (
        f'the histories: lowest test loss at {"; ".join(cells)}: {verdict} ("rises" = the mean test loss '
        f"of the last {TREND_EPOCHS} epochs over {RISE:.0%} above the lowest mean of {TREND_EPOCHS} "
        f"consecutive epochs: one noisy epoch does not decide it); the report: epoch {claim['epoch']}"
    )


def statements_section(
    reference: Mapping, report: str, histories: Mapping[str, Sequence[tuple[int, Sequence[float]]]] | None = None
) -> str:
    """reference.yaml's `statements` of one report (claims that are not numbers) as a list; "" if none.
    histories: run -> (seed, test loss per epoch) of its runs, for the claims about a curve."""
    items = [s for s in reference["statements"] if str(s.get("report")) == report]
    if not items:
        return ""
    lines = ["### What the report says (not a number)", ""]
    for s in items:
        text = " ".join(str(s.get("text", "")).split())
        lines.append(f"- `{s['run']}`: {text}" if s.get("run") else f"- (whole report) {text}")
        if s.get("curve"):
            check = curve_check(s["curve"], (histories or {}).get(s["run"], ()))
            lines.append(f"  - Checked against {check}." if check else "  - Not checked yet: the run has no history.")
    return "\n".join(lines)


def _run_figures(runs_in_report: Sequence[str], figures: Iterable[str], prefix: str = "runs/") -> list[str]:
    """One paragraph per run that has figures: its curves and confusion matrix on one row,
    then its PCA (AlexNet runs). prefix: where they are, relative to reports/figures."""
    have = set(figures)
    out = []
    for run in runs_in_report:
        row = [
            html_image(alt, name, RUN_FIGURE_WIDTH[kind])
            for kind, name, alt in (
                ("curves", prefix + CURVES_FIGURE.format(out=run), f"learning curves: {run}"),
                ("confusion", prefix + CONFUSION_FIGURE.format(out=run), f"confusion matrix: {run}"),
                ("pca", prefix + PCA_FIGURE.format(out=run), f"PCA of the features: {run}"),
            )
            if name in have
        ]
        if row:
            out.append(f"**`{run}`**<br>\n" + "\n".join(row))
    return out


def run_figure_blocks(runs_shown: Sequence[str], figures: Iterable[str], prefix: str = "runs/") -> list[str]:
    """The figures of each run that has some (_run_figures), as markdown blocks; over
    COLLAPSE_FIGURES runs they fold into one <details>."""
    run_figs = _run_figures(runs_shown, figures, prefix)
    if len(run_figs) > COLLAPSE_FIGURES:
        # The grid has 36 runs: fold their figures so the tables and heat maps stay in view.
        # (The blank lines let GitHub render the Markdown inside the HTML block.)
        return [
            '<details markdown="1"><summary>Learning curves and confusion matrices of the '
            f"{len(run_figs)} runs</summary>\n\n" + "\n\n".join(run_figs) + "\n\n</details>"
        ]
    return run_figs


def report_section(
    reference: Mapping,
    runs: Mapping[str, list[dict]],
    report: str,
    figures: Iterable[str] = (),
    run_figures: str = "runs/",
    miss_notes: Mapping[str, str] | None = None,
    histories: Mapping[str, Sequence[tuple[int, Sequence[float]]]] | None = None,
) -> str:
    """ "## Report <NNN>": its tables (report 004: the grid first), bar chart, run figures, statements.

    figures: names of the PNGs present, relative to reports/figures; run_figures: the folder of
    each run's figures, relative to reports/figures; miss_notes: as in comparison_table;
    histories: as in statements_section.
    """
    figures = set(figures)
    entries = numbers_of(reference, report)
    title = REPORT_TITLES.get(report)
    parts = [f"## Report {report}: {title}" if title else f"## Report {report}"]
    if report == GRID_REPORT:
        cells = [n for n in entries if "activation" in n]
        done = sum(1 for n in cells if counted(runs.get(n["run"], [])))
        parts.append(
            f"Top-1 (%) per cell: reproduced (reported). {done} of {len(cells)} cells run; "
            f"reproduced = `best` block, mean ± std over seeds where there are several."
        )
        parts.append(grid_table(reference, runs))
        if GRID_FIGURE in figures:
            parts.append(md_image("ResNet-18 grid: reproduced top-1 and reproduced - reported", GRID_FIGURE))
        ran = [n for n in entries if counted(runs.get(n["run"], []))]
        others = [n for n in entries if "activation" not in n]
        detail = ran + [n for n in others if n not in ran]
        if detail:
            parts.append("Every cell that has run, in detail:")
            parts.append(comparison_table(detail, runs, miss_notes))
    else:
        if report == ALEXNET_REPORT:
            parts.append("Reproduced (reported), `best` block:")
            parts.append(alexnet_table(reference, runs))
        parts.append(comparison_table(entries, runs, miss_notes))
    bars = REPORT_FIGURE.format(report=report)
    if bars in figures:
        parts.append(md_image(f"report {report}: reported vs reproduced top-1", bars))
    parts += run_figure_blocks(ordered_unique(n["run"] for n in entries), figures, run_figures)
    statements = statements_section(reference, report, histories)
    if statements:
        parts.append(statements)
    return "\n\n".join(parts)
