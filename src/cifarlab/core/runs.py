"""A run as the stages see it: a name from the run table, a seed, and the files it writes.

Every per-run stage (train, evaluate, plot, pca) takes the same arguments,

    python -m cifarlab.<stage> --run NAME [--seed K]

and resolves them here against params.yaml into a `Run` (core.params): NAME is a key of `runs`, K
defaults to `seed`. The output id is NAME, or NAME-s<K> for an extra seed; it names
data/checkpoints/<out>/ and reports/*/<out>.* (see `cifarlab.core.paths`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping

from cifarlab.core.errors import ParamsError
from cifarlab.core.params import Params, Run, validate
from cifarlab.core.params_file import read_params_file


def output_id(run: str, seed: int, main_seed: int) -> str:
    return run if seed == main_seed else f"{run}-s{seed}"


def resolve(p: Params, run: str, seed: int | None = None) -> Run:
    """Run `run` (a key of `runs`) at `seed` (default: params `seed`, the run as `p[run]` has it):
    the same run, its seed and output id set. Unknown run -> ParamsError naming the known ones."""
    entry = p[run]
    seed = p.seed if seed is None else seed
    if seed < 0:
        raise ParamsError(f"bad --seed {seed}: a non-negative integer")
    return dataclasses.replace(entry, seed=seed, out=output_id(run, seed, p.seed))


def stage_args(prog: str, doc: str, argv: list[str] | None) -> tuple[Params, Run]:
    """The command line of every per-run stage: `--run NAME [--seed K]`, params validated."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, metavar="NAME", help="a run of params.yaml `runs` (list: cifarlab runs)")
    ap.add_argument(
        "--seed",
        type=int,
        metavar="K",
        help="train with this seed (default: params.yaml `seed`); outputs get a -s<K> suffix when it differs",
    )
    args = ap.parse_args(argv)
    raw = read_params_file()
    # The run's own model is checked against its builder; other models' options are not read, so
    # the stage imports (and depends on) no other model's file. `cifarlab set` checks them all.
    runs = raw.get("runs")
    entry = runs.get(args.run) if isinstance(runs, Mapping) else None
    own = {entry["model"]} if isinstance(entry, Mapping) and isinstance(entry.get("model"), str) else set()
    p = validate(raw, check_models=own)
    return p, resolve(p, args.run, args.seed)
