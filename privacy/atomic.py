"""Atomic, durable writes: a reader sees the old file (or folder) or the new one, never half.

Bad input leaves nothing half written, and a crash or power loss right after a write does
not lose it: every file or folder a node, the coordinator or a command keeps (privacy
ledgers, checkpoints, keyrings, models, matching outputs, provinces, year records) is
written here and nowhere else.

- :func:`atomic_write_bytes` writes bytes;
- :func:`atomic_file` hands a temporary path to a library writer (``np.savez``,
  ``DataFrame.to_parquet``) and puts the result in place;
- :func:`atomic_directory` does the same for a whole folder.

Each one writes into a sibling temporary, flushes it to disk (``fsync`` of the file, of every
file of a folder), renames it over the target (``os.replace``, atomic on POSIX) and then
flushes the parent directory so the rename itself survives a crash. On any error the
temporary is removed and the target is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory", "atomic_file", "atomic_write_bytes"]


def _fsync_path(path: Path) -> None:
    """Flush a file's or a directory's contents and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    ``mode`` applies to the new file (``0o600`` for secrets).
    """
    with atomic_file(path, mode=mode) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


@contextmanager
def atomic_file(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    The temporary keeps ``path``'s suffix (``np.savez`` appends ``.npz`` otherwise) and
    exists, empty, with ``mode`` when the block starts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        os.close(fd)
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; on success it replaces ``path``.

    An existing ``path`` is moved aside, the new folder renamed in, then the old one
    removed: a reader sees the old folder or the new one (for the instant between the two
    renames, neither).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for folder, _dirs, files in os.walk(tmp):
            for name in files:
                _fsync_path(Path(folder, name))
            _fsync_path(Path(folder))
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old",
                                        dir=path.parent))
            os.replace(path, old / path.name)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old / path.name, path)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(path.parent)
