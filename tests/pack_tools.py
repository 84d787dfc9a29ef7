"""Helpers shared by the pack and fold tests (test_published.py, test_pack_untrusted.py)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path


def repack(src: Path, dest: Path, edit) -> Path:
    """`src` with its members passed through edit(members: dict name -> bytes), written to `dest`."""
    with tarfile.open(src) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    edit(members)
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest
