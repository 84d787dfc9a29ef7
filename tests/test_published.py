"""Published runs: provenance, `cifarlab pack` / `cifarlab fold` (and their refusals), the
report's "Published runs" section, `cifarlab compare`, the code-version guard, and (slow) the GPU
kit's round trip on a CPU: run -> pack -> fold -> report -> compare with the user's own run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from pack_tools import JPEG_FULL, NUMERICS, REFERENCE, checkout, finished_run, repack
from workspace import SHIPPED_PARAMS

from cifarlab.core.params import load_params
from cifarlab.core.params_file import read_params_file
from cifarlab.core.provenance import code_version
from cifarlab.core.stage_main import workspace_code_problem
from cifarlab.reporting import published
from cifarlab.reporting.markdown import fmt_value
from cifarlab.reporting.records import group_runs, load_metrics
from cifarlab.reporting.reference import primary
from cifarlab.tooling import fold, packs

ROOT = Path(__file__).resolve().parents[1]
LENET5_REPORTED = fmt_value("top1", primary(REFERENCE["numbers"], "lenet5", "top1")["value"])  # "NN.NN%"


def test_a_run_that_recorded_no_numerics_is_refused_in_one_line(tmp_path):
    """A run's numerics (precision, memory format) are read from its timing file, never guessed:
    pack refuses a run without them and names the retraining command; fold refuses a pack whose
    provenance lacks them (the numbers of bf16 and fp32 runs are never averaged)."""
    ws = checkout(tmp_path / "ws")
    finished_run(ws)
    timing = ws / "reports/timing/lenet5.json"
    t = json.loads(timing.read_text())
    del t["numerics"]
    timing.write_text(json.dumps(t))
    with pytest.raises(packs.PublishError) as e:
        packs.provenance_of(ws, "lenet5", load_params(ws / "params.yaml"), {})
    assert str(e.value) == (
        "lenet5: reports/timing/lenet5.json records no numerics (precision, memory format): "
        "retrain it (dvc repro -f train@lenet5) before packing it"
    )

    good = checkout(tmp_path / "good")
    finished_run(good)
    packs.pack(good, tmp_path / "good.tar.gz", log=lambda s: None)

    def drop_numerics(members):
        prov = json.loads(members["provenance/lenet5.json"])
        del prov["numerics"]
        members["provenance/lenet5.json"] = json.dumps(prov).encode()

    bad = repack(tmp_path / "good.tar.gz", tmp_path / "bad.tar.gz", drop_numerics)
    home = checkout(tmp_path / "home")
    with pytest.raises(packs.PublishError, match="provenance/lenet5.json records no numerics"):
        fold.fold(bad, home, log=lambda s: None)
    assert not (home / "reports/published").exists()


def test_seeds_of_another_precision_are_refused_like_seeds_of_other_data(workspace, tmp_path):
    """bf16 seeds are never averaged with fp32 ones: a pack of an fp32 seed of a run published in
    bf16 is refused with one line, and --replace swaps the run's seeds."""
    home = checkout(tmp_path / "home")
    packs.pack(workspace, tmp_path / "bf16.tar.gz", log=lambda s: None)
    fold.fold(tmp_path / "bf16.tar.gz", home, log=lambda s: None)
    other = checkout(tmp_path / "other")
    finished_run(other, out="lenet5-s2", seed=2)
    timing = other / "reports/timing/lenet5-s2.json"
    timing.write_text(
        json.dumps(
            {
                **json.loads(timing.read_text()),
                "numerics": {**NUMERICS, "precision": "fp32", "memory_format": "contiguous"},
            }
        )
    )
    packs.pack(other, tmp_path / "fp32.tar.gz", log=lambda s: None)
    with pytest.raises(
        packs.PublishError,
        match=r"^\S+: run 'lenet5' is already published from other data or in "
        r"another precision \(lenet5, lenet5-s1\), and such seeds are never "
        r"averaged: pass --replace to drop those first, or --study bf16 "
        r"to keep them apart \(What bf16 costs\)$",
    ):
        fold.fold(tmp_path / "fp32.tar.gz", home, log=lambda s: None)
    pub = home / published.PUBLISHED_DIR
    assert sorted(published.load_provenance(pub)) == ["lenet5", "lenet5-s1"]
    fold.fold(tmp_path / "fp32.tar.gz", home, replace=True, log=lambda s: None)
    assert sorted(published.load_provenance(pub)) == ["lenet5-s2"]


@pytest.fixture()
def workspace(tmp_path):
    ws = checkout(tmp_path / "ws")
    finished_run(ws)
    finished_run(ws, out="lenet5-s1", seed=1, top1=0.62)
    return ws


