"""cifarlab's figures, one module per subject: per_run (one run's curves, confusion matrix, PCA),
comparison (all runs side by side), reports (per-report bars, the report-004 grid, open choices),
studies (what JPEG and bf16 cost);
common holds what they share. Every figure function is pure (data in, matplotlib Figure out);
only save_png/save_figure touch the disk.

The report stage draws through the names below (`from cifarlab import figures`), so a test can
stand in for that one package attribute (tests/test_report.py: RecordingFigures).
"""

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI; set before any submodule imports pyplot

from cifarlab.figures.common import save_figure, save_png, smoke_line
from cifarlab.figures.comparison import comparison_figure
from cifarlab.figures.reports import grid_heatmaps, open_choices_figure, report_bars
from cifarlab.figures.studies import studies_figure

__all__ = [
    "comparison_figure",
    "grid_heatmaps",
    "open_choices_figure",
    "report_bars",
    "save_figure",
    "save_png",
    "smoke_line",
    "studies_figure",
]
