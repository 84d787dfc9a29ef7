"""The report's "Open choices" section: for a published number the reproduction misses, the
settings its report left OPEN (params.yaml `open_choices`), each run with seeds, set against the
published value, and one sentence saying which setting reproduces it.

Rules (`verdict`, unit-tested on synthetic numbers):
- an alternative *covers* the published value when it has at least MIN_SEEDS seeds that did not
  diverge and the value lies within their range [min, max] (the rule the report's "within seed
  range" column uses); fewer seeds never count as reproducing, whatever their mean;
- "reproduced by <settings>" when any alternative covers it; else "closest: <setting>, still X
  points below" or "above" (the setting with the nearest mean, the default included, its n said
  when below MIN_SEEDS; the side matters: a setting above the value overshoots it); else "not
  swept yet: <command>". Seeds whose training diverged count for nothing but are shown.
- the default run (the run itself at its best epoch) is judged the same way first: when it
  covers the value, nothing needs explaining.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from cifarlab.reporting.markdown import DASH, fmt_epochs, fmt_summary, fmt_value, md_table
from cifarlab.reporting.records import counted
from cifarlab.reporting.reference import primary
from cifarlab.reporting.stats import summarize

MIN_SEEDS = 3
CPU_MODELS = ("lenet5", "dnn", "cnn", "hw2_cnn")  # recipes a 2-core CPU trains in minutes to an hour
READING_LABELS = {"best": "", "final": " (final epoch)", "best_flip": " (test-time flip)"}


@dataclass(frozen=True)
class Option:
    """One setting's numbers: `label` names it, `summary` is summarize() over its seeds' values."""

    label: str
    run: str
    reading: str
    summary: Mapping
    diverged: tuple[int, ...] = ()  # epochs at which seeds diverged


def covers(opt: Option, published: float) -> bool:
    """At least MIN_SEEDS seeds left a number and `published` lies within their [min, max]."""
    s = opt.summary
    return s["n"] >= MIN_SEEDS and s["min"] <= published <= s["max"]


def option(run: str, reading: str, recs: Sequence[dict], metric: str = "top1") -> Option:
    """An Option from the records (one per seed) of `run`, read at `reading`."""
    recs = counted(recs)
    values = [(r.get(reading) or {}).get(metric) for r in recs]
    diverged = tuple(r["diverged_epoch"] for r in recs if r.get("diverged_epoch") is not None)
    return Option(
        label=f"{run}{READING_LABELS[reading]}", run=run, reading=reading, summary=summarize(values), diverged=diverged
    )


def verdict(published: float, default: Option, alternatives: Sequence[Option], command: str) -> str:
    """One plain sentence (see the module docstring). Accuracies as fractions."""
    alts = list(alternatives)
    if covers(default, published):
        return (
            f"reproduced by the default settings: {fmt_value('top1', published)} lies within the range "
            f"of {default.summary['n']} seeds"
        )
    covering = [a.label for a in alts if covers(a, published)]
    if covering:
        return "reproduced by " + ", ".join(f"`{c}`" for c in covering)
    ran = [a for a in alts if a.summary["n"]]
    missing = [a.label for a in alts if not a.summary["n"] and not a.diverged]
    rest = f"not run yet: {', '.join(f'`{m}`' for m in missing)} (`{command}`)" if missing else ""
    if not ran:
        diverged = [a.label for a in alts if a.diverged]
        if not diverged:
            return f"not swept yet: `{command}`"
        return f"every setting run so far diverged: {', '.join(f'`{d}`' for d in diverged)}" + (
            f"; {rest}" if rest else ""
        )
    # the default competes too: an alternative farther off than it explains nothing
    best = min(ran + ([default] if default.summary["n"] else []), key=lambda a: abs(a.summary["mean"] - published))
    diff = (best.summary["mean"] - published) * 100  # percentage points
    side = "off" if round(diff, 2) == 0 else "above" if diff > 0 else "below"
    few = (
        f" (n={best.summary['n']}: below {MIN_SEEDS} seeds, too few to call it reproduced)"
        if best.summary["n"] < MIN_SEEDS
        else ""
    )
    name = f"`{best.label}` (the default)" if best is default else f"`{best.label}`"
    return f"closest: {name}, still {abs(diff):.2f} points {side}{few}" + (f"; {rest}" if rest else "")


def decomposition(
    published: float, default: Option, alternatives: Sequence[Option], jpeg: Mapping | None = None, jpeg_link: str = ""
) -> str:
    """One sentence adding up what each measured change is worth against the default's miss below
    `published`, and what is left unexplained; "" when the default does not miss below it.

    Parts: what JPEG q75 costs the recipe (jpeg: the JPEG study's run_differences entry, variant -
    baseline on its 40k/10k split), and each alternative that changes the recipe (a run read at its
    best epoch; other readings change nothing the recipe does), as its mean minus the default's
    mean. Each was measured alone against the default, so the sum assumes the effects add; only
    the parts that move toward the published value count toward it.
    """
    d = default.summary
    if not d["n"] or d["mean"] >= published or covers(default, published):
        return ""
    miss = (published - d["mean"]) * 100  # percentage points
    parts, toward, pending = [], 0.0, []
    if jpeg is not None and jpeg.get("diff") is not None:
        cost = -jpeg["diff"] * 100  # lossless - jpeg: what training and testing on JPEG pixels takes away
        n_lossless, n_jpeg = jpeg["baseline"]["n"], jpeg["variant"]["n"]
        n = f"n={n_lossless} per arm" if n_lossless == n_jpeg else f"n={n_lossless} lossless, {n_jpeg} JPEG"
        parts.append(f"JPEG q75 pixels {-cost:+.2f} pp ({n}, 40k/10k split{', ' + jpeg_link if jpeg_link else ''})")
        toward += max(cost, 0.0)
    elif jpeg is not None or jpeg_link:
        pending.append("JPEG q75 pixels")
    for a in alternatives:
        if a.reading != "best":
            continue
        if not a.summary["n"]:
            pending.append(f"`{a.label}`")
            continue
        gain = (a.summary["mean"] - d["mean"]) * 100
        few = f", n={a.summary['n']}" if a.summary["n"] < MIN_SEEDS else ""
        parts.append(f"`{a.label}` {gain:+.2f} pp{few}")
        toward += max(gain, 0.0)
    if not parts:
        return (
            f"the default is {miss:.2f} points below; no change measured yet ({', '.join(pending)})" if pending else ""
        )
    text = f"the default is {miss:.2f} points below; measured one change at a time against it: " + ", ".join(parts)
    if toward >= miss:
        text += (
            f"; the changes that move toward the published value add up to {toward:.2f} points, enough "
            f"to cover the miss if their effects add (no run combines them)"
        )
    else:
        text += f"; together {toward:.2f} of the {miss:.2f} points, {miss - toward:.2f} left unexplained"
    if pending:
        text += f" ({', '.join(pending)}: not measured yet)"
    return text


def sweep_command(base: str, model: str, runs_needed: Sequence[str]) -> str:
    """The one command that runs what an open choice still lacks, with seeds 1 and 2 beside the
    main seed on a CPU-sized recipe, or the GPU kit for the others."""
    if model in CPU_MODELS:
        targets = " ".join(f"plot@{r} plot_seeds@{r}-1 plot_seeds@{r}-2" for r in runs_needed)
        return f"cifarlab set 'seeds=[1, 2]' && dvc repro {targets}"
    return f"python tools/gpu_reproduce.py --jpeg <cifar10-jpeg.tar.gz> --runs {' '.join(runs_needed)}"


def options_of(
    base: str, alternatives: Sequence[tuple[str, str]], runs: Mapping[str, list[dict]]
) -> tuple[Option, list[Option]]:
    return option(base, "best", runs.get(base, [])), [option(r, rd, runs.get(r, [])) for r, rd in alternatives]


def published_choices(
    reference: Mapping, open_choices: Mapping[str, Sequence[tuple[str, str]]], runs: Mapping[str, list[dict]]
) -> Iterator[tuple[str, float, Option, list[Option]]]:
    """(base run, its published top-1, its default, its alternatives) for each open choice of a
    run with a published top-1, in params.yaml's order."""
    for base, alts in open_choices.items():
        ref = primary(reference["numbers"], base, "top1")
        if ref is not None:
            yield base, ref["value"], *options_of(base, alts, runs)


