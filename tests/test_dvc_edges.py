"""DVC's edges a researcher meets on day two, as docs/experiments.md and docs/data.md describe them:
`dvc repro` leaves dvc.lock untracked; the documented remote commands (`dvc remote add --local`,
`dvc pull --allow-missing -q`, `dvc exp push`/`pull`) work where DVC's plain forms fail or upload
nothing; `dvc repro --dry` fails on a run not trained, and the documented `cifarlab estimate`
answers instead; the report stage after one run of one's own keeps the published sections and
adds "Your runs"; `cifarlab compare` marks a run trained under other params than params.yaml's.

The DVC behaviours run in small DVC projects of their own (a stage that writes a line): the edges
are DVC's, the commands the docs'; seconds instead of a training."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from workspace import ROOT, SHIPPED_PARAMS, project_copy, project_env, shipped, write_params

DOCS = ROOT / "docs"


def doc_command(page: str, prefix: str) -> list[str]:
    """The argv of the one command line in `page`'s ```bash blocks that starts with `prefix`
    (its comment dropped): the command as documented, so a doc edit that breaks it fails here."""
    text = (DOCS / page).read_text()
    lines = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip().startswith(prefix)
    ]
    assert len(lines) == 1, f"{page}: expected one command line starting {prefix!r}, found {lines}"
    return shlex.split(lines[0], comments=True)


def run(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def ok(argv: list[str], cwd: Path, env: dict) -> str:
    r = run(argv, cwd, env)
    assert r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout + r.stderr


def dvc_project(repo: Path, dvc_yaml: str, params: str | None = None) -> dict:
    """A git repository on branch main holding a DVC project with this project's .dvc/config and
    the given dvc.yaml (and params.yaml), committed. Returns its environment."""
    repo.mkdir(parents=True)
    env = project_env(repo)
    ok(["git", "init", "-q", "-b", "main"], repo, env)
    ok(["dvc", "init", "-q"], repo, env)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    (repo / "dvc.yaml").write_text(dvc_yaml)
    if params is not None:
        (repo / "params.yaml").write_text(params)
    ok(["git", "add", "-A"], repo, env)
    ok(["git", "commit", "-qm", "project"], repo, env)
    return env


# Two "runs", each writing its own file: one reproduced, one not, is a partly trained branch.
RUNS_YAML = """stages:
  train:
    foreach: [a, b]
    do:
      cmd: mkdir -p out && echo ${item} > out/${item}.txt
      outs:
        - out/${item}.txt
"""


@pytest.mark.slow  # dvc subprocesses
def test_dvc_repro_leaves_dvc_lock_untracked(tmp_path):
    """docs/experiments.md: a workspace that has run anything holds an untracked dvc.lock, and a
    commit on main leaves it out (main commits none: docs/publishing.md). DVC's core.autostage
    would stage it at every `dvc repro`, and the next `git commit` would put it on main."""
    repo = tmp_path / "repo"
    env = dvc_project(repo, RUNS_YAML)
    ok(["dvc", "repro", "train@a"], repo, env)
    status = ok(["git", "status", "--porcelain", "--", "dvc.lock"], repo, env)
    assert status == "?? dvc.lock\n", f"dvc.lock after dvc repro: {status!r} (staged: .dvc/config has core.autostage)"
    ok(["git", "commit", "-qm", "an edit", "--allow-empty"], repo, env)
    assert "dvc.lock" not in ok(["git", "show", "--name-only", "--format=", "HEAD"], repo, env)
    text = " ".join((DOCS / "experiments.md").read_text().split())
    assert "untracked `dvc.lock`" in text and "sets no `core.autostage`" in text


def with_remote(argv: list[str], remote: Path) -> list[str]:
    """The documented `dvc remote add ... storage URL` with this test's folder as the URL."""
    assert argv[:3] == ["dvc", "remote", "add"] and "--local" in argv, argv
    return [*argv[:-1], str(remote)]


