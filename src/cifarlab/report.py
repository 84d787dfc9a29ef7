"""Stage `report`: reports/README.md, every published number next to the reproduced one.

    python -m cifarlab.report        (the `report` stage: dvc repro report)

Reads reports/metrics/ and reports/details/ (one pair per run and seed), reports/reference.yaml
(every published number), dvc.lock (provenance), reports/published/ and reports/studies/
(runs folded in with `cifarlab fold`), reports/history/ (curves in comparison.png)
and the per-run figures in reports/figures/runs/ (embedded where they exist). Writes:

  reports/figures/comparison.png     every run outside the report-004 grid: reported, best and
                                     final top-1, and their test-accuracy curves
  reports/figures/report_<NNN>.png   reported vs reproduced top-1 per report
  reports/figures/grid_resnet18.png  report 004's grid as heat maps (cells not run yet: n/a)
  reports/figures/open_choices.png   each published number's open-choice settings, seed by seed
  reports/figures/studies.png        what JPEG and bf16 cost each recipe, seed by seed
  reports/README.md                  written atomically, byte-identical for the same inputs

The report sections and figures show the published runs (this workspace's own where none is
published), however many runs of params.yaml this workspace has run; its own runs are listed
beside them in "Your runs", with their provenance.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from cifarlab.core import paths
from cifarlab.core.io import atomic_write
from cifarlab.core.params import load_params
from cifarlab.core.paths import COMPARISON_FIGURE, GRID_FIGURE, OPEN_CHOICES_FIGURE, REPORT_FIGURE, STUDIES_FIGURE
from cifarlab.core.stage_main import run_main
from cifarlab.dvc_internals import read_lock
from cifarlab.reporting import open_choices as oc
from cifarlab.reporting import published as pub
from cifarlab.reporting import studies
from cifarlab.reporting.document import PUBLISHED_RUN_FIGURES, report_tables
from cifarlab.reporting.records import counted, group_runs, load_metrics
from cifarlab.reporting.reference import GRID_REPORT, grid_axes, load_reference, numbers_of, primary, report_ids
from cifarlab.reporting.stats import bar_rows, grid_values, run_stats

README = paths.REPORTS_DIR / "README.md"
REFERENCE = paths.REPORTS_DIR / "reference.yaml"
DVC_LOCK = Path("dvc.lock")


def write_figures(
    reference: Mapping, runs: Mapping[str, list[dict]], figures_dir: Path, published: bool = False
) -> list[Path]:
    """report_<NNN>.png for every report and grid_resnet18.png, always (cells not run yet show
    as n/a), so the stage's declared outputs always exist; `published`: `runs` are the published
    ones. Returns the paths written."""
    from cifarlab import figures

    def smoke(report: str) -> str | None:  # the banner when that report's runs are smoke runs
        return figures.smoke_line(r for recs in runs.values() for r in counted(recs) if r.get("report") == report)

    written = []
    for report in report_ids(reference):
        path = figures_dir / REPORT_FIGURE.format(report=report)
        figures.save_figure(
            figures.report_bars(
                bar_rows(reference, runs, report), f"Report {report}: reported vs reproduced top-1", smoke=smoke(report)
            ),
            path,
        )
        written.append(path)
    reproduced, reported = grid_values(reference, runs)
    path = figures_dir / GRID_FIGURE
    figures.save_figure(
        figures.grid_heatmaps(
            reproduced, reported, *grid_axes(reference), smoke=smoke(GRID_REPORT), published=published
        ),
        path,
    )
    written.append(path)
    return written


def write_comparison(
    reference: Mapping, runs: Mapping[str, list[dict]], figures_dir: Path, history_dir: Path = paths.HISTORY_DIR
) -> Path:
    """comparison.png: every run that has run and is not a report-004 grid cell (36 bars would
    drown the rest; grid_resnet18.png shows them), with its published top-1."""
    from cifarlab import figures

    grid_runs = {n["run"] for n in numbers_of(reference, GRID_REPORT)}
    top1, hists = {}, {}
    for run, recs in runs.items():
        if run in grid_runs or not counted(recs):
            continue
        st = run_stats(recs, "top1")
        ref = primary(reference["numbers"], run, "top1")
        top1[run] = {
            "reported": ref["value"] if ref else None,
            "best": st["best"]["mean"],
            "final": st["final"]["mean"],
        }
        history = history_dir / f"{run}.csv"
        if history.exists():
            hists[run] = pd.read_csv(history)
    path = figures_dir / COMPARISON_FIGURE
    figures.save_png(
        figures.comparison_figure(top1, hists, smoke=figures.smoke_line(r for run in top1 for r in counted(runs[run]))),
        path,
    )
    return path


def curve_histories(reference: Mapping, runs: Mapping[str, list[dict]], history_dir: Path) -> dict[str, list]:
    """run -> [(seed, test loss per epoch)] of each run a statement checks against its curve
    (reference.yaml `statements[].curve`), from each seed's history (<history_dir>/<file stem>.csv)."""
    out = {}
    for run in {s["run"] for s in reference["statements"] if s.get("curve") and s.get("run")}:
        for r in counted(runs.get(run, [])):
            history = history_dir / f"{Path(r['path']).stem}.csv"
            if history.exists():
                out.setdefault(run, []).append((r["seed"], pd.read_csv(history)["test_loss"].tolist()))
    return out


