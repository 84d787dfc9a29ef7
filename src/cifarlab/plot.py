"""Stage `plot`: one comparison figure of all models, and the per-run figure functions.

reports/figures/comparison.png      test top-1 of every model in `models` (final, best,
                                    reported) and all their test-accuracy curves on one axis

Each run's own figures (reports/figures/curves_<run>.png: loss and accuracy per epoch, train
vs test; confusion_<run>.png) are drawn by its evaluate step with `run_figures`, so every
figure file is the declared output of exactly one stage.
"""
from __future__ import annotations

import argparse
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
from cifarlab.params import load_params  # noqa: E402


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
    series = [
        ("final epoch", [metrics[n]["final"]["top1"] for n in names]),
        ("best epoch (on test)", [metrics[n]["best"]["top1"] for n in names]),
        ("reported", [metrics[n]["reported_top1"] or 0 for n in names]),
    ]
    for i, (label, vals) in enumerate(series):
        bars = ax_b.bar([k + (i - 1) * w for k in x], [100 * v for v in vals], w, label=label)
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

    curves = paths.FIGURES_DIR / f"curves_{run}.png"
    confusion = paths.FIGURES_DIR / f"confusion_{run}.png"
    save_png(curves_figure(run, pd.read_csv(paths.HISTORY_DIR / f"{run}.csv")), curves)
    best = metrics["best"]
    save_png(confusion_figure(best["confusion"], classes, f"{run}: best epoch {best['epoch']}"), confusion)
    return [curves, confusion]


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m cifarlab.plot", description=__doc__).parse_args(argv)
    p = load_params()
    metrics, hists = {}, {}
    for name in p.models:
        try:
            hists[name] = pd.read_csv(paths.HISTORY_DIR / f"{name}.csv")
            metrics[name] = json.loads((paths.METRICS_DIR / f"{name}.json").read_text())
        except FileNotFoundError as e:
            raise DataError(f"missing {e.filename}: run the train and evaluate stages first (dvc repro)") from None
    save_png(comparison_figure(metrics, hists), paths.FIGURES_DIR / "comparison.png")
    print(f"plot: wrote {paths.FIGURES_DIR / 'comparison.png'}")


if __name__ == "__main__":
    run_main(main)
