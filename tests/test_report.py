"""reports/README.md generator: real rows from fixture metrics files, a fake dvc.lock and the real
reports/reference.yaml. Every expected number is computed here from the fixture values (or read
from reference.yaml), never copied from the generator.

The fixtures are laid out as evaluate.py writes them: reports/metrics/<out>.json holds the scalars
of each block, reports/details/<out>.json what the run was (run, seed, data sizes, ...) and the full
blocks; resnet9.json is an older single file without `run`/`seed` and without a details file."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from workspace import SHIPPED_PARAMS, shipped

import cifarlab
from cifarlab import report
from cifarlab.core.errors import DataError
from cifarlab.reporting import document, lineage, sections, stats
from cifarlab.reporting import records as record_files
from cifarlab.reporting.reference import load_reference

# as the last commit has them, never the workspace's (a user's edited params.yaml must not fail these)
REFERENCE_FILE = shipped("reports/reference.yaml")
# the published runs and studies the report reads (cifarlab fold writes them; users commit them)
REPORTS_DIR = Path(__file__).resolve().parents[1] / "reports"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
LENET_TOP1 = {1: 0.4655, 2: 0.4702, 3: 0.4790}  # seed -> best top-1; brackets lenet5's published value
LENET_FINAL = {1: 0.4601, 2: 0.4688, 3: 0.4750}
LENET_EPOCH = {1: 10, 2: 9, 3: 10}
GRID_RUNS = {"resnet18-relu-5_4_1-crop_flip": 0.9431, "resnet18-sigmoid-2_1_1-none": 0.8612}
SCALARS = ("epoch", "top1", "top3", "loss")  # what a metrics file keeps of each block
OLD_FILE = "resnet9.json"  # the older single-file layout: no details file


# --------------------------------------------------------------------------- fixtures


def block(epoch, top1, top3=None, loss=1.0):
    return {
        "epoch": epoch,
        "top1": top1,
        "top3": top1 + 0.1 if top3 is None else top3,
        "loss": loss,
        "per_class_top1": {},
        "confusion": [[0] * 10 for _ in range(10)],
        "selected_by": "test",
    }


def metrics(run, seed, best, final, **extra):
    """One (run, seed) as evaluate.py knows it: the details file's content (a full run)."""
    d = {
        "run": run,
        "model": run.split("-")[0],
        "seed": seed,
        "overrides": {},
        "classes": [str(i) for i in range(10)],
        "n_train": 50000,
        "n_test": 10000,
        "recipe_epochs": final["epoch"],
        "epochs_cap": None,
        "random_features": False,
        "best": best,
        "final": final,
    }
    d.update(extra)
    return d


def fixture_metrics() -> dict[str, dict]:
    """file name -> everything known about that (run, seed) (see `split` for the two files)."""
    files = {}
    for seed in (1, 2, 3):
        files[f"lenet5-s{seed}.json"] = metrics(
            "lenet5",
            seed,
            block(LENET_EPOCH[seed], LENET_TOP1[seed], loss=1.5),
            block(10, LENET_FINAL[seed], loss=1.52),
        )
    files["dnn-s23.json"] = metrics(
        "dnn", 23, block(15, 0.5402, loss=1.3012), block(100, 0.4991, loss=2.7), val=block(14, 0.5377, loss=1.31)
    )
    files["alexnet_transfer-skip-high-s23.json"] = metrics(
        "alexnet_transfer-skip-high", 23, block(88, 0.8311, top3=0.9655), block(100, 0.8290, top3=0.9650)
    )
    for run, top1 in GRID_RUNS.items():
        files[f"{run}-s23.json"] = metrics(run, 23, block(190, top1), block(200, top1 - 0.001))
    old = {"model": "resnet9", "best": block(20, 0.9301), "final": block(20, 0.9301)}  # model name = run
    files[OLD_FILE] = old
    return files


def split(name: str, d: dict) -> tuple[dict, dict | None]:
    """(metrics file, details file) of one fixture, as evaluate.py writes them; an old file is one piece."""
    if name == OLD_FILE:
        return d, None
    return {w: {k: d[w][k] for k in SCALARS} for w in ("final", "best", "val") if w in d}, d


def metrics_bytes(d: dict) -> bytes:
    return json.dumps(d).encode("utf-8")


def file_md5(path: str) -> str:
    """The md5 dvc.lock records for an out: the metrics files' real one, a dummy for the rest."""
    name = Path(path).name
    files = fixture_metrics()
    if name in files and "/metrics/" in path:
        return hashlib.md5(metrics_bytes(split(name, files[name])[0])).hexdigest()
    return "1" * 32


def stage(deps=(), params=None, outs=()):
    return {
        "cmd": "python -m x",
        "deps": [{"path": d, "md5": "0" * 32} for d in deps],
        "params": {"params.yaml": params} if params is not None else {},
        "outs": [{"path": o, "md5": file_md5(o), "hash": "md5"} for o in outs],
    }


