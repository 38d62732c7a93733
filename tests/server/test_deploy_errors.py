"""Deployment start-up errors name their cause and fix, exit non-zero, and never hang;
keys are made where they belong; app signatures are the ones Flower's SuperNode checks.

Fast: no SuperLink is started (a busy port is refused before one would be), a plain TLS
server stands in for a coordinator with the wrong CA, and a tiny script stands in for the
SuperNode in the lifecycle tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from clients.deploy import (
    CoordinatorUnreachableError,
    NodeRefusedError,
    YearFailedError,
    supervise,
)
from clients.lifecycle import STATUS_FILE
from fedid.app_trust import AppSignature, sign_fab, trusted_entities_text
from fedid.errors import ConfigError
from fedid.pki import make_key_pair, make_trial_pki
from server.app_bundle import build_fab
from server.deploy import SuperLinkLauncher

APP = SuperLinkLauncher.default_app_dir()


def _fedid(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _installation() -> dict[str, float]:
    """Files of the installed app folder (bytecode caches aside) with their mtimes."""
    return {str(p): p.stat().st_mtime for p in APP.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".git" not in p.parts
            and ".pytest_cache" not in p.parts and ".mypy_cache" not in p.parts
            and ".ruff_cache" not in p.parts}


@pytest.fixture
def untouched_installation() -> Iterator[None]:
    before = _installation()
    yield
    after = _installation()
    assert {k for k in after if after[k] != before.get(k)} == set()


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_trial_pki(tmp_path / "certs", hosts=["127.0.0.1"])
    make_key_pair(tmp_path / "keys", "university_a")
    make_key_pair(tmp_path / "keys", "province", signer=True)
    return tmp_path


def _table(province: Path, tmp_path: Path) -> Path:
    return province / "agencies" / "education" / "university_a.parquet"


def _node(tmp: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _fedid("node", "--data", str(data), "--agency-id", "university_a", "--budget", "1",
                  "--out", "node",
                  "--ca", "certs/ca.crt", "--key", "keys/university_a.key", "--trust",
                  "keys/province.pub", *extra, cwd=tmp)


def test_relative_out_lands_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, untouched_installation: None
) -> None:
    monkeypatch.chdir(tmp_path)
    coord = SuperLinkLauncher(out=Path("coord"), certs=None)
    coord._write_home()
    assert coord.out == tmp_path / "coord"
    assert (tmp_path / "coord" / "flwr" / "config.toml").exists()
    assert not (APP / "coord").exists()


def test_busy_port_is_named_before_anything_starts(
    tmp_path: Path, untouched_installation: None
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _fedid("coordinator", "--insecure", "--out", "coord", "--port", str(port),
                      cwd=tmp_path, timeout=30)
    assert done.returncode == 9, done.stderr
    assert "address already in use" in done.stderr
    assert "--port" in done.stderr
    assert not (tmp_path / "coord" / "superlink.log").exists()  # no SuperLink was started


def test_certificate_must_name_the_advertised_host(pki: Path) -> None:
    with pytest.raises(ConfigError, match=r"fedid certs --host coord\.example"):
        SuperLinkLauncher(out=pki / "c", certs=pki / "certs", advertise="coord.example")
    SuperLinkLauncher(out=pki / "c", certs=pki / "certs", advertise="127.0.0.1")


def test_bad_table_row_names_row_column_and_fix(
    pki: Path, small_province: Path, untouched_installation: None
) -> None:
    frame = pd.read_parquet(_table(small_province, pki))
    frame.loc[4, "student_id"] = "12345"
    bad = pki / "bad.parquet"
    frame.to_parquet(bad)
    done = _node(pki, bad, "--wait", "2")
    assert done.returncode == 3, done.stderr
    assert "row 5, column 'student_id'" in done.stderr
    assert "Fix: correct these rows" in done.stderr
    assert "did not start" in done.stderr


class _TlsServer:
    """Accepts TLS handshakes with a certificate from another CA (a wrong --ca)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                self.ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()


def test_wrong_ca_says_check_ca(pki: Path, small_province: Path) -> None:
    make_trial_pki(pki / "other", hosts=["127.0.0.1"])
    server = _TlsServer(pki / "other" / "server.crt", pki / "other" / "server.key")
    try:
        done = _node(pki, _table(small_province, pki), "--superlink",
                     f"127.0.0.1:{server.port}", "--wait", "5")
    finally:
        server.sock.close()
    assert done.returncode == 11, done.stderr
    assert "does not verify against --ca" in done.stderr
    assert "Check --ca" in done.stderr


