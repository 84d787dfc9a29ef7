"""Stage `pca@<run>`: PCA of a run's test-set features in 2-D and 3-D, coloured by class.

    python -m cifarlab.pca --run alexnet_transfer-skip-high

For the runs listed in params.yaml `pca` (models with a feature embedding: report 003's AlexNet).
Reads the run's best checkpoint (the frozen features are in it), embeds the test images with
`model.embed` -> (N, 9216), and writes reports/figures/runs/pca_<out>_2d3d.png
(figures.pca_figure: torch.pca_lowrank with a fixed seed, so the same bytes every time), with
the smoke-run banner when the run's details (reports/details/<out>.json) say it trained on a
subset, for capped epochs or on random features.
"""

from __future__ import annotations

import torch

from cifarlab.core import paths
from cifarlab.core.errors import DataError, ParamsError
from cifarlab.core.io import read_json_object
from cifarlab.core.runs import stage_args
from cifarlab.core.stage_main import run_main
from cifarlab.data.prepared import load_prepared
from cifarlab.engine.augment import pipeline_for
from cifarlab.engine.checkpoints import load_checkpoint, model_from_checkpoint
from cifarlab.engine.device import Runtime, setup_device
from cifarlab.figures.common import save_png, smoke_line
from cifarlab.figures.per_run import pca_figure


def main(argv: list[str] | None = None) -> None:
    p, spec = stage_args("python -m cifarlab.pca", __doc__, argv)
    device = setup_device(p.train)
    ckpt = load_checkpoint(paths.CHECKPOINT_DIR / spec.out / "best.pt")
    model = model_from_checkpoint(ckpt)
    if not hasattr(model, "embed"):
        raise ParamsError(
            f"run '{spec.name}' trains {spec.model}, which has no feature embedding to project (alexnet_transfer has)"
        )
    details_file = paths.DETAILS_DIR / f"{spec.out}.json"
    if not details_file.is_file():
        raise DataError(f"missing {details_file}: run the train and evaluate stages first (dvc repro)")
    smoke = smoke_line([read_json_object(details_file)])  # a subset, capped epochs or random features
    _, _, test_x, test_y, stats = load_prepared(device)
    rt = Runtime(device, p.train)
    model = rt.prepare_model(model)
    pipe = pipeline_for(spec.recipe, stats, device)
    # (N, D) float32 features on the CPU
    feats = torch.cat(rt.eval_batches(model, test_x, pipe, lambda m, x: m.embed(x).float().cpu()))
    fig = pca_figure(
        feats,
        test_y.cpu(),
        stats["classes"],
        f"{spec.out}: PCA of the {feats.shape[1]}-d test features (best epoch {ckpt['epoch']})",
        smoke=smoke,
    )
    path = paths.RUN_FIGURES_DIR / paths.PCA_FIGURE.format(out=spec.out)
    save_png(fig, path)
    print(f"pca {spec.out}: {tuple(feats.shape)} features -> {path}")


if __name__ == "__main__":
    run_main(main)