def test_pack_holds_every_finished_run_with_provenance_and_no_checkpoint(workspace, tmp_path):
    (workspace / "data/checkpoints/lenet5").mkdir(parents=True)
    (workspace / "data/checkpoints/lenet5/best.pt").write_bytes(b"weights")
    dest = tmp_path / "p.tar.gz"
    manifest = packs.pack(workspace, dest, log=lambda s: None)
    assert sorted(manifest["runs"]) == ["lenet5", "lenet5-s1"]
    with tarfile.open(dest) as tar:
        names = set(tar.getnames())
        prov = json.load(tar.extractfile("provenance/lenet5.json"))
    assert not any(n.endswith(".pt") for n in names)
    assert {
        "metrics/lenet5.json",
        "details/lenet5.json",
        "timing/lenet5.json",
        "history/lenet5.csv",
        "figures/curves_lenet5.png",
        "manifest.json",
    } <= names
    assert dest.stat().st_size < packs.MAX_PACK_BYTES
    # every field "Published results" asks of a run, from what the run recorded
    assert prov["data"]["content_md5"] == JPEG_FULL and prov["data"]["n_train"] == 50000
    assert prov["device"]["name"] == "Test CPU" and prov["device"]["num_threads"] == 2
    assert prov["code"]["code_commit"] == "b" * 40 and prov["code"]["dirty"] is False
    assert set(prov["code"]["files"]) == set(packs.code_files(workspace))
    assert "src/cifarlab/engine/loop.py" in prov["code"]["files"]
    assert prov["epochs"] == {"run": 10, "recipe": 10, "cap": None, "stopped_early": False}
    assert prov["wall_seconds"] == 50.0 and prov["images_per_s"] == 50000 * 10 / 50.0
    assert prov["resumed_after"] == [4]
    assert prov["numerics"] == NUMERICS  # precision, memory format, compile, fused, the CPU's native bf16
    # no dvc.lock here (stages run by hand, as the GPU kit does): the recipe is params.yaml's,
    # checked against the run's own files, and said to be derived
    assert prov["seed"] == 23 and prov["derived_at_pack"] == ["recipe"] and prov["trained_with"] is None


def test_pack_refuses_an_unfinished_run(workspace, tmp_path):
    (workspace / "reports/history/lenet5.csv").unlink()
    with pytest.raises(packs.PublishError, match="'lenet5' is not finished"):
        packs.pack(workspace, tmp_path / "p.tar.gz", ["lenet5"], log=lambda s: None)
    assert not (tmp_path / "p.tar.gz").exists()


MODEL_SECTIONS = (
    "dnn",
    "cnn",
    "resnet",
    "custom_resnet",
    "lenet5",
    "resnet9",
    "hw2_cnn",
    "alexnet_transfer",
    "resnet18",
)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_lock(ws: Path, outs=(("lenet5", "lenet5", 23),)) -> dict:
    """The dvc.lock `dvc repro plot@<run>` leaves for each (out, run, seed) of a workspace: its
    stages' params as params.yaml has them now and the md5 of their deps and outs (dvc.yaml's
    keys; the real thing is checked by hand against DVC, see the report of issue 38)."""
    raw = read_params_file(ws / "params.yaml")

    def params(*keys):
        picked = {}
        for key in keys:
            value = raw
            for part in key.split("."):
                value = value[part]
            picked[key] = value
        return {"params.yaml": picked}

    def entries(*items):
        return [{"path": path, "hash": "md5", "md5": md5} for path, md5 in items]

    numerics = ("train.bf16", "train.channels_last", "train.deterministic", "train.num_threads")
    train_keys = (
        "train.max_epochs",
        *numerics,
        "train.eval_batch_size",
        "train.fused_optimizer",
        "train.compile",
        "train.compile_mode",
    )
    archive, prepared = "7b63e107647e6929a34fbe9b0e49048f", "1" * 32 + ".dir"
    code = [(f, md5_of(ws / f)) for f in packs.code_files(ws)]
    stages = {
        "fetch": {
            "cmd": "python -m cifarlab.fetch",
            "params": params("data.url", "data.md5"),
            "outs": entries(("data/raw/cifar-10-python.tar.gz", archive)),
        },
        "preprocess": {
            "cmd": "python -m cifarlab.preprocess",
            "deps": entries(("data/raw/cifar-10-python.tar.gz", archive)),
            "params": params("seed", "data.train_subset", "data.test_subset", "data.val_split"),
            "outs": entries(("data/prepared", prepared)),
        },
    }
    for out, run, seed in outs:
        model = raw["runs"][run]["model"]
        main = out == run
        at = f"@{run}" if main else f"@{run}-{seed}"
        kind = "" if main else "_seeds"
        checkpoint = (f"data/checkpoints/{out}", hashlib.md5(out.encode()).hexdigest() + ".dir")
        stages[f"train{kind}{at}"] = {
            "cmd": f"python -m cifarlab.train --run {run}" + ("" if main else f" --seed {seed}"),
            "deps": entries(("data/prepared", prepared), *code),
            "params": params(
                *(("seed",) if main else ()), *train_keys, f"runs.{run}", *((model,) if main else MODEL_SECTIONS)
            ),
            "outs": entries(
                checkpoint,
                (f"reports/timing/{out}.json", md5_of(ws / f"reports/timing/{out}.json")),
                (f"reports/history/{out}.csv", md5_of(ws / f"reports/history/{out}.csv")),
            ),
        }
        stages[f"evaluate{kind}{at}"] = {
            "cmd": f"python -m cifarlab.evaluate --run {run}",
            "deps": entries(("data/prepared", prepared), checkpoint, *code),
            "params": params("train.eval_batch_size", *numerics, f"runs.{run}", *((model,) if main else ())),
            "outs": entries(
                *((f"reports/{d}/{out}.json", md5_of(ws / f"reports/{d}/{out}.json")) for d in ("metrics", "details")),
                (f"reports/predictions/{out}.csv", "2" * 32),
            ),
        }
        stages[f"plot{kind}{at}"] = {
            "cmd": f"python -m cifarlab.plot --run {run}",
            "deps": entries(
                *(
                    (f"reports/{d}/{out}.{x}", md5_of(ws / f"reports/{d}/{out}.{x}"))
                    for d, x in (("details", "json"), ("history", "csv"))
                )
            ),
            "outs": entries(
                (f"reports/figures/runs/curves_{out}.png", md5_of(ws / f"reports/figures/runs/curves_{out}.png"))
            ),
        }
    (ws / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False))
    return stages


