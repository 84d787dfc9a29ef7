"""Where each stage reads and writes, relative to the repository root (the DVC project).

dvc.yaml names the same paths; keep the two in step.
"""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")
RAW_ARCHIVE = Path("data/raw/cifar-10-python.tar.gz")
PREPARED_DIR = Path("data/prepared")
TRAIN_FILE = PREPARED_DIR / "train.npz"  # x: uint8 (N, 32, 32, 3), y: int64 (N,)
TEST_FILE = PREPARED_DIR / "test.npz"
VAL_FILE = PREPARED_DIR / "val.npz"  # held out of train when data.val_split > 0; else empty
STATS_FILE = PREPARED_DIR / "stats.json"  # per-channel mean/std of train in [0, 1], class names, counts
CHECKPOINT_DIR = Path("data/checkpoints")  # data/checkpoints/<out>/{final,best}.pt
# data/resume/ (interrupted runs' training state, not a DVC output): engine/resume.py
REPORTS_DIR = Path("reports")
METRICS_DIR = REPORTS_DIR / "metrics"  # <out>.json, DVC metrics: scalars only (top1, top3, loss, epoch per block)
DETAILS_DIR = REPORTS_DIR / "details"  # <out>.json: run, seed, data sizes, per-class accuracy, confusion matrices
HISTORY_DIR = REPORTS_DIR / "history"  # <out>.csv, one row per epoch, a DVC plot
TIMING_DIR = REPORTS_DIR / "timing"  # <out>.json: wall times, images/s, device; the only outputs that vary run to run
PREDICTIONS_DIR = REPORTS_DIR / "predictions"  # <out>.csv (actual, predicted): confusion plot
FIGURES_DIR = REPORTS_DIR / "figures"  # figures spanning runs (the report stage draws them)
RUN_FIGURES_DIR = FIGURES_DIR / "runs"  # one run's figures (RUN_FIGURES below)

# Every figure's file name, once: the report stage's (in FIGURES_DIR) and one run's (in
# RUN_FIGURES_DIR; {out} is the run's output id). dvc.yaml's outs name the same files:
# tests/test_figures.py holds the two together.
COMPARISON_FIGURE = "comparison.png"  # every run outside the report-004 grid
REPORT_FIGURE = "report_{report}.png"  # reported vs reproduced top-1, one per report
GRID_FIGURE = "grid_resnet18.png"  # report 004's grid as heat maps
OPEN_CHOICES_FIGURE = "open_choices.png"  # each published number's open-choice settings
STUDIES_FIGURE = "studies.png"  # what JPEG and bf16 cost each recipe
CURVES_FIGURE = "curves_{out}.png"  # plot@: loss and accuracy per epoch
CONFUSION_FIGURE = "confusion_{out}.png"  # plot@: the best epoch's confusion matrix
PCA_FIGURE = "pca_{out}_2d3d.png"  # pca@: the test features in 2 and 3 components

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
