"""`python -m cifarlab ...` is the `cifarlab` command."""
from cifarlab.cli import entry_point

entry_point()
