"""The names of the registered models, read without importing any of them (no torch).

One module per model in `cifarlab/models/`, named after the model it registers; modules whose
name starts with `_` are shared code. Params validation names the models from this listing, and
the registry (`cifarlab.models`) imports a model's module on first use, so a stage imports the
one model it runs and adding a model edits no file an existing run depends on.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def model_names() -> list[str]:
    """Model names, sorted: the modules of cifarlab/models/ but `_*` and subpackages."""
    return sorted(m.name for m in pkgutil.iter_modules([str(MODELS_DIR)]) if not m.ispkg and not m.name.startswith("_"))
