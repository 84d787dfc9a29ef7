"""Tar members from untrusted archives: the one check of what a member's header may not be.

Both readers (the CIFAR-10 archive, data.cifar_io; a pack, tooling.fold) read members in memory,
but a name or a type that could reach outside the archive's own tree is refused all the same.
"""

from __future__ import annotations

import tarfile
from pathlib import PurePosixPath


def unsafe_member(m: tarfile.TarInfo) -> str | None:
    """Why reading tar member `m` is unsafe, or None for a regular file or a directory whose name
    stays below the archive's root. A Windows-style name counts too ("\\x", "C:x", "a\\..\\b")."""
    name = m.name
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name).parts or ".." in name.split("\\"):
        return "'..' in path"
    if not (m.isfile() or m.isdir()):
        return f"a {'link' if m.issym() or m.islnk() else 'device or special file'}, not a regular file"
    return None
