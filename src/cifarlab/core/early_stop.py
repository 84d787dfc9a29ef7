"""How many epochs a run with early stopping trains: a range, not its recipe's maximum.

custom_resnet's recipe allows 300 epochs and stops after 15 without a test-loss gain; report
001's run had its lowest test loss at epoch 62, so it stopped at 62 + 15 = 77. A time projected
for 300 epochs would be about 4x what the run takes. The lower end is the published epoch of the
lowest test loss plus the patience (reports/reference.yaml, the run's `loss` entry: the only
place that number is typed); a run the reports never published gets the fewest epochs early
stopping allows, the patience + 1. The upper end is the recipe's count (capped by
train.max_epochs). Read by `cifarlab estimate`, the notice at the start of `dvc repro` and
train's own CPU warning; no stage output depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cifarlab.core.errors import CifarlabError
from cifarlab.core.params import Run
from cifarlab.core.yaml_io import read_yaml_file

REFERENCE_FILE = Path("reports/reference.yaml")


@dataclass(frozen=True)
class EpochRange:
    expected: int  # epochs expected (the range's lower end)
    most: int  # the recipe's epochs, capped by train.max_epochs (the upper end)
    patience: int
    best_epoch: int | None  # the published epoch of the lowest test loss; None: never published

    def describe(self) -> str:
        """'early stopping: ~77 epochs expected, up to 300' ('at least 16 epochs' when the reports
        published no best epoch for the run)."""
        low = f"at least {self.expected} epochs" if self.best_epoch is None else f"~{self.expected} epochs expected"
        return f"early stopping: {low}, up to {self.most}"

    def source(self) -> str:
        """Where the lower end comes from, for a line that has room for it."""
        if self.best_epoch is None:
            return f"no published best epoch for this run: 1 + patience {self.patience}"
        return f"the published best test loss at epoch {self.best_epoch} ({REFERENCE_FILE}) + patience {self.patience}"


def published_best_loss_epoch(run: str, reference: str | Path = REFERENCE_FILE) -> int | None:
    """The epoch the reports published for `run`'s lowest test loss (its `loss` entry in
    reference.yaml with an epoch; the one without a note where there are several); None when
    there is none or the file cannot be read (a workspace without reports/; a malformed one is
    the report stage's to refuse, not a time estimate's)."""
    try:
        numbers = (read_yaml_file(reference) or {}).get("numbers") or []
    except (OSError, CifarlabError, AttributeError):
        return None
    hits = [
        n
        for n in numbers
        if isinstance(n, dict)
        and n.get("run") == run
        and n.get("metric") == "loss"
        and isinstance(n.get("epoch"), int)
        and not isinstance(n.get("epoch"), bool)
    ]
    hits.sort(key=lambda n: bool(n.get("note")))  # the primary value (no note) first
    return hits[0]["epoch"] if hits else None


def epoch_range(
    run: str, spec: Run, max_epochs: int | None, reference: str | Path = REFERENCE_FILE
) -> EpochRange | None:
    """The epochs `run` (`spec`: the run, its recipe) is expected to train when its recipe stops
    early; None when it does not (it trains spec.epochs(max_epochs), exactly)."""
    patience = spec.recipe.early_stopping_patience
    if patience is None:
        return None
    most = spec.epochs(max_epochs)
    best = published_best_loss_epoch(run, reference)
    expected = (best if best is not None else 1) + patience  # the best epoch, then `patience` without gain
    return EpochRange(min(expected, most), most, patience, best)
