"""reports/reference.yaml: the published numbers of the five reports, checked against the spec.

The numbers are hand-typed once, in reports/reference.yaml. These tests parse the English digest
(../shared/spec/REPORTS.md) and, where present, the original texts (report-00N.txt) and check
that every published number made it into the file, with the right run name, exactly once.
Nothing here hard-codes a published value: they all come from the spec files.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from workspace import SHIPPED_PARAMS

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
REFERENCE = ROOT / "reports" / "reference.yaml"
PARAMS = SHIPPED_PARAMS
SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec"
REPORTS_MD = SPEC_DIR / "REPORTS.md"

REPORTS = {"000", "001", "002", "003", "004"}
METRICS = {"top1", "top3", "loss"}
ACCURACY_METRICS = {"top1", "top3"}
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
RATIOS = ("2:1:1", "5:3:2", "5:4:1")
AUGMENTS = ("none", "crop_flip_blur_color", "crop_flip")
GRID_KEYS = {"activation", "ratio", "augment"}
BASE_KEYS = {"report", "run", "metric", "value", "epoch"}
OPTIONAL_KEYS = {"note"}

# Run names per report: the contract with the report generator.
RUN_PATTERNS = {
    "000": re.compile(r"lenet5|resnet9"),
    "001": re.compile(r"dnn|cnn|resnet|custom_resnet"),
    "002": re.compile(r"hw2_cnn"),
    "003": re.compile(r"alexnet_transfer-(?:noskip|skip)-(?:low|high)"),
    "004": re.compile(
        rf"resnet18-(?:{'|'.join(ACTIVATIONS)})-(?:{'|'.join(r.replace(':', '_') for r in RATIOS)})"
        rf"-(?:{'|'.join(AUGMENTS)})"
    ),
}
# Which metrics each report published.
REPORT_METRICS = {"000": {"top1"}, "001": {"top1", "loss"}, "002": {"top1"}, "003": {"top1", "top3"}, "004": {"top1"}}

NUMBER = re.compile(r"(\d+(?:\.\d+)?)(\s*%)?")
DECIMAL = re.compile(r"\d+\.\d+")


# ----------------------------------------------------------------------------- helpers


def r4(x: float) -> float:
    return round(float(x), 4)


def same(a: float, b: float) -> bool:
    return abs(r4(a) - r4(b)) <= 1e-9


def grid_run(activation: str, ratio: str, augment: str) -> str:
    return f"resnet18-{activation}-{ratio.replace(':', '_')}-{augment}"


def augment_name(label: str) -> str:
    """REPORTS.md's augmentation label -> cifarlab name ('crop+flip+blur+colour' -> ...)."""
    name = label.strip().lower().replace("colour", "color").replace("+", "_").replace(" ", "")
    assert name in AUGMENTS, f"unknown augmentation label {label!r} in REPORTS.md"
    return name


def table_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table row in `text` (separator rows dropped)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def table_after(text: str, header_pattern: str) -> list[list[str]]:
    """The body rows of the first markdown table whose header row matches `header_pattern`."""
    rows, in_table = [], False
    for line in text.splitlines():
        s = line.strip()
        if not in_table:
            if s.startswith("|") and re.search(header_pattern, s, re.I):
                in_table = True
            continue
        if not s.startswith("|"):
            break
        rows.extend(table_rows(s))
    assert rows, f"no table with a header matching {header_pattern!r} in REPORTS.md"
    return rows


def unbold(cell: str) -> str:
    return cell.replace("**", "")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ref() -> dict:
    assert REFERENCE.is_file(), f"{REFERENCE} is missing"
    with REFERENCE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), "reference.yaml must be a mapping"
    return data


