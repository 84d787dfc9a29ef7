"""`python -m cifarlab ...` is the `cifarlab` command."""

from cifarlab.tooling.cli import entry_point

entry_point()
