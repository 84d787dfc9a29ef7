"""Stage `preprocess`: the raw archive -> train/test .npz splits and train-set channel statistics.

Reads `RAW_ARCHIVE`, takes the class-stratified subsets `data.train_subset` / `data.test_subset`
(null = all) drawn with `seed`, and writes `TRAIN_FILE`, `TEST_FILE` (x uint8 (N, 32, 32, 3),
y int64 (N,)) and `STATS_FILE` (per-channel mean/std of the train split in [0, 1] units, class
names, counts, and the archive's md5s under `source`: see cifar_io.archive_identity). Every
output is written atomically.

    python -m cifarlab.preprocess
"""

from __future__ import annotations

import argparse

from cifarlab.core.errors import DataError
from cifarlab.core.io import write_json
from cifarlab.core.params import load_params
from cifarlab.core.paths import RAW_ARCHIVE, STATS_FILE, TEST_FILE, TRAIN_FILE, VAL_FILE
from cifarlab.core.stage_main import run_main
from cifarlab.data.cifar_io import archive_identity, read_archive
from cifarlab.data.prepared import prepare, save_split


def main(argv: list[str] | None = None) -> None:
    """Stage entry point: RAW_ARCHIVE -> TRAIN_FILE, TEST_FILE, STATS_FILE."""
    argparse.ArgumentParser(prog="python -m cifarlab.preprocess", description=__doc__.splitlines()[0]).parse_args(argv)
    p = load_params(check_models=False)  # no model code: it prepares data only
    try:
        arrays = read_archive(RAW_ARCHIVE)
    except DataError as e:  # say what to do, not only what is wrong
        raise DataError(
            f"{e}; this is not an intact CIFAR-10 python archive: point data.url at a good copy "
            "(and data.md5 at its md5)"
        ) from None
    try:
        train, test, stats, val = prepare(arrays, p.data.train_subset, p.data.test_subset, p.seed, p.data.val_split)
    except DataError as e:  # a subset the archive cannot give
        raise DataError(f"{e}: set data.train_subset / data.test_subset within it (null = all images)") from None
    save_split(TRAIN_FILE, *train)
    save_split(TEST_FILE, *test)
    save_split(VAL_FILE, *val)
    # which data these are, named by content (the same on every machine) and by file (data.md5)
    stats["source"] = archive_identity(RAW_ARCHIVE)
    write_json(STATS_FILE, stats)
    mean = ", ".join(f"{v:.4f}" for v in stats["mean"])
    std = ", ".join(f"{v:.4f}" for v in stats["std"])
    print(
        f"preprocess: {stats['n_train']} train, {stats['n_val']} val, {stats['n_test']} test; "
        f"mean [{mean}], std [{std}]"
    )


if __name__ == "__main__":
    run_main(main)
