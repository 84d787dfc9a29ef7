"""The `cifarlab` command: the pipeline's stages, the run table, and what a `dvc repro` would cost.

    cifarlab runs                        every run of params.yaml with its model and overrides
    cifarlab estimate                    per-stage time of what `dvc repro` would run on this machine
    cifarlab train --run lenet5          one stage by hand (what dvc.yaml runs as python -m cifarlab.train)

The stage subcommands take the stage's own arguments (`cifarlab train --help`); dvc.yaml runs
the same code as `python -m cifarlab.<stage>`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from cifarlab.core.shell import run_main

STAGES = {
    "fetch": "download or copy the archive (data.url), md5-checked",
    "preprocess": "archive -> prepared uint8 splits and statistics",
    "train": "train one run: --run NAME [--seed K]",
    "evaluate": "test metrics of one run's final and best epochs",
    "plot": "one run's learning curves and confusion matrix",
    "pca": "PCA figure of one run's test features (AlexNet runs)",
    "experiment": "copy the `model` run's metrics to reports/metrics/experiment.json",
    "report": "reports/README.md: published vs reproduced",
}


def runs_table(p) -> str:
    """One line per run: name, model, epochs, the keys it changes from the model's recipe."""
    w = max(len(n) for n in p.runs)
    lines = [f"{'run':<{w}}  {'model':<16}  {'epochs':>6}  overrides", f"{'-' * w}  {'-' * 16}  {'-' * 6}  ---------"]
    for name, r in p.runs.items():
        over = ", ".join(f"{k}={v}" for k, v in r.overrides.items()) or "-"
        lines.append(f"{name:<{w}}  {r.model:<16}  {r.params.epochs(p.train.max_epochs):>6}  {over}")
    extra = f"; each again with seeds {list(p.seeds)}" if p.seeds else ""
    lines.append(f"{len(p.runs)} runs, seed {p.seed}{extra}")
    return "\n".join(lines)


def cmd_runs(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="cifarlab runs", description="List the runs of params.yaml `runs`.").parse_args(argv)
    from cifarlab.core.params import load_params

    print(runs_table(load_params()))


def cmd_estimate(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="cifarlab estimate", description=(
        "The time of what `dvc repro` would run now on this machine, per stage: `dvc status` says "
        "which stages, a few timed training steps of each model say how long (the fastest of 3 after a "
        "warm-up; cached in ~/.cache/cifarlab for the notice at the start of `dvc repro`)."))
    ap.add_argument("--all", action="store_true", help="every stage, as on a fresh clone, whatever dvc status says")
    ap.add_argument("--quiet", action="store_true", help="only time every run's model and update the cache "
                    "(what the notice at the start of `dvc repro` runs when the cache lacks one)")
    args = ap.parse_args(argv)
    from cifarlab.core.params import load_params
    from cifarlab.engine import estimate, timing

    p = load_params()
    if args.all or args.quiet:
        stages = set(estimate.all_stages(p))
    else:
        stages = estimate.downstream(p, estimate.changed_stages(p))
    times = timing.step_times(p, stages, remeasure=not args.quiet)
    if args.quiet:
        return
    if not stages:
        print("dvc repro has nothing to run: every stage is up to date")
        return
    device = "GPU" if estimate.has_gpu() else "this CPU"
    print(estimate.table(estimate.plan(p, times, stages), device))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="cifarlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("runs", help="list the runs of params.yaml with their recipes", add_help=False)
    sub.add_parser("estimate", help="per-stage time of what `dvc repro` would run here", add_help=False)
    for name, text in STAGES.items():
        sub.add_parser(name, help=f"stage: {text}", add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        ap.parse_args(argv or ["--help"])
    command, rest = argv[0], argv[1:]
    if command == "runs":
        cmd_runs(rest)
    elif command == "estimate":
        cmd_estimate(rest)
    elif command in STAGES:
        importlib.import_module(f"cifarlab.{command}").main(rest)
    else:
        ap.parse_args(argv)  # argparse's own error for an unknown command


def entry_point() -> None:
    """The `cifarlab` console script."""
    run_main(main)


if __name__ == "__main__":
    entry_point()
