"""Classification metrics from logits: pure functions, no I/O."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """Top-1, top-3 (fractions), mean cross-entropy, per-class accuracy and the confusion matrix.

    logits: float (N, C); labels: int64 (N,). confusion[i][j] counts images of true class i
    predicted as class j (rows sum to the class's test count).
    """
    logits = logits.float().cpu()
    labels = labels.cpu()
    c = len(classes)
    pred = logits.argmax(1)
    top3 = logits.topk(min(3, c), dim=1).indices.eq(labels[:, None]).any(1)
    confusion = torch.bincount(labels * c + pred, minlength=c * c).view(c, c)
    per_class_n = confusion.sum(1)
    per_class = {
        name: (confusion[i, i].item() / per_class_n[i].item()) if per_class_n[i] > 0 else None
        for i, name in enumerate(classes)
    }
    return {
        "top1": pred.eq(labels).float().mean().item(),
        "top3": top3.float().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "per_class_top1": per_class,
        "confusion": confusion.tolist(),
        "n": int(labels.numel()),
    }
