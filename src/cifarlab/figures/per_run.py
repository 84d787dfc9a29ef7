"""The figures of one run: learning curves, confusion matrix, and the PCA of its features."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from cifarlab.figures.common import HEATMAP_GID, NA, add_title, dark

PCA_SEED = 0  # pca_lowrank draws a random sketch; a fixed seed makes the figure reproducible


def _pad_limits(ax, values: np.ndarray, floor: float, ceil: float, min_pad: float) -> None:
    """y limits around `values` (NaN and inf ignored: a diverged epoch), padded by 10% of their
    span or `min_pad`, within [floor, ceil]: one epoch's two numbers get an axis, not a hair-thin
    band around them."""
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        pad = max(min_pad, 0.1 * (hi - lo))
        ax.set_ylim(max(floor, lo - pad), min(ceil, hi + pad))


def curves_figure(name: str, hist: pd.DataFrame, smoke: str | None = None) -> plt.Figure:
    """Loss and top-1 per epoch, train (filled dots, solid) vs test (open squares, dashed): where
    the two coincide both stay visible. The epoch axis runs from 0 to at least 2 (a 1-epoch run
    is a point mid-axis, not a dot on 0.96-1.04); runs of a few epochs get large markers. The
    best test epoch is marked (ringed) and given in the accuracy panel's title. smoke: the
    smoke-run banner (common.smoke_line)."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4.1 + (0.4 if smoke else 0)), layout="constrained")
    few = len(hist) <= 3
    epochs = hist["epoch"].to_numpy(dtype=float)
    for split, style, marker, face in (("train", "-", "o", None), ("test", "--", "s", "none")):
        kw = {"marker": marker, "ms": (8 if split == "test" else 6) if few else 3, "label": split}
        if face:
            kw.update(markerfacecolor=face, markeredgewidth=1.2)
        ax_l.plot(epochs, hist[f"{split}_loss"], style, **kw)
        ax_a.plot(epochs, 100 * hist[f"{split}_acc"], style, **kw)
    acc_title = "accuracy"
    if hist["test_acc"].notna().any():  # a run that diverged in its first epoch has no test number
        best = hist["test_acc"].idxmax()
        acc_title += f" (best test: {100 * hist['test_acc'][best]:.2f}% @ epoch {hist['epoch'][best]})"
        ax_a.plot(
            [hist["epoch"][best]],
            [100 * hist["test_acc"][best]],
            "o",
            ms=14,
            markerfacecolor="none",
            markeredgecolor="tab:red",
            markeredgewidth=1.2,
            label="best test epoch",
        )
    last = max(2.0, float(np.nanmax(epochs))) if len(epochs) else 2.0
    losses = hist[["train_loss", "test_loss"]].to_numpy(dtype=float).ravel()
    finite = losses[np.isfinite(losses)]
    _pad_limits(ax_l, losses, 0.0, np.inf, 0.05 * float(np.abs(finite).max()) if finite.size else 0.1)
    _pad_limits(ax_a, 100 * hist[["train_acc", "test_acc"]].to_numpy(dtype=float).ravel(), 0.0, 100.0, 3.0)
    ax_l.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    ax_a.set(title=acc_title, xlabel="epoch", ylabel="top-1 (%)")
    for ax in (ax_l, ax_a):
        ax.set_xlim(0, last * 1.03)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in (ax_l, ax_a):  # where no point is: a diverging run's accuracy falls to the lower right
        ax.legend(fontsize=8, loc="best")
    add_title(fig, name, smoke)  # the run's name once, over both panels
    return fig


def confusion_figure(
    confusion: list[list[int]] | np.ndarray, classes: Sequence[str], title: str, smoke: str | None = None
) -> plt.Figure:
    """Heat map of a (C, C) confusion matrix: rows = true class, columns = predicted class.

    Each cell is annotated with its count; each y tick label carries the class's recall
    (diagonal / row sum), which is the per-class accuracy the reports quote. smoke: the
    smoke-run banner (common.smoke_line).
    """
    cm = np.asarray(confusion, dtype=np.int64)
    c = len(classes)
    if cm.shape != (c, c):
        raise ValueError(f"confusion must be ({c}, {c}) for {c} classes, got {cm.shape}")
    rows = cm.sum(axis=1)  # (C,) true examples per class
    total = int(cm.sum())
    acc = f"{100 * np.trace(cm) / total:.2f}%" if total else NA

    fig, ax = plt.subplots(figsize=(0.75 * c + 3, 0.65 * c + 2 + (0.4 if smoke else 0)), layout="constrained")
    ax.set_gid(HEATMAP_GID)
    cmap = plt.get_cmap("Blues")
    norm = Normalize(vmin=0, vmax=max(int(cm.max()), 1))
    im = ax.imshow(cm, cmap=cmap, norm=norm)
    for i in range(c):
        for j in range(c):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark(cm[i, j], norm, cmap) else "black",
            )
    ylabels = [
        f"{name} ({100 * cm[i, i] / rows[i]:.1f}%)" if rows[i] else f"{name} ({NA})" for i, name in enumerate(classes)
    ]
    ax.set_xticks(range(c), list(classes), rotation=45, ha="right")
    ax.set_yticks(range(c), ylabels)
    ax.set(xlabel="predicted class", ylabel="true class (per-class accuracy)", title=f"{title} (top-1 {acc})")
    fig.colorbar(im, ax=ax, label="test images")
    add_title(fig, smoke=smoke)
    return fig


