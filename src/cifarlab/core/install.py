"""Is this Python environment whole? torch and torchvision from one build, DVC present.

    python -m cifarlab.core.install     one line: what is installed, or what is broken and the fix

A torchvision built for another torch (a CPU torch beside a CUDA torchvision, say) fails on import
with "operator torchvision::nms does not exist" deep inside the first model that needs it; the
stages' shell (core/stage_main.run_main) asks `install_problem` when an import fails, so that shows as
this one line instead of a traceback.
"""

from __future__ import annotations

import sys
from importlib import metadata, util

from cifarlab.core.errors import one_line

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def install_problem() -> str | None:
    """One line naming what is broken, with the command that fixes it; None when all is well."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure is the install's
        return f"torch {_version('torch')} does not import ({one_line(e, 120)}): pip install --force-reinstall torch"
    try:
        import torchvision  # noqa: F401 - imported to see that it works with this torch
    except Exception as e:  # noqa: BLE001 - any import failure is the install's
        release = torch.__version__.split("+")[0]
        index = f" --index-url {CPU_INDEX}" if torch.version.cuda is None else ""
        return (
            f"torchvision {_version('torchvision')} does not work with torch {torch.__version__} "
            f"({one_line(e, 120)}): they must come from one build; reinstall them together: "
            f"pip install --force-reinstall 'torch=={release}' torchvision{index}"
        )
    if util.find_spec("dvc") is None:
        return "DVC is not installed in this environment: pip install -e '.[dev]' (from the checkout)"
    return None


def main() -> None:
    problem = install_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: torch {_version('torch')}, torchvision {_version('torchvision')}, dvc {_version('dvc')}")


if __name__ == "__main__":
    main()
