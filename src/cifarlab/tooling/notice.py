"""`python -m cifarlab.tooling.notice`: the start-of-run notice of `dvc repro`, which dvc.yaml
runs before `fetch`: on a machine without a GPU, which stages this `dvc repro` will run and for
how long, when long (tooling.estimate.repro_notice). It writes to the terminal only, so it is no
dependency of the fetch stage, and it never fails it: what it cannot tell, it leaves unsaid."""

from __future__ import annotations

import sys

from cifarlab.core.errors import CifarlabError, one_line
from cifarlab.core.params import load_params
from cifarlab.tooling.estimate import repro_notice


def main() -> None:
    try:
        notice = repro_notice(load_params(check_models=False))
    except CifarlabError:
        return  # bad params: fetch, next, refuses them in one line
    except Exception as err:  # noqa: BLE001 - a notice is advice: never the reason a repro stops
        notice = f"note: no time estimate for this dvc repro ({type(err).__name__}: {one_line(err, 200)})"
    if notice:
        print(notice, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
