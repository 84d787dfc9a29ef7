"""Studies: runs that measure what one change does to a recipe, kept apart from the published
runs and never averaged with them (reports/studies/<study>/<arm>/, the layout of
reports/published/). Each study has two arms, a baseline and a variant, and a pack's runs go
to the arm its provenance names:

    cifarlab fold runs.tar.gz --study jpeg     lossless vs JPEG (q75) pixels, the same 40k/10k split
    cifarlab fold runs.tar.gz --study bf16     fp32 vs bf16 training, the same data

The report's section per study sets the arms side by side per run: mean +- std (n) of the
best-epoch test top-1, the difference, and whether it exceeds the seeds' spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cifarlab.core import paths
from cifarlab.reporting.published import JPEG_FULL_CONTENT_MD5, prov_numerics

STUDIES_DIR = paths.REPORTS_DIR / "studies"

# Content md5s (`gzip -dc FILE | md5sum`) of the two archives ../shared/tools/cifar10_jpeg_effect.py
# writes: official data_batch_1..4 (40,000 images) to train, data_batch_5 (10,000) to test, as the
# official pixels and as decoded from the JPEG (q75) copy (../shared/data/README.md).
JPEG_EFFECT_DATA = {"a6470e70346c81303eb95d6a547fcb0c": "lossless", "6f70186c7555ce09a0bad83a5fcfe699": "jpeg"}


def precision_of(prov: Mapping) -> str:
    return str(prov_numerics(prov).get("precision", "fp32"))


def content_md5(prov: Mapping) -> str | None:
    return (prov.get("data") or {}).get("content_md5")


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    arms: tuple[str, str]  # baseline, variant
    arm_of: Callable[[Mapping], str | None]  # a run's provenance -> its arm (None: fits neither)
    expects: str  # what a run must be to fit an arm, for the refusal
    intro: str
    # whether the published runs (reports/published) of the arm's kind count as that arm: bf16's
    # fp32 seeds are the published fp32 runs, not copies of them
    with_published: bool = False


STUDIES = {
    "jpeg": Study(
        "jpeg",
        "What JPEG costs",
        ("lossless", "jpeg"),
        lambda prov: JPEG_EFFECT_DATA.get(content_md5(prov)),
        "data from ../shared/tools/cifar10_jpeg_effect.py (content md5 "
        + " or ".join(f"{m[:8]} ({a})" for m, a in JPEG_EFFECT_DATA.items())
        + ")",
        "The published CPU runs trained and tested on images that went through JPEG at quality 75. What "
        "that costs, per recipe: the same recipe trained on two archives with the same split, official "
        "data_batch_1..4 (40,000 images) to train and data_batch_5 (10,000) to test, once with the official "
        "pixels (**lossless**) and once with the same images decoded from the JPEG copy (**jpeg**), built by "
        "`python ../shared/tools/cifar10_jpeg_effect.py DIR`. Each cell: best-epoch test top-1, mean ± std "
        "over seeds (n). These runs are not the reports' recipes on the full set (40,000 training images, "
        "not 50,000) and are never averaged with the published runs.",
    ),
    "bf16": Study(
        "bf16",
        "What bf16 costs",
        ("fp32", "bf16"),
        lambda prov: precision_of(prov) if content_md5(prov) == JPEG_FULL_CONTENT_MD5 else None,
        f"a run on the JPEG-derived full set (content md5 {JPEG_FULL_CONTENT_MD5[:8]})",
        "Runs published before cifarlab applied `train.bf16` on CPUs trained in fp32; CPU runs now train "
        "in bf16 autocast with channels_last (docs/training.md: CPU speed). What that costs, per recipe: the same "
        "recipe, data (JPEG-derived full set, 50,000/10,000) and test in both precisions. Each cell: "
        "best-epoch test top-1, mean ± std over seeds (n); the fp32 or bf16 seeds of **Published runs** "
        "count for their arm, the others are kept in `reports/studies/bf16/`.",
        with_published=True,
    ),
}


def arm_dir(study: str, arm: str, root: Path = Path(".")) -> Path:
    return root / STUDIES_DIR / study / arm


# --------------------------------------------------------------------------- the report's sections


def load_arms(
    study: Study, root: Path = Path("."), published_dir: Path | None = None
) -> dict[str, dict[str, list[dict]]]:
    """arm -> run -> the run's seed records (metrics.load_metrics records, with "prov": provenance)
    of every run with seeds in the study's own store, plus, where the study counts them, the
    run's published seeds of the arm's kind."""
    from cifarlab.reporting.published import PUBLISHED_DIR, load_provenance
    from cifarlab.reporting.records import group_runs, load_metrics

    stores = [(arm, arm_dir(study.name, arm, root)) for arm in study.arms]
    if study.with_published:
        pub = root / (PUBLISHED_DIR if published_dir is None else published_dir)
        stores += [(None, pub)]
    arms: dict[str, dict[str, list[dict]]] = {arm: {} for arm in study.arms}
    own: set[str] = set()  # runs with seeds in the study's own store: the study's runs
    for want, store in stores:
        if not (store / "metrics").is_dir():
            continue
        provs = load_provenance(store)
        for run, recs in group_runs(load_metrics(store / "metrics", details_dir=store / "details")).items():
            for r in recs:
                prov = provs.get(Path(r["path"]).stem, {})
                arm = study.arm_of(prov)
                if arm in arms and (want is None or want == arm):
                    arms[arm].setdefault(run, []).append({**r, "prov": prov})
                    own |= {run} if want else set()
    return {arm: {run: recs for run, recs in runs.items() if run in own} for arm, runs in arms.items()}


def spread_verdict(a: Mapping, b: Mapping) -> str:
    """Whether two arms' best-epoch values differ beyond the seeds' spread: their [min, max]
    ranges do not overlap (the test "within seed range" applies to the published values)."""
    from cifarlab.reporting.markdown import DASH

    if not a["n"] or not b["n"]:
        return DASH
    if a["n"] < 2 or b["n"] < 2:
        return f"{DASH} (n < 2)"
    apart = a["max"] < b["min"] or b["max"] < a["min"]
    return "yes: the seed ranges do not overlap" if apart else "no: the seed ranges overlap"


def run_differences(study: Study, arms: Mapping[str, Mapping[str, list[dict]]]) -> dict[str, dict]:
    """run -> {baseline, variant: summaries of best-epoch top-1; diff (variant - baseline mean);
    values: (baseline's, variant's) best-epoch top-1 per seed, for the figure}."""
    from cifarlab.reporting.records import counted
    from cifarlab.reporting.stats import run_stats

    base, variant = study.arms
    out = {}
    for run in sorted(set(arms[base]) | set(arms[variant])):
        a, b = (run_stats(arms[arm].get(run, []), "top1")["best"] for arm in (base, variant))
        values = tuple(
            [r["best"]["top1"] for r in counted(arms[arm].get(run, [])) if r["best"].get("top1") is not None]
            for arm in (base, variant)
        )
        out[run] = {
            "baseline": a,
            "variant": b,
            "values": values,
            "diff": b["mean"] - a["mean"] if a["n"] and b["n"] else None,
        }
    return out


def figure_panels(found: Mapping[str, Mapping[str, dict]]) -> list[dict]:
    """figures.studies_figure's panels from sections()' `found`: one per study with runs."""
    return [
        {
            "title": STUDIES[name].title,
            "arms": STUDIES[name].arms,
            "runs": [{"run": run, "values": d["values"]} for run, d in diffs.items()],
        }
        for name, diffs in found.items()
    ]


def anchor(study: Study) -> str:
    """The markdown anchor of a study's section (GitHub's: lower case, spaces to dashes)."""
    return "#" + study.title.lower().replace(" ", "-")


def section(study: Study, arms: Mapping[str, Mapping[str, list[dict]]], diffs: Mapping[str, dict] | None = None) -> str:
    """ "## <title>": one row per run, both arms side by side; "" when the study has no run.
    diffs: run_differences(study, arms), when the caller has it already."""
    from cifarlab.reporting.markdown import DASH, fmt_diff, fmt_summary, md_table
    from cifarlab.reporting.published import devices_cell, precision_label, short_data_label

    diffs = run_differences(study, arms) if diffs is None else diffs
    if not diffs:
        return ""
    base, variant = study.arms
    rows = []
    for run, d in diffs.items():
        provs = [r["prov"] for arm in study.arms for r in arms[arm].get(run, [])]

        def kinds(label, provs=provs):
            return " / ".join(dict.fromkeys(label(p) for p in provs))

        rows.append(
            [
                f"`{run}`",
                fmt_summary("top1", d["baseline"]) if d["baseline"]["n"] else "not run yet",
                fmt_summary("top1", d["variant"]) if d["variant"]["n"] else "not run yet",
                fmt_diff("top1", d["diff"], 0.0) if d["diff"] is not None else DASH,
                spread_verdict(d["baseline"], d["variant"]),
                kinds(lambda p: precision_label(p.get("numerics") or {}))
                if study.name != "bf16"
                else kinds(short_data_label),
                devices_cell(provs),
            ]
        )
    header = [
        "run",
        base,
        variant,
        f"{variant} - {base}",
        "beyond the seeds' spread?",
        "data" if study.name == "bf16" else "precision",
        "device",
    ]
    return "\n\n".join([f"## {study.title}", study.intro, md_table(header, rows)])


def sections(root: Path = Path("."), figure: str | None = None) -> tuple[str, dict[str, dict[str, dict]]]:
    """The report's study sections (in STUDIES order), then `figure` (reports/figures/<figure>,
    drawn from figure_panels) when any study has runs; and, per study with runs, run_differences."""
    texts, found = [], {}
    for study in STUDIES.values():
        arms = load_arms(study, root)
        diffs = run_differences(study, arms)
        text = section(study, arms, diffs)
        if text:
            texts.append(text)
            found[study.name] = diffs
    if texts and figure:
        texts.append(f"![what each study's change costs, seed by seed](figures/{figure})")
    return "\n\n".join(texts), found


def jpeg_miss_notes(
    found: Mapping[str, Mapping[str, dict]],
    runs: Mapping[str, list[dict]],
    provenance: Mapping[str, dict] | None = None,
) -> dict[str, str]:
    """run -> the pointer a verdict of a run trained on JPEG-derived data gets where it misses:
    what JPEG costs that recipe, if measured (the study's variant - baseline), and the section.
    provenance (published runs: file stem -> provenance) names the data of seeds whose details
    file predates recording it."""
    from cifarlab.reporting.markdown import fmt_diff
    from cifarlab.reporting.published import KNOWN_DATA

    if "jpeg" not in found:
        return {}
    study = STUDIES["jpeg"]
    link = f"[{study.title}]({anchor(study)})"
    notes = {}
    for run, recs in runs.items():

        def data(r):
            return r.get("data") or ((provenance or {}).get(Path(r["path"]).stem) or {}).get("data") or {}

        if not any(data(r).get("content_md5") in KNOWN_DATA for r in recs):
            continue
        d = found["jpeg"].get(run)
        notes[run] = (
            f"JPEG costs this recipe {fmt_diff('top1', d['diff'], 0.0)} on 40k/10k: {link}"
            if d and d["diff"] is not None
            else f"what JPEG costs is not measured for it yet: {link}"
        )
    return notes
