"""The markdown of reports/README.md: every published number next to the reproduced one.

Pure functions (data in, markdown or data out) over three inputs, read by `load_metrics`,
`load_reference` and `provenance.load_lock`:
  reports/metrics/*.json + reports/details/*.json   one pair per (run, seed)
  reports/reference.yaml   every number the five reports published (the only hand-typed file)
  dvc.lock                 which stage wrote each metrics file, with which params
Numbers come only from the metrics files and reference.yaml: a run without one is "not run".
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cifarlab.core.errors import DataError
from cifarlab.core.params import OFFICIAL_MD5
from cifarlab.reporting.provenance import data_source, locked_md5, params_hash, producing_stage

GRID_FIGURE = "grid_resnet18.png"
COMPARISON_FIGURE = "comparison.png"
COLLAPSE_FIGURES = 6  # more runs with figures than this in one report: fold them into <details>

REPORT_TITLES = {
    "000": "LeNet-5 vs ResNet-9",
    "001": "DNN, CNN and ResNet from the lecture, then a custom ResNet",
    "002": "A 3-layer 5x5 CNN",
    "003": "AlexNet transfer learning",
    "004": "ResNet-18 ablations (activation x lr-step ratio x augmentation)",
}
ACCURACY_METRICS = ("top1", "top3")
METRIC_LABELS = {"top1": "top-1", "top3": "top-3", "loss": "loss"}
NOT_RUN = "not run"
DASH = "—"  # an empty cell: nothing to show (not a number that is missing)
GRID_REPORT = "004"
FULL_TRAIN, FULL_TEST = 50_000, 10_000  # CIFAR-10
ALEXNET_REPORT = "003"
EXPERIMENT_FILE = "experiment.json"  # the experiment stage's copy of one run's metrics

# --------------------------------------------------------------------------- inputs


def _block(raw: Any) -> dict | None:
    return raw if isinstance(raw, dict) else None


def normalize_metrics(raw: Mapping, path: str, md5: str | None = None) -> dict:
    """One metrics file as the report uses it (`md5`: of the file's bytes, checked against dvc.lock).

    Older files lack `run` (then the model name is the run) and `seed` (then None).
    """
    if not isinstance(raw, Mapping):
        raise DataError(f"{path}: a metrics file must hold a JSON object, got {type(raw).__name__}")
    run = raw.get("run") or raw.get("model")
    if not run:
        raise DataError(f"{path}: has neither `run` nor `model`")
    for key in ("best", "final"):
        if not isinstance(raw.get(key), Mapping):
            raise DataError(f"{path}: has no `{key}` block (rerun its evaluate stage)")
    seed = raw.get("seed")
    smoke = {k: raw.get(k) for k in SMOKE_KEYS}
    return {
        **smoke,
        "diverged_epoch": raw.get("diverged_epoch") if raw.get("diverged") else None,
        "run": str(run),
        "model": raw.get("model"),
        "seed": seed,
        "report": raw.get("report"),
        "overrides": raw.get("overrides") or {},
        "data": raw.get("data"),  # the archive's md5s (details files since "Published results")
        "best": dict(raw["best"]),
        "final": dict(raw["final"]),
        "val": _block(raw.get("val")),
        "best_flip": _block(raw.get("best_flip")),  # details: best epoch with test-time flip
        "path": path,
        "md5": md5,
    }


# What a details file says about how far a run is from its recipe (see evaluate.py).
SMOKE_KEYS = ("n_train", "n_test", "recipe_epochs", "epochs_cap", "random_features")


def load_metrics(directory: str | os.PathLike, root: str | os.PathLike | None = None,
                 details_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every reports/metrics/*.json but experiment.json (a copy of one of them), normalized,
    sorted by path; each merged with its reports/details/<same name>.json where there is one
    (which run and seed it is, data sizes, epochs). A missing directory gives [].

    Each record's `path` is the file's POSIX path relative to `root` (default: the current
    directory, the DVC project root), as dvc.lock names it; absolute where it lies outside.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    root = Path(root) if root is not None else Path.cwd()
    records = []
    details_dir = Path(details_dir) if details_dir is not None else None
    for file in sorted(directory.glob("*.json")):
        if file.name == EXPERIMENT_FILE:
            continue
        try:
            rel = file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = file.as_posix()
        data = file.read_bytes()
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{rel}: not valid UTF-8 JSON ({str(e).splitlines()[0]})") from None
        details_file = details_dir / file.name if details_dir is not None else None
        if details_file is not None and details_file.is_file() and isinstance(raw, dict):
            try:
                details = json.loads(details_file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DataError(f"{details_file}: not valid UTF-8 JSON ({str(e).splitlines()[0]})") from None
            if not isinstance(details, dict):
                raise DataError(f"{details_file}: a details file must hold a JSON object")
            meta = {k: v for k, v in details.items() if k not in ("final", "best", "val")}
            raw = {**meta, **raw}
        records.append(normalize_metrics(raw, rel, hashlib.md5(data).hexdigest()))
    return records


def _seed_key(seed: Any) -> tuple:
    return (seed is not None, str(type(seed).__name__), seed if isinstance(seed, (int, float)) else str(seed))


def group_runs(records: Iterable[dict]) -> dict[str, list[dict]]:
    """run -> its records, one per seed, sorted by seed (an unrecorded seed first).

    Two files with the same (run, seed) would count one training run twice: the first by path
    counts, the others stay in the list (last) flagged `duplicate: True`, which `counted` drops
    and the provenance table marks.
    """
    runs: dict[str, list[dict]] = {}
    seen: set[tuple[str, Any]] = set()
    for rec in sorted(records, key=lambda r: r["path"]):
        key = (rec["run"], json.dumps(rec["seed"]))
        if key in seen:
            rec = {**rec, "duplicate": True}
            runs.setdefault(rec["run"], []).append(rec)
            continue
        seen.add(key)
        runs.setdefault(rec["run"], []).append(rec)
    return {run: sorted(recs, key=lambda r: (r.get("duplicate", False), _seed_key(r["seed"]), r["path"]))
            for run, recs in sorted(runs.items())}


def counted(recs: Sequence[dict]) -> list[dict]:
    """The records of one run that count (duplicates of a (run, seed) dropped)."""
    return [r for r in recs if not r.get("duplicate")]


def load_reference(path: str | os.PathLike) -> dict:
    """reports/reference.yaml as {numbers: [...], statements: [...]}, checked for the keys used."""
    path = Path(path)
    try:
        ref = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} not found: it holds the published numbers the report compares with") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("numbers"), list):
        raise DataError(f"{path}: needs a `numbers:` list")
    for i, n in enumerate(ref["numbers"]):
        missing = {"report", "run", "metric", "value"} - set(n if isinstance(n, dict) else ())
        if missing:
            raise DataError(f"{path}: numbers[{i}] lacks {', '.join(sorted(missing))}")
        if n["metric"] not in METRIC_LABELS:
            raise DataError(f"{path}: numbers[{i}].metric is {n['metric']!r}; allowed: top1, top3, loss")
    return {"numbers": ref["numbers"], "statements": ref.get("statements") or []}


# --------------------------------------------------------------------------- statistics


def summarize(values: Iterable[float | None]) -> dict:
    """mean, std (sample, ddof=1; None below 2 values), n, min, max of the values that are not None."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "min": None, "max": None}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if n >= 2 else None,
        "n": n,
        "min": min(vals),
        "max": max(vals),
    }