@pytest.fixture(scope="module")
def numbers(ref: dict) -> list[dict]:
    entries = ref.get("numbers")
    assert isinstance(entries, list) and entries, "reference.yaml needs a non-empty `numbers:` list"
    return entries


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    """REPORTS.md split by '## Report 00N' headings; skips when the spec is not beside the repo."""
    if not REPORTS_MD.is_file():
        pytest.skip(f"{REPORTS_MD} not present beside the repository")
    text = REPORTS_MD.read_text(encoding="utf-8")
    parts = re.split(r"^## Report (\d{3})\b.*$", text, flags=re.M)
    found = {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}
    assert set(found) == REPORTS, f"REPORTS.md sections found: {sorted(found)}"
    return found


def original(report: str) -> str:
    path = SPEC_DIR / f"report-{report}.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present beside the repository")
    return path.read_text(encoding="utf-8")


def lookup(
    numbers: list[dict], *, report: str | None = None, run: str | None = None, metric: str | None = None
) -> list[dict]:
    return [
        e
        for e in numbers
        if (report is None or e["report"] == report)
        and (run is None or e["run"] == run)
        and (metric is None or e["metric"] == metric)
    ]


def assert_has(numbers: list[dict], value: float, **where) -> None:
    hits = [e for e in lookup(numbers, **where) if same(e["value"], value)]
    assert hits, f"{value} ({where}) is not in reference.yaml"


# ----------------------------------------------------------------------------- schema


def test_top_level_keys(ref: dict) -> None:
    assert set(ref) <= {"numbers", "statements"}, f"unexpected top-level keys: {set(ref)}"


def test_header_comment_says_hand_typed() -> None:
    head = REFERENCE.read_text(encoding="utf-8").split("\nnumbers:")[0]
    assert head.lstrip().startswith("#")
    assert "only hand-typed file" in head.lower()


@pytest.mark.parametrize("field", ["report", "run", "metric", "value", "epoch"])
def test_required_fields_present(numbers: list[dict], field: str) -> None:
    missing = [e for e in numbers if field not in e]
    assert not missing, f"entries without `{field}`: {missing[:3]}"


def test_entry_schema(numbers: list[dict]) -> None:
    for e in numbers:
        where = f"{e.get('report')}/{e.get('run')}/{e.get('metric')}"
        report = e["report"]
        assert isinstance(report, str) and report in REPORTS, f"{where}: bad report {report!r}"
        extra = set(e) - BASE_KEYS - OPTIONAL_KEYS
        assert extra == (GRID_KEYS if report == "004" else set()), f"{where}: keys {sorted(extra)}"
        assert isinstance(e["run"], str) and RUN_PATTERNS[report].fullmatch(e["run"]), (
            f"{where}: bad run name {e['run']!r}"
        )
        assert e["metric"] in METRICS and e["metric"] in REPORT_METRICS[report], f"{where}: bad metric {e['metric']!r}"
        v = e["value"]
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{where}: value {v!r}"
        assert v == r4(v), f"{where}: {v} has more than 4 decimals"
        if e["metric"] in ACCURACY_METRICS:
            assert 0.0 <= v <= 1.0, f"{where}: accuracy {v} is not a fraction"
        else:
            assert v > 0, f"{where}: loss {v}"
        epoch = e["epoch"]
        assert epoch is None or (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1), (
            f"{where}: epoch {epoch!r}"
        )
        if "note" in e:
            assert isinstance(e["note"], str) and e["note"].strip(), f"{where}: empty note"


def test_grid_keys_match_run_name(numbers: list[dict]) -> None:
    for e in lookup(numbers, report="004"):
        assert e["activation"] in ACTIVATIONS and e["ratio"] in RATIOS and e["augment"] in AUGMENTS, e
        assert e["run"] == grid_run(e["activation"], e["ratio"], e["augment"]), e