def section(
    reference: Mapping,
    open_choices: Mapping[str, Sequence[tuple[str, str]]],
    runs: Mapping[str, list[dict]],
    models: Mapping[str, str],
    figure: str | None = None,
    jpeg: Mapping[str, Mapping] | None = None,
    jpeg_link: str = "",
) -> str:
    """The "Open choices" markdown: one table and verdict per published number in `open_choices`,
    and where the default misses, what the miss is made of (`decomposition`).
    models: run -> model (for the command); jpeg: run -> the JPEG study's difference for it
    (studies.run_differences), linked by `jpeg_link`."""
    if not open_choices:
        return ""
    parts = [
        "## Open choices",
        "What each report left OPEN (REPORTS.md, in ../shared/spec/ beside the repository), "
        "swept for the published numbers the reproduction misses: every setting is a run of `params.yaml` "
        "(`open_choices`), test top-1 at its best epoch "
        f"unless said, mean ± std over seeds. **covers** = at least {MIN_SEEDS} seeds and the published "
        "value within their range [min, max]; fewer seeds never count as reproducing it.",
    ]
    for base, pub, default, options in published_choices(reference, open_choices, runs):
        needed = [
            r for r in dict.fromkeys([base, *(a.run for a in options)]) if len(counted(runs.get(r, []))) < MIN_SEEDS
        ]
        cmd = sweep_command(base, models.get(base, ""), needed or [base])
        rows = []
        for kind, o in (("default", default), *(("alternative", a) for a in options)):
            s = o.summary
            shown = fmt_summary("top1", s) if s["n"] else ("diverged" if o.diverged else "not run yet")
            if o.diverged:
                shown += f" ({len(o.diverged)} diverged at epoch {fmt_epochs(list(o.diverged))})"
            off = f"{(s['mean'] - pub) * 100:+.2f} pp" if s["n"] else DASH
            mark = (
                "**yes**"
                if covers(o, pub)
                else ("too few seeds" if 0 < s["n"] < MIN_SEEDS else ("no" if s["n"] else DASH))
            )
            rows.append([f"`{o.label}`" + (" (default)" if kind == "default" else ""), shown, s["n"], off, mark])
        parts.append(f"### `{base}`: published {fmt_value('top1', pub)}")
        parts.append(md_table(["setting", "top-1", "n", "minus published", "covers"], rows))
        parts.append("**Verdict:** " + verdict(pub, default, options, cmd) + ".")
        made_of = decomposition(pub, default, options, (jpeg or {}).get(base), jpeg_link)
        if made_of:
            parts.append("**What the miss is made of:** " + made_of + ".")
    if figure:
        parts.append(f"![open choices: each setting's top-1 against the published value](figures/{figure})")
    return "\n\n".join(parts)


def figure_rows(
    reference: Mapping, open_choices: Mapping[str, Sequence[tuple[str, str]]], runs: Mapping[str, list[dict]]
) -> list[dict]:
    """For figures.open_choices_figure: per published number, its settings' values per seed."""
    out = []
    for base, pub, default, options in published_choices(reference, open_choices, runs):
        settings = []
        for o in (default, *options):
            values = [(r.get(o.reading) or {}).get("top1") for r in counted(runs.get(o.run, []))]
            settings.append(
                {"label": o.label, "values": [v for v in values if v is not None], "covers": covers(o, pub)}
            )
        out.append({"base": base, "published": pub, "settings": settings})
    return out
