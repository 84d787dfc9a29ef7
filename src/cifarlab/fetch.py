"""Stage `fetch`: put the CIFAR-10 python archive at `RAW_ARCHIVE`, checked against `data.md5`.

`data.url` is either an http(s) URL (downloaded with retries and a progress bar) or a local
copy -- a path, absolute or relative to the repository root, or a file:// URL -- which is copied.
The archive is written to a temp file beside the destination and renamed into place only once
complete and verified, so a failed fetch leaves nothing behind.

    python -m cifarlab.fetch
"""

from __future__ import annotations

import argparse

from cifarlab.core.params import load_params
from cifarlab.core.paths import RAW_ARCHIVE
from cifarlab.core.stage_main import run_main
from cifarlab.data.download import fetch


def main(argv: list[str] | None = None) -> None:
    """Stage entry point: params data.url / data.md5 -> RAW_ARCHIVE."""
    argparse.ArgumentParser(prog="python -m cifarlab.fetch", description=__doc__.splitlines()[0]).parse_args(argv)
    p = load_params(check_models=False)  # no model code: it downloads data only
    path = fetch(p.data.url, p.data.md5, RAW_ARCHIVE)
    print(f"fetch: {path} (md5 {p.data.md5.lower()})")


if __name__ == "__main__":
    run_main(main)
