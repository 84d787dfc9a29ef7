"""Stage `plot@<run>`: the figures of one run, drawn from its history and metrics files.

    python -m cifarlab.plot --run lenet5 [--seed 1]

reports/figures/runs/curves_<out>.png     loss and accuracy per epoch, train vs test
reports/figures/runs/confusion_<out>.png  the best epoch's confusion matrix, class names on the axes

Figures that span runs (comparison.png, the per-report bars, the grid heat maps) are the report
stage's: a change to one run then re-runs that run's stages and the report, nothing else.
"""

from __future__ import annotations

import pandas as pd

from cifarlab.core import paths
from cifarlab.core.errors import DataError
from cifarlab.core.io import read_json_object
from cifarlab.core.runs import stage_args
from cifarlab.core.stage_main import run_main
from cifarlab.figures.common import message_figure, save_png, smoke_line
from cifarlab.figures.per_run import confusion_figure, curves_figure


def main(argv: list[str] | None = None) -> None:
    _, spec = stage_args("python -m cifarlab.plot", __doc__, argv)
    details_file, history_file = paths.DETAILS_DIR / f"{spec.out}.json", paths.HISTORY_DIR / f"{spec.out}.csv"
    for f in (details_file, history_file):
        if not f.is_file():
            raise DataError(f"missing {f}: run the train and evaluate stages first (dvc repro)")
    details = read_json_object(details_file)
    hist = pd.read_csv(history_file)
    curves = paths.RUN_FIGURES_DIR / paths.CURVES_FIGURE.format(out=spec.out)
    confusion = paths.RUN_FIGURES_DIR / paths.CONFUSION_FIGURE.format(out=spec.out)
    smoke = smoke_line([details])  # a data subset or capped epochs: a red banner on each figure
    save_png(curves_figure(spec.out, hist, smoke=smoke), curves)
    best = details["best"]
    if "confusion" in best:
        fig = confusion_figure(
            best["confusion"], details["classes"], f"{spec.out}: best epoch {best['epoch']}", smoke=smoke
        )
    else:  # the run diverged before any epoch could be tested
        fig = message_figure(
            f"{spec.out}: diverged at epoch {details['diverged']['epoch']}\n"
            f"(lr {details['diverged']['lr']:.3g}): no confusion matrix",
            smoke=smoke,
        )
    save_png(fig, confusion)
    print(f"plot {spec.out}: wrote {curves}, {confusion}")


if __name__ == "__main__":
    run_main(main)