def within_spread(reported: float, summary: Mapping) -> bool | None:
    """Whether the published value lies in [min, max] of the seeds; None below 2 seeds."""
    if summary["n"] < 2:
        return None
    return summary["min"] <= reported <= summary["max"]


def run_stats(recs: Sequence[dict], metric: str) -> dict:
    """One run's numbers for one metric over its seeds: best, final, val summaries and epochs."""
    recs = counted(recs)
    with_val = [r for r in recs if r["val"] is not None]
    return {
        "best": summarize(r["best"].get(metric) for r in recs),
        "final": summarize(r["final"].get(metric) for r in recs),
        "val": summarize(r["val"].get(metric) for r in with_val) if with_val else None,
        "best_epochs": [r["best"].get("epoch") for r in recs],
        "val_epochs": [r["val"].get("epoch") for r in with_val],
        "seeds": [r["seed"] for r in recs],
        "diverged": [r["diverged_epoch"] for r in recs if r.get("diverged_epoch") is not None],
    }


def fmt_result(metric: str, s: Mapping | None, st: Mapping) -> str:
    """fmt_summary, but "diverged (epoch E)" where no seed left a number because training diverged."""
    if (s is None or s["n"] == 0) and st.get("diverged"):
        return f"diverged (epoch {fmt_epochs(st['diverged'])})"
    return fmt_summary(metric, s)


