"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Bad input "leaves nothing half written" (DESIGN.md): every state file a node or the
coordinator keeps (privacy ledgers, checkpoints, keyrings) goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a sibling temporary file and ``os.replace``.

    ``mode`` applies to a newly created file (``0o600`` for secrets).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
