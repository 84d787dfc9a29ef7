"""Studies (reporting/studies.py): `cifarlab fold --study jpeg|bf16` keeps runs that measure one
change apart from the published runs, in the arm their provenance names, and the report sets
the arms side by side ("What JPEG costs", "What bf16 costs") and points a missed verdict there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pack_tools import JPEG_FULL, NUMERICS, REFERENCE, checkout, finished_run

from cifarlab.core.params import load_params
from cifarlab.reporting import published, studies
from cifarlab.reporting.records import group_runs, load_metrics
from cifarlab.reporting.reference import numbers_of
from cifarlab.reporting.sections import comparison_table
from cifarlab.tooling import fold, packs

LOSSLESS, JPEG = (next(m for m, a in studies.JPEG_EFFECT_DATA.items() if a == arm) for arm in ("lossless", "jpeg"))
FP32 = {**NUMERICS, "precision": "fp32", "memory_format": "contiguous"}


def pack_of(
    tmp_path: Path,
    name: str,
    seeds_top1: dict[int, float],
    content_md5: str = JPEG_FULL,
    numerics: dict = NUMERICS,
    run: str = "lenet5",
) -> Path:
    """A pack of `run`'s seeds (seed -> best top-1) trained on `content_md5` in `numerics`."""
    ws = checkout(tmp_path / f"ws-{name}")
    for seed, top1 in seeds_top1.items():
        out = run if seed == 23 else f"{run}-s{seed}"
        finished_run(ws, out=out, run=run, seed=seed, top1=top1, content_md5=content_md5)
        timing = ws / f"reports/timing/{out}.json"
        timing.write_text(json.dumps({**json.loads(timing.read_text()), "numerics": numerics}))
    dest = tmp_path / f"{name}.tar.gz"
    packs.pack(ws, dest, log=lambda s: None)
    return dest


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def test_jpeg_study_keeps_each_arm_apart_and_the_report_sets_them_side_by_side(tmp_path):
    home = checkout(tmp_path / "home")
    fold.fold(
        pack_of(tmp_path, "lossless", {23: 0.61, 1: 0.62, 2: 0.63}, LOSSLESS), home, study="jpeg", log=lambda s: None
    )
    fold.fold(pack_of(tmp_path, "jpeg", {23: 0.58, 1: 0.59, 2: 0.60}, JPEG), home, study="jpeg", log=lambda s: None)
    assert not (home / published.PUBLISHED_DIR).exists()  # never among the published runs
    lossless = home / studies.STUDIES_DIR / "jpeg/lossless"
    assert "metrics/lenet5-s2.json" in files_under(lossless) and "provenance/lenet5.json" in files_under(lossless)
    arms = studies.load_arms(studies.STUDIES["jpeg"], home)
    assert {arm: sorted(r["seed"] for r in runs["lenet5"]) for arm, runs in arms.items()} == {
        "lossless": [1, 2, 23],
        "jpeg": [1, 2, 23],
    }
    text = studies.section(studies.STUDIES["jpeg"], arms)
    row = next(line for line in text.splitlines() if line.startswith("| `lenet5` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # run | lossless | jpeg | jpeg - lossless | beyond the seeds' spread? | precision | device
    assert cells[1:5] == [
        "62.00 ± 1.00% (n=3)",
        "59.00 ± 1.00% (n=3)",
        "-3.00 pp",
        "yes: the seed ranges do not overlap",
    ], cells
    assert text.startswith("## What JPEG costs") and cells[5] == "bf16"


def test_a_pack_that_fits_no_arm_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    home = checkout(tmp_path / "home")
    full = pack_of(tmp_path, "full", {23: 0.6})
    with pytest.raises(
        packs.PublishError,
        match=r"^\S+: run output 'lenet5' fits neither arm of study 'jpeg' "
        r"\(lossless / jpeg\): it takes data from \.\./shared/tools/",
    ):
        fold.fold(full, home, study="jpeg", log=lambda s: None)
    with pytest.raises(packs.PublishError, match=r"--study 'nope': no such study; studies: jpeg, bf16$"):
        fold.fold(full, home, study="nope", log=lambda s: None)
    assert files_under(home / "reports") == []


def test_a_study_pack_folded_without_study_onto_published_seeds_is_told_about_study(tmp_path):
    home = checkout(tmp_path / "home")
    fold.fold(pack_of(tmp_path, "full", {23: 0.6}), home, log=lambda s: None)
    with pytest.raises(
        packs.PublishError,
        match=r"pass --replace to drop those first, or --study jpeg to keep them "
        r"apart \(What JPEG costs\)$",
    ):
        fold.fold(pack_of(tmp_path, "lossless", {23: 0.61}, LOSSLESS), home, log=lambda s: None)
    with pytest.raises(packs.PublishError, match=r"or --study bf16 to keep them apart \(What bf16 costs\)$"):
        fold.fold(pack_of(tmp_path, "fp32", {1: 0.61}, numerics=FP32), home, log=lambda s: None)


def test_bf16_study_counts_the_published_seeds_of_its_arm_and_never_copies_them(tmp_path):
    """The published fp32 seeds are the study's fp32 arm; bf16 seeds of the same run go to the
    study; an fp32 pack with --study is sent back to join the published seeds."""
    home = checkout(tmp_path / "home")
    fold.fold(pack_of(tmp_path, "fp32", {23: 0.60, 1: 0.61, 2: 0.62}, numerics=FP32), home, log=lambda s: None)
    fold.fold(pack_of(tmp_path, "bf16", {23: 0.605, 1: 0.615, 2: 0.625}), home, study="bf16", log=lambda s: None)
    assert files_under(home / studies.STUDIES_DIR / "bf16/fp32") == []
    assert len(files_under(home / studies.STUDIES_DIR / "bf16/bf16")) == 3 * 6  # 3 seeds, 5 files + provenance
    with pytest.raises(
        packs.PublishError,
        match=r"run 'lenet5' in fp32 is published \(reports/published\), and the "
        r"study counts those seeds: fold 'lenet5-s3' without --study",
    ):
        fold.fold(pack_of(tmp_path, "fp32-more", {3: 0.6}, numerics=FP32), home, study="bf16", log=lambda s: None)
    fold.fold(pack_of(tmp_path, "dnn", {23: 0.5}, numerics=FP32, run="dnn"), home, log=lambda s: None)
    arms = studies.load_arms(studies.STUDIES["bf16"], home)
    assert sorted(arms["fp32"]) == ["lenet5"]  # published dnn has no bf16 seed: not a run of the study
    text = studies.section(studies.STUDIES["bf16"], arms)
    row = next(line for line in text.splitlines() if line.startswith("| `lenet5` |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["61.00 ± 1.00% (n=3)", "61.50 ± 1.00% (n=3)", "+0.50 pp", "no: the seed ranges overlap"], (
        cells
    )
    assert cells[5] == "JPEG 50k/10k"


def test_an_fp32_pack_folds_into_a_bf16_checkout_its_precision_recorded(tmp_path):
    """train.bf16 / channels_last are numerics (provenance, never averaged across), not recipe:
    a checkout whose params.yaml says bf16 publishes an fp32 run as fp32."""
    home = checkout(tmp_path / "home")
    assert load_params(home / "params.yaml").train.bf16 is True
    fold.fold(pack_of(tmp_path, "fp32", {23: 0.6}, numerics=FP32), home, log=lambda s: None)
    prov = published.load_provenance(home / published.PUBLISHED_DIR)["lenet5"]
    assert prov["numerics"]["precision"] == "fp32"


def test_spread_verdict():
    def s(*v):
        return {"n": len(v), "min": min(v), "max": max(v)}

    assert studies.spread_verdict(s(0.5, 0.6), s(0.61, 0.7)).startswith("yes")
    assert studies.spread_verdict(s(0.5, 0.6), s(0.6, 0.7)).startswith("no")  # touching ranges overlap
    assert studies.spread_verdict(s(0.5), s(0.6, 0.7)) == "— (n < 2)"
    assert studies.spread_verdict({"n": 0}, s(0.6, 0.7)) == "—"


def test_a_missed_verdict_of_a_jpeg_run_points_to_what_jpeg_costs(tmp_path):
    home = checkout(tmp_path / "home")
    fold.fold(pack_of(tmp_path, "lossless", {23: 0.61, 1: 0.63}, LOSSLESS), home, study="jpeg", log=lambda s: None)
    fold.fold(pack_of(tmp_path, "jpeg", {23: 0.60, 1: 0.62}, JPEG), home, study="jpeg", log=lambda s: None)
    text, found = studies.sections(home, figure="studies.png")
    assert text.startswith("## What JPEG costs") and text.endswith("](figures/studies.png)")
    (panel,) = studies.figure_panels(found)
    assert panel["title"] == "What JPEG costs" and panel["arms"] == ("lossless", "jpeg")
    (run,) = panel["runs"]
    assert run["run"] == "lenet5" and [sorted(v) for v in run["values"]] == [[0.61, 0.63], [0.60, 0.62]]
    ws = checkout(tmp_path / "ws")
    finished_run(ws, top1=0.40)  # one seed on the JPEG-derived full set, below report 000's lenet5 number
    runs = group_runs(load_metrics(ws / "reports/metrics", details_dir=ws / "reports/details"))
    notes = studies.jpeg_miss_notes(found, runs)
    assert notes == {"lenet5": "JPEG costs this recipe -1.00 pp on 40k/10k: [What JPEG costs](#what-jpeg-costs)"}
    table = comparison_table(numbers_of(REFERENCE, "000"), runs, notes)
    row = next(line for line in table.splitlines() if line.startswith("| `lenet5` | top-1 |"))
    assert "—; JPEG costs this recipe -1.00 pp" in row  # n = 1: no seed range, still below the report
    # a published seed whose details file predates recording its data: its provenance names it
    bare = {run: [{k: v for k, v in r.items() if k != "data"} for r in recs] for run, recs in runs.items()}
    assert studies.jpeg_miss_notes(found, bare) == {}
    prov = {Path(r["path"]).stem: {"data": r["data"]} for r in runs["lenet5"]}
    assert studies.jpeg_miss_notes(found, bare, prov) == notes
