"""The `cifarlab` command: the pipeline's stages, the run table, and what a `dvc repro` would cost.

    cifarlab runs                        every run of params.yaml with its model and overrides
    cifarlab estimate                    per-stage time of what `dvc repro` would run on this machine
    cifarlab set data.train_subset=5000  change params.yaml, validated (then: dvc repro)
    cifarlab train --run lenet5          one stage by hand (what dvc.yaml runs as python -m cifarlab.train)
    cifarlab compare                     your runs' top-1 against the published ones (reports/published)
    cifarlab pack -o runs.tar.gz         finished runs + provenance in one file, to publish elsewhere
    cifarlab fold runs.tar.gz            publish a pack's runs here (reports/published), checked
    cifarlab repro --workers 4           dvc repro, its stages spread over a Dask cluster (docs/scaleout.md)

The stage subcommands take the stage's own arguments (`cifarlab train --help`); dvc.yaml runs
the same code as `python -m cifarlab.<stage>`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from cifarlab.core.stage_main import run_main

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
    lines = [f"{'run':<{w}}  {'model':<16}  {'epochs':>10}  overrides", f"{'-' * w}  {'-' * 16}  {'-' * 10}  ---------"]
    for name, r in p.runs.items():
        over = ", ".join(f"{k}={v}" for k, v in r.overrides.items()) or "-"
        run, recipe = r.epochs(p.train.max_epochs), r.recipe.epochs
        epochs = str(run) if run == recipe else f"{run} of {recipe}"  # capped by train.max_epochs
        lines.append(f"{name:<{w}}  {r.model:<16}  {epochs:>10}  {over}")
    if p.train.max_epochs is not None:
        lines.append(
            f"train.max_epochs = {p.train.max_epochs}: every run stops there (`N of M`: N trained of the "
            "recipe's M); `cifarlab set train.max_epochs=null` trains the full recipes"
        )
    from cifarlab.reporting.stats import table_coverage

    extra = f"; each again with seeds {list(p.seeds)}" if p.seeds else ""
    # counted as the report's "Your runs" counts them ("K of N runs of params.yaml"): one N
    lines.append(f"{table_coverage(p.runs, [p.seed, *p.seeds])['of']} runs, seed {p.seed}{extra}")
    return "\n".join(lines)


def cmd_runs(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="cifarlab runs", description="List the runs of params.yaml `runs`.").parse_args(argv)
    from cifarlab.core.params import load_params

    print(runs_table(load_params()))


def cmd_estimate(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        prog="cifarlab estimate",
        description=(
            "The time of what `dvc repro [TARGETS]` would run now on this machine, per stage, as a range: `dvc status` "
            "says which stages; each network's training step and test pass, timed now on this checkout beside "
            "whatever else runs (the mean of at least 4 steps and 2 s after a warm-up for the lower end, the mean of "
            "the slower half of them for the upper end; a model with a run's own arguments, cnn-wide's channels, "
            "timed apart), and a stage process's start-up, timed now, say how long. Cached per machine and "
            "checkout code in ~/.cache/cifarlab, with the load they were timed beside, for the notice before a long "
            "`dvc repro` / `dvc exp run`. On a CPU each network is timed in both precisions, bf16 and fp32, and a line "
            "says when the other one trains faster here. A recipe that stops early costs a range from the epochs "
            "its report's run trained to the recipe's maximum. A line per network as it is timed."
        ),
    )
    ap.add_argument(
        "targets",
        nargs="*",
        help="stages as `dvc repro` takes them (plot@lenet5 plot@dnn): only what "
        "`dvc repro TARGETS` would run; none: the whole pipeline",
    )
    ap.add_argument("--glob", action="store_true", help="targets are shell-style patterns (as dvc repro --glob)")
    ap.add_argument("--all", action="store_true", help="every stage, as on a fresh clone, whatever dvc status says")
    ap.add_argument(
        "--quiet",
        action="store_true",
        help="only time the networks of the stages (--all: every "
        "stage) and the start-up, and update the cache; print nothing",
    )
    args = ap.parse_args(argv)
    from cifarlab.core.params import load_params
    from cifarlab.tooling import estimate, repro_stages, timing

    p = load_params()
    stages = repro_stages.to_run(".", args.targets or None, glob=args.glob, force=args.all)
    if not stages:
        if not args.quiet:
            print("dvc repro has nothing to run: every stage is up to date")
        return
    gpu = estimate.has_gpu()
    bench = timing.gpu_bench(p, stages) if gpu and not args.quiet else None
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    startup = None
    if bench is not None:  # this GPU was measured by benchmarks/bench_gpu.py: its compiled rates
        times, setup, note = bench
    else:
        load = estimate.loadavg()[0]
        startup = timing.startup_time(p, remeasure=True)
        times, setup = timing.step_times(p, stages, remeasure=True, log=say), {}
        note = (
            f"timed now on this checkout, beside what else runs (load average {load:.1f} on "
            f"{os.cpu_count()} cores; a stage starts in {startup.seconds:.1f} s): each time runs from the "
            "mean training step to the mean of the slower half of the steps"
        )
    hint = None
    sizes = estimate.data_sizes(p, stages)
    if not gpu:  # the other precision timed too, whatever the CPU's flags say: the hint is measured
        alt = estimate.other_numerics(p.train)
        alt_times = timing.step_times(
            p, stages, remeasure=True, train=p.train.model_copy(update=alt), log=say, quick=True
        )
        hint = estimate.faster_hint(
            estimate.stage_costs(p, times, stages, sizes=sizes, startup=startup),
            estimate.stage_costs(p, alt_times, stages, sizes=sizes, startup=startup),
            alt,
        )
    if args.quiet:
        return
    device = "GPU" if gpu else "this CPU"
    if note:
        print(note)
    print(estimate.table(estimate.stage_costs(p, times, stages, setup, sizes, startup=startup), device))
    if hint:
        print(hint)


def set_params(path: Path, assignments: list[str]) -> list[tuple[str, object]]:
    """Write KEY=VALUE assignments (dotted keys, YAML values) into params.yaml, keeping its
    comments and layout; the whole result is validated first and written atomically, so a bad
    value changes nothing. Returns the (key, value) pairs set."""
    from cifarlab.core.errors import ParamsError, one_line
    from cifarlab.core.io import atomic_write
    from cifarlab.core.params import validate
    from cifarlab.core.params_file import read_params_file
    from cifarlab.core.yaml_io import YAMLError, dump_round_trip, read_yaml, round_trip_yaml

    rt = round_trip_yaml()
    doc = read_params_file(path, rt)  # a file the stages would refuse: their one line, nothing written
    done = []
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.lstrip("+")  # DVC's -S '++key=value' form means the same here: set or add
        if not sep or not key:
            raise ParamsError(f"bad assignment {item!r}: expected KEY=VALUE, e.g. data.train_subset=5000")
        *parents, leaf = key.split(".")
        node = doc
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"unknown param '{'.'.join(parents[: i + 1])}' in {item!r}")
            node = node[part]
        if not isinstance(node, dict):
            raise ParamsError(f"'{'.'.join(parents)}' is not a section: cannot set {key!r}")
        try:
            value = read_yaml(text)
        except YAMLError as err:
            problem = one_line(getattr(err, "problem", None) or getattr(err, "context", None) or err, 120)
            raise ParamsError(
                f"bad value for '{key}': {text!r} is not valid YAML ({problem}): fix it, or quote "
                f"it to set it as text, e.g. '{key}=\"...\"'"
            ) from None
        if isinstance(value, (list, dict)):
            value = rt.load(text)  # in the style typed: `seeds=[1, 2]` stays a flow list on its line
        if key == "data.url" and isinstance(value, str) and "://" not in value:
            value = os.path.normpath(value)  # a local path as typed: $PWD/../x stores /.../x, not /.../main/../x
        node[leaf] = value
        done.append((key, value))
    new_text = dump_round_trip(rt, doc)
    validate(read_yaml(new_text))  # the whole file, as every stage will read it
    with atomic_write(path) as f:  # UTF-8 whatever the locale: the encoding it is read in
        f.write(new_text.encode("utf-8"))
    return done


def cmd_set(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        prog="cifarlab set",
        description=(
            "Change params.yaml: validated, comments kept, nothing written on a bad value. "
            "`cifarlab set ... && dvc repro` is `dvc exp run -S ...` without an experiment commit "
            "(and, on a fresh clone, without DVC's checkout warnings)."
        ),
    )
    ap.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="e.g. data.train_subset=5000 lenet5.lr=0.01")
    args = ap.parse_args(argv)
    from cifarlab.core.paths import PARAMS_FILE

    for key, value in set_params(PARAMS_FILE, args.assignments):
        print(f"params.yaml: {key} = {value}")


def cmd_compare(argv: list[str]) -> None:
    argparse.ArgumentParser(
        prog="cifarlab compare",
        description=(
            "Your runs (reports/metrics, after dvc repro) against the published ones (reports/published) and "
            "the reports' numbers: best-epoch test top-1 per run, mean ± std over seeds. A run of yours "
            "trained under other params than params.yaml's now (dvc.lock against params.yaml) is noted out of "
            "date, with the keys that changed."
        ),
    ).parse_args(argv)
    from cifarlab.core import paths
    from cifarlab.core.params_file import read_params_file
    from cifarlab.dvc_internals import read_lock
    from cifarlab.reporting import published as pub
    from cifarlab.reporting.markdown import md_table
    from cifarlab.reporting.records import group_runs, load_metrics
    from cifarlab.reporting.reference import load_reference

    reference = load_reference(paths.REPORTS_DIR / "reference.yaml")
    yours = group_runs(load_metrics(paths.METRICS_DIR, details_dir=paths.DETAILS_DIR))
    published = group_runs(load_metrics(pub.PUBLISHED_DIR / "metrics", details_dir=pub.PUBLISHED_DIR / "details"))
    if not yours and not published:
        print("nothing to compare: no run of yours in reports/metrics (dvc repro) and none published")
        return
    lock = read_lock()  # as DVC reads it, like params.yaml: YAML 1.1 reads the unquoted 5:3:2 as 18182
    rows = pub.compare_rows(reference, yours, published, lock=lock, params=read_params_file())
    print(md_table(pub.COMPARE_HEADER, rows))
    stale = sum("yours is out of date" in row[-1] for row in rows)
    if stale:
        print(
            f"{stale} of your runs trained under other params than params.yaml's now (note: out of date): "
            "`dvc status` lists every stage a `dvc repro` would run again"
        )
    if not yours:
        print("no run of yours yet: `dvc repro` (or `dvc repro plot@<run>` for one run), then this again")


def cmd_pack(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        prog="cifarlab pack",
        description=(
            "Pack finished runs of this workspace (metrics, details, timing, history, figures and provenance; "
            "never checkpoints) into one .tar.gz, to fold into another checkout with `cifarlab fold`."
        ),
    )
    ap.add_argument("-o", "--output", type=Path, default=Path("cifarlab-pack.tar.gz"), help="the pack to write")
    ap.add_argument(
        "--runs",
        nargs="+",
        metavar="OUT",
        help="run outputs to pack (<run> or <run>-s<seed>); default: every finished one",
    )
    args = ap.parse_args(argv)
    from cifarlab.tooling.packs import pack

    pack(Path("."), args.output, args.runs)


def cmd_fold(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        prog="cifarlab fold",
        description=(
            "Publish the runs of a pack (cifarlab pack) in this checkout: reports/published/, which the "
            "report and `cifarlab compare` read. Refuses a pack whose run recipes or code differ from "
            "this checkout's; then regenerate the report: python -m cifarlab.report"
        ),
    )
    ap.add_argument("pack", type=Path)
    ap.add_argument(
        "--accept-code-change",
        action="store_true",
        help="fold runs trained with other code anyway, recording in their provenance which files differ",
    )
    ap.add_argument(
        "--replace",
        action="store_true",
        help="drop a run's published seeds trained on other data "
        "or in another precision (such seeds are never averaged)",
    )
    from cifarlab.reporting.studies import STUDIES

    ap.add_argument(
        "--study",
        choices=list(STUDIES),
        help="keep the runs apart in reports/studies/<study>/<arm>/ "
        "for the report's section on what that change costs: jpeg (lossless vs JPEG pixels, "
        "../shared/tools/cifar10_jpeg_effect.py's archives), bf16 (fp32 vs bf16 on the full set); the "
        "arm comes from each run's provenance",
    )
    args = ap.parse_args(argv)
    from cifarlab.tooling.fold import fold

    fold(args.pack, Path("."), accept_code_change=args.accept_code_change, replace=args.replace, study=args.study)


def repro_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cifarlab repro",
        description=(
            "`dvc repro`, its independent stages run in parallel on a Dask cluster: each stage reproduced "
            "alone (dvc repro --single-item) in a clone of the committed code sharing the DVC cache, then "
            "restored here from DVC's run-cache, dvc.lock written as if dvc repro had run them. Without "
            "--scheduler or --slurm, a cluster on this machine: one worker per GPU, or per CPU core."
        ),
    )
    ap.add_argument("targets", nargs="*", help="stages, as for dvc repro (default: all of dvc.yaml)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://head:8786")
    where.add_argument("--slurm", action="store_true", help="submit --workers SLURM jobs (dask-jobqueue)")
    ap.add_argument(
        "--workers", type=int, metavar="N", help="local workers (default: one per GPU, else per core), or SLURM jobs"
    )
    ap.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="OPT",
        help="an extra #SBATCH line, e.g. --slurm-option=--partition=gpu (repeatable)",
    )
    ap.add_argument("--slurm-gpus", type=int, default=1, metavar="G", help="GPUs per SLURM job (0: CPU jobs)")
    ap.add_argument(
        "--remote",
        metavar="NAME",
        help="a DVC remote as the store between machines without a "
        "shared filesystem (each machine keeps its own cache; run-cache pushed there)",
    )
    ap.add_argument(
        "--repo-url", metavar="URL", help="where workers git clone the commit from (default: this repository's path)"
    )
    return ap


def cmd_repro(argv: list[str]) -> None:
    ap = repro_parser()
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers {args.workers}: must be 1 or more")
    from cifarlab.tooling.scaleout.coordinator import repro

    code = repro(
        Path("."),
        args.targets,
        workers=args.workers,
        scheduler=args.scheduler,
        slurm=args.slurm_option if args.slurm else None,
        slurm_gpus=args.slurm_gpus,
        remote=args.remote,
        repo_url=args.repo_url,
    )
    if code:
        sys.exit(code)


TOOLS = {
    "compare": (cmd_compare, "your runs' top-1 against the published ones"),
    "pack": (cmd_pack, "finished runs + provenance -> one .tar.gz"),
    "fold": (cmd_fold, "publish a pack's runs in this checkout (reports/published)"),
    "repro": (cmd_repro, "dvc repro on a Dask cluster: --workers N, --scheduler ADDR, --slurm"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(
        prog="cifarlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("runs", help="list the runs of params.yaml with their recipes", add_help=False)
    sub.add_parser("estimate", help="per-stage time of what `dvc repro` would run here", add_help=False)
    sub.add_parser("set", help="change params.yaml values, validated (KEY=VALUE ...)", add_help=False)
    for name, (_, text) in TOOLS.items():
        sub.add_parser(name, help=text, add_help=False)
    for name, text in STAGES.items():
        sub.add_parser(name, help=f"stage: {text}", add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        ap.parse_args(argv or ["--help"])
    command, rest = argv[0], argv[1:]
    if command == "runs":
        cmd_runs(rest)
    elif command == "estimate":
        cmd_estimate(rest)
    elif command == "set":
        cmd_set(rest)
    elif command in TOOLS:
        TOOLS[command][0](rest)
    elif command in STAGES:
        from cifarlab.core.stage_main import check_workspace_code

        check_workspace_code()
        importlib.import_module(f"cifarlab.{command}").main(rest)
    else:
        ap.parse_args(argv)  # argparse's own error for an unknown command


def entry_point() -> None:
    """The `cifarlab` console script. Its tools (pack, compare, ...) may run another workspace's
    files with this code; its stage subcommands check, as the stages do."""
    run_main(main, check_workspace=False)


if __name__ == "__main__":
    entry_point()
