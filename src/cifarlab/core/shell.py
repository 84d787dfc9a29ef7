"""The thin shell every stage's `main()` runs in: one-line errors, clean Ctrl-C, exit codes."""
from __future__ import annotations

import sys
from typing import Callable

from cifarlab.core.errors import CifarlabError


def run_main(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a stage; turn project errors into `error: <one line>` and a non-zero exit.

    Stage code writes outputs atomically, so an error or Ctrl-C here leaves nothing half-written.
    """
    try:
        main(argv)
    except CifarlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted: stopped cleanly; finished outputs are intact, rerun `dvc repro` to go on",
              file=sys.stderr)
        sys.exit(130)