# --------------------------------------------------------------------------- formatting


def _clean(x: float, digits: int) -> float:
    return round(x, digits) + 0.0  # + 0.0: no "-0.00"


def fmt_value(metric: str, v: float | None) -> str:
    """A single number: accuracies as percentages (2 decimals), losses raw (4 decimals)."""
    if v is None:
        return DASH
    if metric in ACCURACY_METRICS:
        return f"{_clean(100 * v, 2):.2f}%"
    return f"{_clean(v, 4):.4f}"


def fmt_summary(metric: str, s: Mapping | None) -> str:
    """"92.10%" for one seed, "92.10 ± 0.21% (n=3)" for several; "not run" for none."""
    if s is None or s["n"] == 0:
        return NOT_RUN
    if s["n"] == 1:
        return fmt_value(metric, s["mean"])
    if metric in ACCURACY_METRICS:
        return f"{_clean(100 * s['mean'], 2):.2f} ± {_clean(100 * s['std'], 2):.2f}% (n={s['n']})"
    return f"{_clean(s['mean'], 4):.4f} ± {_clean(s['std'], 4):.4f} (n={s['n']})"


def fmt_diff(metric: str, reproduced: float | None, reported: float | None) -> str:
    """reproduced - reported: percentage points for accuracies, raw for losses."""
    if reproduced is None or reported is None:
        return DASH
    if metric in ACCURACY_METRICS:
        return f"{_clean(100 * (reproduced - reported), 2):+.2f} pp"
    return f"{_clean(reproduced - reported, 4):+.4f}"


def fmt_seed(seed: Any) -> str:
    return "unrecorded" if seed is None else str(seed)


def fmt_epochs(epochs: Sequence[Any]) -> str:
    """One epoch when all seeds agree, else each seed's in seed order."""
    if not epochs:
        return DASH
    shown = [DASH if e is None else str(e) for e in epochs]
    return shown[0] if len(set(shown)) == 1 else ", ".join(shown)


