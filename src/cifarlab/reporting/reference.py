"""reports/reference.yaml (every number the five reports published): loading it and looking numbers up in it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cifarlab.core.errors import DataError
from cifarlab.core.yaml_io import read_yaml_file
from cifarlab.reporting.markdown import METRIC_LABELS  # a published metric must be one the report can label

REPORT_TITLES = {
    "000": "LeNet-5 vs ResNet-9",
    "001": "DNN, CNN and ResNet from the lecture, then a custom ResNet",
    "002": "A 3-layer 5x5 CNN",
    "003": "AlexNet transfer learning",
    "004": "ResNet-18 ablations (activation x lr-step ratio x augmentation)",
}
GRID_REPORT = "004"
ALEXNET_REPORT = "003"


def load_reference(path: str | os.PathLike) -> dict:
    """reports/reference.yaml as {numbers: [...], statements: [...]}, checked for the keys used. Not
    YAML, a key typed twice (a number's `value:`) -> DataError naming its line (core.yaml_io)."""
    path = Path(path)
    try:
        ref = read_yaml_file(path, error=DataError)
    except FileNotFoundError:
        raise DataError(f"{path} not found: it holds the published numbers the report compares with") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("numbers"), list):
        raise DataError(f"{path}: needs a `numbers:` list")
    for i, n in enumerate(ref["numbers"]):
        missing = {"report", "run", "metric", "value"} - set(n if isinstance(n, dict) else ())
        if missing:
            raise DataError(f"{path}: numbers[{i}] lacks {', '.join(sorted(missing))}")
        if n["metric"] not in METRIC_LABELS:
            raise DataError(f"{path}: numbers[{i}].metric is {n['metric']!r}; allowed: top1, top3, loss")
    return {"numbers": ref["numbers"], "statements": ref.get("statements") or []}


def numbers_of(reference: Mapping, report: str) -> list[dict]:
    """The published numbers of one report ("000".."004"), in reference.yaml's order."""
    return [n for n in reference["numbers"] if str(n["report"]) == report]


def primary(entries: Sequence[dict], run: str, metric: str) -> dict | None:
    """The primary published value of (run, metric): the only entry, or the one without a note."""
    hits = [n for n in entries if n["run"] == run and n["metric"] == metric]
    if len(hits) <= 1:
        return hits[0] if hits else None
    plain = [n for n in hits if not n.get("note")]
    return plain[0] if plain else hits[0]


def report_ids(reference: Mapping) -> list[str]:
    """ "000".."004" and any other report reference.yaml names, sorted."""
    ids = set(REPORT_TITLES) | {str(n["report"]) for n in reference["numbers"]}
    return sorted(ids)


def ordered_unique(values: Iterable[Any]) -> list:
    """values without repeats, in the order they first appear (values are hashable)."""
    return list(dict.fromkeys(values))


def grid_axes(reference: Mapping) -> tuple[list[str], list[str], list[str]]:
    """(activations, ratios, augments) of report 004's grid, in reference.yaml's order."""
    cells = [n for n in numbers_of(reference, GRID_REPORT) if "activation" in n]
    return (
        ordered_unique(n["activation"] for n in cells),
        ordered_unique(str(n["ratio"]) for n in cells),
        ordered_unique(n["augment"] for n in cells),
    )
