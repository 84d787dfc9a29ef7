"""Stage `evaluate@<model>`: test metrics of the final and the best epoch's weights.

Writes reports/metrics/<run>.json (a DVC metric, kept in git) and
reports/predictions/<run>.csv (actual, predicted for the best epoch; DVC's confusion plot).
The run's figures are the plot stage's (python -m cifarlab.plot, same arguments).

"best" is the epoch with the highest test top-1, which is how all five reports picked their
numbers (there is no validation split), so it is optimistic; "final" is the last epoch trained.
"""
from __future__ import annotations

import io
import warnings

import torch

from cifarlab import paths
from cifarlab.cli import run_main
from cifarlab.engine import Runtime, predict, setup_device
from cifarlab.errors import DataError
from cifarlab.io import atomic_write, write_json
from cifarlab.metrics import classification_metrics
from cifarlab.models import get_model, model_info
from cifarlab.train import load_prepared, make_pipeline, parse_stage_args

SELECTION = {
    "final": "the last epoch trained",
    "best": "the epoch with the highest test top-1 (best-on-test, as the reports chose)",
    "val": "the epoch with the highest validation top-1 (data.val_split held out of train)",
}


def load_checkpoint(path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint not found: {path} (run the train stage first: dvc repro)") from None
    except Exception as e:  # a truncated or foreign file: say which, in one line
        raise DataError(f"cannot load checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or not {"model", "arch", "epoch", "state_dict"} <= ckpt.keys():
        raise DataError(f"{path} is not a cifarlab checkpoint (needs model, arch, epoch, state_dict)")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    arch = dict(ckpt["arch"])
    if "pretrained" in model_info(ckpt["model"]).arch_params:
        arch["pretrained"] = False  # every weight comes from the checkpoint; no download needed
        arch["weights"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "random weights" warning does not apply here
        model = get_model(ckpt["model"], **arch)
    model.load_state_dict(ckpt["state_dict"])
    return model


def predictions_csv(labels: torch.Tensor, pred: torch.Tensor, classes) -> str:
    buf = io.StringIO()
    buf.write("actual,predicted\n")
    for a, b in zip(labels.tolist(), pred.tolist()):
        buf.write(f"{classes[a]},{classes[b]}\n")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    p, spec = parse_stage_args("python -m cifarlab.evaluate", __doc__, argv)
    name = spec.model
    mp = p[name]
    device = setup_device(p.train)
    _, _, test_x, test_y, stats = load_prepared(device)
    classes = tuple(stats["classes"])
    rt = Runtime(device, p.train)
    pipe = make_pipeline(mp, stats, device)
    info = model_info(name)
    result = {
        "model": name,
        "run": spec.run,
        "seed": spec.seed,
        "overrides": dict(spec.overrides),
        "report": info.report,
        "reported_top1": info.reported_top1,
        "n_train": stats["n_train"],
        "n_test": stats["n_test"],
    }
    pred_best = None
    val_ckpt = paths.CHECKPOINT_DIR / spec.out / "val_best.pt"
    for which in ("final", "best", *(("val",) if val_ckpt.exists() else ())):
        ckpt = load_checkpoint(val_ckpt if which == "val" else paths.CHECKPOINT_DIR / spec.out / f"{which}.pt")
        if which == "best" and ckpt["epoch"] == result["final"]["epoch"]:
            # The best epoch is the last one: same weights, so the same numbers; skip the pass.
            result["best"] = {**result["final"], "selected_by": SELECTION["best"]}
            continue
        model = rt.prepare_model(model_from_checkpoint(ckpt))
        logits = predict(model, test_x, pipe, rt)
        m = classification_metrics(logits, test_y, classes)
        result[which] = {"epoch": ckpt["epoch"], "selected_by": SELECTION[which], **m}
        if which != "val":  # the best epoch's predictions; the final's stand in when they are the same
            pred_best = logits.argmax(1).cpu()
    write_json(paths.METRICS_DIR / f"{spec.out}.json", result)
    with atomic_write(paths.PREDICTIONS_DIR / f"{spec.out}.csv", "w") as f:
        f.write(predictions_csv(test_y.cpu(), pred_best, classes))
    print(f"evaluate {spec.out}: final epoch {result['final']['epoch']} top1 {result['final']['top1']:.4f} "
          f"top3 {result['final']['top3']:.4f} | best epoch {result['best']['epoch']} "
          f"top1 {result['best']['top1']:.4f} top3 {result['best']['top3']:.4f}")


if __name__ == "__main__":
    run_main(main)
