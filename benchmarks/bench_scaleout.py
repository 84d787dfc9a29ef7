"""Scale-out benchmark: `cifarlab repro` with 1 Dask worker vs 2 on this machine, plus plain
`dvc repro` as the baseline, on the slice of the scale-out acceptance test: fetch, preprocess,
three models (lenet5, dnn, an AlexNet transfer run) and four cells of report 004's ResNet-18 grid,
each with its evaluate and plot stages, then the report. One epoch on a tiny synthetic archive
(20 train / 10 test images per class), one torch thread per stage, so the stages' start-up
(Python, torch and DVC imports; a clone per task) is most of the work: the part a CPU machine
overlaps.

    python benchmarks/bench_scaleout.py                          # 1 vs 2 workers, and dvc repro
    python benchmarks/bench_scaleout.py --workers 1 2 4 --skip-dvc --json scaleout.json

Every variant starts from a fresh copy of the project (its own git repository and DVC cache),
one after another in this process; each variant's dvc.lock output md5s are compared with the
first's (wall-time files excepted): a ratio between different results would mean nothing.
Timings vary with the machine's other load (the header prints the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' project copies and tiny archives

from cifar_archive import make_cifar_archive
from workspace import SCALE_OUT_RUNS, lock_outs, small_project


def timed(cmd: list[str], repo: Path, env: dict, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=repo, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        sys.exit(f"{' '.join(cmd)} exited {code}; log: {log}")
    return time.perf_counter() - t0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    ap.add_argument("--skip-dvc", action="store_true", help="do not time plain dvc repro")
    ap.add_argument("--json", type=Path, help="write the results here")
    return ap


def main() -> None:
    args = parser().parse_args()

    import dask
    import dvc
    import torch

    load0 = os.getloadavg()
    print(
        f"# bench_scaleout: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, dvc {dvc.__version__}, dask {dask.__version__}; "
        f"load average {load0[0]:.2f}; n=1 per variant; {len(SCALE_OUT_RUNS)} runs: {', '.join(SCALE_OUT_RUNS)}"
    )
    rows, reference = [], None
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        tmp = Path(tmp)
        archive = tmp / "cifar-10-python.tar.gz"
        md5 = make_cifar_archive(archive)
        variants = [] if args.skip_dvc else [("dvc repro", ["dvc", "repro"])]
        variants += [
            (f"cifarlab repro --workers {n}", ["cifarlab", "repro", "--workers", str(n)]) for n in args.workers
        ]
        for i, (name, cmd) in enumerate(variants):
            repo = tmp / f"v{i}"
            env = small_project(repo, archive, md5, SCALE_OUT_RUNS)
            seconds = timed(cmd, repo, env, tmp / f"v{i}.log")
            outs = lock_outs(repo, timing=False)
            reference = reference or outs
            same = outs == reference
            rows.append({"variant": name, "seconds": round(seconds, 1), "same_md5s_as_first": same})
            print(f"{name:28s} {seconds:7.1f} s   outputs {'identical to the first' if same else 'DIFFER'}", flush=True)
    base = next((r for r in rows if r["variant"].endswith("--workers 1")), None)
    for r in rows:
        if base:
            r["speedup_vs_1_worker"] = round(base["seconds"] / r["seconds"], 2)
    if base:
        print("speed-up against 1 worker: " + ", ".join(f"{r['variant']} x{r['speedup_vs_1_worker']}" for r in rows))
    load1 = os.getloadavg()
    print(f"# load average after: {load1[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": {
                        "cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(),
                        "torch": torch.__version__,
                        "dvc": dvc.__version__,
                        "dask": dask.__version__,
                    },
                    "load_average": [load0[0], load1[0]],
                    "runs": list(SCALE_OUT_RUNS),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
    if not all(r["same_md5s_as_first"] for r in rows):
        sys.exit("outputs differ between variants (above)")


if __name__ == "__main__":
    main()
