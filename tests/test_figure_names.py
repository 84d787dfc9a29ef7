"""Every figure's file name is written once (core/paths.py); dvc.yaml's outs must name the same
files, or DVC would look for a figure the code never draws (and commit none of the one it does)."""

from __future__ import annotations

import yaml
from workspace import shipped

from cifarlab.core import paths

RUN_FIGURES = {"plot": (paths.CURVES_FIGURE, paths.CONFUSION_FIGURE), "pca": (paths.PCA_FIGURE,)}


def _outs(stage: dict) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for o in stage["outs"]]


def test_report_stage_outs_are_the_table():
    dvc = yaml.safe_load(shipped("dvc.yaml").read_text())
    reports = sorted({n["report"] for n in yaml.safe_load(shipped("reports/reference.yaml").read_text())["numbers"]})
    want = {
        paths.COMPARISON_FIGURE,
        paths.GRID_FIGURE,
        paths.OPEN_CHOICES_FIGURE,
        paths.STUDIES_FIGURE,
        *(paths.REPORT_FIGURE.format(report=r) for r in reports),
    }
    figures = {
        o.removeprefix(f"{paths.FIGURES_DIR.as_posix()}/") for o in _outs(dvc["stages"]["report"]) if o.endswith(".png")
    }
    assert figures == want


def test_run_stage_outs_are_the_table():
    """plot@ and pca@ (foreach over runs: ${key} / ${item}) and plot_seeds (<run>-s<seed>)."""
    stages = yaml.safe_load(shipped("dvc.yaml").read_text())["stages"]
    as_written = {
        "plot": ("${key}", stages["plot"]["do"]),
        "pca": ("${item}", stages["pca"]["do"]),
        "plot_seeds": ("${item.run}-s${item.seed}", stages["plot_seeds"]),
    }
    for stage, (out_id, body) in as_written.items():
        names = RUN_FIGURES["pca" if stage == "pca" else "plot"]
        want = {f"{paths.RUN_FIGURES_DIR.as_posix()}/{name.format(out=out_id)}" for name in names}
        assert set(_outs(body)) == want, stage


def test_report_figure_pattern_reads_back():
    """report.own_figure recognises each report's bars by REPORT_FIGURE's shape, and nothing else."""
    from cifarlab.report import own_figure

    assert own_figure(paths.REPORT_FIGURE.format(report="004"))
    assert own_figure(paths.GRID_FIGURE) and own_figure(paths.STUDIES_FIGURE)
    assert not own_figure("runs/" + paths.CURVES_FIGURE.format(out="lenet5"))
