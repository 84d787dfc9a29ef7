"""Open choices: params validation of `open_choices`, and the verdict logic on synthetic numbers
(covered, not covered, too few seeds, diverged runs, nothing run), the section and its figure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import ParamsError
from cifarlab.core.params import load_params, validate
from cifarlab.reporting import open_choices as oc

ROOT = Path(__file__).resolve().parents[1]
PUB = 0.50  # a synthetic published value: every number below is built around it


def recs(run: str, values, diverged=(), reading: str = "best") -> list[dict]:
    """Records as load_metrics gives them: one per seed; a None value with a diverged epoch."""
    out = []
    for seed, v in enumerate(values):
        block = {"epoch": 10, "top1": v}
        out.append(
            {
                "run": run,
                "seed": seed,
                "best": block,
                "final": {"epoch": 10, "top1": v},
                "best_flip": {"epoch": 10, "top1": v},
                "path": f"{run}-{seed}",
                "diverged_epoch": diverged[seed] if seed < len(diverged) else None,
            }
        )
    return out


def opt(values, diverged=()):
    return oc.option("alt", "best", recs("alt", values, diverged))


def test_covered_when_three_seeds_span_the_published_value():
    default = oc.option("base", "best", recs("base", [0.60, 0.61, 0.62]))
    text = oc.verdict(PUB, default, [opt([0.49, 0.50, 0.52])], "CMD")
    assert text == "reproduced by `alt`"


def test_not_covered_names_the_closest_and_how_far():
    default = oc.option("base", "best", recs("base", [0.60, 0.61, 0.62]))
    far, near = oc.option("far", "best", recs("far", [0.70, 0.71, 0.72])), opt([0.53, 0.54, 0.55])
    assert oc.verdict(PUB, default, [far, near], "CMD") == "closest: `alt`, still 4.00 points above"
    below = oc.option("below", "best", recs("below", [0.44, 0.45, 0.46]))
    assert oc.verdict(PUB, default, [far, below], "CMD") == "closest: `below`, still 5.00 points below"


def test_a_default_closer_than_every_alternative_is_named_closest():
    """dnn: the default at +0.8 points, its final-epoch reading at -1.3: the verdict names the
    default, not the farther alternative."""
    default = oc.option("base", "best", recs("base", [0.505, 0.51, 0.515]))
    far = opt([0.46, 0.47, 0.48])
    assert oc.verdict(PUB, default, [far], "CMD") == "closest: `base` (the default), still 1.00 points above"


def test_too_few_seeds_never_reproduce_even_on_the_value():
    default = oc.option("base", "best", recs("base", [0.60, 0.61, 0.62]))
    text = oc.verdict(PUB, default, [opt([0.50, 0.50])], "CMD")
    assert text.startswith("closest: `alt`, still 0.00 points off (n=2: below 3 seeds")


def test_diverged_seeds_count_for_nothing():
    default = oc.option("base", "best", recs("base", [0.60, 0.61, 0.62]))
    # three seeds, one diverged (no number): two left, so it cannot cover
    alt = opt([0.49, None, 0.52], diverged=(None, 4, None))
    assert alt.summary["n"] == 2 and alt.diverged == (4,)
    assert "n=2" in oc.verdict(PUB, default, [alt], "CMD")
    all_diverged = opt([None, None, None], diverged=(3, 3, 5))
    assert oc.verdict(PUB, default, [all_diverged], "CMD") == "every setting run so far diverged: `alt`"
    text = oc.verdict(PUB, default, [all_diverged, opt([0.6, 0.6, 0.6]), oc.option("new", "best", [])], "CMD")
    assert text == "closest: `alt`, still 10.00 points above; not run yet: `new` (`CMD`)"


def test_nothing_run_says_the_command():
    default = oc.option("base", "best", recs("base", []))
    assert (
        oc.verdict(PUB, default, [opt([])], "cifarlab set x && dvc repro y")
        == "not swept yet: `cifarlab set x && dvc repro y`"
    )


def test_a_default_that_covers_needs_no_alternative():
    default = oc.option("base", "best", recs("base", [0.48, 0.50, 0.51]))
    assert oc.verdict(PUB, default, [opt([0.7, 0.7, 0.7])], "CMD").startswith("reproduced by the default settings")


def test_readings_read_their_block():
    r = recs("x", [0.5, 0.6])
    for seed_rec in r:
        seed_rec["final"] = {"epoch": 20, "top1": 0.4}
    assert oc.option("x", "final", r).summary["mean"] == pytest.approx(0.4)
    assert oc.option("x", "final", r).label == "x (final epoch)"
    assert oc.option("x", "best_flip", r).label == "x (test-time flip)"


def test_the_section_lists_every_setting_with_its_mark_and_the_figure_rows():
    reference = {"numbers": [{"report": "000", "run": "base", "metric": "top1", "value": PUB}]}
    runs = {"base": recs("base", [0.60, 0.61, 0.62]), "a": recs("a", [0.49, 0.50, 0.52]), "b": recs("b", [0.55])}
    choices = {"base": (("a", "best"), ("b", "best"), ("c", "best"), ("base", "final"))}
    text = oc.section(reference, choices, runs, {"base": "lenet5"}, "open_choices.png")
    assert "### `base`: published 50.00%" in text
    assert "| `a` | 50.33 ± 1.53% (n=3) | 3 | +0.33 pp | **yes** |" in text
    assert "| `b` | 55.00% | 1 | +5.00 pp | too few seeds |" in text
    assert "| `c` | not run yet | 0 | — | — |" in text
    assert "**Verdict:** reproduced by `a`." in text and "figures/open_choices.png" in text
    rows = oc.figure_rows(reference, choices, runs)
    assert [s["covers"] for s in rows[0]["settings"]] == [False, True, False, False, False]
    from cifarlab import figures

    fig = figures.open_choices_figure(rows)
    (ax,) = fig.axes
    assert ax.get_title().endswith("dashed: published 50.00%")
    assert [line.get_label() for line in ax.lines if line.get_linestyle() == "--"] == ["published 50.00%"]
    lo, hi = ax.get_xlim()  # the data and the published value only, not 0-100, no room for text
    assert (lo, hi) == pytest.approx((48.0, 63.0))  # the seeds span 49-62: a point either side
    labels = [t for t in ax.texts if "pp, n=" in t.get_text()]  # in a column right of the axes
    assert labels and all(t.get_position()[0] > 1 and not t.get_clip_on() for t in labels)
    fig.canvas.draw()  # the layout leaves the column room: it ends inside the figure
    assert max(t.get_window_extent().x1 for t in labels) <= fig.bbox.x1
    texts = [t.get_text() for t in ax.texts]
    assert "50.33 (+0.33 pp, n=3)" in texts and "n/a (not run yet)" in [t.strip() for t in texts]


def test_sweep_command_uses_seeds_on_cpu_recipes_and_the_kit_for_the_rest():
    cmd = oc.sweep_command("lenet5", "lenet5", ["lenet5-tanh"])
    assert (
        cmd
        == "cifarlab set 'seeds=[1, 2]' && dvc repro plot@lenet5-tanh plot_seeds@lenet5-tanh-1 plot_seeds@lenet5-tanh-2"
    )
    assert oc.sweep_command("r", "resnet18", ["r", "s"]).startswith("python tools/gpu_reproduce.py")


def test_params_open_choices_are_runs_of_the_same_model():
    p = load_params(SHIPPED_PARAMS)
    raw = yaml.safe_load((SHIPPED_PARAMS).read_text())
    # every name is a run of the table: none left out (validation leaves out missing ones)
    assert {b: len(a) for b, a in p.open_choices.items()} == {b: len(a) for b, a in raw["open_choices"].items()}
    assert len(p.open_choices["lenet5"]) >= 8
    for base, alts in p.open_choices.items():
        for run, reading in alts:
            assert p.runs[run].model == p.runs[base].model and reading in ("best", "final", "best_flip")
    cut = validate({**raw, "open_choices": {"lenet5": ["nope", "lenet5-tanh"], "gone": ["lenet5"]}})
    assert dict(cut.open_choices) == {"lenet5": (("lenet5-tanh", "best"),)}  # a cut-down table works
    for bad, message in (
        ({"lenet5": ["dnn"]}, "trains dnn, not lenet5"),
        ({"lenet5": ["lenet5:worst"]}, "reading 'worst'"),
        ({"lenet5": ["lenet5"]}, "listed twice"),
        ({"lenet5": "lenet5-tanh"}, "a list of runs"),
    ):
        with pytest.raises(ParamsError, match=message):
            validate({**raw, "open_choices": bad})


@pytest.mark.slow
def test_a_two_run_tiny_sweep_through_dvc_gets_its_verdict(tmp_path, small_params):
    """lenet5 and one alternative through `dvc repro` on a tiny archive (one seed each: CI's 30
    minutes; the seed rules are the unit tests' above); the report's Open choices section then
    has both, with n, and a verdict sentence."""
    import os
    import re
    import subprocess
    import sys

    from workspace import project_copy, sh, write_params

    repo = tmp_path / "repo"
    repo.mkdir()
    project_copy(repo)
    # each run's own 2 epochs (no cap), in the shipped numerics
    write_params(
        repo,
        small_params(
            ("lenet5", "lenet5-tanh"),
            fast=False,
            train={"max_epochs": None},
            seeds=[],
            lenet5={"epochs": 2, "batch_size": 16},
        ),
    )
    shutil.rmtree(repo / "reports" / "published")  # this workspace's own runs only
    env = {
        **os.environ,
        "PYTHONPATH": str(repo / "src"),
        "DVC_NO_ANALYTICS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    sh("dvc", "repro", "plot@lenet5", "plot@lenet5-tanh", cwd=repo, env=env)
    sh(sys.executable, "-m", "cifarlab.report", cwd=repo, env=env)
    text = (repo / "reports/README.md").read_text()
    block = text.split("### `lenet5`: published", 1)[1].split("###", 1)[0]
    off = {}
    for run, label in (("lenet5", r"`lenet5` \(default\)"), ("lenet5-tanh", "`lenet5-tanh`")):
        m = re.search(label + r" \| [\d.]+% \| 1 \| ([-+][\d.]+) pp \| too few seeds \|", block)
        assert m, (run, block)
        off[run] = float(m.group(1))
    # the setting nearest the published value, the default included, is named
    closest = min(off, key=lambda r: abs(off[r]))
    name = "`lenet5` (the default)" if closest == "lenet5" else "`lenet5-tanh`"
    side = "off" if off[closest] == 0 else "above" if off[closest] > 0 else "below"
    assert f"**Verdict:** closest: {name}, still {abs(off[closest]):.2f} points {side} (n=1: below 3 seeds" in block, (
        block
    )
    assert (repo / "reports/figures/open_choices.png").read_bytes().startswith(b"\x89PNG")


def test_decomposition_adds_up_the_measured_changes_against_the_miss():
    """What a miss is made of: JPEG's cost (lossless - jpeg) and each recipe change's gain over the
    default, summed where they move toward the published value; the rest is left unexplained."""
    default = oc.option("base", "best", recs("base", [0.89, 0.895, 0.90]))  # mean 0.895: 3.00 points below 0.925
    reflect = oc.option("base-reflect", "best", recs("base-reflect", [0.90, 0.905, 0.91]))  # +1.00 pp
    worse = oc.option("base-worse", "best", recs("base-worse", [0.88, 0.885, 0.89]))  # -1.00 pp: explains nothing
    final = oc.option("base", "final", recs("base", [0.95] * 3))  # a reading, not a change
    jpeg = {"diff": -0.012, "baseline": {"n": 3}, "variant": {"n": 3}}  # JPEG costs 1.20 pp
    text = oc.decomposition(0.925, default, [reflect, worse, final], jpeg, "[study](#s)")
    assert text.startswith("the default is 3.00 points below")
    assert "JPEG q75 pixels -1.20 pp (n=3 per arm, 40k/10k split, [study](#s))" in text
    uneven = oc.decomposition(0.925, default, [], {**jpeg, "variant": {"n": 2}})
    assert "JPEG q75 pixels -1.20 pp (n=3 lossless, 2 JPEG, 40k/10k split)" in uneven
    assert "`base-reflect` +1.00 pp" in text and "`base-worse` -1.00 pp" in text and "final epoch" not in text
    assert text.endswith("together 2.20 of the 3.00 points, 0.80 left unexplained")
    pending = oc.decomposition(0.925, default, [oc.option("base-norm", "best", [])], None, "[study](#s)")
    assert pending == "the default is 3.00 points below; no change measured yet (JPEG q75 pixels, `base-norm`)"
    assert (
        oc.decomposition(0.925, oc.option("base", "best", recs("base", [0.92, 0.93, 0.94])), [reflect], jpeg) == ""
    )  # covered: no miss
    assert oc.decomposition(0.80, default, [reflect], jpeg) == ""  # above the published value
