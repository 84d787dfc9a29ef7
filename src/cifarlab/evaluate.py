"""Stage `evaluate@<run>`: test metrics of the final and the best epoch's weights.

    python -m cifarlab.evaluate --run lenet5 [--seed 1]

Writes
  reports/metrics/<out>.json      DVC metrics: scalars only (top-1, top-3, loss, epoch for each
                                  of final / best / val), so `dvc metrics show|diff` and
                                  `dvc exp show` stay readable
  reports/details/<out>.json      what the run was (run, model, seed, overrides, data sizes, epochs
                                  against the recipe's, random features) and, per block, per-class
                                  accuracy and the confusion matrix (rows: true class)
  reports/predictions/<out>.csv   actual, predicted for the best epoch (DVC's confusion plot)

"best" is the epoch with the highest test top-1, which is how all five reports picked their
numbers (there is no validation split), so it is optimistic; "final" is the last epoch trained.
"""

from __future__ import annotations

import io

import torch

from cifarlab.core import paths
from cifarlab.core.io import atomic_write, write_json
from cifarlab.core.runs import stage_args
from cifarlab.core.stage_main import run_main
from cifarlab.data.prepared import load_prepared
from cifarlab.engine.augment import pipeline_for
from cifarlab.engine.checkpoints import load_checkpoint, model_from_checkpoint
from cifarlab.engine.device import Runtime, setup_device
from cifarlab.engine.loop import predict
from cifarlab.engine.metrics import classification_metrics
from cifarlab.models import model_info

SELECTION = {
    "final": "the last epoch trained",
    "best": "the epoch with the highest test top-1 (best-on-test, as the reports chose)",
    "val": "the epoch with the highest validation top-1 (data.val_split held out of train)",
}
SCALARS = ("epoch", "top1", "top3", "loss")  # what the metrics file keeps of each block


def predictions_csv(labels: torch.Tensor, pred: torch.Tensor, classes) -> str:
    buf = io.StringIO()
    buf.write("actual,predicted\n")
    for a, b in zip(labels.tolist(), pred.tolist(), strict=True):
        buf.write(f"{classes[a]},{classes[b]}\n")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    p, spec = stage_args("python -m cifarlab.evaluate", __doc__, argv)
    device = setup_device(p.train)
    _, _, test_x, test_y, stats = load_prepared(device)
    classes = tuple(stats["classes"])
    rt = Runtime(device, p.train)
    pipe = pipeline_for(spec.recipe, stats, device)
    blocks: dict[str, dict] = {}
    pred_best = None
    ckpt_dir = paths.CHECKPOINT_DIR / spec.out
    val_ckpt = ckpt_dir / "val_best.pt"
    diverged = None
    for which in ("final", "best", *(("val",) if val_ckpt.exists() else ())):
        ckpt = load_checkpoint(val_ckpt if which == "val" else ckpt_dir / f"{which}.pt")
        diverged = diverged or ckpt.get("diverged")
        if diverged and ckpt["epoch"] >= diverged["epoch"]:
            # weights of a diverged epoch: no numbers to report (null, never NaN)
            blocks[which] = {
                "epoch": ckpt["epoch"],
                "selected_by": SELECTION[which],
                "top1": None,
                "top3": None,
                "loss": None,
                "diverged": True,
            }
            continue
        if which == "best" and ckpt["epoch"] == blocks["final"]["epoch"]:
            # The best epoch is the last one: same weights, so the same numbers; skip the pass.
            blocks["best"] = {**blocks["final"], "selected_by": SELECTION["best"]}
            continue
        model = rt.prepare_model(model_from_checkpoint(ckpt))
        logits = predict(model, test_x, pipe, rt)
        m = classification_metrics(logits, test_y, classes)
        blocks[which] = {"epoch": ckpt["epoch"], "selected_by": SELECTION[which], **m}
        if which != "val":  # the best epoch's predictions; the final's stand in when they are the same
            pred_best = logits.argmax(1).cpu()
    # The best epoch read with test-time flip (logits of image and mirror averaged): one of the
    # readings an open choice can name (params.yaml open_choices), kept out of the metrics file.
    best_flip = None
    if not blocks["best"].get("diverged"):
        model = rt.prepare_model(model_from_checkpoint(load_checkpoint(ckpt_dir / "best.pt")))
        m = classification_metrics(predict(model, test_x, pipe, rt, flip=True), test_y, classes)
        best_flip = {"epoch": blocks["best"]["epoch"], **{k: m[k] for k in SCALARS if k != "epoch"}}
    epochs = spec.epochs(p.train.max_epochs)
    details = {
        "run": spec.name,
        "model": spec.model,
        "report": model_info(spec.model).report,
        "seed": spec.seed,
        "overrides": dict(spec.overrides),
        "classes": list(classes),
        "n_train": stats["n_train"],
        "n_test": stats["n_test"],
        "n_val": stats.get("n_val", 0),
        # the archive the data came from, by md5 (content_md5: the same on every machine)
        "data": stats.get("source"),
        # what makes a run a smoke run rather than the recipe (the report says so per run)
        "recipe_epochs": spec.recipe.epochs,
        "epochs_cap": p.train.max_epochs if epochs < spec.recipe.epochs else None,
        "random_features": spec.arch.get("pretrained") is False,
        "diverged": diverged,
        **blocks,
        "best_flip": best_flip,
    }
    metrics = {which: {k: b[k] for k in SCALARS} for which, b in blocks.items()}
    if diverged:
        metrics.update(diverged=True, diverged_epoch=diverged["epoch"])
    write_json(paths.METRICS_DIR / f"{spec.out}.json", metrics)
    write_json(paths.DETAILS_DIR / f"{spec.out}.json", details)
    with atomic_write(paths.PREDICTIONS_DIR / f"{spec.out}.csv", "w") as f:
        f.write(predictions_csv(test_y.cpu(), pred_best, classes) if pred_best is not None else "actual,predicted\n")
    if diverged:
        print(
            f"evaluate {spec.out}: diverged at epoch {diverged['epoch']} (lr {diverged['lr']:.3g}): "
            "no final numbers; metrics record diverged: true"
        )
        return
    f, b = blocks["final"], blocks["best"]
    print(
        f"evaluate {spec.out}: final epoch {f['epoch']} top1 {f['top1']:.4f} top3 {f['top3']:.4f} | "
        f"best epoch {b['epoch']} top1 {b['top1']:.4f} top3 {b['top3']:.4f}"
    )


if __name__ == "__main__":
    run_main(main)