def md_cell(value: Any) -> str:
    return str(value).replace("\n", " ").replace("|", "\\|")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub pipe table (no alignment tricks: renders everywhere)."""
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |",
             "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def md_image(alt: str, name: str) -> str:
    return f"![{alt}](figures/{name})"


# --------------------------------------------------------------------------- reference helpers


def numbers_of(reference: Mapping, report: str) -> list[dict]:
    return [n for n in reference["numbers"] if str(n["report"]) == report]


def primary(entries: Sequence[dict], run: str, metric: str) -> dict | None:
    """The primary published value of (run, metric): the only entry, or the one without a note."""
    hits = [n for n in entries if n["run"] == run and n["metric"] == metric]
    if len(hits) <= 1:
        return hits[0] if hits else None
    plain = [n for n in hits if not n.get("note")]
    return plain[0] if plain else hits[0]


def report_ids(reference: Mapping) -> list[str]:
    """"000".."004" and any other report reference.yaml names, sorted."""
    ids = set(REPORT_TITLES) | {str(n["report"]) for n in reference["numbers"]}
    return sorted(ids)


def _ordered_unique(values: Iterable[Any]) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def grid_axes(reference: Mapping) -> tuple[list[str], list[str], list[str]]:
    """(activations, ratios, augments) of report 004's grid, in reference.yaml's order."""
    cells = [n for n in numbers_of(reference, GRID_REPORT) if "activation" in n]
    return (_ordered_unique(n["activation"] for n in cells),
            _ordered_unique(str(n["ratio"]) for n in cells),
            _ordered_unique(n["augment"] for n in cells))


def grid_values(reference: Mapping, runs: Mapping[str, list[dict]]
                ) -> tuple[dict[tuple[str, str, str], float], dict[tuple[str, str, str], float]]:
    """(reproduced, reported) top-1 fractions keyed (activation, ratio "2:1:1", augment).

    A cell maps to its run through reference.yaml's `run` (resnet18-<act>-2_1_1-<augment>);
    reproduced = mean over seeds of the `best` top-1, present only for cells that ran.
    """
    reproduced, reported = {}, {}
    for n in numbers_of(reference, GRID_REPORT):
        if "activation" not in n or n["metric"] != "top1":
            continue
        key = (n["activation"], str(n["ratio"]), n["augment"])
        reported[key] = n["value"]
        s = run_stats(runs.get(n["run"], []), "top1")["best"]
        if s["n"]:
            reproduced[key] = s["mean"]
    return reproduced, reported


def bar_rows(reference: Mapping, runs: Mapping[str, list[dict]], report: str) -> list[dict]:
    """Rows for figures.report_bars: one per run with a published top-1 (report 004: cells that ran)."""
    entries = numbers_of(reference, report)
    rows = []
    for run in _ordered_unique(n["run"] for n in entries if n["metric"] == "top1"):
        ref = primary(entries, run, "top1")
        st = run_stats(runs.get(run, []), "top1")
        if report == GRID_REPORT and not st["best"]["n"]:
            continue  # 36 bars of which most are empty help nobody; the grid table shows them
        label = run
        if "activation" in ref:
            label = f"{ref['activation']} {ref['ratio']} {ref['augment']}"
        rows.append({"label": label, "reported": ref["value"], "reproduced": st["best"]["mean"],
                     "std": st["best"]["std"], "final": st["final"]["mean"]})
    return rows


STALE = " (stale: the file differs from its dvc.lock entry)"


def provenance_table(runs: Mapping[str, list[dict]], lock: Mapping | None) -> str:
    """run | seed | data source | params hash | stage | metrics file, one row per metrics file.

    A file no dvc.lock stage wrote gets "not recorded" for both its data source and params; one
    whose bytes differ from the md5 dvc.lock records for it is marked stale.
    """
    source = data_source(lock)
    rows = []
    for run, recs in runs.items():
        for r in recs:
            stage = producing_stage(lock, r["path"]) if lock is not None else None
            src, phash = source, params_hash(lock, r["path"])
            if lock is not None and stage is None:
                src = "not recorded (no dvc.lock stage writes it)"
            locked = locked_md5(lock, r["path"]) if stage else None
            if locked and r.get("md5") and locked != r["md5"]:
                phash += STALE
            note = " (duplicate (run, seed): not counted)" if r.get("duplicate") else ""
            rows.append([run, fmt_seed(r["seed"]), src, phash,
                         f"`{stage}`" if stage else DASH, f"`{r['path']}`{note}"])
    if not rows:
        return "No metrics file yet: nothing has been reproduced."
    return md_table(["run", "seed", "data source", "params hash", "stage", "metrics file"], rows)


# --------------------------------------------------------------------------- markdown sections


def comparison_table(entries: Sequence[dict], runs: Mapping[str, list[dict]],
                     miss_notes: Mapping[str, str] | None = None) -> str:
    """One row per published number: reported vs reproduced (best, final, val-selected).
    miss_notes: run -> what a "no" of its seed-range verdict is followed by (the JPEG study)."""
    stats = {(n["run"], n["metric"]): run_stats(runs.get(n["run"], []), n["metric"]) for n in entries}
    has_val = any(s["val"] is not None for s in stats.values())
    header = ["run", "metric", "reported", "reproduced (best epoch)", "reproduced at final epoch",
              "difference", "epoch (reported / reproduced best)", "seeds", "within seed range"]
    if has_val:
        header.append("test @ val-selected epoch")
    header.append("note")
    rows = []
    for n in entries:
        metric, ref = n["metric"], n["value"]
        st = stats[(n["run"], metric)]
        best = st["best"]
        ran = best["n"] > 0
        inside = within_spread(ref, best) if ran else None
        row = [
            f"`{n['run']}`",
            METRIC_LABELS[metric],
            fmt_value(metric, ref),
            fmt_result(metric, best, st),
            fmt_result(metric, st["final"], st) if ran or st["diverged"] else NOT_RUN,
            fmt_diff(metric, best["mean"], ref),
            f"{DASH if n.get('epoch') is None else n['epoch']} / {fmt_epochs(st['best_epochs']) if ran else DASH}",
            ", ".join(fmt_seed(s) for s in st["seeds"]) if ran else DASH,
            DASH if inside is None else ("yes" if inside else "no"),
        ]
        if ran and best["mean"] < ref and inside is not True and metric == "top1" and (miss_notes or {}).get(n["run"]):
            row[-1] += f"; {miss_notes[n['run']]}"
        if has_val:
            v = st["val"]
            row.append(f"{fmt_summary(metric, v)} @ epoch {fmt_epochs(st['val_epochs'])}" if v else DASH)
        row.append(n.get("note") or "")
        rows.append(row)
    return md_table(header, rows)


def grid_table(reference: Mapping, runs: Mapping[str, list[dict]]) -> str:
    """Report 004's 36 cells: augmentation x activation rows, ratio columns; "reproduced (reported)"."""
    activations, ratios, augments = grid_axes(reference)
    by_key = {(n["activation"], str(n["ratio"]), n["augment"]): n
              for n in numbers_of(reference, GRID_REPORT) if "activation" in n and n["metric"] == "top1"}
    rows = []
    for aug in augments:
        for act in activations:
            row = [f"`{aug}`", f"`{act}`"]
            for ratio in ratios:
                n = by_key.get((act, ratio, aug))
                if n is None:
                    row.append(DASH)
                    continue
                st = run_stats(runs.get(n["run"], []), "top1")
                s = st["best"]
                ref = f"{_clean(100 * n['value'], 2):.2f}"
                if not s["n"]:
                    row.append(f"{fmt_result('top1', s, st)} ({ref})")
                elif s["n"] == 1:
                    row.append(f"{_clean(100 * s['mean'], 2):.2f} ({ref})")
                else:
                    row.append(f"{_clean(100 * s['mean'], 2):.2f} ± {_clean(100 * s['std'], 2):.2f} "
                               f"(n={s['n']}) ({ref})")
            rows.append(row)
    return md_table(["augmentation", "activation"] + ratios, rows)


