"""A coordinator that lies, against every agency's REAL matching handler.

:func:`server.matching.coordinate_matching` drives the nodes' own handlers
(:func:`clients.matching.handle`), and a tampering hook rewrites what the coordinator sends
(it holds every message in transit, as a real one would). Each attack must be refused by a
node, the run must fail closed (a later honest message of the same run is refused too), and
no home agency's output is written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from clients.matching import handle, payloads_of
from fedid.errors import FederationError
from fedid.matching.auth import SignedMessage
from fedid.matching.messages import (
    CoordinatorResults,
    Header,
    HomeBlindedKeys,
    HomePublicKey,
    decode_message,
)
from fedid.schema import load_schema
from privacy.blinding_x25519 import hash_to_group, make_domain
from privacy.paillier import generate_paillier_keypair
from server.matching import coordinate_matching
from tests.server.test_matching_faults import _Error, _Nodes, _Reply

Tamper = Callable[[str, str, RecordDict], RecordDict]
OUTPUTS = ("evidence.parquet", "evidence_sources.json")


class _Liar(_Nodes):
    """The nodes behind a coordinator that rewrites its requests with ``tamper``; a node's
    exception becomes an error reply, as Flower makes it."""

    def __init__(self, province: Path, out: Path, tamper: Tamper | None = None) -> None:
        super().__init__(province, out, dead=frozenset())
        self.tamper = tamper
        self.refused: dict[str, str] = {}
        self.sent: list[tuple[str, str, RecordDict]] = []

    def ask(self, agency: str, content: RecordDict) -> _Reply:
        msg = Message(content, dst_node_id=self.agencies[agency].node_id,
                      message_type="query.match")
        try:
            return _Reply(handle(self.settings[agency], msg, self.contexts[agency]))
        except Exception as exc:
            self.refused[agency] = f"{type(exc).__name__}: {exc}"
            return _Reply(None, _Error(self.refused[agency]))

    def exchange_pairs(self, message_type: str, pairs: list[tuple[str, RecordDict]]
                       ) -> list[_Reply | None]:
        out: list[_Reply | None] = []
        for agency, content in pairs:
            step = str(content.config_records["config"]["step"])
            self.sent.append((agency, step, content))
            if self.tamper is not None:
                content = self.tamper(agency, step, content)
            out.append(self.ask(agency, content))
        return out


def _match(nodes: _Nodes) -> None:
    coordinate_matching(nodes, schema=load_schema(), session="year",  # type: ignore[arg-type]
                        progress=lambda _e, _d: None, grouping="province")


def _homes(nodes: _Nodes) -> list[str]:
    return sorted(a for a, i in nodes.agencies.items() if i.kind == "education")


def _with_payloads(content: RecordDict, data: list[bytes]) -> RecordDict:
    out = RecordDict()
    for name, record in content.config_records.items():
        out[name] = ConfigRecord(dict(record))
    out["payload"] = ConfigRecord({"data": data})
    return out


def _resigned(data: bytes, message: bytes) -> bytes:
    """The same signature and envelope around another message (what a relay can do)."""
    env = SignedMessage.from_bytes(data)
    return dataclasses.replace(env, message=message).to_bytes()


def _inner(data: bytes) -> object:
    return decode_message(SignedMessage.from_bytes(data).message)


def _refused_and_closed(nodes: _Liar, agency: str, tmp_path: Path, match: str) -> None:
    assert agency in nodes.refused, nodes.refused
    assert match in nodes.refused[agency]
    for home in _homes(nodes):
        for name in OUTPUTS:
            assert not (tmp_path / home / name).exists()
    # fail closed: the honest message this node should have received is refused as well
    honest = [c for a, s, c in nodes.sent if a == agency][-1]
    nodes.tamper = None
    del nodes.refused[agency]
    reply = nodes.ask(agency, honest)
    assert reply.has_error()


def _attack(small_province: Path, tmp_path: Path, tamper: Tamper) -> _Liar:
    nodes = _Liar(small_province, tmp_path, tamper)
    with pytest.raises(FederationError, match="failed matching step"):
        _match(nodes)
    return nodes


def _on(agency_kind: str, step: str, edit: Callable[[list[bytes]], list[bytes]],
        nodes_ref: list[_Liar]) -> Tamper:
    def tamper(agency: str, s: str, content: RecordDict) -> RecordDict:
        if s != step or nodes_ref[0].agencies[agency].kind != agency_kind:
            return content
        return _with_payloads(content, edit(payloads_of(_msg(content))))
    return tamper


def _msg(content: RecordDict) -> Message:
    return Message(content, dst_node_id=1, message_type="query.match")


def _run_attack(small_province: Path, tmp_path: Path, kind: str, step: str,
                edit: Callable[[list[bytes]], list[bytes]]) -> _Liar:
    ref: list[_Liar] = []
    nodes = _Liar(small_province, tmp_path)
    ref.append(nodes)
    nodes.tamper = _on(kind, step, edit, ref)
    with pytest.raises(FederationError, match="failed matching step"):
        _match(nodes)
    return nodes


def _victim(nodes: _Liar) -> str:
    return next(iter(nodes.refused))


# ------------------------------------------------------------------------ key substitution
def _substitute_key(data: list[bytes], *, djn_only: bool) -> list[bytes]:
    pk = _inner(data[0])
    assert isinstance(pk, HomePublicKey)
    if djn_only:
        from privacy.paillier import PaillierPublicKey

        real = PaillierPublicKey.from_bytes(pk.public_key)
        assert real.h is not None
        mine = PaillierPublicKey(real.n, real.h * real.h % real.n_square).to_bytes()
    else:
        mine = generate_paillier_keypair(n_length=2048)[0].to_bytes()
    fake = dataclasses.replace(pk, public_key=mine).to_bytes()
    return [_resigned(data[0], fake), *data[1:]]


@pytest.mark.usefixtures("in_a_run")
@pytest.mark.parametrize("djn_only", [False, True], ids=["whole-key", "djn-base"])
def test_key_substitution_is_refused(small_province: Path, tmp_path: Path,
                                     djn_only: bool) -> None:
    nodes = _run_attack(small_province, tmp_path, "department", "evidence",
                        lambda d: _substitute_key(d, djn_only=djn_only))
    _refused_and_closed(nodes, _victim(nodes), tmp_path, "bad signature")


# ------------------------------------------------------------------------ guess injection
def _inject(data: bytes) -> bytes:
    msg = _inner(data)
    assert hasattr(msg, "points")
    guess = hash_to_group([b"110105200805083376"],
                          domain=make_domain(protocol="fedid.matching.v1",
                                             run_id=msg.header.run_id))[0]  # type: ignore[attr-defined]
    return _resigned(data, dataclasses.replace(msg, points=msg.points + guess).to_bytes())  # type: ignore[attr-defined,type-var]


@pytest.mark.usefixtures("in_a_run")
def test_guess_injected_into_a_home_key_list_is_refused(small_province: Path,
                                                        tmp_path: Path) -> None:
    nodes = _run_attack(small_province, tmp_path, "department", "evidence",
                        lambda d: [d[0], _inject(d[1]), *d[2:]])
    _refused_and_closed(nodes, _victim(nodes), tmp_path, "bad signature")


@pytest.mark.usefixtures("in_a_run")
def test_guess_injected_into_a_department_list_is_refused(small_province: Path,
                                                          tmp_path: Path) -> None:
    nodes = _run_attack(small_province, tmp_path, "education", "home_reblind",
                        lambda d: [_inject(d[0]), *d[1:]])
    _refused_and_closed(nodes, _homes(nodes)[0], tmp_path, "bad signature")


# ------------------------------------------------------------------------ replay
@pytest.mark.usefixtures("in_a_run")
def test_replay_of_an_earlier_run_is_refused(small_province: Path, tmp_path: Path) -> None:
    nodes = _Liar(small_province, tmp_path)
    _match(nodes)  # an honest run: outputs written
    lead = _homes(nodes)[0]
    before = {n: (tmp_path / lead / n).read_bytes() for n in OUTPUTS}
    first_run = {(a, s): c for a, s, c in nodes.sent}
    nodes.sent.clear()
    nodes.tamper = lambda a, s, c: first_run.get((a, s), c)  # everything from run 1 again
    with pytest.raises(FederationError, match="failed matching step home_start"):
        _match(nodes)
    assert "already took part" in nodes.refused[lead]
    assert {n: (tmp_path / lead / n).read_bytes() for n in OUTPUTS} == before
    dep = next(a for a, i in nodes.agencies.items() if i.kind == "department")
    assert nodes.ask(dep, first_run[(dep, "evidence")]).has_error()
    assert "already took part" in nodes.refused[dep]


@pytest.mark.usefixtures("in_a_run")
def test_message_of_an_earlier_run_in_a_new_run_is_refused(small_province: Path,
                                                           tmp_path: Path) -> None:
    nodes = _Liar(small_province, tmp_path)
    _match(nodes)
    old = {a: payloads_of(_msg(c)) for a, s, c in nodes.sent if s == "evidence"}
    nodes.sent.clear()
    nodes.tamper = _on("department", "evidence", lambda d: [d[0], old_list(d), *d[2:]], [nodes])

    def old_list(d: list[bytes]) -> bytes:
        for data in [x for lst in old.values() for x in lst]:
            m = _inner(data)
            to = _inner(d[1]).header.recipient  # type: ignore[attr-defined]
            if isinstance(m, HomeBlindedKeys) and m.header.recipient == to:
                return data
        raise AssertionError("no key list of the earlier run")

    with pytest.raises(FederationError, match="failed matching step evidence"):
        _match(nodes)
    assert any("another home key" in r for r in nodes.refused.values()), nodes.refused


@pytest.mark.usefixtures("in_a_run")
def test_replay_within_a_run_is_refused(small_province: Path, tmp_path: Path) -> None:
    nodes = _run_attack(small_province, tmp_path, "education", "home_reblind",
                        lambda d: [d[0], d[0], *d[1:]])
    _refused_and_closed(nodes, _homes(nodes)[0], tmp_path, "replayed")


# ------------------------------------------------------------------------ reorder, duplicate, drop
@pytest.mark.usefixtures("in_a_run")
def test_reordered_list_is_refused(small_province: Path, tmp_path: Path) -> None:
    def reorder(data: bytes) -> bytes:
        msg = _inner(data)
        pts = msg.points  # type: ignore[attr-defined]
        swapped = pts[32:64] + pts[:32] + pts[64:]
        return _resigned(data, dataclasses.replace(msg, points=swapped).to_bytes())  # type: ignore[type-var]

    nodes = _run_attack(small_province, tmp_path, "education", "home_reblind",
                        lambda d: [reorder(d[0]), *d[1:]])
    _refused_and_closed(nodes, _homes(nodes)[0], tmp_path, "bad signature")


@pytest.mark.usefixtures("in_a_run")
def test_duplicated_key_list_is_refused(small_province: Path, tmp_path: Path) -> None:
    nodes = _run_attack(small_province, tmp_path, "department", "evidence",
                        lambda d: [d[0], d[1], d[1]])
    _refused_and_closed(nodes, _victim(nodes), tmp_path, "replayed")


@pytest.mark.usefixtures("in_a_run")
def test_dropped_key_list_is_noticed(small_province: Path, tmp_path: Path) -> None:
    nodes = _run_attack(small_province, tmp_path, "department", "evidence",
                        lambda d: d[:2])  # one home's list withheld
    _refused_and_closed(nodes, _victim(nodes), tmp_path, "one key list per home")


@pytest.mark.usefixtures("in_a_run")
def test_dropped_sealed_keyring_is_refused(small_province: Path, tmp_path: Path) -> None:
    def drop_box(agency: str, step: str, content: RecordDict) -> RecordDict:
        if step != "home_start" or "sealed" not in content.config_records:
            return content
        out = _with_payloads(content, payloads_of(_msg(content)))
        del out.config_records["sealed"]
        return out

    nodes = _attack(small_province, tmp_path, drop_box)
    _refused_and_closed(nodes, _homes(nodes)[1], tmp_path, "sealed keyring")


# ------------------------------------------------------------------------ oversized lists
@pytest.mark.usefixtures("in_a_run")
def test_oversized_list_is_refused_before_any_blinding(
    small_province: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privacy import blinding_x25519

    calls: list[int] = []
    real = blinding_x25519.BlindingKey.blind
    monkeypatch.setattr(blinding_x25519.BlindingKey, "blind",
                        lambda self, pts: calls.append(len(pts)) or real(self, pts))

    def pad(data: bytes) -> bytes:
        msg = _inner(data)
        extra = os.urandom(32 * 200_000)  # any 200k points: the signature fails first
        return _resigned(data, dataclasses.replace(  # type: ignore[type-var]
            msg, points=msg.points + extra).to_bytes())  # type: ignore[attr-defined]

    nodes = _run_attack(small_province, tmp_path, "education", "home_reblind",
                        lambda d: [pad(d[0]), *d[1:]])
    assert max(calls, default=0) < 200_000  # the padded list was never blinded
    _refused_and_closed(nodes, _homes(nodes)[0], tmp_path, "bad signature")


# ------------------------------------------------------------------------ coordinator's own
def _results_edit(edit: Callable[[CoordinatorResults], CoordinatorResults]
                  ) -> Callable[[list[bytes]], list[bytes]]:
    def apply(data: list[bytes]) -> list[bytes]:
        first = decode_message(data[0])
        assert isinstance(first, CoordinatorResults)
        return [edit(first).to_bytes(), *data[1:]]
    return apply


@pytest.mark.usefixtures("in_a_run")
def test_ciphertext_of_one_is_refused(small_province: Path, tmp_path: Path) -> None:
    nodes = _run_attack(small_province, tmp_path, "education", "home_results", _results_edit(
        lambda r: dataclasses.replace(r, ciphertexts=(1, *r.ciphertexts[1:]))))
    home = next(iter(nodes.refused))
    _refused_and_closed(nodes, home, tmp_path, "trivial")


@pytest.mark.usefixtures("in_a_run")
def test_old_body_under_a_new_header_is_refused(small_province: Path, tmp_path: Path) -> None:
    def rehead(data: list[bytes]) -> list[bytes]:
        # a department's record list, re-addressed as the other department's (same signature)
        msg = _inner(data[0])
        other = _inner(data[1]).header.sender  # type: ignore[attr-defined]
        header = Header(run_id=msg.header.run_id, sender=other,  # type: ignore[attr-defined]
                        recipient=msg.header.recipient, step=msg.header.step)  # type: ignore[attr-defined]
        forged = dataclasses.replace(msg, header=header).to_bytes()  # type: ignore[type-var]
        return [_resigned(data[1], forged), *data[1:]]

    nodes = _run_attack(small_province, tmp_path, "education", "home_reblind", rehead)
    _refused_and_closed(nodes, _homes(nodes)[0], tmp_path, "bad signature")


@pytest.mark.usefixtures("in_a_run")
def test_a_per_agency_home_never_shares_its_keyring(small_province: Path,
                                                    tmp_path: Path) -> None:
    """An agency that agreed to per-agency matching (node config matching-grouping): a
    coordinator that runs it in a province run (so that its keyring would be sealed to, or
    opened from, another home) is refused by that home, and no home writes output."""
    nodes = _Liar(small_province, tmp_path)
    lead, other = _homes(nodes)[:2]
    for agency in (lead, other):
        nodes.settings[agency] = dataclasses.replace(nodes.settings[agency],
                                                     matching_grouping="per_agency")
    with pytest.raises(FederationError):
        _match(nodes)
    assert "matches per agency" in nodes.refused[lead]
    for home in _homes(nodes):
        for name in OUTPUTS:
            assert not (tmp_path / home / name).exists()
