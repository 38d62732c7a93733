"""A coordinator that lies about masking keys, against the nodes' REAL handlers.

Three education nodes (the ClientApp with its release gate, each with its own identity key
and the province roster) and the coordinator's real secure round
(:func:`server.secure_round.secure_round`). A tampering hook rewrites the train message one
node receives in the first attempt (the coordinator holds every message in transit). Each
attack must be refused by that node BEFORE it trains: an error reply carrying a code only
(1005, crypto), nothing released, nothing spent; the round then reruns without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from clients.client_app import app
from clients.gate import read_ledger
from clients.privacy_state import NodePrivacyLedger
from fedid.records import SIGNATURES_RECORD, ConfigValue, arrays_of, content, payload_of
from privacy.identity import AgencyIdentity, Roster
from privacy.secure_sum import PublicKeyList
from privacy.secure_sum_keys import MaskingInstance, sign_masking_key
from server.secure_round import SecureRound, secure_round
from server.strategy import FedAvg
from server.transport import Messenger

Tamper = Callable[[str, str, RecordDict], RecordDict]
SESSION = "year"


class _Federation:
    """Three education nodes behind a coordinator that may rewrite what it relays."""

    def __init__(self, province: Path, out: Path) -> None:
        tables = sorted((province / "agencies" / "education").glob("*.parquet"))[:3]
        self.names = [t.stem for t in tables]
        self.out = out
        roster = Roster.of(AgencyIdentity.load_or_create(
            out / n / "identity", agency=n, kind="education").public for n in self.names)
        roster.save(out / "roster.toml")
        self.contexts = {t.stem: Context(
            run_id=1, node_id=i + 1, state=RecordDict(), run_config={}, node_config={
                "agency-id": t.stem, "kind": "education", "data": str(t),
                "schema": str(province / "schema.toml"), "out": str(out / t.stem),
                "roster": str(out / "roster.toml"), "epsilon": 1.0, "delta": 1e-5,
                "train-local_epochs": 1, "test-seed": 3}) for i, t in enumerate(tables)}
        self.tamper: Tamper | None = None
        self.sent: list[tuple[str, str, RecordDict]] = []

    def ask(self, agency: str, message_type: str, rd: RecordDict, group: str = "") -> Message:
        msg = Message(rd, dst_node_id=self.contexts[agency].node_id,
                      message_type=message_type, group_id=group)
        return app(msg, self.contexts[agency])

    def exchange(self, message_type: str, contents: Mapping[str, RecordDict], *,
                 group: str = "") -> dict[str, Message]:
        out: dict[str, Message] = {}
        for agency, rd in contents.items():
            self.sent.append((agency, message_type, rd))
            if self.tamper is not None:
                rd = self.tamper(agency, message_type, rd)
            out[agency] = self.ask(agency, message_type, rd, group)
        return out

    def initial(self) -> list[np.ndarray]:
        arrays = arrays_of(self.ask(self.names[0], "query.init", content(config={"seed": 1})))
        assert arrays is not None
        return arrays

    def round(self, arrays: list[np.ndarray], rnd: int = 1) -> SecureRound:
        conf: dict[str, ConfigValue] = {"session": SESSION, "round": rnd, "rounds": 2,
                                        "seed": 0}
        return secure_round(cast(Messenger, self), FedAvg(), trainers=self.names, conf=conf,
                            arrays=arrays)


@pytest.fixture
def federation(small_province: Path, tmp_path: Path, in_a_run: None) -> _Federation:
    return _Federation(small_province, tmp_path)


def _copy(rd: RecordDict) -> RecordDict:
    out = RecordDict()
    for name in rd.config_records:
        out[name] = ConfigRecord(dict(rd.config_records[name]))
    for name in rd.array_records:
        out[name] = rd.array_records[name]
    return out


def _keys(rd: RecordDict) -> dict[str, bytes]:
    return dict(PublicKeyList.from_bytes(payload_of(Message(rd, dst_node_id=1,
                                                            message_type="train"))).keys)


def _with_keys(rd: RecordDict, keys: dict[str, bytes]) -> RecordDict:
    out = _copy(rd)
    out["payload"] = ConfigRecord({"data": PublicKeyList.of(keys).to_bytes()})
    return out


def _signatures(rd: RecordDict) -> dict[str, tuple[int, bytes]]:
    rec = rd.config_records[SIGNATURES_RECORD]
    return {p: (int(i), bytes(d)) for p, i, d in zip(
        cast(list[str], rec["parties"]), cast(list[int], rec["issued"]),
        cast(list[bytes], rec["data"]), strict=True)}


def _with_signatures(rd: RecordDict, sigs: dict[str, tuple[int, bytes]]) -> RecordDict:
    out = _copy(rd)
    parties = sorted(sigs)
    out[SIGNATURES_RECORD] = ConfigRecord({"parties": parties,
                                           "issued": [sigs[p][0] for p in parties],
                                           "data": [sigs[p][1] for p in parties]})
    return out


def _own_key() -> bytes:
    return X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _on_first_train(fed: _Federation, victim: str,
                    edit: Callable[[RecordDict, str], RecordDict]) -> Tamper:
    """Rewrite the train message of attempt 0 to ``victim``; ``edit`` gets it and a peer."""
    def tamper(agency: str, message_type: str, rd: RecordDict) -> RecordDict:
        cfg = rd.config_records["config"]
        if agency != victim or message_type != "train" or cfg.get("secagg-attempt") != 0:
            return rd
        peer = next(n for n in fed.names if n != victim)
        return edit(rd, peer)
    return tamper


def _refused_before_training(fed: _Federation, result: SecureRound, victim: str) -> None:
    out = fed.out / victim
    assert "fedid node error 1005 crypto" in result.result.excluded[victim]
    assert victim not in result.result.used
    entries = read_ledger(out)
    train = [e for e in entries if e["kind"] == "train"]
    assert [(e["status"], e.get("code")) for e in train] == [("error", 1005)]
    assert train[0]["charged_epsilon"] == 0.0
    assert NodePrivacyLedger.load(fed.contexts[victim], out).epsilon_total == 0.0
    assert not list(out.glob("rounds/*"))  # no local update was even computed
    # the others went on without it, from a fresh key exchange
    assert result.attempts == 2
    assert set(result.result.used) == set(fed.names) - {victim}


def test_honest_round_with_signed_keys(federation: _Federation) -> None:
    res = federation.round(federation.initial())
    assert res.attempts == 1
    assert set(res.result.used) == set(federation.names)
    for name in federation.names:
        keys = [e for e in read_ledger(federation.out / name) if e["kind"] == "query.secagg"]
        assert [e["fields"]["signature.data"] for e in keys] == ["protocol"]
    train = [rd for _a, kind, rd in federation.sent if kind == "train"]
    assert len(_signatures(train[0])) == 3


def _substitute(rd: RecordDict, peer: str) -> RecordDict:
    return _with_keys(rd, {**_keys(rd), peer: _own_key()})


def _substitute_and_sign(rd: RecordDict, peer: str) -> RecordDict:
    # the coordinator signs its own key under the peer's name with a key it made itself
    key = _own_key()
    instance = MaskingInstance(run="1", session=SESSION, round=1, attempt=0,
                               participants=tuple(sorted(_keys(rd))))
    forged = sign_masking_key(AgencyIdentity.generate(agency=peer, kind="education"),
                              public_key=key, instance=instance, issued=int(time.time()))
    sigs = {**_signatures(rd), peer: (forged.issued, forged.signature)}
    return _with_signatures(_with_keys(rd, {**_keys(rd), peer: key}), sigs)


def _strip(rd: RecordDict, peer: str) -> RecordDict:
    return _with_signatures(rd, {p: s for p, s in _signatures(rd).items() if p != peer})


def _no_record(rd: RecordDict, _peer: str) -> RecordDict:
    out = _copy(rd)
    del out[SIGNATURES_RECORD]
    return out


def _fewer_parties(rd: RecordDict, peer: str) -> RecordDict:
    # a key list without one of the participants the victim signed for
    return _with_keys(rd, {p: k for p, k in _keys(rd).items() if p != peer})


@pytest.mark.parametrize("edit", [_substitute, _substitute_and_sign, _strip, _no_record,
                                  _fewer_parties],
                         ids=["substituted", "substituted-and-signed", "signature-stripped",
                              "no-signatures", "fewer-parties"])
def test_a_lying_key_list_is_refused_before_training(
        federation: _Federation, edit: Callable[[RecordDict, str], RecordDict]) -> None:
    victim = federation.names[1]
    federation.tamper = _on_first_train(federation, victim, edit)
    res = federation.round(federation.initial())
    _refused_before_training(federation, res, victim)


@pytest.mark.parametrize("where", ["run", "round"])
def test_a_key_replayed_from_another_run_or_round_is_refused(
        federation: _Federation, where: str) -> None:
    victim, peer = federation.names[1], federation.names[0]
    # the peer's genuine signed key for the same instance but another Flower run, or for
    # another round of this run: made by the peer's real handler (a copy of its state)
    stale: dict[str, Any] = {}
    parties = ",".join(sorted(federation.names))
    conf = {"session": SESSION, "round": 1 if where == "run" else 7, "secagg-attempt": 0,
            "parties": parties}
    run_before = TaskIdentity.run_id
    if where == "run":
        TaskIdentity.run_id = 99
    try:
        ctx = federation.contexts[peer]
        shadow = Context(run_id=ctx.run_id, node_id=ctx.node_id, node_config=ctx.node_config,
                         state=RecordDict(), run_config={})
        reply = app(Message(content(config=conf), dst_node_id=ctx.node_id,
                            message_type="query.secagg"), shadow)
    finally:
        TaskIdentity.run_id = run_before
    assert not reply.has_error()
    record = reply.content.config_records["signature"]
    stale["key"] = payload_of(reply)
    stale["sig"] = (int(cast(int, record["issued"])), bytes(cast(bytes, record["data"])))

    def replay(rd: RecordDict, _peer: str) -> RecordDict:
        return _with_signatures(_with_keys(rd, {**_keys(rd), peer: stale["key"]}),
                                {**_signatures(rd), peer: stale["sig"]})

    federation.tamper = _on_first_train(federation, victim, replay)
    res = federation.round(federation.initial())
    _refused_before_training(federation, res, victim)


def test_a_key_request_a_node_cannot_sign_for_is_refused(federation: _Federation) -> None:
    name = federation.names[0]
    base = {"session": SESSION, "round": 1, "secagg-attempt": 0}
    others = ",".join(sorted(federation.names[1:]))
    for parties in ("", others, ",".join(sorted([name, "not_in_roster"])), name):
        reply = federation.ask(name, "query.secagg", content(config={**base,
                                                                      "parties": parties}))
        assert reply.has_error()
        assert reply.error.reason == "fedid node error 1005 crypto"
    statuses = [e["status"] for e in read_ledger(federation.out / name)]
    assert statuses == ["error"] * 4


def test_a_masked_round_is_never_replayed_in_plain(federation: _Federation) -> None:
    """After a masked round, the coordinator drops `secure-aggregation` and asks every node
    for the same round again: each refuses (found by an attacker review: the stored update
    used to leave in clear, charged nothing, and the plain updates' mean was the sum's)."""
    start = federation.initial()
    res = federation.round(start)
    assert res.attempts == 1
    assert set(res.result.used) == set(federation.names)
    for name in federation.names:
        reply = federation.ask(name, "train", content(
            config={"session": SESSION, "round": 1, "rounds": 2, "seed": 0}, arrays=start))
        assert reply.has_error()
        assert "protocol" in reply.error.reason
        assert not reply.has_content()
        train = [e for e in read_ledger(federation.out / name) if e["kind"] == "train"]
        assert next(e["status"] for e in train) == "released"
        assert [e for e in train if e["status"] == "released"] == train[:1]