def alexnet_table(reference: Mapping, runs: Mapping[str, list[dict]]) -> str:
    """Report 003's 2x2: epochs (low/high) x skip (without/with); top-1 and top-3, "reproduced (reported)"."""
    entries = numbers_of(reference, ALEXNET_REPORT)
    rows = []
    for budget in ("low", "high"):
        row = [f"{budget} epoch"]
        for skip in ("noskip", "skip"):
            run = f"alexnet_transfer-{skip}-{budget}"
            lines = []
            for metric in ("top1", "top3"):
                ref = primary(entries, run, metric)
                st = run_stats(runs.get(run, []), metric)["best"]
                reported = fmt_value(metric, ref["value"]) if ref else DASH
                lines.append(f"{METRIC_LABELS[metric]} {fmt_result(metric, st, run_stats(runs.get(run, []), metric))} "
                             f"(reported {reported})")
            row.append("<br>".join(lines))
        rows.append(row)
    return md_table(["", "without skip", "with skip"], rows)


def statements_section(reference: Mapping, report: str) -> str:
    items = [s for s in reference["statements"] if str(s.get("report")) == report]
    if not items:
        return ""
    lines = ["### What the report says (not a number)", ""]
    for s in items:
        text = " ".join(str(s.get("text", "")).split())
        lines.append(f"- `{s['run']}`: {text}" if s.get("run") else f"- (whole report) {text}")
    return "\n".join(lines)


# A run's figures side by side (HTML <img>: Markdown images cannot be sized), as a share of
# the page width: curves are wide and short, the confusion matrix square.
RUN_FIGURE_WIDTH = {"curves": "58%", "confusion": "40%", "pca": "98%"}


def html_image(alt: str, name: str, width: str) -> str:
    return f'<img src="figures/{name}" alt="{alt}" width="{width}">'


def _run_figures(runs_in_report: Sequence[str], figures: Iterable[str], prefix: str = "runs/") -> list[str]:
    """One paragraph per run that has figures: its curves and confusion matrix on one row,
    then its PCA (AlexNet runs). prefix: where they are, relative to reports/figures."""
    have = set(figures)
    out = []
    for run in runs_in_report:
        row = [html_image(alt, name, RUN_FIGURE_WIDTH[kind])
               for kind, name, alt in (("curves", f"{prefix}curves_{run}.png", f"learning curves: {run}"),
                                       ("confusion", f"{prefix}confusion_{run}.png", f"confusion matrix: {run}"),
                                       ("pca", f"{prefix}pca_{run}_2d3d.png", f"PCA of the features: {run}"))
               if name in have]
        if row:
            out.append(f"**`{run}`**<br>\n" + "\n".join(row))
    return out