@pytest.mark.slow  # dvc and git subprocesses, two clones
def test_documented_pull_brings_a_partly_trained_branch_and_exits_0(tmp_path):
    """On a branch that ran train@a but not train@b: plain `dvc pull` fetches out/a.txt and exits 1
    (train@b's output has no hash in dvc.lock); the documented `dvc pull --allow-missing -q`
    brings the same file, exits 0 and prints nothing."""
    add_remote = doc_command("experiments.md", "dvc remote add --local -d storage /")
    pull = doc_command("experiments.md", "dvc pull")
    assert pull == ["dvc", "pull", "--allow-missing", "-q"]
    remote = tmp_path / "remote"
    repo = tmp_path / "repo"
    env = dvc_project(repo, RUNS_YAML)
    ok(["dvc", "repro", "train@a"], repo, env)
    ok(["git", "add", "dvc.lock"], repo, env)
    ok(["git", "commit", "-qm", "a trained, b not"], repo, env)
    ok(with_remote(add_remote, remote), repo, env)
    ok(doc_command("experiments.md", "dvc push"), repo, env)
    for name, argv, code in (("plain", ["dvc", "pull"], 1), ("documented", pull, 0)):
        clone = tmp_path / name
        ok(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
        ok(with_remote(add_remote, remote), clone, env)  # .dvc/config.local is the clone's own
        r = run(argv, clone, env)
        assert r.returncode == code, (name, r.returncode, r.stdout[-1500:], r.stderr[-1500:])
        assert (clone / "out/a.txt").read_text() == "a\n", name  # every file there is arrives
        assert not (clone / "out/b.txt").exists()
    assert r.stdout + r.stderr == ""  # the documented one: not a line


@pytest.mark.slow  # dvc and git subprocesses, two clones
def test_documented_exp_push_uploads_an_experiment_made_before_the_remote(tmp_path):
    """An experiment run before any DVC remote: with a remote in .dvc/config (not --local),
    `dvc exp push` says "Pushed", exits 0 and uploads nothing; with the documented
    `dvc remote add --local`, it uploads, and another clone's `dvc exp pull` + `dvc exp show` read
    the experiment's metrics."""
    add_remote = doc_command("experiments.md", "dvc remote add --local -d storage /")
    push = doc_command("experiments.md", "dvc exp push")
    pull = doc_command("experiments.md", "dvc exp pull")
    assert push[:4] == ["dvc", "exp", "push", "origin"] and pull[:4] == ["dvc", "exp", "pull", "origin"]
    repo = tmp_path / "repo"
    origin = tmp_path / "origin.git"
    remote = tmp_path / "remote"
    env = dvc_project(
        repo,
        """stages:
  train:
    cmd: >-
      echo '{"top1": ${lr}}' > metrics.json
    params: [lr]
    metrics:
      - metrics.json
""",
        params="lr: 1\n",
    )
    ok(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, env)
    ok(["git", "remote", "add", "origin", str(origin)], repo, env)
    ok(["git", "push", "-q", "origin", "main"], repo, env)
    ok(["dvc", "exp", "run", "-q", "-n", "lr2", "-S", "lr=2"], repo, env)

    def documented(argv: list[str]) -> list[str]:  # the docs' command, naming this experiment
        return [a if a != "<exp-name>" else "lr2" for a in argv]

    # the edge, as the docs tell it: a committed-style remote, read from the experiment's commit
    ok(["dvc", "remote", "add", "-d", "storage", str(remote)], repo, env)
    out = ok(documented(push), repo, env)
    assert "Pushed experiment" in out and "uploaded" not in out, out
    assert not remote.exists() or not any(p.is_file() for p in remote.rglob("*"))

    ok(with_remote(add_remote, remote), repo, env)
    out = ok(documented(push), repo, env)
    assert re.search(r"\d+ files? uploaded", out), out
    clone = tmp_path / "clone"
    ok(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], tmp_path, env)
    ok(with_remote(add_remote, remote), clone, env)
    ok(documented(pull), clone, env)
    show = run(["dvc", "exp", "show", "--json"], clone, env)
    assert show.returncode == 0, show.stderr[-1500:]
    shown = json.loads(show.stdout)
    exps = [rev for base in shown for exp in base.get("experiments") or [] for rev in exp["revs"]]
    assert [e["name"] for e in exps] == ["lr2"], exps
    assert exps[0]["data"]["metrics"]["metrics.json"]["data"] == {"top1": 2}, exps[0]["data"]