def fake_lock(md5=OFFICIAL_MD5, url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz") -> dict:
    stages = {
        "fetch": stage(
            ["src/cifarlab/fetch.py"], {"data.url": url, "data.md5": md5}, ["data/raw/cifar-10-python.tar.gz"]
        ),
        "preprocess": stage(
            ["data/raw/cifar-10-python.tar.gz"],
            {"seed": 23, "data.train_subset": None, "data.test_subset": None},
            ["data/prepared"],
        ),
    }
    for seed in (1, 2, 3):
        stages[f"train@lenet5-s{seed}"] = stage(
            ["data/prepared", "src/cifarlab/models"],
            {"seed": seed, "train": {"max_epochs": None, "eval_batch_size": 500}, "lenet5": {"lr": 0.01}},
            [f"data/checkpoints/lenet5-s{seed}", f"reports/history/lenet5-s{seed}.csv"],
        )
        stages[f"evaluate@lenet5-s{seed}"] = stage(
            ["data/prepared", f"data/checkpoints/lenet5-s{seed}", "src/cifarlab/evaluate.py"],
            {"train.eval_batch_size": 500},
            [f"reports/metrics/lenet5-s{seed}.json"],
        )
    stages["train@dnn"] = stage(["data/prepared"], {"seed": 23, "dnn": {"lr": 0.1}}, ["data/checkpoints/dnn"])
    stages["evaluate@dnn"] = stage(
        ["data/prepared", "data/checkpoints/dnn"], {"train.eval_batch_size": 500}, ["reports/metrics/dnn-s23.json"]
    )
    # a grid stage trains and evaluates in one: its only upstream stage is preprocess
    stages["grid@relu-5:4:1-crop_flip-23"] = stage(
        ["data/prepared"],
        {"resnet18": {"activation": "relu", "ratio": [5, 4, 1]}},
        ["reports/metrics/resnet18-relu-5_4_1-crop_flip-s23.json"],
    )
    return {"schema": "2.0", "stages": stages}


def expected_hash(lock: dict, *stage_names: str) -> str:
    """The documented hash: md5 of the canonical JSON of the merged params of the given stages."""
    merged: dict = {}
    for name in stage_names:
        for file, kv in lock["stages"][name]["params"].items():
            merged.setdefault(file, {}).update(kv)
    text = json.dumps(merged, sort_keys=True, separators=(",", ":"))
    return hashlib.md5(text.encode()).hexdigest()[:8]


@pytest.fixture(scope="module")
def reference() -> dict:
    return load_reference(REFERENCE_FILE)


def write_project(root: Path, lock: dict | None = None) -> None:
    metrics_dir = root / "reports" / "metrics"
    details_dir = root / "reports" / "details"
    metrics_dir.mkdir(parents=True)
    details_dir.mkdir(parents=True)
    for name, d in fixture_metrics().items():
        scalars, details = split(name, d)
        (metrics_dir / name).write_bytes(metrics_bytes(scalars))
        if details is not None:
            (details_dir / name).write_bytes(metrics_bytes(details))
    shutil.copy(REFERENCE_FILE, root / "reports" / "reference.yaml")
    shutil.copy(SHIPPED_PARAMS, root / "params.yaml")  # main validates it first
    history = root / "reports" / "history"
    history.mkdir()
    # resnet9.json is the only run outside the grid with the default seed: comparison.png draws its curve
    (history / "resnet9.csv").write_text(
        "epoch,train_loss,train_acc,test_loss,test_acc,lr\n1,1.2,0.6,1.1,0.62,0.01\n2,0.5,0.85,0.4,0.9301,0.001\n"
    )
    if lock is not None:
        (root / "dvc.lock").write_text(yaml.safe_dump(lock))


def load_project(root: Path) -> list[dict]:
    return record_files.load_metrics(root / "reports" / "metrics", root=root, details_dir=root / "reports" / "details")


@pytest.fixture
def project(tmp_path) -> dict:
    write_project(tmp_path, fake_lock())
    records = load_project(tmp_path)
    return {"root": tmp_path, "records": records, "runs": record_files.group_runs(records)}


@pytest.fixture
def readme(project, reference) -> str:
    return document.report_tables(reference, project["runs"], fake_lock())


def table_row(md: str, *first_cells: str) -> list[str]:
    """Cells of the unique table row whose leading cells are `first_cells`."""
    prefix = "| " + " | ".join(first_cells) + " |"
    rows = [line for line in md.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, (prefix, rows)
    return [c.strip() for c in rows[0].strip().strip("|").split(" | ")]


def section(md: str, report_id: str) -> str:
    start = md.index(f"## Report {report_id}")
    end = md.find("\n## ", start + 1)
    return md[start:] if end < 0 else md[start:end]


def ref_value(reference, run, metric="top1"):
    (hit,) = [n for n in reference["numbers"] if n["run"] == run and n["metric"] == metric and not n.get("note")] or [
        n for n in reference["numbers"] if n["run"] == run and n["metric"] == metric
    ]
    return hit


# --------------------------------------------------------------------------- pure pieces


def test_summarize_sample_std_and_range():
    vals = [0.5, 0.52, 0.57, None]
    s = stats.summarize(vals)
    assert s["n"] == 3 and s["min"] == 0.5 and s["max"] == 0.57
    assert s["mean"] == pytest.approx(statistics.mean(vals[:3]))
    assert s["std"] == pytest.approx(statistics.stdev(vals[:3]))  # ddof=1
    assert stats.summarize([0.4])["std"] is None
    assert stats.summarize([]) == {"mean": None, "std": None, "n": 0, "min": None, "max": None}


def test_load_metrics_reads_old_files_and_groups_by_seed(project):
    runs = project["runs"]
    assert [r["seed"] for r in runs["lenet5"]] == [1, 2, 3]
    (old,) = runs["resnet9"]  # no `run`, no `seed`: the model name and None
    assert old["seed"] is None and old["path"] == "reports/metrics/resnet9.json"
    assert runs["dnn"][0]["val"]["epoch"] == 14
    assert record_files.load_metrics(project["root"] / "nowhere") == []


def test_load_metrics_merges_details_and_skips_experiment_json(project):
    root = project["root"]
    metrics_dir = root / "reports" / "metrics"
    # the experiment stage's copy of one run's metrics: counting it would count that run twice
    shutil.copy(metrics_dir / "dnn-s23.json", metrics_dir / record_files.EXPERIMENT_FILE)
    loaded = load_project(root)
    files = fixture_metrics()
    assert [r["path"] for r in loaded] == [f"reports/metrics/{name}" for name in sorted(files)]
    (dnn,) = [r for r in loaded if r["path"] == "reports/metrics/dnn-s23.json"]
    details = files["dnn-s23.json"]
    # who it is and how it ran come from the details file ...
    assert (dnn["run"], dnn["model"], dnn["seed"]) == ("dnn", "dnn", 23)
    assert (dnn["n_train"], dnn["n_test"], dnn["epochs_cap"], dnn["random_features"]) == (50000, 10000, None, False)
    # ... the numbers from the metrics file: its scalars, not the details' per-class blocks
    scalars = split("dnn-s23.json", details)[0]
    assert dnn["best"] == scalars["best"] and dnn["final"] == scalars["final"] and dnn["val"] == scalars["val"]
    assert "confusion" not in dnn["best"]
    assert dnn["md5"] == hashlib.md5((metrics_dir / "dnn-s23.json").read_bytes()).hexdigest()
    # without the details the scalars-only files do not say which run they are
    with pytest.raises(DataError, match="neither `run` nor `model`"):
        record_files.load_metrics(metrics_dir, root=root)
    # a metrics file whose details file is missing: only the old layout can stand alone
    (root / "reports" / "details" / "dnn-s23.json").unlink()
    with pytest.raises(DataError, match="dnn-s23.json"):
        load_project(root)


def test_duplicate_run_seed_counts_once(project):
    dup = dict(project["records"][0], path="reports/metrics/zz-copy.json")
    runs = record_files.group_runs(project["records"] + [dup])
    assert len(runs[dup["run"]]) == 2 and len(record_files.counted(runs[dup["run"]])) == 1
    assert "duplicate (run, seed): not counted" in document.provenance_table(runs, None)


# --------------------------------------------------------------------------- smoke runs


def smoke_record(run, seed, **how):
    d = metrics(run, seed, block(2, 0.3), block(2, 0.3), **how)
    return record_files.normalize_metrics(d, f"reports/metrics/{run}-s{seed}.json")


def test_smoke_notes_say_why_a_run_is_not_the_recipe():
    full = smoke_record("lenet5", 23)
    assert record_files.smoke_notes(full) == []
    assert (
        record_files.smoke_notes(record_files.normalize_metrics(fixture_metrics()[OLD_FILE], OLD_FILE)) == []
    )  # says nothing
    subset = record_files.smoke_notes(smoke_record("lenet5", 23, n_train=5000, n_test=2000))
    assert subset == ["subset: 5,000 train / 2,000 test images (full: 50,000 / 10,000)"]
    assert len(record_files.smoke_notes(smoke_record("lenet5", 23, n_train=50000, n_test=2000))) == 1  # test side only
    assert record_files.smoke_notes(smoke_record("lenet5", 23, epochs_cap=2, recipe_epochs=10)) == [
        "epochs capped at 2 (recipe: 10)"
    ]
    assert record_files.smoke_notes(smoke_record("alexnet_transfer-skip-low", 23, random_features=True)) == [
        "random AlexNet features (pretrained: false), not ImageNet's"
    ]
    everything = record_files.smoke_notes(
        smoke_record(
            "alexnet_transfer-skip-low",
            23,
            n_train=500,
            n_test=100,
            epochs_cap=1,
            recipe_epochs=10,
            random_features=True,
        )
    )
    assert [n.split()[0] for n in everything] == ["subset:", "epochs", "random"]


def test_smoke_section_names_each_smoke_run_and_is_empty_for_full_runs(project, reference):
    records = [
        smoke_record("lenet5", 1, n_train=5000, n_test=2000),
        smoke_record("lenet5", 2),  # a full seed of the same run: not listed
        smoke_record("dnn", 23, epochs_cap=3, recipe_epochs=100),
        smoke_record("alexnet_transfer-skip-low", 23, random_features=True),
        smoke_record("hw2_cnn", 23),
    ]
    runs = record_files.group_runs(records)
    text = document.smoke_section(runs)
    assert "Smoke run: 3 of 5 (run, seed) results" in text
    assert table_row(text, "`lenet5`", "1")[2].startswith("subset: 5,000 train / 2,000 test")
    assert table_row(text, "`dnn`", "23")[2] == "epochs capped at 3 (recipe: 100)"
    assert table_row(text, "`alexnet_transfer-skip-low`", "23")[2].startswith("random AlexNet features")
    assert "`lenet5` | 2 |" not in text and "hw2_cnn" not in text
    # a full run gives no section, and the README none
    assert document.smoke_section(record_files.group_runs([smoke_record("hw2_cnn", 23)])) == ""
    assert document.smoke_section({}) == ""
    assert "Smoke run" not in document.report_tables(reference, project["runs"], None)
    # in the README it comes first, before any report
    md = document.report_tables(reference, runs, None)
    assert md.index("Smoke run") < md.index("## Report 000")


def test_smoke_run_read_from_its_details_file(project, reference):
    """The smoke facts travel from reports/details/ into the README (evaluate.py writes them there)."""
    details = project["root"] / "reports" / "details" / "dnn-s23.json"
    d = json.loads(details.read_text())
    details.write_text(json.dumps({**d, "n_train": 5000, "n_test": 2000, "epochs_cap": 2}))
    runs = record_files.group_runs(load_project(project["root"]))
    md = document.report_tables(reference, runs, None)
    cells = table_row(md, "`dnn`", "23")
    assert (
        cells[2] == f"subset: 5,000 train / 2,000 test images (full: 50,000 / 10,000); "
        f"epochs capped at 2 (recipe: {d['recipe_epochs']})"
    )
    assert "Smoke run: 1 of 8 (run, seed) results" in md


# --------------------------------------------------------------------------- comparison rows


def test_lenet5_row_mean_std_n_and_within_range(readme, reference):
    vals = list(LENET_TOP1.values())
    mean, std = statistics.mean(vals), statistics.stdev(vals)
    final = list(LENET_FINAL.values())
    ref = ref_value(reference, "lenet5")
    cells = table_row(section(readme, "000"), "`lenet5`", "top-1")
    assert cells[2] == f"{100 * ref['value']:.2f}%"
    assert cells[3] == f"{100 * mean:.2f} ± {100 * std:.2f}% (n=3)"
    assert cells[4] == f"{100 * statistics.mean(final):.2f} ± {100 * statistics.stdev(final):.2f}% (n=3)"
    assert cells[5] == f"{100 * (mean - ref['value']):+.2f} pp"
    assert cells[6] == f"{ref['epoch']} / 10, 9, 10"  # seeds disagree: one best epoch each
    assert cells[7] == "1, 2, 3"
    assert min(vals) <= ref["value"] <= max(vals) and cells[8] == "yes"


def test_within_range_flag_false_outside_the_seeds(project, reference):
    ref = copy.deepcopy(reference)
    for n in ref["numbers"]:
        if n["run"] == "lenet5":
            n["value"] = max(LENET_TOP1.values()) + 0.01  # above every seed
    md = document.report_tables(ref, project["runs"], None)
    assert table_row(md, "`lenet5`", "top-1")[8] == "no"
    s = stats.summarize(LENET_TOP1.values())
    assert stats.within_spread(s["min"], s) and stats.within_spread(s["max"], s)
    assert stats.within_spread(s["min"], stats.summarize([s["min"]])) is None  # 1 seed: no flag


def test_single_seed_loss_row_and_val_column(readme, reference):
    md = section(readme, "001")
    assert (
        "test @ val-selected epoch"
        in md.splitlines()[md.splitlines().index(next(line for line in md.splitlines() if line.startswith("| run |")))]
    )
    loss_ref = ref_value(reference, "dnn", "loss")
    cells = table_row(md, "`dnn`", "loss")
    assert cells[3] == "1.3012" and cells[4] == "2.7000"
    assert cells[5] == f"{1.3012 - loss_ref['value']:+.4f}"  # raw difference for a loss
    assert cells[7] == "23" and cells[8] == "—"  # one seed: no range
    assert cells[9] == "1.3100 @ epoch 14"
    top1 = table_row(md, "`dnn`", "top-1")
    assert top1[3] == "54.02%" and top1[9] == "53.77% @ epoch 14"


def test_missing_run_shows_not_run(readme, reference):
    md = section(readme, "001")
    cells = table_row(md, "`cnn`", "top-1", f"{100 * ref_value(reference, 'cnn')['value']:.2f}%")
    assert cells[3] == cells[4] == "not run" and cells[5] == "—"
    assert table_row(section(readme, "002"), "`hw2_cnn`", "top-1")[3] == "not run"


def test_old_file_without_run_uses_model(readme):
    cells = table_row(section(readme, "000"), "`resnet9`", "top-1")
    assert cells[3] == "93.01%" and cells[7] == "unrecorded"


def test_alexnet_two_by_two(readme, reference):
    md = section(readme, "003")
    row = table_row(md, "high epoch")
    skip = row[2]
    top1 = ref_value(reference, "alexnet_transfer-skip-high")["value"]
    top3 = ref_value(reference, "alexnet_transfer-skip-high", "top3")["value"]
    assert skip == f"top-1 83.11% (reported {100 * top1:.2f}%)<br>top-3 96.55% (reported {100 * top3:.2f}%)"
    assert row[1].startswith("top-1 not run (reported")
    assert table_row(md, "low epoch")[1].count("not run") == 2


def test_grid_table_36_cells_two_filled(readme, reference):
    md = section(readme, "004")
    lines = md.splitlines()
    start = lines.index("| augmentation | activation | 2:1:1 | 5:3:2 | 5:4:1 |")
    body = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    assert len(body) == 12 and all(len(r) == 5 for r in body)
    filled = [c for r in body for c in r[2:] if not c.startswith("not run")]
    assert len(filled) == 2
    by_run = {n["run"]: n for n in reference["numbers"] if "activation" in n}
    for run, top1 in GRID_RUNS.items():
        n = by_run[run]
        cells = table_row(md, f"`{n['augment']}`", f"`{n['activation']}`")
        col = ["2:1:1", "5:3:2", "5:4:1"].index(n["ratio"])
        assert cells[2 + col] == f"{100 * top1:.2f} ({100 * n['value']:.2f})"
    assert "2 of 36 cells run" in md
    assert (
        table_row(md, "`resnet18-relu-5_4_1-crop_flip`", "top-1")[3]
        == f"{100 * GRID_RUNS['resnet18-relu-5_4_1-crop_flip']:.2f}%"
    )


def test_grid_values_and_bar_rows(project, reference):
    reproduced, reported = stats.grid_values(reference, project["runs"])
    assert reproduced == {
        ("relu", "5:4:1", "crop_flip"): GRID_RUNS["resnet18-relu-5_4_1-crop_flip"],
        ("sigmoid", "2:1:1", "none"): GRID_RUNS["resnet18-sigmoid-2_1_1-none"],
    }
    assert len(reported) == 36
    rows = stats.bar_rows(reference, project["runs"], "000")
    lenet = rows[0]
    assert lenet["label"] == "lenet5" and lenet["std"] == pytest.approx(statistics.stdev(LENET_TOP1.values()))
    assert len(stats.bar_rows(reference, project["runs"], "004")) == 2  # only the cells that ran


def test_statements_listed_per_report(readme, reference):
    md = section(readme, "002")
    assert "### What the report says (not a number)" in md
    for s in reference["statements"]:
        if s["report"] == "002":
            assert " ".join(s["text"].split()) in md


# --------------------------------------------------------------------------- provenance


def test_provenance_hash_and_data_source(readme):
    lock = fake_lock()
    prov = readme[readme.index("## Provenance") :]
    for seed in (1, 2, 3):
        cells = table_row(prov, "lenet5", str(seed))
        assert cells[2] == "official archive"
        assert cells[3] == expected_hash(lock, "preprocess", f"train@lenet5-s{seed}", f"evaluate@lenet5-s{seed}")
        assert cells[5] == f"`reports/metrics/lenet5-s{seed}.json`"
    hashes = {table_row(prov, "lenet5", str(s))[3] for s in (1, 2, 3)}
    assert len(hashes) == 3  # the train stages' seeds differ
    grid = table_row(prov, "resnet18-relu-5_4_1-crop_flip", "23")
    assert grid[3] == expected_hash(lock, "preprocess", "grid@relu-5:4:1-crop_flip-23")
    unwritten = table_row(prov, "alexnet_transfer-skip-high", "23")
    assert unwritten[2] == unwritten[3] == "not recorded (no dvc.lock stage writes it)"
    assert document.STALE not in prov


def test_provenance_flags_a_file_changed_since_dvc_lock(project):
    path = project["root"] / "reports" / "metrics" / "dnn-s23.json"
    path.write_bytes(path.read_bytes().replace(b"0.5402", b"0.6402"))
    runs = record_files.group_runs(load_project(project["root"]))
    lock = fake_lock()
    cells = table_row(document.provenance_table(runs, lock), "dnn", "23")
    assert cells[3] == expected_hash(lock, "preprocess", "train@dnn", "evaluate@dnn") + document.STALE


def test_data_source_local_copy_and_no_lock(project, reference):
    lock = fake_lock(md5="0123456789abcdef0123456789abcdef", url="/data/cifar-10-python.tar.gz")
    assert lineage.data_source(lock) == "local copy `/data/cifar-10-python.tar.gz`"
    assert lineage.data_source(None) == "not recorded (no dvc.lock)"
    md = document.report_tables(reference, project["runs"], None)
    cells = table_row(md[md.index("## Provenance") :], "dnn", "23")
    assert cells[2] == cells[3] == "not recorded (no dvc.lock)"


# --------------------------------------------------------------------------- main


class RecordingFigures:
    """Stands in for cifarlab.figures (whose torch import alone takes seconds): records the calls
    and writes a PNG signature, so the fast test checks what main asks to draw and where."""

    def __init__(self):
        self.bars, self.grids, self.comparisons = [], [], []

    def comparison_figure(self, top1, hists, smoke=None):
        self.comparisons.append((top1, hists))
        return "comparison"

    def report_bars(self, rows, title, smoke=None):
        self.bars.append((title, rows))
        return title

    def grid_heatmaps(self, reproduced, reported, activations, ratios, augments, smoke=None, published=False):
        self.grids.append((reproduced, reported, activations, ratios, augments, published))
        return "grid"

    def open_choices_figure(self, rows, smoke=None):
        self.open_choices = rows
        return "open choices"

    def studies_figure(self, panels, smoke=None):
        self.studies = panels
        return "studies"

    def smoke_line(self, records):  # the banner's text: tests/test_figures.py
        self.smoke_records = list(records)

    def save_figure(self, fig, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"\x89PNG stand-in " + str(fig).encode())

    save_png = save_figure


def test_run_figures_sit_side_by_side_and_a_big_report_folds_them(project, reference):
    """Each run: its curves and confusion matrix on one row; report 004's many runs in <details>."""
    figs = [
        f"runs/{kind}_{run}.png"
        for run in ("lenet5", "resnet9", "alexnet_transfer-skip-high")
        for kind in ("curves", "confusion")
    ] + ["runs/pca_alexnet_transfer-skip-high_2d3d.png"]
    text = sections.report_section(reference, project["runs"], "000", figs)
    row = text.split("**`lenet5`**<br>\n")[1].split("\n\n")[0].splitlines()
    assert row == [
        '<img src="figures/runs/curves_lenet5.png" alt="learning curves: lenet5" width="58%">',
        '<img src="figures/runs/confusion_lenet5.png" alt="confusion matrix: lenet5" width="40%">',
    ]
    assert "<details" not in text
    # the published runs' figures sit in reports/published/figures: linked without a detour
    published = [f"../published/figures/{kind}_lenet5.png" for kind in ("curves", "confusion")]
    text = sections.report_section(reference, project["runs"], "000", published, "../published/figures/")
    assert '<img src="published/figures/curves_lenet5.png"' in text and "../" not in text
    alex = sections.report_section(reference, project["runs"], "003", figs)
    assert 'src="figures/runs/pca_alexnet_transfer-skip-high_2d3d.png"' in alex and "<details" not in alex
    cells = [n["run"] for n in reference["numbers"] if n.get("report") == "004" and "activation" in n]
    grid_figs = [f"runs/curves_{run}.png" for run in cells[:7]]
    grid = sections.report_section(reference, project["runs"], "004", grid_figs)
    folded = grid.split('<details markdown="1"><summary>Learning curves and confusion matrices of the 7 runs</summary>')
    assert len(folded) == 2 and all(f'src="figures/{f}"' in folded[1] for f in grid_figs)
    assert folded[1].count("</details>") == 1


EXPECTED_FIGURES = [
    "runs/confusion_alexnet_transfer-skip-high.png",
    "grid_resnet18.png",
    "comparison.png",
    "open_choices.png",
    "studies.png",
] + [f"report_{r}.png" for r in ("000", "001", "002", "003", "004")]


def run_main_twice(root: Path, monkeypatch) -> tuple[bytes, Path]:
    """main() in `root` as cwd, twice; the README must not change by a byte. Returns its bytes."""
    write_project(root, fake_lock())
    figures = root / "reports" / "figures"
    (figures / "runs").mkdir(parents=True)
    (figures / "runs/confusion_alexnet_transfer-skip-high.png").write_bytes(b"\x89PNG fake")  # drawn elsewhere
    (figures / "report_007.png").write_bytes(b"\x89PNG stale")  # an own figure not drawn now
    monkeypatch.chdir(root)
    report.main([])  # the fixture has a few runs of the real run table, and none published
    readme = root / "reports" / "README.md"
    first = readme.read_bytes()
    report.main([])
    assert readme.read_bytes() == first  # no timestamps, stable order
    assert not list((root / "reports").rglob(".*.tmp"))  # atomic writes left no temp file
    assert sorted(p.relative_to(figures).as_posix() for p in figures.rglob("*.png")) == sorted(
        EXPECTED_FIGURES + ["report_007.png"]
    )
    text = first.decode("utf-8")
    assert "report_007" not in text
    assert "dvc repro report" in text.splitlines()[2]
    for name in EXPECTED_FIGURES:
        if name == "studies.png":  # drawn always (a declared output), shown once a study has runs
            assert name not in text
            continue
        assert f"](figures/{name})" in text or f'<img src="figures/{name}"' in text
    return first, figures


def test_main_writes_readme_and_figures(tmp_path, monkeypatch, reference):
    fake = RecordingFigures()
    # report.py draws through `from cifarlab import figures`, which reads the package attribute
    monkeypatch.setattr(cifarlab, "figures", fake, raising=False)
    readme, _ = run_main_twice(tmp_path, monkeypatch)
    top1, hists = fake.comparisons[0]
    # comparison.png: every run that ran outside report 004's grid, with its published top-1
    assert sorted(top1) == ["alexnet_transfer-skip-high", "dnn", "lenet5", "resnet9"]
    assert top1["lenet5"] == {
        "reported": ref_value(reference, "lenet5")["value"],
        "best": pytest.approx(statistics.mean(LENET_TOP1.values())),
        "final": pytest.approx(statistics.mean(LENET_FINAL.values())),
    }
    assert top1["resnet9"]["reported"] == ref_value(reference, "resnet9")["value"]
    assert list(hists) == ["resnet9"] and list(hists["resnet9"]["test_acc"]) == [0.62, 0.9301]
    titles = [t for t, _ in fake.bars]
    assert titles == [f"Report {r}: reported vs reproduced top-1" for r in ("000", "001", "002", "003", "004")] * 2
    bars = dict(fake.bars)
    lenet = bars["Report 000: reported vs reproduced top-1"][0]
    assert lenet["reproduced"] == pytest.approx(statistics.mean(LENET_TOP1.values()))
    assert lenet["final"] == pytest.approx(statistics.mean(LENET_FINAL.values()))
    assert lenet["reported"] == ref_value(reference, "lenet5")["value"]
    reproduced, reported, activations, ratios, augments, published = fake.grids[0]
    assert not published  # none published here: the grid draws this workspace's runs
    assert ratios == ["2:1:1", "5:3:2", "5:4:1"] and len(activations) == 4 and len(augments) == 3
    assert reproduced[("relu", "5:4:1", "crop_flip")] == GRID_RUNS["resnet18-relu-5_4_1-crop_flip"]
    assert len(reproduced) == 2 and len(reported) == 36
    # open_choices.png: one panel per published number with alternatives, its default first
    panels = {row["base"]: row for row in fake.open_choices}
    assert panels["lenet5"]["published"] == ref_value(reference, "lenet5")["value"]
    assert panels["lenet5"]["settings"][0]["label"] == "lenet5"
    assert sorted(panels["lenet5"]["settings"][0]["values"]) == pytest.approx(sorted(LENET_TOP1.values()))
    # none published here: the sections show this workspace's runs, and Your runs counts them
    text = readme.decode("utf-8")
    assert "The sections below show **this workspace's runs** (`reports/metrics`): no run is published" in text
    p = load_params_of(tmp_path)
    ran = {rec["run"] for rec in load_project(tmp_path)}
    mine = text.split("\n\n## Your runs\n\n")[1].split("\n\n## Provenance\n\n")[0]
    assert mine.startswith(f"{len(ran & set(p.runs))} of {len(p.runs)} runs of params.yaml have metrics here")
    assert table_row(mine, "`lenet5`")[1:4] == [
        "3",
        f"{100 * statistics.mean(LENET_TOP1.values()):.2f} ± {100 * statistics.stdev(LENET_TOP1.values()):.2f}% (n=3)",
        "not published yet",
    ]
    assert "<img" not in mine  # the sections above embed each run's figures
    # same inputs, a fresh directory: the same bytes (nothing depends on where or when it ran)
    fresh = tmp_path / "again"
    fresh.mkdir()
    assert run_main_twice(fresh, monkeypatch)[0] == readme


@pytest.mark.slow
def test_main_draws_real_figures(tmp_path, monkeypatch):
    _, figures = run_main_twice(tmp_path, monkeypatch)
    for name in EXPECTED_FIGURES[1:]:
        assert (figures / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_number_typed_twice_in_reference_yaml_is_refused_naming_its_line(tmp_path):
    """reference.yaml is the one hand-typed input: `value:` twice in one number (PyYAML would keep
    the last silently) is one line naming file, line and key."""
    from cifarlab.core.errors import DataError

    ref = tmp_path / "reference.yaml"
    ref.write_text(
        "numbers:\n"
        "  - {report: '000', run: lenet5, metric: top1, value: 0.5}\n"
        "  - {report: '000', run: resnet9, metric: top1, value: 0.6, value: 0.7}\n"
    )
    with pytest.raises(DataError) as e:
        load_reference(ref)
    assert str(e.value).startswith(f"{ref}:3:") and "duplicate key 'value'" in str(e.value)
    assert "\n" not in str(e.value)
    assert len(load_reference(REFERENCE_FILE)["numbers"]) > 50  # the real file has no repeat


# --------------------------------------------------------------------------- claims about a curve


def write_history(root: Path, out: str, test_loss: list[float]) -> None:
    history = root / "reports" / "history"
    history.mkdir(parents=True, exist_ok=True)
    rows = [f"{e},1.0,0.5,{v},0.5,0.1" for e, v in enumerate(test_loss, start=1)]
    (history / f"{out}.csv").write_text("epoch,train_loss,train_acc,test_loss,test_acc,lr\n" + "\n".join(rows) + "\n")


def curve_line(project, reference) -> str:
    hist = report.curve_histories(reference, project["runs"], project["root"] / "reports" / "history")
    md = section(document.report_tables(reference, project["runs"], fake_lock(), histories=hist), "001")
    claim = next(line for line in md.splitlines() if "Diverges after epoch 17" in line)
    return md.splitlines()[md.splitlines().index(claim) + 1]


def test_curve_claim_is_checked_against_each_seeds_history(project, reference):
    """Report 001 says dnn "diverges after epoch 17": the line under it names each seed's epoch of
    lowest test loss and whether the loss rises after it, read from the history, and follows it."""
    (dnn,) = project["runs"]["dnn"]
    out, seed = Path(dnn["path"]).stem, dnn["seed"]
    assert curve_line(project, reference) == "  - Not checked yet: the run has no history."
    rising = [2.0, 1.5, 1.2, 1.1, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]  # lowest at epoch 5, then overfits
    write_history(project["root"], out, rising)
    line = curve_line(project, reference)
    # 5-epoch means: lowest 1.12 (epochs 3-7), last 1.30 (epochs 6-10): +16%
    assert f"seed {seed}: epoch 5 of 10 (1.0000), last 5 epochs +16%" in line
    assert "rises after it in 1 of 1 seed " in line and line.endswith("the report: epoch 17.")
    # one low outlier near the end of a flat, noisy curve (the lecture resnet's shape): the last
    # epoch is 25% above the lowest, but the 5-epoch means only fall, so it does not count as rising
    noisy = [1.0, 0.8, 0.9, 0.8, 0.9, 0.8, 0.9, 0.8, 0.6, 0.75]
    write_history(project["root"], out, noisy)
    line = curve_line(project, reference)
    assert f"seed {seed}: epoch 9 of 10 (0.6000), last 5 epochs +0%" in line
    assert "rises after it in none of the seeds" in line
    write_history(project["root"], out, [2.0, 1.5, 1.2, 1.1, 1.0])  # still falling at the end
    line = curve_line(project, reference)
    assert f"seed {seed}: epoch 5 of 5 (1.0000), last 5 epochs +0%" in line
    assert "rises after it in none of the seeds" in line


# --------------------------------------------------------------------------- your runs beside the published


def published_workspace(root: Path, monkeypatch) -> RecordingFigures:
    """`root` as the current directory: this checkout's published runs (reports/published,
    reports/studies), reference.yaml and params.yaml, and no run of its own. Returns the figures
    module's stand-in, which records what each report.main asks it to draw."""
    shipped_reports = REPORTS_DIR
    for folder in ("published", "studies"):
        shutil.copytree(shipped_reports / folder, root / "reports" / folder)
    shutil.copy(REFERENCE_FILE, root / "reports" / "reference.yaml")
    shutil.copy(SHIPPED_PARAMS, root / "params.yaml")
    fake = RecordingFigures()
    monkeypatch.setattr(cifarlab, "figures", fake, raising=False)
    monkeypatch.chdir(root)
    return fake


def own_smoke_run(root: Path, run: str, top1: float) -> dict:
    """One (run, seed) of this workspace's own, made from the published run's files: best top-1
    `top1`, on a 250 / 100 subset for 1 epoch (a smoke run). Returns its details."""
    pub = root / "reports" / "published"
    metrics_file = json.loads((pub / "metrics" / f"{run}.json").read_text())
    details = json.loads((pub / "details" / f"{run}.json").read_text())
    metrics_file["best"]["top1"] = details["best"]["top1"] = top1
    details.update(n_train=250, n_test=100, epochs_cap=1)
    for kind, d in (("metrics", metrics_file), ("details", details)):
        (root / "reports" / kind).mkdir(parents=True, exist_ok=True)
        (root / "reports" / kind / f"{run}.json").write_text(json.dumps(d))
    return details


def load_params_of(root: Path):
    from cifarlab.core.params import load_params

    return load_params(root / "params.yaml", check_models=False)


def drawn(fake: RecordingFigures) -> list:
    """What report.main asked to draw (comparison.png's curves as CSV text: a diverged run's NaN
    compares equal)."""
    comparisons = [(top1, {run: h.to_csv(index=False) for run, h in hists.items()}) for top1, hists in fake.comparisons]
    return copy.deepcopy([fake.bars, fake.grids, comparisons, fake.open_choices])


def test_a_run_of_ones_own_goes_beside_the_published_report(tmp_path, monkeypatch, reference):
    """A newcomer's one run (what `dvc repro --downstream train@lenet5` gives the report stage):
    every section and figure still shows the published runs, and "Your runs" after them sets the
    run beside its published reproduction and the report's number, counted against params.yaml
    as `cifarlab runs` counts it, with the smoke warning and its figures; provenance describes it."""
    from cifarlab.tooling.cli import runs_table

    fake = published_workspace(tmp_path, monkeypatch)
    readme = tmp_path / "reports" / "README.md"
    report.main([])
    before, figures_before = readme.read_text(), drawn(fake)
    assert fake.grids[0][-1] is True  # the grid draws the published runs, and says so when empty
    assert "## Your runs" not in before and "## Provenance" not in before and "Smoke run" not in before
    assert "this workspace has no run of its own yet" in before

    details = own_smoke_run(tmp_path, "lenet5", 0.5123)
    (tmp_path / "reports/figures/runs").mkdir(parents=True)
    (tmp_path / "reports/figures/runs/curves_lenet5.png").write_bytes(b"\x89PNG drawn by plot@lenet5")
    fake.bars, fake.grids, fake.comparisons = [], [], []
    report.main([])
    after = readme.read_text()
    # the published material, the report sections and every figure: as without a run of one's own
    assert drawn(fake) == figures_before
    intro = "\n\nThe sections below show the **published runs** above"
    assert after.split(intro)[0] == before.split(intro)[0]
    sections_before = before.split(intro)[1].split("\n\n", 1)[1].removesuffix("\n")
    sections_after, mine = after.split(intro)[1].split("\n\n", 1)[1].split("\n\n## Your runs\n\n")
    assert sections_after == sections_before
    assert "[Your runs](#your-runs)" in after.split(intro)[1].split("\n\n", 1)[0]
    # Your runs: the count, the smoke warning, the row, the run's figures; then its provenance
    mine, provenance = mine.split("\n\n## Provenance\n\n")
    p = load_params_of(tmp_path)
    assert runs_table(p).splitlines()[-1].startswith(f"{len(p.runs)} runs, seed {p.seed}")
    assert mine.startswith(f"1 of {len(p.runs)} runs of params.yaml have metrics here (`reports/metrics`).")
    assert "> **Smoke run: 1 of 1 (run, seed) results below are not the published recipe**" in mine
    published = record_files.group_runs(
        record_files.load_metrics(
            tmp_path / "reports/published/metrics", root=tmp_path, details_dir=tmp_path / "reports/published/details"
        )
    )
    theirs = [r["best"]["top1"] for r in published["lenet5"]]
    assert len(theirs) >= 2  # the shipped lenet5 has several seeds: mean ± std
    cells = table_row(mine, "`lenet5`")
    assert cells[1:5] == [
        "1",
        "51.23%",
        f"{100 * statistics.mean(theirs):.2f} ± {100 * statistics.stdev(theirs):.2f}% (n={len(theirs)})",
        f"{100 * ref_value(reference, 'lenet5')['value']:.2f}%",
    ]
    assert cells[5] == (
        "subset: 250 train / 100 test images (full: 50,000 / 10,000); "
        f"epochs capped at 1 (recipe: {details['recipe_epochs']})"
    )
    assert '<img src="figures/runs/curves_lenet5.png" alt="learning curves: lenet5"' in mine
    assert "figures/runs/curves_lenet5.png" not in sections_after  # the sections embed the published run's
    assert provenance.startswith("Of your runs (`reports/metrics`)")
    assert table_row(provenance, "lenet5", "23")[-1] == "`reports/metrics/lenet5.json`"
    assert "reports/published" not in provenance.split("\n\n", 1)[1]


def test_your_runs_counts_run_table_and_seeds_and_marks_each_seed(reference):
    """The count line: the table's runs with a result, its (run, seed) results when params.yaml
    has several seeds, and runs the table does not list; a run's smoke notes seed by seed when
    its seeds differ; a run nobody published says so."""
    records = [
        smoke_record("lenet5", 23),
        smoke_record("lenet5", 1, epochs_cap=2, recipe_epochs=10),
        smoke_record("lenet5", 2),
        smoke_record("gone-run", 23),
    ]
    for r, top1 in zip(records, (0.46, 0.47, 0.48, 0.5), strict=True):
        r["best"]["top1"] = top1
    yours = record_files.group_runs(records)
    published = record_files.group_runs([smoke_record("lenet5", 23)])
    text = document.your_runs_section(reference, yours, published, ["lenet5", "dnn", "cnn"], [23, 1, 2])
    assert text.startswith(
        "## Your runs\n\n1 of 3 runs of params.yaml have metrics here (`reports/metrics`), "
        "3 of its 9 (run, seed) results (seeds 23, 1, 2), and 1 more not in params.yaml (`gone-run`)."
    )
    assert "Smoke run: 1 of 4 (run, seed) results" in text
    lenet = table_row(text, "`lenet5`")
    vals = [0.46, 0.47, 0.48]
    assert (
        lenet[1] == "3" and lenet[2] == f"{100 * statistics.mean(vals):.2f} ± {100 * statistics.stdev(vals):.2f}% (n=3)"
    )
    assert lenet[3] == f"{100 * published['lenet5'][0]['best']['top1']:.2f}%"
    assert lenet[5] == "seed 1: epochs capped at 2 (recipe: 10)<br>seed 2: the recipe<br>seed 23: the recipe"
    gone = table_row(text, "`gone-run`")
    assert gone[3:] == ["not published yet", document.DASH, ""]
    # one seed of params.yaml: no (run, seed) count; nothing of one's own: no section
    assert document.your_runs_section(reference, yours, published, ["lenet5"], [23]).startswith(
        "## Your runs\n\n1 of 1 runs of params.yaml have metrics here (`reports/metrics`), and 1 more"
    )
    assert document.your_runs_section(reference, {}, published, ["lenet5"], [23]) == ""
