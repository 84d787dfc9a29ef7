"""reports/published/: runs cifarlab trained itself and published with their provenance (folded
in from packs: see tooling/packs.py), read by the report's "Published runs" section and by
`cifarlab compare`.

Layout, per run output <out> (the run name, or <run>-s<seed>): metrics/<out>.json,
details/<out>.json, timing/<out>.json, history/<out>.csv, figures/{curves,confusion}_<out>.png,
and provenance/<out>.json: data (archive and content md5, image counts), device, torch/CUDA,
code version (commit, dirty, md5 of every file of the train and evaluate stages' code), seed,
epochs run against the recipe's, wall time and training images/s.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path

from cifarlab.core import paths
from cifarlab.core.durations import format_duration
from cifarlab.core.io import read_json_object
from cifarlab.core.params import OFFICIAL_MD5
from cifarlab.dvc_internals import param_at
from cifarlab.reporting.markdown import DASH
from cifarlab.reporting.reference import ordered_unique

PUBLISHED_DIR = paths.REPORTS_DIR / "published"
# What a published run holds: name under reports/published/ (and in a pack) -> workspace path.
# The first four are required; the figures are drawn by plot@/pca@ and kept when present.
PUBLISHED_FILES = {
    "metrics/{out}.json": paths.METRICS_DIR / "{out}.json",
    "details/{out}.json": paths.DETAILS_DIR / "{out}.json",
    "timing/{out}.json": paths.TIMING_DIR / "{out}.json",
    "history/{out}.csv": paths.HISTORY_DIR / "{out}.csv",
    **{
        f"figures/{name}": paths.RUN_FIGURES_DIR / name
        for name in (paths.CURVES_FIGURE, paths.CONFUSION_FIGURE, paths.PCA_FIGURE)
    },
}
REQUIRED = ("metrics/{out}.json", "details/{out}.json", "timing/{out}.json", "history/{out}.csv")
PROVENANCE = "provenance/{out}.json"


def _records(published: Path, kind: str) -> dict[str, dict]:
    """out -> the object in <published>/<kind>/<out>.json, for every published run ({} without any)."""
    d = Path(published) / kind
    return {f.stem: read_json_object(f) for f in sorted(d.glob("*.json"))} if d.is_dir() else {}


def load_provenance(published: Path = PUBLISHED_DIR) -> dict[str, dict]:
    """out -> provenance record of every published run ({} without any)."""
    return _records(published, "provenance")


def prov_numerics(prov: Mapping) -> dict:
    """A published run's numerics (precision, memory format, compile, fused optimizer, the CPU's
    native bf16) as its provenance records them ({} for a run without provenance: said, not
    guessed; fold refuses a pack whose provenance lacks them)."""
    return dict(prov.get("numerics") or {})


def precision_label(numerics: Mapping) -> str:
    """'bf16', 'bf16 compiled', 'fp32' ('?': not recorded): the short form the report's tables show."""
    return " ".join([str(numerics.get("precision") or "?")] + (["compiled"] if numerics.get("compile") else []))


# --------------------------------------------------------------------------- compare

# data.url says where the archive came from, data.md5 which bytes it holds: a moved archive
# re-runs fetch alone (same bytes, so nothing after it), so it leaves no run out of date.
NOT_STALE_KEYS = ("data.url",)


def stale_params(lock: Mapping | None, params: Mapping, path: str) -> tuple[str, list[str]] | None:
    """(stage, keys) when params.yaml (`params`, parsed) now differs from what dvc.lock recorded for
    the stage that wrote `path` or any stage upstream of it: that stage (what `dvc repro` re-runs)
    and the dotted keys that differ, leaf by leaf (`lenet5.lr`). None when they match or no stage
    of dvc.lock wrote `path`. Both files must be read as DVC reads them (YAML 1.2: core.yaml_io)."""
    from cifarlab.reporting.lineage import producing_stage, upstream_stages

    stage = producing_stage(lock, path)
    if stage is None:
        return None
    seen, todo, changed = set(), [stage], []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += upstream_stages(lock, name)
        recorded = (((lock.get("stages") or {}).get(name) or {}).get("params") or {}).get("params.yaml") or {}
        for key, old in recorded.items():
            _diff_leaves(str(key), old, param_at(params, str(key), _ABSENT), changed)
    keys = sorted({k for k in changed if k not in NOT_STALE_KEYS})
    return (stage, keys) if keys else None


