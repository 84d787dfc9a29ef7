#!/usr/bin/env python3
"""Render reports/README.md to HTML and screenshot it in headless Chromium (a render check).

    python tools/render_report.py [reports/README.md] [--out /tmp/report.png] [--height 9000]

GitHub renders pipe tables and relative images; this approximates that with python-markdown
(`tables` extension) and a GitHub-like stylesheet, then takes a full-width screenshot with
/usr/bin/chromium (Debian's `chromium` package). For looking at, not for tests.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import markdown

CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1012px;
       margin: 24px auto; color: #1f2328; font-size: 14px; line-height: 1.5; }
table { border-collapse: collapse; margin: 12px 0; display: block; overflow: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
tr:nth-child(2n) { background: #f6f8fa; }
img { max-width: 100%; }
code { background: #eff1f3; padding: 1px 4px; border-radius: 4px; }
h1, h2 { border-bottom: 1px solid #d8dee4; padding-bottom: .3em; }
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("markdown_file", nargs="?", default="reports/README.md")
    ap.add_argument("--out", default="/tmp/report.png")
    ap.add_argument("--height", type=int, default=9000, help="screenshot height in pixels")
    ap.add_argument("--width", type=int, default=1100)
    a = ap.parse_args(argv)
    src = Path(a.markdown_file).resolve()
    body = markdown.markdown(src.read_text(encoding="utf-8"), extensions=["tables", "fenced_code", "md_in_html"])
    # the HTML sits beside the Markdown so relative image links resolve as on GitHub
    html = src.with_name(".render_check.html")
    html.write_text(f"<!doctype html><meta charset='utf-8'><style>{CSS}</style>{body}", encoding="utf-8")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={a.width},{a.height}",
            f"--screenshot={a.out}",
            html.as_uri(),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    html.unlink()
    if r.returncode != 0 or not Path(a.out).exists():
        print(r.stderr[-2000:], file=sys.stderr)
        return 1
    print(f"{src} -> {a.out} ({a.width}x{a.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