def trained_run(ws: Path, out: str = "lenet5", run: str = "lenet5", seed: int = 23, lr: float = 0.001) -> None:
    """finished_run, its history recording the lr each epoch started at, as train writes it."""
    finished_run(ws, out, run, seed)
    (ws / f"reports/history/{out}.csv").write_text(
        "epoch,train_loss,train_acc,test_loss,test_acc,lr\n" + "".join(f"{e},1.0,0.5,1.1,0.6,{lr}\n" for e in (1, 2))
    )


def cifarlab(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifarlab", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow  # `python -m cifarlab pack` subprocesses
def test_pack_carries_what_dvc_lock_recorded_and_refuses_a_run_stale_against_params_yaml(tmp_path):
    """The field report: train lenet5, `cifarlab set lenet5.lr=0.01` without retraining, pack. The
    pack said lr 0.01 while its history showed 0.001. Now pack refuses, in one line naming the run,
    the key and the fix; once params.yaml matches again the pack carries dvc.lock's record."""
    ws = checkout(tmp_path / "ws")
    trained_run(ws)
    trained_run(ws, out="lenet5-s1", seed=1)
    write_lock(ws, [("lenet5", "lenet5", 23), ("lenet5-s1", "lenet5", 1)])
    assert cifarlab("set", "lenet5.lr=0.01", cwd=ws).returncode == 0
    r = cifarlab("pack", "--runs", "lenet5", "-o", str(tmp_path / "p.tar.gz"), cwd=ws)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == (
        "error: lenet5: stale: params.yaml has lenet5.lr = 0.01, train@lenet5 ran with 0.001: run "
        "`dvc repro plot@lenet5` to redo it with this params.yaml and code (or undo those changes), "
        "then pack again\n"
    ), r.stderr
    r = cifarlab("pack", "--runs", "lenet5-s1", "-o", str(tmp_path / "p.tar.gz"), cwd=ws)
    assert "lenet5-s1: stale: params.yaml has lenet5.lr = 0.01, train_seeds@lenet5-1 ran with 0.001" in r.stderr
    assert "`dvc repro plot_seeds@lenet5-1`" in r.stderr and not (tmp_path / "p.tar.gz").exists()

    shutil.copy(SHIPPED_PARAMS, ws / "params.yaml")
    manifest = packs.pack(ws, tmp_path / "p.tar.gz", log=lambda s: None)
    with tarfile.open(tmp_path / "p.tar.gz") as tar:
        prov = json.load(tar.extractfile("provenance/lenet5-s1.json"))
    assert manifest["runs"]["lenet5"]["recipe"]["recipe"]["lr"] == 0.001 == prov["recipe"]["recipe"]["lr"]
    assert prov["derived_at_pack"] == [] and prov["trained_with"]["source"] == "dvc.lock"
    stages = prov["trained_with"]["stages"]
    assert sorted(stages) == [
        "evaluate_seeds@lenet5-1",
        "fetch",
        "plot_seeds@lenet5-1",
        "preprocess",
        "train_seeds@lenet5-1",
    ]
    train = stages["train_seeds@lenet5-1"]
    assert train["params"]["lenet5"]["lr"] == 0.001 and train["params"]["runs.lenet5"] == {"model": "lenet5"}
    assert train["deps"]["data/prepared"] == "1" * 32 + ".dir"  # the data it trained on
    assert train["deps"]["src/cifarlab/engine/loop.py"] == md5_of(ws / "src/cifarlab/engine/loop.py")  # its code
    assert stages["evaluate_seeds@lenet5-1"]["outs"]["reports/metrics/lenet5-s1.json"] == md5_of(
        ws / "reports/metrics/lenet5-s1.json"
    )


def _edit_code(ws):
    loop = ws / "src/cifarlab/engine/loop.py"
    loop.write_text(loop.read_text() + "\n# changed\n")


def _retrain_without_evaluate(ws):
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    lock["stages"]["train@lenet5"]["outs"][0]["md5"] = "f" * 32 + ".dir"
    (ws / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def _edit_metrics(ws):
    (ws / "reports/metrics/lenet5.json").write_text("{}")


def _prepare_again(ws):
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    lock["stages"]["preprocess"]["outs"][0]["md5"] = "e" * 32 + ".dir"
    (ws / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def _subset(ws):
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["data"]["train_subset"] = 5000
    params["train"]["num_threads"] = 7
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


STALE = {
    "code edited": (_edit_code, "src/cifarlab/engine/loop.py changed since train@lenet5 ran"),
    "trained again, not evaluated": (
        _retrain_without_evaluate,
        "train@lenet5 rebuilt data/checkpoints/lenet5 after evaluate@lenet5 ran",
    ),
    "a packed file edited": (_edit_metrics, "reports/metrics/lenet5.json is not the file evaluate@lenet5 wrote"),
    "data prepared again": (_prepare_again, "preprocess rebuilt data/prepared after train@lenet5 ran"),
    "data and numerics keys": (
        _subset,
        "params.yaml has data.train_subset = 5000, preprocess ran with None; "
        "params.yaml has train.num_threads = 7, train@lenet5 ran with ",
    ),
}


@pytest.mark.parametrize("case", STALE, ids=list(STALE))
def test_pack_refuses_outputs_stale_against_the_code_the_data_or_each_other(case, tmp_path):
    ws = checkout(tmp_path / "ws")
    trained_run(ws)
    write_lock(ws)
    change, message = STALE[case]
    change(ws)
    with pytest.raises(
        packs.PublishError, match=r"^lenet5: stale: .*" + re.escape(message) + r".*`dvc repro plot@lenet5`"
    ):
        packs.pack(ws, tmp_path / "p.tar.gz", log=lambda s: None)
    assert not (tmp_path / "p.tar.gz").exists()


@pytest.mark.slow  # `python -m cifarlab pack` subprocesses
def test_without_dvc_lock_pack_checks_params_yaml_against_the_runs_own_history(tmp_path):
    """Stages run by hand (or by the GPU kit) leave no dvc.lock: the run's own history, which
    records the lr each epoch started at, shows the params.yaml edit."""
    ws = checkout(tmp_path / "ws")
    trained_run(ws, lr=0.001)
    assert cifarlab("set", "lenet5.lr=0.01", cwd=ws).returncode == 0
    with pytest.raises(
        packs.PublishError,
        match=r"^lenet5: stale: its history \(epoch 1\) records recipe\.lr = "
        r"0\.001, its recipe \(params\.yaml\) has 0\.01: run `dvc repro "
        r"plot@lenet5`",
    ):
        packs.pack(ws, tmp_path / "p.tar.gz", log=lambda s: None)
    details = ws / "reports/details/lenet5.json"
    details.write_text(json.dumps({**json.loads(details.read_text()), "overrides": {"batch_size": 32}}))
    with pytest.raises(
        packs.PublishError,
        match=r"its details \(overrides\) records recipe\.batch_size = 32, "
        r"its recipe \(params\.yaml\) has 64",
    ):
        packs.pack(ws, tmp_path / "p.tar.gz", log=lambda s: None)


def _set_lr(lr, *names):
    """The pack as the old `cifarlab pack` made it after `cifarlab set lenet5.lr=LR`: its recipe
    in `names` (manifest.json, provenance/lenet5.json) says LR."""

    def edit(members):
        for name in names:
            d = json.loads(members[name])
            (d["runs"]["lenet5"] if name == "manifest.json" else d)["recipe"]["recipe"]["lr"] = lr
            members[name] = json.dumps(d).encode()

    return edit


def _no_lock_record(edit):
    def both(members):
        d = json.loads(members["provenance/lenet5.json"])
        d["trained_with"] = None
        members["provenance/lenet5.json"] = json.dumps(d).encode()
        edit(members)

    return both


def _metrics_edited(members):
    members["metrics/lenet5.json"] = members["metrics/lenet5.json"].replace(b"0.6", b"0.7")


OWN_RECORD = {
    "manifest alone": (
        _set_lr(0.01, "manifest.json"),
        r"manifest\.json publishes recipe\.lr = 0\.01, but provenance/lenet5\.json says 0\.001",
    ),
    "manifest and provenance": (
        _set_lr(0.01, "manifest.json", "provenance/lenet5.json"),
        r"publishes recipe\.lr = 0\.01, but the dvc\.lock record in provenance/lenet5\.json "
        r"says 0\.001",
    ),
    "an older pack: history only": (
        _no_lock_record(_set_lr(0.01, "manifest.json", "provenance/lenet5.json")),
        r"publishes recipe\.lr = 0\.01, but its own history/lenet5\.csv \(epoch 1\) "
        r"says 0\.001",
    ),
    "a file dvc.lock did not record": (
        _metrics_edited,
        r"metrics/lenet5\.json has md5 \w+, not the \w+ dvc\.lock "
        r"recorded for evaluate@lenet5",
    ),
}


@pytest.mark.slow  # `python -m cifarlab` pack and fold subprocesses
@pytest.mark.parametrize("case", OWN_RECORD, ids=list(OWN_RECORD))
def test_fold_checks_the_recipe_it_publishes_against_the_runs_own_record(case, tmp_path):
    """A pack that says lr 0.01 for a run whose own record says 0.001 is refused even where
    this checkout's params.yaml has 0.01 (the old pack/fold published it as 0.01)."""
    ws = checkout(tmp_path / "ws")
    trained_run(ws)
    write_lock(ws)
    good = tmp_path / "good.tar.gz"
    packs.pack(ws, good, log=lambda s: None)
    home = checkout(tmp_path / "home")
    assert cifarlab("set", "lenet5.lr=0.01", cwd=home).returncode == 0
    edit, message = OWN_RECORD[case]
    if case == "a file dvc.lock did not record":
        shutil.copy(SHIPPED_PARAMS, home / "params.yaml")
    with pytest.raises(packs.PublishError, match=message + r".*`dvc repro plot@lenet5`, then pack it again$"):
        fold.fold(repack(good, tmp_path / "bad.tar.gz", edit), home, log=lambda s: None)
    assert not (home / "reports/published").exists()
    shutil.copy(SHIPPED_PARAMS, home / "params.yaml")
    assert fold.fold(good, home, log=lambda s: None) == ["lenet5"]


def test_fold_publishes_and_the_report_section_shows_provenance(workspace, tmp_path):
    dest = tmp_path / "p.tar.gz"
    packs.pack(workspace, dest, log=lambda s: None)
    home = checkout(tmp_path / "home")
    assert fold.fold(dest, home, log=lambda s: None) == ["lenet5", "lenet5-s1"]
    pub = home / published.PUBLISHED_DIR
    assert (pub / "metrics/lenet5-s1.json").read_bytes() == (workspace / "reports/metrics/lenet5-s1.json").read_bytes()
    prov = published.load_provenance(pub)
    assert prov["lenet5"]["folded"]["code_differs"] == []
    runs = group_runs(load_metrics(pub / "metrics", root=home, details_dir=pub / "details"))
    text = published.published_section(REFERENCE, runs, prov, ["lenet5", "resnet9"])
    assert "61.00 ± 1.41% (n=2)" in text  # mean and sample std of 0.60, 0.62
    assert (
        "JPEG-derived full set, 50,000/10,000" in text
        and published.JPEG_NOTE.format(measured=published.JPEG_UNMEASURED) in text
    )
    assert (
        "Test CPU (torch 2.x, 2 threads, bf16, native bf16: amx_bf16)" in text
        and "`bbbbbbb`" in text
        and "0m50s" in text
    )
    assert "| `resnet9` |" in text and "not run yet" in text and "`dvc repro plot@resnet9`" in text
    # one row per run, narrow enough for a 160-column terminal; the seeds one click away
    main_table, seeds = text.split("<details>", 1)
    table = [line for line in main_table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[2:]] == ["| `lenet5`"]
    assert table[2].endswith(
        "| 61.00 ± 1.41% (n=2) | +13.82 pp | 10, 10 | bf16 | JPEG 50k/10k | Test CPU, 2 thr | 0m50s |"
    )
    assert max(map(len, table)) <= 160
    assert "| 23 | 60.00% @ 10 |" in seeds and "| 1 | 62.00% @ 10 |" in seeds and "</details>" in seeds

    # another seed of lenet5 on other data: never averaged with these two
    other = checkout(tmp_path / "other")
    finished_run(other, out="lenet5-s2", seed=2, content_md5="0" * 32)
    packs.pack(other, tmp_path / "o.tar.gz", log=lambda s: None)
    with pytest.raises(
        packs.PublishError,
        match=r"'lenet5' is already published from other data or in another precision \(lenet5, lenet5-s1\)",
    ):
        fold.fold(tmp_path / "o.tar.gz", home, log=lambda s: None)
    assert sorted(published.load_provenance(pub)) == ["lenet5", "lenet5-s1"]
    fold.fold(tmp_path / "o.tar.gz", home, replace=True, log=lambda s: None)
    assert sorted(published.load_provenance(pub)) == ["lenet5-s2"]
    assert sorted(f.name for f in (pub / "metrics").iterdir()) == ["lenet5-s2.json"]


def test_the_jpeg_note_only_with_jpeg_data(tmp_path):
    ws = checkout(tmp_path / "ws")
    finished_run(ws, content_md5="0" * 32)
    pub = tmp_path / "pub"
    shutil.copytree(ws / "reports", pub)
    runs = group_runs(load_metrics(pub / "metrics", details_dir=pub / "details"))
    text = published.published_section(REFERENCE, runs, {}, ["lenet5"])
    assert "**About the data.**" not in text and "not recorded" in text  # no provenance: said, not guessed
    assert "Not run yet" not in text


def test_the_device_cell_names_each_cpu_once_with_its_thread_counts():
    def prov(name, threads=None, cuda=False):
        return {"device": {"name": name, "num_threads": threads, "cuda": cuda}}

    seeds = [
        prov("Intel(R) Xeon(R) Processor", 1),
        prov("Intel(R) Xeon(R) Processor", 2),
        prov("Intel(R) Xeon(R) Processor", 1),
        prov("AMD EPYC", 2),
    ]
    assert published.devices_cell(seeds) == "Intel Xeon Processor, 1/2 thr / AMD EPYC, 2 thr"
    assert published.devices_cell([prov("NVIDIA H200", 16, cuda=True)]) == "NVIDIA H200"
    assert published.devices_cell([prov("AMD EPYC", 2)]) == "AMD EPYC, 2 thr"


def test_a_seeds_device_says_which_bf16_its_cpu_runs_natively():
    """The seed table's device names the CPU's native bf16 (it sets a bf16 run's speed); a run
    that recorded no numerics says nothing rather than guess."""
    cpu = {"name": "AMD EPYC", "torch": "2.x", "num_threads": 1, "cuda": None}
    fp32 = {"precision": "fp32", "compile": False, "cpu_bf16": "none"}
    assert (
        published.device_label({"device": cpu, "numerics": fp32})
        == "AMD EPYC (torch 2.x, 1 thread, fp32, native bf16: none)"
    )
    assert (
        published.device_label({"device": cpu, "numerics": NUMERICS})
        == "AMD EPYC (torch 2.x, 1 thread, bf16, native bf16: amx_bf16)"
    )
    assert published.device_label({"device": cpu}) == "AMD EPYC (torch 2.x, 1 thread, ?)"  # not recorded


def test_a_diverged_seed_is_marked_in_the_one_row_table(tmp_path):
    """A run that diverged keeps its best epoch before the divergence; the row says it diverged
    rather than show that number as a finished run's."""
    ws = checkout(tmp_path / "ws")
    finished_run(ws, top1=0.25)
    metrics = ws / "reports/metrics/lenet5.json"
    d = json.loads(metrics.read_text())
    d.update(diverged=True, diverged_epoch=3, final={"epoch": None, "top1": None, "top3": None, "loss": None})
    metrics.write_text(json.dumps(d))
    runs = group_runs(load_metrics(ws / "reports/metrics", root=ws, details_dir=ws / "reports/details"))
    text = published.published_section(REFERENCE, runs, {}, ["lenet5"])
    row = next(line for line in text.splitlines() if line.startswith("| `lenet5` |"))
    assert "| 25.00% (1 diverged at epoch 3) |" in row, row


def test_a_stalled_epoch_is_named_where_its_wall_time_is_shown(tmp_path):
    """A seed paused for an hour keeps its real wall time, and the tables say where it went: the
    run's row gets a dagger, the seed's cell the epoch and the median. A slow first epoch (compile
    warm-up, minutes) is no stall; a timing file without epoch seconds is read as none."""
    ws = checkout(tmp_path / "ws")
    finished_run(ws)
    finished_run(ws, out="lenet5-s1", seed=1)
    timing = ws / "reports/timing"
    stalled = [60.0] * 9 + [60.0 + 3600.0]  # epoch 10 held an hour's pause
    warm_up = [60.0 * 5] + [60.0] * 9  # 5x the median, 4 minutes over
    for out, seconds in (("lenet5", stalled), ("lenet5-s1", warm_up)):
        t = json.loads((timing / f"{out}.json").read_text())
        (timing / f"{out}.json").write_text(json.dumps({**t, "epoch_seconds": seconds}))
    prov = {"lenet5": {"wall_seconds": sum(stalled)}, "lenet5-s1": {"wall_seconds": sum(warm_up)}}
    epoch_seconds = published.load_epoch_seconds(ws / "reports")
    assert epoch_seconds["lenet5"] == stalled
    assert published.stalled_epochs(stalled) == [(10, 3600.0)] and published.stalled_epochs(warm_up) == []
    runs = group_runs(load_metrics(ws / "reports/metrics", root=ws, details_dir=ws / "reports/details"))
    text = published.published_section(REFERENCE, runs, prov, ["lenet5"], epoch_seconds=epoch_seconds)
    main_table, seeds = text.split("<details>", 1)
    row = next(line for line in main_table.splitlines() if line.startswith("| `lenet5` |"))
    assert row.endswith("| 42m00s † |"), row  # (1h10m + 14m) / 2 seeds, the paused hour included
    assert "† A seed's wall time includes a stalled epoch" in main_table
    assert "| 1h10m (epoch 10 took 1h01m, median epoch 1m00s) |" in seeds
    assert "| 14m00s |" in seeds

    # without the epoch seconds (an older timing file), the wall time alone and no dagger
    (timing / "lenet5.json").write_text(json.dumps({"wall_seconds": 1.0, "epoch_seconds": "n/a"}))
    assert published.load_epoch_seconds(ws / "reports")["lenet5"] == []
    text = published.published_section(REFERENCE, runs, prov, ["lenet5"])
    assert "†" not in text and "| 1h10m |" in text


def test_a_seed_stopped_and_resumed_says_after_which_epochs(tmp_path):
    """A pack's `resumed_after` (the last saved epoch of each resume) shows in the seed's wall-time
    cell, beside a stall where there is one; a pack's malformed value is no claim."""
    ws = checkout(tmp_path / "ws")
    finished_run(ws)
    runs = group_runs(load_metrics(ws / "reports/metrics", root=ws, details_dir=ws / "reports/details"))
    prov = {"lenet5": {"wall_seconds": 3 * 3600.0, "resumed_after": [14, 62]}}
    text = published.published_section(REFERENCE, runs, prov, ["lenet5"])
    assert "| 3h00m (stopped twice, resumed after epochs 14, 62) |" in text.split("<details>", 1)[1]
    assert "a seed stopped and resumed says after which saved epochs" in text
    stalled = [60.0] * 9 + [3660.0]
    assert published.fmt_wall(sum(stalled), stalled, [5]) == (
        "1h10m (epoch 10 took 1h01m, median epoch 1m00s; stopped once, resumed after epoch 5)"
    )
    assert published.fmt_wall(60.0, None, [1, 2, 3]) == "1m00s (stopped 3 times, resumed after epochs 1, 2, 3)"
    for junk in ([], None, "14", [True, "x"], {"14": 1}):
        assert published.fmt_wall(60.0, None, junk) == "1m00s"


def test_fold_refuses_other_recipe_other_code_and_non_packs_writing_nothing(workspace, tmp_path):
    dest = tmp_path / "p.tar.gz"
    packs.pack(workspace, dest, log=lambda s: None)
    home = checkout(tmp_path / "home")
    params = yaml.safe_load((home / "params.yaml").read_text())
    params["lenet5"]["lr"] = 0.5
    (home / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(
        packs.PublishError, match=r"run 'lenet5' was trained with recipe\.lr = 0\.001, this checkout has 0\.5"
    ):
        fold.fold(dest, home, log=lambda s: None)
    shutil.copy(SHIPPED_PARAMS, home / "params.yaml")
    loop = home / "src/cifarlab/engine/loop.py"
    loop.write_text(loop.read_text() + "\n# changed\n")
    with pytest.raises(
        packs.PublishError, match=r"src/cifarlab/engine/loop\.py differs from this checkout.*--accept-code-change"
    ):
        fold.fold(dest, home, log=lambda s: None)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a pack")
    with pytest.raises(packs.PublishError, match="not a readable .tar.gz pack"):
        fold.fold(bad, home, log=lambda s: None)
    assert not (home / published.PUBLISHED_DIR / "metrics").exists()  # nothing half-written
    fold.fold(dest, home, accept_code_change=True, log=lambda s: None)
    prov = published.load_provenance(home / published.PUBLISHED_DIR)
    assert prov["lenet5"]["folded"]["code_differs"] == ["src/cifarlab/engine/loop.py"]
    assert "(1 file differs from the checkout it was folded into)" in published.code_label(prov["lenet5"])


def test_compare_sets_yours_beside_the_published_runs(workspace):
    pub_runs = group_runs(load_metrics(workspace / "reports/metrics", details_dir=workspace / "reports/details"))
    yours_dir = workspace / "mine"
    finished_run(yours_dir, top1=0.65, content_md5="1" * 32)
    yours = group_runs(load_metrics(yours_dir / "reports/metrics", details_dir=yours_dir / "reports/details"))
    rows = {r[0]: r for r in published.compare_rows(REFERENCE, yours, pub_runs)}
    run, report, theirs, mine, diff, note = rows["lenet5"]
    assert report == LENET5_REPORTED and theirs == "61.00 ± 1.41% (n=2)" and mine == "65.00%"
    assert diff == "+4.00 pp" and "other data" in note


def test_priority_puts_what_no_cpu_can_do_first():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gpu_reproduce
    finally:
        sys.path.pop(0)

    order = gpu_reproduce.priority(dict(load_params(SHIPPED_PARAMS).runs))
    assert order[:3] == ["resnet9", "resnet", "custom_resnet"]
    grid = [r for r in order if r.startswith("resnet18-")]
    acts = [r.split("-")[1] for r in grid]
    assert acts == sorted(acts, key=["relu", "leaky_relu", "tanh", "sigmoid"].index)
    small = [r for r in order if r in ("cnn", "hw2_cnn", "dnn", "lenet5")]
    assert small == ["cnn", "hw2_cnn", "dnn", "lenet5"]
    assert order.index(grid[-1]) < order.index("alexnet_transfer-skip-high") < order.index("cnn")
    assert order.index("lenet5") < order.index("lenet5-tanh")  # a base run before its alternatives


def test_code_version_names_the_commit_and_uncommitted_code(tmp_path):
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }

    def git(*a):
        return subprocess.run(["git", *a], cwd=tmp_path, env=env, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "code")
    code_commit = git("rev-parse", "HEAD").stdout.decode().strip()
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/r.json").write_text("{}")
    git("add", "-A")
    git("commit", "-qm", "results only")
    v = code_version(tmp_path)
    assert v["code_commit"] == code_commit != v["commit"] and v["dirty"] is False
    (tmp_path / "params.yaml").write_text("seed: 1\n")  # params are recorded on their own: not "dirty code"
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "src/a.py").write_text("x = 2\n")
    assert code_version(tmp_path)["dirty"] is True
    assert code_version(tmp_path / "src")["commit"] == v["commit"]
    outside = tmp_path.parent / "not-a-repo"
    outside.mkdir(exist_ok=True)
    os.environ["CIFARLAB_COMMIT"] = "c" * 40
    try:
        if subprocess.run(["git", "-C", str(outside), "rev-parse"], capture_output=True).returncode != 0:
            assert code_version(outside) == {"commit": "c" * 40, "code_commit": "c" * 40, "dirty": None}
    finally:
        del os.environ["CIFARLAB_COMMIT"]


def test_a_workspace_refuses_to_run_another_checkouts_code(tmp_path):
    ws = checkout(tmp_path / "ws")
    assert workspace_code_problem(ws) is None  # an identical copy: the same code runs
    loop = ws / "src/cifarlab/engine/loop.py"
    loop.write_text(loop.read_text() + "\n# changed\n")
    problem = workspace_code_problem(ws)
    assert "engine/loop.py differ" in problem and "PYTHONPATH=src" in problem and "\n" not in problem
    assert workspace_code_problem(tmp_path) is None  # not a workspace: nothing to compare


# --------------------------------------------------------------------------- slow: the round trip


def sh(*cmd, cwd: Path, env: dict, timeout: int = 900) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


@pytest.mark.slow
def test_gpu_kit_round_trip_on_cpu_then_compare_with_ones_own_run(tmp_path, tiny_archive):
    """The kit's CPU round trip (run -> pack -> fold -> report), then a user's own `dvc repro` of
    the run and `cifarlab compare`, the documented command that sets theirs beside the published."""
    from workspace import project_copy

    archive, md5 = tiny_archive
    home = tmp_path / "home"
    home.mkdir()
    project_copy(home)
    env = {
        **os.environ,
        "PYTHONPATH": str(home / "src"),
        "DVC_NO_ANALYTICS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    pack = tmp_path / "pack.tar.gz"
    kit = [
        sys.executable,
        "tools/gpu_reproduce.py",
        "--archive",
        str(archive),
        "--device",
        "cpu",
        "--runs",
        "lenet5",
        "--workdir",
        str(tmp_path / "kit"),
        "--pack",
        str(pack),
        "--set",
        "train.num_threads=1",
    ]
    log = sh(*kit, "--minutes", "0", cwd=home, env=env)
    assert "stopped at lenet5" in log and not pack.exists()  # no budget: nothing trained, nothing packed
    log = sh(*kit, "--minutes", "1", cwd=home, env=env)
    assert "preflight lenet5: one step on cpu" in log and "lenet5: done" in log and pack.is_file()
    fold_cmd = (sys.executable, "-m", "cifarlab", "fold", str(pack))
    if (home / "reports/published/metrics/lenet5.json").exists():  # main's lenet5 seeds: other data
        r = subprocess.run(fold_cmd, cwd=home, env=env, capture_output=True, text=True)
        assert r.returncode == 2 and "already published from other data" in r.stderr and "--replace" in r.stderr
    out = sh(*fold_cmd, "--replace", cwd=home, env=env)
    assert "fold: 1 runs (lenet5)" in out
    assert not (home / "reports/published/metrics/lenet5-s1.json").exists()
    sh(sys.executable, "-m", "cifarlab.report", cwd=home, env=env)
    report = (home / "reports/README.md").read_text()
    section = report.split("## Published runs", 1)[1].split("### Not run yet", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| `lenet5` | {LENET5_REPORTED} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # run | report | cifarlab | diff | best epoch | precision | data | device | wall/seed
    assert cells[5] == "bf16" and cells[6] == "other 200/100" and cells[7].endswith(", 1 thr"), cells
    assert "differ" not in row  # folded into the code it was trained with
    # every run of the table with nothing published is listed under "Not run yet", with its command
    runs = list(load_params(home / "params.yaml", check_models=False).runs)
    unpublished = [r for r in runs if not (home / f"reports/published/metrics/{r}.json").exists()]
    assert "lenet5" in runs and "lenet5" not in unpublished
    if unpublished:
        not_run = report.split("### Not run yet", 1)[1]
        assert f"({len(unpublished)} of {len(runs)} runs)" in not_run.splitlines()[0]
        for r in unpublished:
            assert f"| `{r}` |" in not_run and f"`dvc repro plot@{r}`" in not_run, r
    else:
        assert "### Not run yet" not in report
    assert "The sections below show the **published runs**" in report
    srcs = re.findall(r'<img src="([^"]+)"', report) + re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert "published/figures/curves_lenet5.png" in srcs
    assert [s for s in srcs if ".." in s or not (home / "reports" / s).is_file()] == []

    # the user's own run of the same recipe on the same data, through DVC
    sh("git", "init", "-q", "-b", "main", cwd=home, env=env)
    sh(
        sys.executable,
        "-m",
        "cifarlab",
        "set",
        f"data.url={archive}",
        f'data.md5="{md5}"',
        "train.num_threads=1",
        cwd=home,
        env=env,
    )
    sh("dvc", "repro", "plot@lenet5", cwd=home, env=env)
    table = sh(sys.executable, "-m", "cifarlab", "compare", cwd=home, env=env)
    row = next(line for line in table.splitlines() if line.startswith("| lenet5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    mine = json.loads((home / "reports/metrics/lenet5.json").read_text())["best"]["top1"]
    theirs = json.loads((home / "reports/published/metrics/lenet5.json").read_text())["best"]["top1"]
    assert cells[3] == f"{100 * mine:.2f}%" and cells[2] == f"{100 * theirs:.2f}%"
    # same recipe, data, seed and thread count on the same machine: the same bytes (determinism)
    assert cells[4] == "+0.00 pp" and cells[5] == ""


def test_a_recipe_key_added_since_a_pack_was_made_counts_at_its_default():
    """A pack from code before `crop_padding` existed trained with zero padding, the default:
    it compares equal to this checkout's recipe; one that says reflect does not."""
    from cifarlab.tooling.packs import comparable, first_difference, run_recipe

    p = load_params(SHIPPED_PARAMS, check_models=False)
    here = run_recipe(p, "resnet9")
    older = json.loads(json.dumps(here))
    del older["recipe"]["crop_padding"]
    assert first_difference(comparable(older), comparable(here)) is None
    older["recipe"]["crop_padding"] = "reflect"
    assert first_difference(comparable(older), comparable(here)) == "recipe.crop_padding"