@pytest.mark.slow  # dvc repro --dry
def test_dry_run_fails_on_a_run_not_trained_and_estimate_answers(tmp_path, monkeypatch, capsys, small_params):
    """docs/data.md: `dvc repro --dry` fails on a fresh clone (DVC hashes the inputs of a stage
    not run yet, treeverse/dvc#9818); the documented `cifarlab estimate TARGETS` lists the stages
    that `dvc repro TARGETS` runs, each with its time (the timer faked: no training step here)."""
    from cifarlab.tooling import cli, estimate, timing

    argv = doc_command("data.md", "cifarlab estimate")
    targets = argv[2:]
    assert argv[:2] == ["cifarlab", "estimate"] and targets == ["plot@lenet5", "plot@resnet9"]
    repo = tmp_path / "clone"
    repo.mkdir()
    project_copy(repo)
    # the run table cut to the targets' runs and dnn (`model`): DVC loads 21 stages, not 185
    write_params(
        repo, small_params(("lenet5", "resnet9", "dnn"), archive=(tmp_path / "cifar-10-python.tar.gz", "0" * 32))
    )
    env = project_env(repo)
    ok(["git", "init", "-q", "-b", "main"], repo, env)
    dry = run(["dvc", "repro", "--dry", *targets], repo, env)
    assert dry.returncode != 0 and "No such file or directory" in dry.stderr, dry.stderr[-1500:]
    assert "treeverse/dvc#9818" in (DOCS / "data.md").read_text()

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(estimate, "has_gpu", lambda: False)
    monkeypatch.setattr(timing, "measure", lambda train, keys, log=None: {k: 1e-3 for k in keys})
    monkeypatch.chdir(repo)
    cli.main(argv[1:])
    table = capsys.readouterr().out
    rows = {line.split()[0] for line in table.splitlines() if line.strip()}
    stages = {
        "fetch",
        "preprocess",
        *(f"{stage}@{run}" for stage in ("train", "evaluate", "plot") for run in ("lenet5", "resnet9")),
    }
    assert stages <= rows, table
    assert f"total ({len(stages)} stages, this CPU)" in table, table


@pytest.mark.slow  # dvc repro of the real report stage, its figures drawn
def test_the_report_after_one_run_keeps_the_published_sections_and_adds_yours(tmp_path, small_params):
    """The report stage run by DVC after one run of one's own (lenet5; its files made from the
    published run's rather than trained): reports/README.md keeps the published runs in every
    section and adds "Your runs" with that run, counted against params.yaml's run table."""
    repo = tmp_path / "clone"
    repo.mkdir()
    project_copy(repo)
    runs = ("lenet5", "resnet9", "dnn")
    write_params(repo, small_params(runs, archive=(tmp_path / "cifar-10-python.tar.gz", "0" * 32)))
    env = project_env(repo)
    ok(["git", "init", "-q", "-b", "main"], repo, env)
    pub = repo / "reports/published"
    published_lenet5 = json.loads((pub / "metrics/lenet5.json").read_text())["best"]["top1"]
    mine = json.loads((pub / "metrics/lenet5.json").read_text())
    mine["best"]["top1"] = 0.5123
    for folder, name, data in (
        ("metrics", "lenet5.json", json.dumps(mine)),
        ("details", "lenet5.json", (pub / "details/lenet5.json").read_text()),
        ("history", "lenet5.csv", (pub / "history/lenet5.csv").read_text()),
    ):
        (repo / "reports" / folder).mkdir(parents=True, exist_ok=True)
        (repo / "reports" / folder / name).write_text(data)
    (repo / "reports/figures/runs").mkdir(parents=True)
    shutil.copy(pub / "figures/curves_lenet5.png", repo / "reports/figures/runs/curves_lenet5.png")
    ok(["dvc", "repro", "--single-item", "report"], repo, env)
    text = (repo / "reports/README.md").read_text()
    sections, yours = text.split("\n## Your runs\n")
    assert "## Published runs" in sections and "## Report 004" in sections
    assert f"{100 * published_lenet5:.2f}%" in sections and "51.23%" not in sections
    assert yours.lstrip().startswith(f"1 of {len(runs)} runs of params.yaml have metrics here")
    row = next(line for line in yours.splitlines() if line.startswith("| `lenet5` |"))
    assert "| 1 | 51.23% |" in row, row
    assert '<img src="figures/runs/curves_lenet5.png"' in yours and "\n## Provenance\n" in yours


# --------------------------------------------------------------------------- cifarlab compare


RUNS = ("lenet5", "resnet18-relu-5_3_2-crop_flip")  # the grid cell: an lr_ratio DVC writes unquoted


