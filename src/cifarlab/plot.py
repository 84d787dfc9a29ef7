"""Stage `plot@<model>`: the figures of one run, drawn from its history and metrics files.

reports/figures/runs/curves_<run>.png     loss and accuracy per epoch, train vs test
reports/figures/runs/confusion_<run>.png  the best epoch's confusion matrix, class names on the axes

Takes the same arguments as train and evaluate (model, --run, --set, --seed, --grid-cell), so
the grid, AlexNet and seed stages draw their runs' figures with the same command. Figures that
span runs (comparison.png, the per-report bars, the grid heat maps) are the report stage's: a
change to one run then re-runs that run's stages and the report, nothing else.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cifarlab import paths  # noqa: E402
from cifarlab.cli import run_main  # noqa: E402
from cifarlab.errors import DataError  # noqa: E402
from cifarlab.io import atomic_write  # noqa: E402

# One colour per kind of number in every bar chart (comparison.png, report_<NNN>.png), so
# "reported" reads the same everywhere: the published number in grey, the reproduction in colour.
SERIES_COLORS = {"reported": "0.6", "best": "tab:blue", "final": "tab:orange"}


def curves_figure(name: str, hist: pd.DataFrame) -> plt.Figure:
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    for split, style in (("train", "-"), ("test", "--")):
        ax_l.plot(hist["epoch"], hist[f"{split}_loss"], style, marker="o", ms=3, label=split)
        ax_a.plot(hist["epoch"], 100 * hist[f"{split}_acc"], style, marker="o", ms=3, label=split)
    best = hist["test_acc"].idxmax()
    ax_a.annotate(f"best {100 * hist['test_acc'][best]:.2f}% @ {hist['epoch'][best]}",
                  (hist["epoch"][best], 100 * hist["test_acc"][best]),
                  textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax_l.set(title=f"{name}: loss", xlabel="epoch", ylabel="cross-entropy")
    ax_a.set(title=f"{name}: accuracy", xlabel="epoch", ylabel="top-1 (%)")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def comparison_figure(metrics: dict[str, dict], hists: dict[str, pd.DataFrame]) -> plt.Figure:
    names = list(metrics)
    fig, (ax_b, ax_c) = plt.subplots(1, 2, figsize=(13, 4.5))
    x = range(len(names))
    w = 0.27
    series = [  # the order and colours of figures.report_bars
        ("reported", "reported", [metrics[n]["reported_top1"] or 0 for n in names]),
        ("best", "best epoch (on test)", [metrics[n]["best"]["top1"] for n in names]),
        ("final", "final epoch", [metrics[n]["final"]["top1"] for n in names]),
    ]
    for i, (key, label, vals) in enumerate(series):
        bars = ax_b.bar([k + (i - 1) * w for k in x], [100 * v for v in vals], w, label=label,
                        color=SERIES_COLORS[key])
        ax_b.bar_label(bars, fmt="%.1f", fontsize=6, rotation=90, padding=2)
    ax_b.set_xticks(list(x), names, rotation=30, ha="right")
    ax_b.set(ylabel="test top-1 (%)", ylim=(0, 105), title="reproduced vs reported")
    ax_b.legend(fontsize=8, loc="upper left")
    for n, h in hists.items():
        ax_c.plot(h["epoch"], 100 * h["test_acc"], marker="o", ms=2, label=n)
    ax_c.set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy per epoch")
    ax_c.grid(alpha=0.3)
    ax_c.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def save_png(fig: plt.Figure, path: Path) -> None:
    # Fixed metadata so the same data gives the same bytes (no creation date/software stamp).
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def run_figures(run: str, metrics: dict, classes) -> list[Path]:
    """The figures of one run: learning curves and the best epoch's confusion matrix."""
    from cifarlab.figures import confusion_figure  # pulls in torch: only where needed

    curves = paths.RUN_FIGURES_DIR / f"curves_{run}.png"
    confusion = paths.RUN_FIGURES_DIR / f"confusion_{run}.png"
    save_png(curves_figure(run, pd.read_csv(paths.HISTORY_DIR / f"{run}.csv")), curves)
    best = metrics["best"]
    save_png(confusion_figure(best["confusion"], classes, f"{run}: best epoch {best['epoch']}"), confusion)
    return [curves, confusion]


def read_run(run: str) -> tuple[dict, pd.DataFrame]:
    """A run's metrics and history, or a one-line error naming the missing file."""
    try:
        return (json.loads((paths.METRICS_DIR / f"{run}.json").read_text()),
                pd.read_csv(paths.HISTORY_DIR / f"{run}.csv"))
    except FileNotFoundError as e:
        raise DataError(f"missing {e.filename}: run the train and evaluate stages first (dvc repro)") from None


def main(argv: list[str] | None = None) -> None:
    from cifarlab.train import parse_stage_args  # validates params.yaml and the run's overrides

    _, spec = parse_stage_args("python -m cifarlab.plot", __doc__, argv)
    metrics, _ = read_run(spec.out)
    classes = json.loads(paths.STATS_FILE.read_text())["classes"] if paths.STATS_FILE.exists() else paths.CLASSES
    written = run_figures(spec.out, metrics, classes)
    print(f"plot {spec.out}: wrote {', '.join(str(w) for w in written)}")


if __name__ == "__main__":
    run_main(main)
