"""The one atomic writer: all or nothing, temporaries cleaned, modes kept, folders swapped."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from fedid.atomic import atomic_directory, atomic_file, atomic_write_bytes


def test_write_bytes_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "sub" / "secret.key"
    atomic_write_bytes(target, b"one", mode=0o600)
    atomic_write_bytes(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["secret.key"]


def test_failed_file_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "ledger.json"
    target.write_text("old")

    def crash_midway() -> None:
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        crash_midway()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]


def test_library_writer_sees_the_target_suffix(tmp_path):
    target = tmp_path / "checkpoint.npz"
    with atomic_file(target) as tmp:
        np.savez(tmp, np.arange(3))
    with np.load(target) as npz:
        assert npz["arr_0"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_directory_swap_and_failure(tmp_path):
    out = tmp_path / "run"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("first")
    with atomic_directory(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]

    def fail_midway() -> None:
        with atomic_directory(out) as tmp:
            (tmp / "c.txt").write_text("third")
            raise ValueError("bad table")

    with pytest.raises(ValueError, match="bad table"):
        fail_midway()
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