def own_figure(name: str) -> bool:
    """Whether reports/figures/<name> is one this stage draws."""
    prefix, _, suffix = REPORT_FIGURE.partition("{report}")
    return name in (GRID_FIGURE, COMPARISON_FIGURE, OPEN_CHOICES_FIGURE, STUDIES_FIGURE) or (
        name.startswith(prefix) and name.endswith(suffix)
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m cifarlab.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.parse_args(argv)
    p = load_params(check_models=False)  # before any work; the stages of each run check its model
    reference = load_reference(REFERENCE)
    yours = group_runs(load_metrics(paths.METRICS_DIR, details_dir=paths.DETAILS_DIR))
    published = group_runs(load_metrics(pub.PUBLISHED_DIR / "metrics", details_dir=pub.PUBLISHED_DIR / "details"))
    study_text, found = studies.sections(figure=STUDIES_FIGURE)
    provenance = pub.load_provenance()
    section = pub.published_section(reference, published, provenance, p.runs, "jpeg" in found, pub.load_epoch_seconds())
    if study_text:
        section += "\n\n" + study_text
    # The sections and figures show the published runs, whatever this workspace has run (a few
    # runs of one's own would replace a whole published table with a handful of rows); yours go
    # beside them in "Your runs". A checkout with none published shows its own instead.
    showing_published = bool(published)
    runs = published if showing_published else yours
    lock = read_lock(DVC_LOCK)
    history_dir = pub.PUBLISHED_DIR / "history" if showing_published else paths.HISTORY_DIR
    from cifarlab import figures

    choices_png, studies_png = paths.FIGURES_DIR / OPEN_CHOICES_FIGURE, paths.FIGURES_DIR / STUDIES_FIGURE
    figures.save_figure(
        figures.open_choices_figure(
            oc.figure_rows(reference, p.open_choices, runs),
            smoke=figures.smoke_line(r for recs in runs.values() for r in counted(recs)),
        ),
        choices_png,
    )
    figures.save_figure(figures.studies_figure(studies.figure_panels(found)), studies_png)
    jpeg = studies.STUDIES["jpeg"]
    section += "\n\n" + oc.section(
        reference,
        p.open_choices,
        runs,
        {n: r.model for n, r in p.runs.items()},
        OPEN_CHOICES_FIGURE,
        found.get("jpeg", {}),
        f"[{jpeg.title}]({studies.anchor(jpeg)})",
    )
    written = [
        choices_png,
        studies_png,
        write_comparison(reference, runs, paths.FIGURES_DIR, history_dir),
        *write_figures(reference, runs, paths.FIGURES_DIR, published=showing_published),
    ]
    # names relative to reports/figures: "comparison.png", "runs/curves_<run>.png", ...
    on_disk = sorted(p.relative_to(paths.FIGURES_DIR).as_posix() for p in paths.FIGURES_DIR.rglob("*.png"))
    # this stage's own figures are embedded only when drawn now: a leftover would be stale
    present = [n for n in on_disk if not own_figure(n)] + [f.name for f in written]
    if showing_published:
        present += [f"{PUBLISHED_RUN_FIGURES}{f.name}" for f in sorted((pub.PUBLISHED_DIR / "figures").glob("*.png"))]
    text = report_tables(
        reference,
        runs,
        lock,
        present,
        published=section,
        showing_published=showing_published,
        miss_notes=studies.jpeg_miss_notes(found, runs, provenance if showing_published else None),
        histories=curve_histories(reference, runs, history_dir),
        yours=yours,
        published_runs=published,
        run_table=list(p.runs),
        seeds=[p.seed, *p.seeds],
    )
    with atomic_write(README, "wb") as f:  # bytes: UTF-8 whatever the locale
        f.write(text.encode("utf-8"))
    print(
        f"report: {sum(len(r) for r in yours.values())} metrics files of yours, "
        f"{sum(len(r) for r in published.values())} published, {len(written)} figures -> {README}"
    )


if __name__ == "__main__":
    run_main(main)