def fake_lock(params: dict) -> dict:
    """dvc.lock as `dvc repro plot@RUN` of RUNS writes it under `params` (their values recorded,
    the stages' params as dvc.yaml lists them, in part): fetch -> preprocess -> train -> evaluate."""

    def p(**kv) -> dict:
        return {"params.yaml": kv}

    stages = {
        "fetch": {
            "params": p(**{"data.url": params["data"]["url"], "data.md5": params["data"]["md5"]}),
            "outs": [{"path": "data/raw/cifar-10-python.tar.gz", "md5": "0" * 32}],
        },
        "preprocess": {
            "deps": [{"path": "data/raw/cifar-10-python.tar.gz", "md5": "0" * 32}],
            "params": p(seed=params["seed"], **{"data.train_subset": params["data"]["train_subset"]}),
            "outs": [{"path": "data/prepared", "md5": "1" * 32 + ".dir"}],
        },
    }
    for run in RUNS:
        model = params["runs"][run]["model"]
        recipe = p(
            **{
                f"runs.{run}": params["runs"][run],
                model: params[model],
                "train.max_epochs": params["train"]["max_epochs"],
            }
        )
        stages[f"train@{run}"] = {
            "deps": [{"path": "data/prepared", "md5": "1" * 32 + ".dir"}],
            "params": recipe,
            "outs": [{"path": f"data/checkpoints/{run}", "md5": "2" * 32 + ".dir"}],
        }
        stages[f"evaluate@{run}"] = {
            "deps": [{"path": f"data/checkpoints/{run}", "md5": "2" * 32 + ".dir"}],
            "params": recipe,
            "outs": [{"path": f"reports/metrics/{run}.json", "md5": "3" * 32}],
        }
    return {"schema": "2.0", "stages": stages}


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """A workspace whose RUNS were trained under this checkout's params.yaml (dvc.lock as DVC
    writes it), the current directory."""
    from dvc.utils.serialize import dumps_yaml

    from cifarlab.core.params_file import read_params_file

    (tmp_path / "reports/metrics").mkdir(parents=True)
    shutil.copy(SHIPPED_PARAMS, tmp_path / "params.yaml")
    shutil.copy(shipped("reports/reference.yaml"), tmp_path / "reports/reference.yaml")
    block = {"epoch": 1, "top1": 0.4, "top3": 0.7, "loss": 1.9}
    for run in RUNS:
        (tmp_path / f"reports/metrics/{run}.json").write_text(json.dumps({"run": run, "best": block, "final": block}))
    (tmp_path / "dvc.lock").write_text(dumps_yaml(fake_lock(read_params_file(tmp_path / "params.yaml"))))
    assert "lr_ratio: 5:3:2" in (tmp_path / "dvc.lock").read_text()  # unquoted: YAML 1.1 reads a number
    monkeypatch.chdir(tmp_path)
    return tmp_path


def compare_notes(capsys) -> tuple[dict[str, str], str]:
    from cifarlab.tooling import cli

    cli.main(["compare"])
    out = capsys.readouterr().out
    rows = {
        cells[0]: cells[-1]
        for line in out.splitlines()
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    return rows, out


def test_compare_marks_a_run_trained_under_other_params(trained, capsys):
    from cifarlab.tooling.cli import set_params

    rows, out = compare_notes(capsys)
    assert not any("out of date" in note for note in rows.values()), out  # as trained: current
    set_params(trained / "params.yaml", ["lenet5.lr=0.05"])
    rows, out = compare_notes(capsys)
    assert (
        "yours is out of date: trained before params.yaml changed lenet5.lr; "
        "`dvc repro evaluate@lenet5` trains it again"
    ) in rows["lenet5"], out
    assert "out of date" not in rows["resnet18-relu-5_3_2-crop_flip"], out
    assert "1 of your runs trained under other params than params.yaml's now" in out
    # a run's own value in the run table, and a change upstream (preprocess) reach every run
    set_params(trained / "params.yaml", ["lenet5.lr=0.001", "runs.lenet5.lr=0.01", "data.train_subset=500"])
    rows, _ = compare_notes(capsys)
    assert "changed data.train_subset, runs.lenet5.lr;" in rows["lenet5"]
    assert "changed data.train_subset;" in rows["resnet18-relu-5_3_2-crop_flip"]


def test_compare_leaves_a_moved_archive_current_and_marks_other_bytes(trained, capsys):
    """data.url names where the archive came from: a moved copy re-runs fetch only (same md5, so
    nothing after it). data.md5 names other bytes: every run is out of date."""
    from cifarlab.tooling.cli import set_params

    set_params(trained / "params.yaml", ["data.url=/elsewhere/cifar-10-python.tar.gz"])
    rows, out = compare_notes(capsys)
    assert not any("out of date" in note for note in rows.values()), out
    set_params(trained / "params.yaml", ["data.md5=" + "f" * 32])
    rows, out = compare_notes(capsys)
    assert all("changed data.md5;" in rows[r] for r in RUNS), out
