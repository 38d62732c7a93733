"""App-bundle replay, against the node's REAL SuperNode message intake.

Each delivery runs Flower's own ``_pull_and_store_message`` (what the SuperNode does with
every message it pulls) with fedid's check installed (:func:`clients.supernode.install`):
a coordinator that submits an old signed bundle after a newer one ran, one that edits the
serial, one that reuses a serial for another bundle, and an expired bundle must each be
refused the way Flower refuses an unsigned one (an error reply, the run not stored).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from clients.config import NodeSettings
from clients.deploy import supernode_command, supervise
from clients.supernode import REFUSED, _own_args, install
from fedid.app_trust import STATE_FILE, AppSignature, check_bundle, sign_fab, trusted_entities_text
from fedid.errors import ConfigError, CryptoError, ProtocolError
from fedid.pki import make_key_pair
from server.app_bundle import build_fab
from server.deploy import SuperLinkLauncher

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The current app's FAB and an older release of it, and the signer's keys."""
    root = tmp_path_factory.mktemp("bundles")
    make_key_pair(root / "keys", "province", signer=True)
    app = SuperLinkLauncher.default_app_dir()
    older = root / "older_app"
    shutil.copytree(app / "server", older / "server",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(app / "pyproject.toml", older)
    with (older / "server" / "server_app.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# last year's release\n")
    key = (root / "keys" / "province.key").read_bytes()
    return {"new": build_fab(app), "old": build_fab(older), "key": key,
            "trusted": json.loads(trusted_entities_text(
                [(root / "keys" / "province.pub").read_text()]))}


@pytest.fixture
def flower(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Flower's SuperNode module, its hook restored afterwards."""
    monkeypatch.setenv("TEMPORARILY_DISABLE_PROTOBUF_VERSION_CHECK", "true")
    from flwr.supernode import start_client_internal

    monkeypatch.setattr(start_client_internal, "_verify_fab",
                        start_client_internal._verify_fab)
    return start_client_internal


class _SuperNode:
    """One SuperNode's state; :meth:`deliver` pulls one message of a run through Flower."""

    def __init__(self, flower: Any, trusted: dict[str, str]) -> None:
        from flwr.supercore.object_store import ObjectStoreFactory
        from flwr.supernode.nodestate import NodeStateFactory

        factory = ObjectStoreFactory()
        self.flower, self.trusted, self.store = flower, trusted, factory.store()
        self.state = NodeStateFactory(factory).state()
        self.state.set_node_id(5)

    def deliver(self, run_id: int, fab: bytes, verification: dict[str, str]) -> bool:
        """True if the run was accepted (stored); else the reply is Flower's FAB error."""
        from flwr.app import Message, RecordDict
        from flwr.common.constant import ErrorCode
        from flwr.supercore.fab import Fab
        from flwr.supercore.inflatable.inflatable_object import (
            get_all_nested_objects,
            get_object_tree,
        )
        from flwr.supercore.run import Run
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, run_id
        msg = Message(RecordDict(), dst_node_id=5, message_type="query.info")
        msg.metadata.__dict__["_message_id"] = msg.object_id  # as the SuperLink sets it
        objects = get_all_nested_objects(msg)
        digest = hashlib.sha256(fab).hexdigest()
        run = Run.create_empty(run_id)
        run.fab_hash, run.fab_id, run.fab_version = digest, "fedid/fedid", "0.1.0"
        self.flower._pull_and_store_message(
            self.state, self.store, {}, lambda: (msg, get_object_tree(msg)), lambda _r: run,
            lambda _h, _r: Fab(digest, fab, verification),
            lambda _r, oid: objects[oid].deflate(), lambda _r, _m: None, self.trusted)
        if self.state.get_run(run_id) is not None:
            return True
        replies = self.state.get_messages_legacy(run_ids=[run_id], is_reply=True)
        assert [m.error.code for m in replies] == [ErrorCode.INVALID_FAB]
        return False


def _signed(bundles: dict[str, Any], which: str, serial: int, at: int = NOW) -> AppSignature:
    return sign_fab(bundles[which], bundles["key"], serial=serial, signed_at=at)


def _edited(sig: AppSignature, **entry: Any) -> dict[str, str]:
    record = sig.verification()
    fields = json.loads(record[sig.public_key_id])
    fields.update(entry)
    record[sig.public_key_id] = json.dumps({k: v for k, v in fields.items() if v is not None})
    return record


def test_an_old_bundle_is_refused_once_a_newer_one_ran(
        bundles: dict[str, Any], flower: Any, tmp_path: Path) -> None:
    state = tmp_path / STATE_FILE
    install(state=state, max_age=None)
    node = _SuperNode(flower, bundles["trusted"])
    old, new = _signed(bundles, "old", 1), _signed(bundles, "new", 2)
    assert node.deliver(1, bundles["old"], old.verification())  # nothing ran yet: accepted
    assert node.deliver(2, bundles["new"], new.verification())
    assert json.loads(state.read_text())["serial"] == 2
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    # the coordinator replays last year's signed bundle: refused, and again on every message
    assert not node.deliver(3, bundles["old"], old.verification())
    assert not node.deliver(3, bundles["old"], old.verification())
    # the record is on the node's disk: a restarted SuperNode refuses it too
    restarted = _SuperNode(flower, bundles["trusted"])
    assert not restarted.deliver(4, bundles["old"], old.verification())
    # the current bundle runs again (a new year with the same release)
    assert restarted.deliver(5, bundles["new"], new.verification())
    assert json.loads(state.read_text())["serial"] == 2


def test_a_changed_or_missing_serial_breaks_the_signature(
        bundles: dict[str, Any], flower: Any, tmp_path: Path) -> None:
    install(state=tmp_path / STATE_FILE, max_age=None)
    node = _SuperNode(flower, bundles["trusted"])
    assert node.deliver(1, bundles["new"], _signed(bundles, "new", 5).verification())
    old = _signed(bundles, "old", 1)
    # serial raised by the coordinator: Flower's signature still verifies, fedid's does not
    raised = _edited(old, serial=9)
    assert flower._verify_fab.__wrapped__(_fab(bundles["old"], raised), bundles["trusted"])
    assert not node.deliver(2, bundles["old"], raised)
    # the serial and its signature stripped (an old-format signature): refused
    assert not node.deliver(3, bundles["old"], _edited(old, serial=None,
                                                       **{"bundle-signature": None}))
    # issue time moved: both signatures break
    assert not node.deliver(4, bundles["old"], _edited(old, serial=9, signed_at=NOW + 1))
    assert json.loads((tmp_path / STATE_FILE).read_text())["serial"] == 5


def _fab(content: bytes, verification: dict[str, str]) -> Any:
    from flwr.supercore.fab import Fab

    return Fab(hashlib.sha256(content).hexdigest(), content, verification)


def test_a_serial_is_one_bundle(bundles: dict[str, Any], tmp_path: Path) -> None:
    state = tmp_path / STATE_FILE
    check = {"trusted": bundles["trusted"], "state": state, "max_age": None, "now": NOW}
    check_bundle(bundles["new"], _signed(bundles, "new", 3).verification(), **check)
    with pytest.raises(ProtocolError, match="serial 3 was accepted for another bundle"):
        check_bundle(bundles["old"], _signed(bundles, "old", 3).verification(), **check)
    with pytest.raises(ProtocolError, match="below serial 3"):
        check_bundle(bundles["old"], _signed(bundles, "old", 2).verification(), **check)
    assert check_bundle(bundles["old"], _signed(bundles, "old", 4).verification(),
                        **check).serial == 4
    # a signer the node does not trust adds nothing
    with pytest.raises(CryptoError, match="no trusted signer"):
        check_bundle(bundles["new"], _signed(bundles, "new", 9).verification(),
                     trusted={}, state=state, max_age=None, now=NOW)
    # a damaged record refuses every bundle rather than reopening the door
    state.write_text("{")
    with pytest.raises(ConfigError, match="unreadable"):
        check_bundle(bundles["new"], _signed(bundles, "new", 9).verification(), **check)


def test_a_bundle_older_than_the_nodes_maximum_age_is_refused(
        bundles: dict[str, Any], flower: Any, tmp_path: Path) -> None:
    install(state=tmp_path / STATE_FILE, max_age=30 * 86400.0, clock=lambda: NOW)
    node = _SuperNode(flower, bundles["trusted"])
    assert not node.deliver(1, bundles["new"], _signed(
        bundles, "new", 1, at=NOW - 31 * 86400).verification())
    assert not node.deliver(2, bundles["new"], _signed(
        bundles, "new", 1, at=NOW + 3600).verification())  # from the future
    assert not (tmp_path / STATE_FILE).exists()
    assert node.deliver(3, bundles["new"], _signed(
        bundles, "new", 1, at=NOW - 29 * 86400).verification())


def test_the_node_runs_its_supernode_with_the_check(tmp_path: Path) -> None:
    s = NodeSettings(agency_id="university_a", kind="education", department="education",
                     data=tmp_path / "t.parquet", schema=None, out=tmp_path / "out",
                     epsilon=1.0, delta=1e-5)
    cmd = supernode_command(s, superlink="127.0.0.1:9093", ca=None, key=None, port=9094,
                            trusted=tmp_path / "trusted.yaml", bundle_max_age=86400.0)
    assert cmd[:3] == [sys.executable, "-m", "clients.supernode"]
    state, max_age, rest = _own_args(cmd[3:])
    assert (state, max_age) == ((tmp_path / "out").resolve() / STATE_FILE, 86400.0)
    assert rest[rest.index("--trusted-entities") + 1] == str((tmp_path / "trusted.yaml")
                                                             .resolve())
    insecure = supernode_command(s, superlink="127.0.0.1:9093", ca=None, key=None, port=9094)
    assert "--bundle-state" not in insecure
    with pytest.raises(ConfigError, match="maximum age must be > 0"):
        supernode_command(s, superlink="127.0.0.1:9093", ca=None, key=None, port=9094,
                          trusted=tmp_path / "trusted.yaml", bundle_max_age=0.0)


def test_the_operator_is_told_why_a_bundle_was_refused(tmp_path: Path) -> None:
    said: list[str] = []
    script = (f"print({REFUSED!r} + ' the bundle serial 1 is below serial 2, which this node "
              "already ran (a replay).'); print('FAB verification failed: ...'); exit(3)")
    with pytest.raises(Exception, match="exited with code 3"):
        supervise([sys.executable, "-c", script], env=dict(os.environ), out=tmp_path,
                  say=said.append)
    assert any("refused to run the coordinator's app bundle: the bundle serial 1 is below"
               in s for s in said), said


def test_a_signature_without_serial_is_named_at_the_coordinator(tmp_path: Path) -> None:
    old = {"public-key-id": "fpk_x", "fab-sha256": "00", "signed-at": 1, "signature": "x"}
    (tmp_path / "app.sig").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="sign-app --serial"):
        AppSignature.load(tmp_path / "app.sig")
