"""PCA of report 003's AlexNet features of the test set, in 2-D and 3-D, coloured by class.

    python -m cifarlab.embed alexnet_transfer --run alexnet_transfer-skip-high [--set ...]

Reads the run's best checkpoint (the frozen features are in it), embeds the test images with
`model.embed` -> (N, 9216), and writes reports/figures/runs/pca_<run>_2d3d.png (figures.pca_figure:
torch.pca_lowrank, deterministic). Part of each `alexnet@<variant>` stage in dvc.yaml.
"""
from __future__ import annotations

import torch

from cifarlab import paths
from cifarlab.cli import run_main
from cifarlab.engine import Runtime, setup_device
from cifarlab.errors import ParamsError
from cifarlab.evaluate import load_checkpoint, model_from_checkpoint
from cifarlab.plot import save_png
from cifarlab.train import load_prepared, make_pipeline, parse_stage_args


@torch.no_grad()
def embed_features(model, x_u8: torch.Tensor, pipe, rt: Runtime) -> torch.Tensor:
    """(N, 9216) float32 features of uint8 images (N, 3, 32, 32), on the CPU."""
    model.eval()
    out = []
    for xb in torch.split(x_u8, rt.eval_batch_size):
        with rt.autocast():
            out.append(model.embed(rt.prepare_input(pipe(xb, None, train=False))).float().cpu())
    return torch.cat(out)


def main(argv: list[str] | None = None) -> None:
    p, spec = parse_stage_args("python -m cifarlab.embed", __doc__, argv)
    device = setup_device(p.train)
    ckpt = load_checkpoint(paths.CHECKPOINT_DIR / spec.out / "best.pt")
    model = model_from_checkpoint(ckpt)
    if not hasattr(model, "embed"):
        raise ParamsError(f"model '{spec.model}' has no feature embedding to project (alexnet_transfer has)")
    _, _, test_x, test_y, stats = load_prepared(device)
    rt = Runtime(device, p.train)
    model = rt.prepare_model(model)
    feats = embed_features(model, test_x, make_pipeline(p[spec.model], stats, device), rt)
    from cifarlab.figures import pca_figure

    fig = pca_figure(feats, test_y.cpu(), stats["classes"],
                     f"{spec.out}: PCA of the {feats.shape[1]}-d test features (best epoch {ckpt['epoch']})")
    path = paths.RUN_FIGURES_DIR / f"pca_{spec.out}_2d3d.png"
    save_png(fig, path)
    print(f"embed {spec.out}: {tuple(feats.shape)} features -> {path}")


if __name__ == "__main__":
    run_main(main)
