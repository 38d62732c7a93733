"""The one atomic writer: all or nothing, temporaries cleaned, modes kept, folders swapped."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from privacy.atomic import atomic_directory, atomic_file, atomic_write_bytes


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


#: the one other durable write: the gate's release ledger is append-only (one fsynced line
#: per release), not a file replaced whole
_APPEND_ONLY = {"clients/gate.py"}


def test_one_writer_replaces_files() -> None:
    """No module but privacy/atomic.py renames a temporary into place or fsyncs."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("privacy", "fedid", "clients", "server", "simulations", "cli"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == "privacy/atomic.py" or rel in _APPEND_ONLY:
                continue
            if re.search(r"os\.(replace|rename|fsync)\(|mkstemp\(", path.read_text()):
                found.append(rel)
    assert found == []


def test_identity_keys_go_through_the_writer(tmp_path, monkeypatch) -> None:
    import privacy.identity as identity

    written = []
    real = identity.atomic_write_bytes
    monkeypatch.setattr(identity, "atomic_write_bytes",
                        lambda path, data, *, mode: (written.append((path.name, mode)),
                                                     real(path, data, mode=mode)))
    key = identity.AgencyIdentity.generate(agency="a", kind="education")
    key.save(tmp_path)
    assert written == [(identity.PRIVATE_FILE, 0o600), (identity.PUBLIC_FILE, 0o644)]
    assert stat.S_IMODE((tmp_path / identity.PRIVATE_FILE).stat().st_mode) == 0o600
