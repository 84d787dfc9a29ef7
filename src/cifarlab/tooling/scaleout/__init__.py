"""`cifarlab repro`: the pipeline's independent stages in parallel on a Dask cluster, DVC the record.

DVC runs one stage at a time, and two `dvc repro` in one workspace collide on dvc.lock. Here each
stage becomes one Dask task that reproduces that stage alone (`dvc repro --single-item`) in a
throwaway clone of the committed code, sharing the DVC cache (one cache directory on a machine,
or a DVC remote and `dvc push --run-cache` between machines). Tasks are submitted in the order of
DVC's own stage graph, each waiting for the stages it depends on. When every task is done, a
`dvc repro` in the user's workspace restores each stage's outputs from DVC's run-cache, trains
nothing, and writes dvc.lock as if it had run them itself.

    plan.py         which stages, in what order, with what resources (DVC's graph, in-process)
    task.py         what a Dask worker runs for one stage (clone, dvc repro, push), and the guard
                    that takes a stage's processes down with a killed worker
    clusters.py     the Dask cluster: local CPU workers, one worker per GPU, SLURM, or an address
    coordinator.py  `cifarlab repro`: checks, submission, progress, failures, the final restore
"""
