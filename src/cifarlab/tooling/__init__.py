"""Operations tooling around the pipeline: the `cifarlab` command, the plan and its time
(estimate, timing, the start-of-run notice), scale-out (`cifarlab repro`) and publishing
(`cifarlab pack` / `fold`). No stage module imports this package (tests/test_dvc_deps.py), so
editing it re-runs no stage."""