def pca_project(features: torch.Tensor | np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, D) features on their first k principal components.

    Returns coords (N, k) and explained_ratio (k,): each PC's share of the total variance
    of the centered data (singular value squared / sum of squared centered entries).
    Deterministic: torch.pca_lowrank's random sketch is drawn under a fixed seed inside a
    forked RNG (the caller's global RNG state is untouched), and each PC's sign is fixed so
    its largest-magnitude coordinate is positive.
    """
    # float64 on the CPU: 10k x 512 features fit easily, and the variance shares stay exact
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}")
    n, d = x.shape
    if not 1 <= k <= min(n, d):
        raise ValueError(f"k={k} must be in [1, min(N, D)={min(n, d)}]")
    # pca_lowrank's docs ask for "a slightly overestimated rank": sketch a few more
    # directions than we keep, so the k-th PC is as accurate as the first.
    q = min(k + 4, n, d)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PCA_SEED)
        _, s, v = torch.pca_lowrank(x, q=q, center=True, niter=4)
    centered = x - x.mean(dim=0, keepdim=True)  # (N, D)
    coords = centered @ v[:, :k]  # (N, k)
    # sign of a PC is arbitrary; pin it so reruns/other seeds give the same picture
    flip = torch.sign(coords.gather(0, coords.abs().argmax(dim=0, keepdim=True)))  # (1, k)
    coords = coords * torch.where(flip == 0, torch.ones_like(flip), flip)
    total = float((centered**2).sum())
    ratio = (s[:k] ** 2) / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    return coords.numpy(), ratio.numpy()


def pca_figure(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    classes: Sequence[str],
    title: str,
    smoke: str | None = None,
) -> plt.Figure:
    """Two panels: PC1 vs PC2 and PC1-PC3 in 3-D, one colour per class (legend names them).

    labels (N,) are indices into `classes`. Axis labels carry each PC's explained-variance
    share; the ratios are also attached as `fig.explained_ratio` (3,). smoke: the smoke-run
    banner (common.smoke_line).
    """
    coords, ratio = pca_project(features, k=3)  # (N, 3), (3,)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64).ravel()
    if y.shape[0] != coords.shape[0]:
        raise ValueError(f"{y.shape[0]} labels for {coords.shape[0]} feature rows")
    axis = [f"PC{i + 1} ({100 * r:.1f}% var)" for i, r in enumerate(ratio)]
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")

    fig = plt.figure(figsize=(13, 5.5))
    ax2 = fig.add_subplot(1, 2, 1)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    small = 8 if len(y) > 2000 else 14  # marker area: keep 10k test points readable
    for cls in np.unique(y):
        m = y == cls
        name = classes[cls]
        ax2.scatter(coords[m, 0], coords[m, 1], s=small, alpha=0.6, color=cmap(cls), label=name)
        ax3.scatter(coords[m, 0], coords[m, 1], coords[m, 2], s=small, alpha=0.6, color=cmap(cls), label=name)
    ax2.set(xlabel=axis[0], ylabel=axis[1], title="PC1 vs PC2")
    ax2.grid(alpha=0.3)
    # a fixed corner: loc="best" scans every point and is slow on the 10k test set
    ax2.legend(fontsize=7, markerscale=2, loc="upper right")
    ax3.set(xlabel=axis[0], ylabel=axis[1], zlabel=axis[2], title="PC1-PC3")
    if smoke:
        fig.set_size_inches(13, 5.9)
    add_title(fig, f"{title} (first 3 PCs explain {100 * ratio.sum():.1f}% of the variance)", smoke)
    fig.tight_layout()
    fig.explained_ratio = ratio
    return fig