def report_section(reference: Mapping, runs: Mapping[str, list[dict]], report: str,
                   figures: Iterable[str] = (), run_figures: str = "runs/",
                   miss_notes: Mapping[str, str] | None = None) -> str:
    figures = set(figures)
    entries = numbers_of(reference, report)
    title = REPORT_TITLES.get(report)
    parts = [f"## Report {report}: {title}" if title else f"## Report {report}"]
    if report == GRID_REPORT:
        cells = [n for n in entries if "activation" in n]
        done = sum(1 for n in cells if counted(runs.get(n["run"], [])))
        parts.append(f"Top-1 (%) per cell: reproduced (reported). {done} of {len(cells)} cells run; "
                     f"reproduced = `best` block, mean ± std over seeds where there are several.")
        parts.append(grid_table(reference, runs))
        if GRID_FIGURE in figures:
            parts.append(md_image("ResNet-18 grid: reproduced top-1 and reproduced - reported", GRID_FIGURE))
        ran = [n for n in entries if counted(runs.get(n["run"], []))]
        others = [n for n in entries if "activation" not in n]
        detail = ran + [n for n in others if n not in ran]
        if detail:
            parts.append("Every cell that has run, in detail:")
            parts.append(comparison_table(detail, runs, miss_notes))
    else:
        if report == ALEXNET_REPORT:
            parts.append("Reproduced (reported), `best` block:")
            parts.append(alexnet_table(reference, runs))
        parts.append(comparison_table(entries, runs, miss_notes))
    bars = f"report_{report}.png"
    if bars in figures:
        parts.append(md_image(f"report {report}: reported vs reproduced top-1", bars))
    run_figs = _run_figures(_ordered_unique(n["run"] for n in entries), figures, run_figures)
    if len(run_figs) > COLLAPSE_FIGURES:
        # The grid has 36 runs: fold their figures so the tables and heat maps stay in view.
        # (The blank lines let GitHub render the Markdown inside the HTML block.)
        parts.append(f'<details markdown="1"><summary>Learning curves and confusion matrices of the {len(run_figs)} runs</summary>\n\n'
                     + "\n\n".join(run_figs) + "\n\n</details>")
    else:
        parts += run_figs
    statements = statements_section(reference, report)
    if statements:
        parts.append(statements)
    return "\n\n".join(parts)


def other_runs_table(reference: Mapping, runs: Mapping[str, list[dict]]) -> str:
    """Runs with metrics but no published number (e.g. old files named after the model only)."""
    known = {n["run"] for n in reference["numbers"]}
    rows = []
    for run, recs in runs.items():
        if run in known:
            continue
        st = run_stats(recs, "top1")
        reports = ", ".join(sorted({str(r["report"]) for r in counted(recs) if r["report"] is not None})) or DASH
        rows.append([f"`{run}`", reports, ", ".join(fmt_seed(s) for s in st["seeds"]),
                     fmt_result("top1", st["best"], st), fmt_result("top1", st["final"], st)])
    if not rows:
        return ""
    return md_table(["run", "report", "seeds", "top-1 (best epoch)", "top-1 (final epoch)"], rows)


HEADER = """\
# Reproduced vs published: the five CIFAR-10 reports

<!-- GENERATED FILE: do not edit. Regenerate with `dvc repro report` (python -m cifarlab.report). -->

This file is generated by `dvc repro report` from `reports/metrics/*.json` (this workspace's
runs, one file per run and seed), `reports/published/` (runs cifarlab trained and published,
each with its provenance), `reports/reference.yaml` (every number the reports published) and
`dvc.lock`. It holds no hand-typed number: a run without a metrics file shows "not run".

How to read the tables:

- **reproduced (best epoch)**: the `best` block of the metrics file, i.e. the epoch with the
  highest test top-1, picked on the test set as the reports did (optimistic: there is no
  validation set). Its loss is the test loss at that epoch, not the lowest loss of the run.
- **reproduced at final epoch**: the `final` block, the last epoch trained.
- With several seeds a cell shows mean ± sample standard deviation (ddof=1) over the seeds,
  and n. **within seed range** says whether the published value lies within [min, max] of
  the seeds' best-epoch values (the seed range, not mean ± 2 std); shown from 2 seeds up.
- **difference** = reproduced (best epoch, mean over seeds) - reported: percentage points
  (pp) for accuracies, raw for losses.
- **epoch**: the epoch the report gives for the number / the reproduced best epoch (one per
  seed when the seeds disagree).
- **test @ val-selected epoch** (only where runs held out a validation split): test metrics
  at the epoch chosen on the validation split, an unbiased counterpart of the best epoch.
"""


