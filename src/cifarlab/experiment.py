"""Stage `experiment`: reports/metrics/experiment.json, the metrics of the run named by params `model`.

    dvc exp run -S model=custom_resnet          # compare experiments on one metrics file

A copy, not a training of its own: the run's own stages train and evaluate it (so no run is
trained twice), and this file gives `dvc exp show` / `dvc metrics diff` one fixed place to
compare experiments on, whichever run each of them looked at.
"""

from __future__ import annotations

import argparse

from cifarlab.core import paths
from cifarlab.core.errors import DataError
from cifarlab.core.io import atomic_write
from cifarlab.core.params import load_params
from cifarlab.core.stage_main import run_main

EXPERIMENT_METRICS = paths.METRICS_DIR / "experiment.json"


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m cifarlab.experiment", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args(argv)
    run = load_params(check_models=False).model  # copies a file: no model code
    source = paths.METRICS_DIR / f"{run}.json"
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing {source}: run the run's stages first (dvc repro evaluate@{run})") from None
    with atomic_write(EXPERIMENT_METRICS) as f:
        f.write(data)
    print(f"experiment: {source} -> {EXPERIMENT_METRICS}")


if __name__ == "__main__":
    run_main(main)