_ABSENT = object()


def _diff_leaves(key: str, old, new, out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in {*old, *new}:
            _diff_leaves(f"{key}.{k}", old.get(k, _ABSENT), new.get(k, _ABSENT), out)
    elif old is _ABSENT or new is _ABSENT or old != new:  # as DVC compares them: 1 == 1.0
        out.append(key)


def compare_rows(
    reference: Mapping,
    yours: Mapping[str, list[dict]],
    published: Mapping[str, list[dict]],
    lock: Mapping | None = None,
    params: Mapping | None = None,
) -> list[list[str]]:
    """One row per run that has a number of yours or a published one: published (report) |
    cifarlab published (best top-1, mean ± std over seeds) | yours | yours - cifarlab | note.
    With dvc.lock and params.yaml (both parsed: stale_params), a run of yours trained under
    other params than params.yaml's now is noted out of date, with the keys and the command."""
    from cifarlab.reporting.markdown import DASH, fmt_diff, fmt_summary, fmt_value
    from cifarlab.reporting.records import counted, smoke_notes
    from cifarlab.reporting.reference import primary
    from cifarlab.reporting.stats import run_stats

    rows = []
    for run in sorted(set(yours) | set(published)):
        mine, theirs = counted(yours.get(run, [])), counted(published.get(run, []))
        ref = primary(reference["numbers"], run, "top1")
        a, b = run_stats(mine, "top1")["best"], run_stats(theirs, "top1")["best"]
        notes = []
        data_mine = {(r.get("data") or {}).get("content_md5") for r in mine}
        data_theirs = {(r.get("data") or {}).get("content_md5") for r in theirs}
        if mine and theirs and data_mine != data_theirs:
            shown = ", ".join(str(m)[:8] for m in sorted(data_mine, key=str))
            notes.append(f"other data (yours: content md5 {shown})")
        if any(smoke_notes(r) for r in mine) and not any(smoke_notes(r) for r in theirs):
            notes.append("yours is a smoke run (subset or capped epochs)")
        stale = [s for s in (stale_params(lock, params, r["path"]) for r in mine) if s] if params is not None else []
        if stale:
            keys = sorted({k for _, ks in stale for k in ks})
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            notes.append(
                f"yours is out of date: trained before params.yaml changed {shown}; "
                f"`dvc repro {' '.join(s for s, _ in stale)}` trains it again"
            )
        rows.append(
            [
                run,
                fmt_value("top1", ref["value"]) if ref else DASH,
                fmt_summary("top1", b) if theirs else "not published yet",
                fmt_summary("top1", a) if mine else "not run here",
                fmt_diff("top1", a["mean"], b["mean"]) if mine and theirs else DASH,
                "; ".join(notes),
            ]
        )
    return rows


COMPARE_HEADER = ["run", "published (report)", "cifarlab published", "yours", "yours - cifarlab", "note"]


# --------------------------------------------------------------------------- the report's section

# Data the published runs may have used, by content md5 (`gzip -dc FILE | md5sum`).
JPEG_FULL_CONTENT_MD5 = "41f098d714552507420169bbfa271dac"  # ../shared/data: all 60,000 images
KNOWN_DATA = {
    JPEG_FULL_CONTENT_MD5: "JPEG-derived full set",
    "6137dd0db5e3c244cde1127b69cf132d": "JPEG-derived 7,000-image subset",
}
JPEG_NOTE = (
    "**About the data.** Runs marked *JPEG-derived* trained and tested on a copy of CIFAR-10 whose "
    "60,000 images went through JPEG at quality 75 (the machines that ran them cannot reach the official "
    "archive; `../shared/tools/cifar10_from_jpeg.py` rebuilds the official layout from it, content md5 "
    f"`{JPEG_FULL_CONTENT_MD5}`). Compression at quality 75 blurs fine texture and adds 8x8 block "
    "artifacts to train and test images alike, so these accuracies are expected to sit somewhat below "
    "what the same recipe gives on the official pixels; by how much: {measured}."
)
JPEG_UNMEASURED = "not measured here yet (a study: `cifarlab fold PACK --study jpeg`)"
JPEG_MEASURED = "the section *What JPEG costs* below measures it, per recipe"


# A stalled epoch took over STALL_FACTOR x its run's median epoch and STALL_MIN_S (s) more: the
# trainer was paused (SIGSTOP, a suspended VM) or the machine was busy with other work. Its wall
# time is real, so it stays in the sums; the tables say where it went. Over the published runs,
# compile warm-up and side-by-side trainers stay under it (at most 5.4x or 8 minutes over).
STALL_FACTOR, STALL_MIN_S = 3.0, 600.0


def load_epoch_seconds(published: Path = PUBLISHED_DIR) -> dict[str, list[float]]:
    """out -> the wall seconds of each epoch of every published run (timing/<out>.json; [] without)."""
    out = {}
    for stem, timing in _records(published, "timing").items():
        seconds = timing.get("epoch_seconds")
        ok = isinstance(seconds, list) and all(isinstance(x, (int, float)) for x in seconds)
        out[stem] = [float(x) for x in seconds] if ok else []
    return out


def stalled_epochs(epoch_seconds: list[float]) -> list[tuple[int, float]]:
    """(epoch, seconds over the median epoch) of each stalled epoch (see STALL_FACTOR), epochs from 1."""
    if len(epoch_seconds) < 3:  # no median worth the name
        return []
    median = statistics.median(epoch_seconds)
    return [
        (i, s - median)
        for i, s in enumerate(epoch_seconds, 1)
        if s > STALL_FACTOR * median and s - median > STALL_MIN_S
    ]


def fmt_wall(seconds: float | None, epoch_seconds: list[float] | None = None, resumed_after: object = None) -> str:
    """'5h33m'; with a stalled epoch '5h33m (epoch 35 took 1h47m, median epoch 2m03s)'; for a run
    stopped and resumed (provenance's `resumed_after`: the last saved epoch of each resume)
    '9h12m (stopped twice, resumed after epochs 14, 62)'."""
    if seconds is None:
        return fmt_duration(seconds)
    notes = []
    stalls = stalled_epochs(epoch_seconds or [])
    if stalls:
        median = statistics.median(epoch_seconds)
        took = ", ".join(f"epoch {e} took {fmt_duration(epoch_seconds[e - 1])}" for e, _ in stalls)
        notes.append(f"{took}, median epoch {fmt_duration(median)}")
    resumes = resumed_after if isinstance(resumed_after, list) else []
    resumes = [e for e in resumes if isinstance(e, int) and not isinstance(e, bool)]  # a pack is untrusted
    if resumes:
        times = {1: "once", 2: "twice"}.get(len(resumes), f"{len(resumes)} times")
        epochs = ", ".join(str(e) for e in resumes)
        notes.append(f"stopped {times}, resumed after epoch{'s' * (len(resumes) > 1)} {epochs}")
    return fmt_duration(seconds) + (f" ({'; '.join(notes)})" if notes else "")


def fmt_duration(seconds: float | None) -> str:
    return DASH if seconds is None else format_duration(seconds)


def data_label(prov: Mapping) -> str:
    d = prov.get("data") or {}
    if not d:
        return "not recorded"
    md5 = d.get("content_md5")
    name = KNOWN_DATA.get(md5) if md5 else None
    if name is None:
        name = "official archive" if d.get("archive_md5") == OFFICIAL_MD5 else "other data"
    n = f"{d.get('n_train') or 0:,}/{d.get('n_test') or 0:,}"
    return f"{name}, {n} (content md5 `{md5[:8]}`)" if md5 else f"{name}, {n}"


def device_label(prov: Mapping) -> str:
    d = prov.get("device") or {}
    if not d:
        return "not recorded"
    name = d.get("name") or d.get("type") or "?"
    extra = f"torch {d.get('torch')}"
    if d.get("cuda"):
        extra += f", CUDA {d.get('cuda')}"
    elif d.get("num_threads"):
        extra += f", {d['num_threads']} thread{'s' if d['num_threads'] != 1 else ''}"
    numerics = prov_numerics(prov)
    # Which bf16 the CPU runs natively (amx_bf16, avx512_bf16, none = emulated) sets a bf16
    # run's speed, and says whether an fp32 run's CPU could have gone faster.
    native = f", native bf16: {numerics['cpu_bf16']}" if numerics.get("cpu_bf16") else ""
    return f"{name} ({extra}, {precision_label(numerics)}{native})"


def short_data_label(prov: Mapping) -> str:
    """'JPEG 50k/10k', 'official 50k/10k', 'other 200/100': the data in a narrow column."""
    d = prov.get("data") or {}
    if not d:
        return "?"
    md5 = d.get("content_md5")
    kind = "JPEG" if md5 in KNOWN_DATA else "official" if d.get("archive_md5") == OFFICIAL_MD5 else "other"

    def k(n):
        return f"{n // 1000}k" if n and n % 1000 == 0 else f"{n or 0}"

    return f"{kind} {k(d.get('n_train'))}/{k(d.get('n_test'))}"


def _device_name_threads(prov: Mapping) -> tuple[str, int | None]:
    d = prov.get("device") or {}
    name = str(d.get("name") or d.get("type") or "?").replace("(R)", "").replace("  ", " ")[:28]
    return name, (d.get("num_threads") if not d.get("cuda") else None) or None


def devices_cell(provs) -> str:
    """The devices of a run's seeds in a narrow column, each name once with its thread counts:
    'Intel Xeon Processor, 1/2 thr / AMD EPYC, 2 thr'; a GPU by its name alone."""
    threads: dict[str, list[int]] = {}
    for p in provs:
        name, n = _device_name_threads(p)
        seen = threads.setdefault(name, [])
        if n and n not in seen:
            seen.append(n)
    return " / ".join(f"{name}, {'/'.join(map(str, sorted(ns)))} thr" if ns else name for name, ns in threads.items())


def code_label(prov: Mapping) -> str:
    c = prov.get("code") or {}
    if not c:
        return "not recorded"
    commit = (c.get("code_commit") or c.get("commit") or "unknown")[:7]
    text = f"`{commit}`" + ("+changes" if c.get("dirty") else "")
    differ = (prov.get("folded") or {}).get("code_differs") or []
    if differ:
        text += (
            f" ({len(differ)} file{'s differ' if len(differ) != 1 else ' differs'} "
            "from the checkout it was folded into)"
        )
    return text


def published_section(
    reference: Mapping,
    published: Mapping[str, list[dict]],
    provenance: Mapping[str, dict],
    run_names: Iterable[str],
    jpeg_measured: bool = False,
    epoch_seconds: Mapping[str, list[float]] | None = None,
) -> str:
    """ "Published runs": every published (run, seed) with its provenance, then every run of the
    run table not published yet with the command that runs it. jpeg_measured: the report has a
    "What JPEG costs" section (reporting/studies.py), which the note on JPEG-derived data names.
    epoch_seconds: out -> each epoch's wall seconds (load_epoch_seconds), for the stalls."""
    from cifarlab.reporting.markdown import DASH, fmt_diff, fmt_epochs, fmt_result, fmt_seed, fmt_value, md_table
    from cifarlab.reporting.records import counted
    from cifarlab.reporting.reference import primary
    from cifarlab.reporting.stats import run_stats

    parts = ["## Published runs"]
    rows, seed_rows, uses_jpeg, stalled = [], [], False, False
    epoch_seconds = epoch_seconds or {}
    for run in sorted(published):
        recs = counted(published[run])
        ref = primary(reference["numbers"], run, "top1")
        st = run_stats(recs, "top1")
        outs = [Path(r["path"]).stem for r in recs]
        provs = [provenance.get(out, {}) for out in outs]
        run_stalled = any(stalled_epochs(epoch_seconds.get(out, [])) for out in outs)
        stalled |= run_stalled
        for i, (r, prov) in enumerate(zip(recs, provs, strict=True)):
            uses_jpeg |= (prov.get("data") or {}).get("content_md5") in KNOWN_DATA
            ep = prov.get("epochs") or {}
            best = r["best"].get("top1")
            seed_rows.append(
                [
                    f"`{run}`" if i == 0 else "",
                    fmt_seed(r["seed"]),
                    f"{fmt_value('top1', best)} @ {r['best'].get('epoch')}" if best is not None else DASH,
                    fmt_value("top1", r["final"].get("top1")),
                    f"{ep.get('run', '?')}/{ep.get('recipe', '?')}"
                    + (" (stopped early)" if ep.get("stopped_early") else ""),
                    data_label(prov),
                    device_label(prov),
                    code_label(prov),
                    fmt_wall(prov.get("wall_seconds"), epoch_seconds.get(outs[i]), prov.get("resumed_after")),
                    f"{prov['images_per_s']:,.0f}" if prov.get("images_per_s") else DASH,
                ]
            )
        walls = [p.get("wall_seconds") for p in provs if p.get("wall_seconds")]
        result = fmt_result("top1", st["best"], st)
        if st["diverged"] and st["best"]["n"]:  # a best epoch before the divergence: not a finished run
            result += f" ({len(st['diverged'])} diverged at epoch {fmt_epochs(st['diverged'])})"
        rows.append(
            [
                f"`{run}`",
                fmt_value("top1", ref["value"]) if ref else DASH,
                result,
                fmt_diff("top1", st["best"]["mean"], ref["value"]) if ref and st["best"]["mean"] is not None else DASH,
                ", ".join(str(r["best"].get("epoch")) for r in recs),
                " / ".join(ordered_unique(precision_label(prov_numerics(p)) for p in provs)),
                " / ".join(ordered_unique(short_data_label(p) for p in provs)),
                devices_cell(provs),
                (fmt_duration(sum(walls) / len(walls)) + (" †" if run_stalled else "")) if walls else DASH,
            ]
        )
    if rows:
        parts.append(
            "Runs of the full recipes that cifarlab trained itself, folded in with `cifarlab fold` from packs "
            "(`reports/published/`: metrics, curves, and `provenance/<run>.json` with every md5). One row per "
            "run: **cifarlab** = test top-1 at the best epoch, mean ± std over its seeds (n), then the "
            "difference from the report; best epoch of each seed; precision (`fp32`, `bf16`, compiled); data; "
            "device; wall time per seed (all epochs, test passes included; a seed stopped and resumed "
            "says after which saved epochs, in the seed table). Each seed with its full provenance is in the "
            "table under it."
            + (
                f" † A seed's wall time includes a stalled epoch, over {STALL_FACTOR:g}x its median epoch "
                f"and {STALL_MIN_S / 60:g} minutes longer (the trainer paused, or the machine busy with other "
                "work): the seed table names it."
                if stalled
                else ""
            )
        )
        if uses_jpeg:
            parts.append(JPEG_NOTE.format(measured=JPEG_MEASURED if jpeg_measured else JPEG_UNMEASURED))
        parts.append(
            md_table(
                ["run", "report", "cifarlab", "diff", "best epoch", "precision", "data", "device", "wall/seed"], rows
            )
        )
        parts.append(
            "<details><summary>Every seed: epochs, data, device, code, wall time, images/s</summary>\n\n"
            + md_table(
                [
                    "run",
                    "seed",
                    "best @ epoch",
                    "final",
                    "epochs",
                    "data (train/test)",
                    "device",
                    "code",
                    "wall time",
                    "images/s",
                ],
                seed_rows,
            )
            + "\n\n</details>"
        )
    else:
        parts.append("No published run yet: fold one in with `cifarlab fold <pack>`.")
    todo = [n for n in run_names if n not in published]
    if todo:
        rows = []
        for run in todo:
            ref = primary(reference["numbers"], run, "top1")
            rows.append(
                [f"`{run}`", fmt_value("top1", ref["value"]) if ref else DASH, "not run yet", f"`dvc repro plot@{run}`"]
            )
        parts.append(f"### Not run yet ({len(todo)} of {len(todo) + len(published)} runs)")
        parts.append(
            "Each runs with the command beside it (`cifarlab estimate` says how long here); on a GPU, "
            "`python tools/gpu_reproduce.py --minutes N` runs them in priority order and packs the "
            "finished ones for `cifarlab fold` (docs/publishing.md)."
        )
        parts.append(md_table(["run", "published (report)", "cifarlab", "command"], rows))
    return "\n\n".join(parts)