PROVENANCE_NOTE = (
    "One row per metrics file. Data source: the `fetch` stage's `data.url`/`data.md5` in "
    "dvc.lock (\"official archive\" when the md5 is the cs.toronto.edu archive's, "
    f"`{OFFICIAL_MD5}`). Params hash: first 8 hex digits of the md5 of the canonical JSON "
    "(`json.dumps(sort_keys=True, separators=(\",\", \":\"))`) of `{params file: {key: value}}` "
    "merged from the dvc.lock `params` of the stage whose outs hold the metrics file and of "
    "every stage whose outs hold one of its deps (its train stage and preprocess); equal "
    "hashes mean the same recorded parameters. \"stale\": the file's md5 differs from the one "
    "dvc.lock records for it, so its row of dvc.lock describes another version of the file."
)


def smoke_notes(rec: Mapping) -> list[str]:
    """Why one (run, seed) is not the recipe as published: a data subset, capped epochs, random
    AlexNet features. [] for a full run (and for records that do not say: older files)."""
    notes = []
    n_train, n_test = rec.get("n_train"), rec.get("n_test")
    if (n_train is not None and n_train < FULL_TRAIN) or (n_test is not None and n_test < FULL_TEST):
        a, b = ("?" if n is None else f"{n:,}" for n in (n_train, n_test))
        notes.append(f"subset: {a} train / {b} test images (full: {FULL_TRAIN:,} / {FULL_TEST:,})")
    if rec.get("epochs_cap") is not None:
        notes.append(f"epochs capped at {rec['epochs_cap']} (recipe: {rec.get('recipe_epochs')})")
    if rec.get("random_features"):
        notes.append("random AlexNet features (pretrained: false), not ImageNet's")
    return notes


def smoke_section(runs: Mapping[str, list[dict]]) -> str:
    """A warning at the top of the report when any run is a smoke run, naming each such run."""
    rows = []
    for run, recs in runs.items():
        for r in counted(recs):
            notes = smoke_notes(r)
            if notes:
                rows.append([f"`{run}`", fmt_seed(r["seed"]), "; ".join(notes)])
    if not rows:
        return ""
    return "\n\n".join([
        f"> **Smoke run: {len(rows)} of {sum(len(counted(v)) for v in runs.values())} (run, seed) results below "
        "are not the published recipe** (a data subset, capped epochs or random features), so their "
        "differences from the published numbers say nothing about the reports. Which, and why:",
        md_table(["run", "seed", "not the recipe because"], rows)])


PUBLISHED_RUN_FIGURES = "../published/figures/"  # reports/published/figures, from reports/figures


def report_tables(reference: Mapping, runs: Mapping[str, list[dict]], lock: Mapping | None,
                  figures: Iterable[str] = (), published: str = "", showing_published: bool = False,
                  miss_notes: Mapping[str, str] | None = None) -> str:
    """The whole README.md: published runs, one section per report, other runs, provenance.
    Pure; deterministic.

    figures: names of the PNGs present, relative to reports/figures (embedded where they exist).
    published: the "Published runs" section (published.published_section), first when given.
    showing_published: `runs` are the published runs (the workspace has none of its own): the
    report sections say so and take each run's figures from reports/published/figures.
    miss_notes: run -> a pointer after a reproduced number below the published one (the JPEG study).
    """
    figures = set(figures)
    parts = [HEADER.rstrip("\n")]
    if published:
        parts.append(published)
    if showing_published:
        parts.append("The sections below show the **published runs** above: this workspace has no run of its "
                     "own yet (after `dvc repro` they show yours, and `cifarlab compare` sets yours beside these).")
    elif published:
        parts.append("The sections below show **this workspace's runs** (`reports/metrics`); `cifarlab compare` "
                     "sets them beside the published runs above.")
    smoke = smoke_section(runs)
    if smoke:
        parts.append(smoke)
    if "comparison.png" in figures:
        parts.append(md_image("all models: reproduced vs reported", "comparison.png"))
    for report in report_ids(reference):
        parts.append(report_section(reference, runs, report, figures,
                                    PUBLISHED_RUN_FIGURES if showing_published else "runs/", miss_notes))
    others = other_runs_table(reference, runs)
    if others:
        parts += ["## Other runs (no published number)", others]
    if not showing_published:  # published runs carry their own provenance (the table above)
        parts += ["## Provenance", PROVENANCE_NOTE, provenance_table(runs, lock)]
    return "\n\n".join(parts) + "\n"