def test_no_coordinator_within_wait(pki: Path, small_province: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _node(pki, _table(small_province, pki), "--superlink", f"127.0.0.1:{port}",
                 "--wait", "2")
    assert done.returncode == 10, done.stderr
    assert "raise --wait" in done.stderr
    assert "not reachable yet" in done.stdout


def test_keys_are_made_on_their_own_machine(tmp_path: Path) -> None:
    done = _fedid("keygen", "--out", "keys", "--agency-id", "tax", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = tmp_path / "keys" / "tax.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "tax.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    again = _fedid("keygen", "--out", "keys", "--agency-id", "tax", cwd=tmp_path)
    assert again.returncode == 2
    assert "never overwritten" in again.stderr
    # the coordinator's trial PKI holds no node key at all
    done = _fedid("certs", "--out", "certs", "--host", "198.18.0.1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    private = sorted(p.name for p in (tmp_path / "certs").rglob("*")
                     if p.is_file() and b"PRIVATE KEY" in p.read_bytes())
    assert private == ["ca.key", "server.key"]
    assert list((tmp_path / "certs" / "nodes").iterdir()) == []
    old = _fedid("certs", "--out", "c2", "--node", "tax", cwd=tmp_path)
    assert old.returncode == 2
    assert "fedid keygen" in old.stderr


def test_signed_bundle_passes_flowers_own_check(
    pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the SuperNode's modules need what fedid's deploy code sets for Flower's processes
    monkeypatch.setenv("TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK", "true")
    from flwr.supercore.fab import Fab
    from flwr.supernode.start_client_internal import _verify_fab

    fab = build_fab(APP)
    assert build_fab(APP) == fab  # reproducible: the signer and the coordinator agree
    signature = sign_fab(fab, (pki / "keys" / "province.key").read_bytes(), serial=1)
    entities = json.loads(trusted_entities_text([(pki / "keys" / "province.pub").read_text()]))
    digest = hashlib.sha256(fab).hexdigest()
    assert _verify_fab(Fab(digest, fab, signature.verification()), entities)
    changed = fab[:-1] + bytes([fab[-1] ^ 1])
    assert not _verify_fab(Fab(digest, changed, signature.verification()), entities)
    make_key_pair(pki / "keys", "impostor", signer=True)
    forged = sign_fab(fab, (pki / "keys" / "impostor.key").read_bytes(), serial=1)
    assert not _verify_fab(Fab(digest, fab, forged.verification()), entities)
    assert AppSignature.load(_write(pki / "sig.json", signature.to_json())) == signature


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fake_supernode(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def _notice(out: Path, state: str, reason: str = "") -> str:
    record = json.dumps({"state": state, "reason": reason, "session": "y"})
    return (f"import time, pathlib; time.sleep(0.5); "
            f"pathlib.Path({str(out / STATUS_FILE)!r}).write_text({record!r}); "
            "time.sleep(60)")


def test_node_lifecycle_outcomes(tmp_path: Path) -> None:
    quiet: list[str] = []
    env = dict(os.environ)
    assert supervise(_fake_supernode(_notice(tmp_path, "finished")), env=env, out=tmp_path,
                     say=quiet.append, grace=0) == "y"
    with pytest.raises(NodeRefusedError, match="agency id") as refused:
        supervise(_fake_supernode(_notice(tmp_path, "refused", "agency id mismatch")),
                  env=env, out=tmp_path, say=quiet.append, grace=0)
    assert refused.value.exit_code == 12
    with pytest.raises(YearFailedError) as failed:
        supervise(_fake_supernode(_notice(tmp_path, "failed", "too few nodes")), env=env,
                  out=tmp_path, say=quiet.append, grace=0)
    assert failed.value.exit_code == 13
    with pytest.raises(NodeRefusedError, match="not registered"):
        supervise(_fake_supernode("print('[code: 2004] Failed to activate SuperNode.')"),
                  env=env, out=tmp_path, say=quiet.append, registration_wait=0)
    with pytest.raises(CoordinatorUnreachableError) as lost:
        supervise(_fake_supernode("print('Giving up reconnection after 9 s'); exit(5)"),
                  env=env, out=tmp_path, say=quiet.append)
    assert lost.value.exit_code == 10