def test_one_primary_value_per_run_and_metric(numbers: list[dict]) -> None:
    """(run, metric) is unique among note-less entries; extra values must explain themselves."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in numbers:
        groups[(e["run"], e["metric"])].append(e)
    for key, group in groups.items():
        assert len({e["report"] for e in group}) == 1, f"{key} spans several reports"
        if len(group) == 1:
            continue
        noteless = [e for e in group if not e.get("note")]
        assert len(noteless) == 1, f"{key}: {len(group)} entries need exactly one without a note"
        notes = [e["note"] for e in group if e.get("note")]
        assert len(notes) == len(set(notes)), f"{key}: duplicate notes"
        values = [r4(e["value"]) for e in group]
        assert len(values) == len(set(values)), f"{key}: the same value twice"


def test_statements_schema(ref: dict, numbers: list[dict]) -> None:
    statements = ref.get("statements") or []
    assert isinstance(statements, list)
    runs = {e["run"] for e in numbers}
    for s in statements:
        assert {"report", "run", "text"} <= set(s) <= {"report", "run", "text", "curve"}, s
        if "curve" in s:  # a claim about a learning curve, checked against the histories in the report
            assert s["run"] and s["curve"]["metric"] == "test_loss" and isinstance(s["curve"]["epoch"], int), s
        assert s["report"] in REPORTS, s
        assert s["run"] is None or s["run"] in runs, f"statement about unknown run {s['run']!r}"
        assert isinstance(s["text"], str) and s["text"].strip(), s


def test_expected_runs_present(numbers: list[dict]) -> None:
    runs = {e["run"] for e in numbers}
    expected = {"lenet5", "resnet9", "dnn", "cnn", "resnet", "custom_resnet", "hw2_cnn"}
    expected |= {f"alexnet_transfer-{s}-{p}" for s in ("noskip", "skip") for p in ("low", "high")}
    expected |= {grid_run(a, r, g) for a in ACTIVATIONS for r in RATIOS for g in AUGMENTS}
    assert runs == expected, f"missing {expected - runs}, unexpected {runs - expected}"


# ----------------------------------------------------------------------------- REPORTS.md


def test_bold_numbers_are_in_reference(sections: dict[str, str], numbers: list[dict]) -> None:
    """Every decimal number inside **bold** in REPORTS.md is a value of the same report."""
    checked = 0
    for report, text in sections.items():
        for line in text.splitlines():
            in_table = line.strip().startswith("|")
            for span in re.findall(r"\*\*(.+?)\*\*", line):
                for m in NUMBER.finditer(span):
                    if "." not in m.group(1):
                        continue  # integers in bold text are epochs/counts ("after 20 epochs")
                    value = float(m.group(1))
                    # percent: written with %, or a cell of report 004's percent-valued grid
                    if m.group(2) or (report == "004" and in_table):
                        value /= 100
                    assert_has(numbers, value, report=report)
                    checked += 1
    assert checked >= 10, f"only {checked} bold numbers found in REPORTS.md: parser broken?"


def test_report001_table(sections: dict[str, str], numbers: list[dict]) -> None:
    runs = {"dnn": "dnn", "cnn": "cnn", "resnet": "resnet"}
    rows = table_after(sections["001"], r"best test loss")
    assert len(rows) == len(runs)
    for model, loss, accuracy, epoch in rows:
        run = runs[unbold(model).strip().lower()]
        epoch_n = int(re.match(r"\s*(\d+)", epoch).group(1))
        losses = lookup(numbers, run=run, metric="loss")
        assert len(losses) == 1 and same(losses[0]["value"], float(unbold(loss)))
        assert losses[0]["epoch"] == epoch_n
        percents = [float(p) / 100 for p in re.findall(r"(\d+\.\d+)%", accuracy)]
        assert percents
        for p in percents:
            assert_has(numbers, p, run=run, metric="top1")
        primary = [e for e in lookup(numbers, run=run, metric="top1") if not e.get("note")]
        assert len(primary) == 1 and same(primary[0]["value"], percents[0])
        assert primary[0]["epoch"] == epoch_n


def test_report003_table(sections: dict[str, str], numbers: list[dict]) -> None:
    rows = table_after(sections["003"], r"without skip.*with skip")
    assert len(rows) == 2
    seen = 0
    for label, *cells in rows:
        phase = "low" if "low" in label.lower() else "high"
        stated = re.search(r"\((\d+)\)", label)
        for variant, cell in zip(("noskip", "skip"), cells, strict=True):
            run = f"alexnet_transfer-{variant}-{phase}"
            for k, value in re.findall(r"top-(\d)\s+\**(\d\.\d+)", cell):
                entries = lookup(numbers, run=run, metric=f"top{k}")
                assert len(entries) == 1, f"{run} top{k}: {len(entries)} entries"
                assert same(entries[0]["value"], float(value)), f"{run} top{k}"
                assert entries[0]["epoch"] == (int(stated.group(1)) if stated else None)
                seen += 1
    assert seen == 8


def grid_from_reports_md(sections: dict[str, str]) -> dict[tuple[str, str, str], float]:
    rows = table_after(sections["004"], r"augmentation.*activation")
    header = next(
        line for line in sections["004"].splitlines() if re.search(r"^\s*\|.*augmentation.*activation", line, re.I)
    )
    ratios = [c.replace(" ", "") for c in table_rows(header)[0][2:]]
    assert tuple(ratios) == RATIOS, ratios
    grid = {}
    for augmentation, activation, *values in rows:
        for ratio, cell in zip(ratios, values, strict=True):
            key = (activation.strip(), ratio, augment_name(augmentation))
            assert key not in grid, f"REPORTS.md grid has {key} twice"
            grid[key] = float(unbold(cell)) / 100
    return grid


def test_report004_grid(sections: dict[str, str], numbers: list[dict]) -> None:
    grid = grid_from_reports_md(sections)
    assert set(grid) == {(a, r, g) for a in ACTIVATIONS for r in RATIOS for g in AUGMENTS}
    cells = Counter((e["activation"], e["ratio"], e["augment"]) for e in lookup(numbers, report="004"))
    assert set(cells) == set(grid)
    assert all(n == 1 for n in cells.values()), [k for k, n in cells.items() if n != 1]
    for e in lookup(numbers, report="004"):
        key = (e["activation"], e["ratio"], e["augment"])
        assert same(e["value"], grid[key]), f"{key}: {e['value']} != {grid[key]}"


# ----------------------------------------------------------------------------- originals


def test_original_grid_matches_reports_md(sections: dict[str, str]) -> None:
    """report-004.txt's own table (tab-separated, in the same row order) equals REPORTS.md's."""
    text = original("004")
    names = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "leakyrelu": "leaky_relu"}
    rows = re.findall(r"^(?:[^\t\n]*\t)?(Sigmoid|tanh|ReLu|LeakyReLU)\t([\d.]+)\t([\d.]+)\t([\d.]+)", text, flags=re.M)
    assert len(rows) == 12
    order = [g for g in AUGMENTS for _ in ACTIVATIONS]  # X, crop&flip+color&blur, crop+flip
    grid = grid_from_reports_md(sections)
    for augment, (activation, *values) in zip(order, rows, strict=True):
        for ratio, value in zip(RATIOS, values, strict=True):
            key = (names[activation.lower()], ratio, augment)
            assert same(grid[key], float(value) / 100), f"{key}: REPORTS.md != report-004.txt"


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_values_appear_in_original_text(numbers: list[dict], report: str) -> None:
    """Each value is printed verbatim in the original report (a fraction with 4 decimals, or an
    accuracy as a percentage with 2: 0.1234 / 12.34 / 12.34%)."""
    text = original(report)
    for e in lookup(numbers, report=report):
        v = e["value"]
        forms = {f"{v:.4f}"} | ({f"{v * 100:.2f}"} if e["metric"] in ACCURACY_METRICS else set())
        assert any(re.search(rf"(?<![\d.]){re.escape(f)}(?!\d)", text) for f in forms), (
            f"{e['run']} {e['metric']} {v}: none of {sorted(forms)} in report-{report}.txt"
        )


# ----------------------------------------------------------------------------- run table


@pytest.fixture(scope="module")
def run_table() -> dict:
    """params.yaml `runs`, validated: run name -> Run (model, overrides, merged params)."""
    from cifarlab.core.params import load_params

    return dict(load_params(PARAMS).runs)


def test_run_table_and_published_numbers_name_the_same_runs(numbers: list[dict], run_table: dict) -> None:
    """Every run with a published number is in params.yaml `runs`, and every run there has one
    or is an alternative of one (`open_choices`): the run table and reference.yaml cannot drift
    apart (a rename on one side fails here)."""
    from cifarlab.core.params import load_params

    alternatives = {r for alts in load_params(PARAMS).open_choices.values() for r, _ in alts}
    published = {e["run"] for e in numbers}
    table = set(run_table)
    assert not published - table, f"published but not in params.yaml runs: {sorted(published - table)}"
    orphans = table - published - alternatives
    assert not orphans, f"in params.yaml runs without a published number or open choice: {sorted(orphans)}"


def test_run_table_trains_what_each_number_describes(numbers: list[dict], run_table: dict) -> None:
    """A run's entry in `runs` is the setting its published numbers describe: report 004's
    activation / lr-step ratio / augmentation, report 003's skip and (where stated) epoch count,
    and elsewhere the model of the same name."""
    for e in numbers:
        run = run_table[e["run"]]
        recipe, arch = run.recipe, run.arch
        where = f"runs.{e['run']}"
        if e["report"] == "004":
            assert run.model == "resnet18", where
            assert arch["activation"] == e["activation"], where
            assert tuple(recipe.lr_ratio) == tuple(float(x) for x in e["ratio"].split(":")), where
            assert recipe.augment == e["augment"], where
        elif e["report"] == "003":
            assert run.model == "alexnet_transfer", where
            assert arch["skip"] is (e["run"].split("-")[1] == "skip"), where
            if e["epoch"] is not None:  # the table states the high-epoch count
                assert recipe.epochs == e["epoch"], where
        else:
            assert run.model == e["run"], where
    low = {n: r.recipe.epochs for n, r in run_table.items() if n.endswith("-low")}
    high = {n: r.recipe.epochs for n, r in run_table.items() if n.endswith("-high")}
    assert low and high and max(low.values()) < min(high.values())


# ----------------------------------------------------------------------------- one copy only

SCANNED = (ROOT / "src", ROOT / "tests")
SKIPPED_PARTS = ("__pycache__",)  # and build output (*.egg-info), hidden folders


def published_forms(numbers: list[dict]) -> dict[str, str]:
    """How a distinctive published value would be typed -> which entry it is. Distinctive: four
    decimals (like 0.1234, not 0.93, which any test may use); accuracies also as a
    percentage with two decimals. Read from reference.yaml, so this test types none of them."""
    forms: dict[str, str] = {}
    for e in numbers:
        v = e["value"]
        fraction = f"{v:.4f}"
        if fraction.endswith("0"):
            continue
        where = f"{e['report']}/{e['run']}/{e['metric']}"
        forms.setdefault(fraction, where)
        if e["metric"] in ACCURACY_METRICS:
            forms.setdefault(f"{100 * v:.2f}", where)
    return forms


def scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(ROOT).parts
            if not path.is_file() or any(
                p in SKIPPED_PARTS or p.startswith(".") or p.endswith(".egg-info") for p in rel
            ):
                continue
            files.append(path)
    return files


def test_published_values_are_typed_only_in_reference_yaml(numbers: list[dict]) -> None:
    """No file under src/ or tests/ types a published number (as code, string, comment or
    docstring): reports/reference.yaml is the only copy, so a correction there is the whole fix."""
    forms = published_forms(numbers)
    assert len(forms) >= 20, f"only {len(forms)} distinctive published values: reference.yaml changed?"
    pattern = re.compile(r"(?<![\d.])(" + "|".join(re.escape(f) for f in sorted(forms)) + r")(?![\d])")
    files = scanned_files()
    assert any(p.name == "report.py" for p in files) and Path(__file__).resolve() in files
    hits = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{path.relative_to(ROOT)}:{line}: {m.group(1)} ({forms[m.group(1)]})")
    assert not hits, "published values typed outside reports/reference.yaml:\n" + "\n".join(hits)
