"""Transcript scan, coordinator key material, malformed and replayed messages (fail closed)."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from fedid.errors import ProtocolError
from fedid.ids import to_canonical
from fedid.matching import InMemoryTransport, MatchingConfig, match_in_process
from fedid.matching.auth import SignedMessage
from fedid.matching.messages import (
    EvidencePayloads,
    Header,
    HomeBlindedKeys,
    HomePublicKey,
    decode_message,
)
from fedid.matching.policy import build_layouts, default_policies
from fedid.matching.run import MatchingResult
from fedid.schema import Schema, load_schema
from privacy.paillier import generate_paillier_keypair
from tests.fedid.matching_data import make_tables, to_legacy

KEY_BITS = 2048


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


@pytest.fixture(scope="module")
def tables(schema):
    return make_tables(schema, students=40, records=30, homes=2, seed=11)


@pytest.fixture(scope="module")
def recorded(schema, tables) -> MatchingResult:
    homes, deps = tables
    return match_in_process(schema=schema, homes=homes, departments=deps,
                        config=MatchingConfig(paillier_bits=KEY_BITS),
                        transport=InMemoryTransport(keep_bytes=True))


def _id_needles(ids: set[str]) -> list[bytes]:
    out: list[bytes] = []
    for i in ids:
        forms = {i}
        if i[6:8] == "19":
            forms.add(to_legacy(i))
        for f in forms:
            for enc in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
                out.append(f.encode(enc))
            if f.isdigit():
                v = int(f)
                for order in ("big", "little"):
                    out.append(v.to_bytes(8, order))
                    out.append(v.to_bytes((v.bit_length() + 7) // 8, order))
    return out


def test_no_raw_id_in_any_message(tables, recorded):
    homes, deps = tables
    ids: set[str] = set()
    for t in homes.values():
        for c in ("student_id", "guardian1_id", "guardian2_id"):
            ids.update(str(x) for x in t[c].dropna())
    for t in deps.values():
        ids.update(str(x) for x in to_canonical(t["person_id"].to_numpy()))
    needles = _id_needles(ids)
    assert len(needles) > 1000
    for party, blobs in recorded.transport.received.items():
        for blob in blobs:
            for n in needles:
                assert n not in blob, f"an ID form reached {party}"


def test_no_plaintext_value_in_any_message(schema, tables, recorded):
    _, deps = tables
    layouts = build_layouts(schema, default_policies(schema))
    needles: set[bytes] = set()
    for dep, lay in layouts.items():
        payloads = lay.encode(deps[dep])
        for p in payloads:  # whole record payloads (fixed-point codes packed)
            if p.bit_length() > 32:
                for order in ("big", "little"):
                    needles.add(p.to_bytes((p.bit_length() + 7) // 8, order))
        for m in lay.pack(payloads, modulus_bits=KEY_BITS):  # packed plaintexts
            needles.add(m.to_bytes((m.bit_length() + 7) // 8, "big"))
        for f in lay.fields:  # individual fixed-point codes as int64 and as text
            for c in f.encode(deps[dep][f.name]).tolist():
                if c > 9999:
                    needles.add(int(c).to_bytes(8, "little"))
                    needles.add(int(c).to_bytes(8, "big"))
                    needles.add(str(c).encode())
            if f.indicator.type == "float":  # the raw amounts as IEEE-754 doubles
                for v in deps[dep][f.name].dropna().tolist():
                    needles.add(struct.pack("<d", float(v)))
                    needles.add(struct.pack(">d", float(v)))
    assert len(needles) > 100
    for party, blobs in recorded.transport.received.items():
        for blob in blobs:
            for n in needles:
                assert n not in blob, f"a plaintext value reached {party}"


def test_coordinator_holds_no_key_that_decrypts(recorded):
    group = recorded.groups[0]
    secrets_ = [group.keyring.private_key.p, group.keyring.private_key.q]
    needles = [s.to_bytes((s.bit_length() + 7) // 8, o)
               for s in secrets_ for o in ("big", "little")]
    needles.append(group.keyring.blinding._scalar)
    for e in group.evidence.values():
        needles.append(e._blinding._scalar)
    for blob in recorded.transport.received["coordinator"]:
        for n in needles:
            assert n not in blob
    coord = group.coordinator
    held = [v for v in vars(coord).values()]
    assert not any(type(v).__name__ in {"PaillierPrivateKey", "BlindingKey", "HomeKeyring"}
                   for v in held)


# ---------------------------------------------------------------- malformed messages
@pytest.fixture
def small_group(schema, tables):
    homes, deps = tables
    res = match_in_process(schema=schema, homes={"school_0": homes["school_0"]},
                       departments={"tax": deps["tax"]},
                       config=MatchingConfig(paillier_bits=KEY_BITS))
    return res.groups[0]


def test_truncated_and_padded_bytes_rejected(recorded):
    blob = SignedMessage.from_bytes(recorded.transport.received["coordinator"][0]).message
    decode_message(blob)
    for cut in (3, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(ProtocolError):
            decode_message(blob[:cut])
    with pytest.raises(ProtocolError):
        decode_message(blob + b"\0")
    with pytest.raises(ProtocolError):
        decode_message(b"XXXX" + blob[4:])
    with pytest.raises(ProtocolError):
        decode_message(blob[:4] + b"\x09\x00" + blob[6:])  # unknown version


def _fresh_group(schema, tables):
    homes, deps = tables
    from fedid.matching.run import _Clock, _run_group, _Wire

    layouts = build_layouts(schema, {"tax": default_policies(schema)["tax"]})
    group, _ = _run_group(schema=schema, homes={"school_0": homes["school_0"]},
                          departments={"tax": deps["tax"]},
                          config=MatchingConfig(paillier_bits=KEY_BITS), layouts=layouts,
                          wire=_Wire(InMemoryTransport(), None), clock=_Clock())
    return group


def test_invalid_point_rejected_and_fails_closed(small_group):
    e = small_group.evidence["tax"]
    h = small_group.homes["school_0"]
    msg = h.blinded_keys(batch=1)[0]
    bad = dataclasses.replace(msg, points=b"\xff" * 32 + msg.points[32:])
    with pytest.raises(ProtocolError, match="invalid point"):
        e.reblind_home_keys(bad)
    with pytest.raises(ProtocolError, match="earlier protocol error"):
        e.reblind_home_keys(h.blinded_keys(batch=2)[0])


def test_replay_of_earlier_run_rejected(schema, tables, small_group):
    other = _fresh_group(schema, tables)
    msg = other.homes["school_0"].blinded_keys(batch=1)[0]
    with pytest.raises(ProtocolError, match="another run"):
        small_group.evidence["tax"].reblind_home_keys(msg)


def test_replay_within_run_rejected(small_group):
    h = small_group.homes["school_0"]
    msg = h.blinded_keys(batch=3)[0]
    small_group.evidence["tax"].reblind_home_keys(msg)
    with pytest.raises(ProtocolError, match="replayed"):
        small_group.evidence["tax"].reblind_home_keys(msg)


def test_wrong_party_rejected(small_group):
    h = small_group.homes["school_0"]
    msg = h.blinded_keys(batch=4)[0]
    wrong = dataclasses.replace(msg, header=dataclasses.replace(msg.header, recipient="evidence:x"))
    with pytest.raises(ProtocolError, match="addressed to"):
        small_group.evidence["tax"].reblind_home_keys(wrong)
    forged = dataclasses.replace(msg, header=dataclasses.replace(msg.header, sender="home:evil"))
    with pytest.raises(ProtocolError, match="unexpected sender"):
        small_group.coordinator.receive_public_key(HomePublicKey(
            header=dataclasses.replace(forged.header, recipient="coordinator", step=1),
            public_key=b""))


def test_out_of_order_step_rejected(schema, tables):
    group = _fresh_group(schema, tables)
    h = group.homes["school_0"]
    msg = h.blinded_keys(batch=5)[0]
    mislabeled = HomeBlindedKeys(header=dataclasses.replace(msg.header, step=5 * 16 + 6),
                                 points=msg.points)
    with pytest.raises(ProtocolError, match="step"):
        group.evidence["tax"].reblind_home_keys(mislabeled)


def test_wrong_modulus_and_bad_ciphertext_rejected(schema, tables):
    _homes, _deps = tables
    from fedid.matching.coordinator import Coordinator
    from fedid.matching.protocol import new_run_id

    group = _fresh_group(schema, tables)
    coord = group.coordinator
    e = group.evidence["tax"]
    pay = e.payloads()
    other_pk, _ = generate_paillier_keypair(n_length=KEY_BITS)
    fresh = Coordinator(run_id=group.run_id, homes=["home:school_0"], lead="home:school_0",
                        layouts=coord.layouts)
    fresh.receive_public_key(HomePublicKey(
        header=Header(run_id=group.run_id, sender="home:school_0", recipient="coordinator",
                      step=1), public_key=group.keyring.public_key.to_bytes()))
    wrong_key = dataclasses.replace(pay, key_fingerprint=other_pk.fingerprint)
    with pytest.raises(ProtocolError, match="another key"):
        fresh.receive_payloads(wrong_key)
    assert new_run_id() != group.run_id
    fresh2 = Coordinator(run_id=group.run_id, homes=["home:school_0"], lead="home:school_0",
                         layouts=coord.layouts)
    fresh2.receive_public_key(HomePublicKey(
        header=Header(run_id=group.run_id, sender="home:school_0", recipient="coordinator",
                      step=1), public_key=group.keyring.public_key.to_bytes()))
    with pytest.raises(ProtocolError, match="before its reblinded records"):
        fresh2.receive_payloads(pay)  # out of order: no tokens yet
    fresh3 = Coordinator(run_id=group.run_id, homes=["home:school_0"], lead="home:school_0",
                         layouts=coord.layouts)
    fresh3.receive_public_key(HomePublicKey(
        header=Header(run_id=group.run_id, sender="home:school_0", recipient="coordinator",
                      step=1), public_key=group.keyring.public_key.to_bytes()))
    fresh3._records["tax"] = coord._records["tax"]
    n2 = group.keyring.public_key.n_square
    bad = dataclasses.replace(pay, ciphertexts=(n2 + 5, *pay.ciphertexts[1:]))
    with pytest.raises(ProtocolError, match="n\\^2"):
        fresh3.receive_payloads(EvidencePayloads.from_bytes(bad.to_bytes()))


def test_cli_writes_on_success_and_nothing_on_failure(tables, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    homes, deps = tables
    homes["school_0"].to_parquet(tmp_path / "school_0.parquet")
    deps["tax"].to_parquet(tmp_path / "tax.parquet")
    bad = deps["tax"].copy()
    bad.loc[0, "person_id"] = "123"
    (tmp_path / "bad").mkdir()
    bad.to_parquet(tmp_path / "bad" / "tax.parquet")
    good_out = tmp_path / "good"
    r = CliRunner().invoke(app, ["match", "--home", str(tmp_path / "school_0.parquet"),
                                 "--evidence", str(tmp_path / "tax.parquet"),
                                 "--out", str(good_out), "--key-bits", "2048"])
    assert r.exit_code == 0, r.output
    assert (good_out / "resolved" / "school_0.parquet").exists()
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["match", "--home", str(tmp_path / "school_0.parquet"),
                                 "--evidence", str(tmp_path / "bad" / "tax.parquet"),
                                 "--out", str(out), "--key-bits", "2048"])
    assert r.exit_code != 0
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_roles_survive_pickling_between_steps(small_group):
    """Flower nodes keep a role in their own state between query messages."""
    import pickle

    home = pickle.loads(pickle.dumps(small_group.homes["school_0"]))
    evidence = pickle.loads(pickle.dumps(small_group.evidence["tax"]))
    msg = home.blinded_keys(batch=6)[0]
    out = evidence.reblind_home_keys(msg)
    assert out.count == msg.count
    with pytest.raises(ProtocolError, match="replayed"):
        evidence.reblind_home_keys(msg)


# ---------------------------------------------------------------- protocol hygiene
def test_repeated_point_in_a_list_is_refused(small_group):
    h = small_group.homes["school_0"]
    msg = h.blinded_keys(batch=6)[0]
    doubled = dataclasses.replace(msg, points=msg.points[:32] * 2 + msg.points[64:])
    with pytest.raises(ProtocolError, match="repeats a point"):
        small_group.evidence["tax"].reblind_home_keys(doubled)


def test_records_of_a_later_batch_are_refused_by_the_lead(schema, tables):
    group = _fresh_group(schema, tables)
    rec = group.evidence["tax"].blinded_records()
    later = dataclasses.replace(rec, header=dataclasses.replace(rec.header, step=2 * 16 + 4))
    with pytest.raises(ProtocolError, match="batch 0 only"):
        group.homes["school_0"].reblind_records(later)
    with pytest.raises(ProtocolError, match="earlier protocol error"):
        group.homes["school_0"].reblind_records(rec)  # fail closed


@pytest.mark.parametrize("value", [-2, -(2**40), 2**62])
def test_absurd_released_counts_are_refused(schema, tables, value):
    from fedid.matching.coordinator import Coordinator
    from fedid.matching.messages import HomeAggregates

    group = _fresh_group(schema, tables)
    coord = Coordinator(run_id=group.run_id, homes=["home:school_0"], lead="home:school_0",
                        layouts=group.coordinator.layouts)
    agg = HomeAggregates(header=Header(run_id=group.run_id, sender="home:school_0",
                                       recipient="coordinator", step=8),
                         names=("students", "matched"), values=(120, value), epsilon_milli=0)
    with pytest.raises(ProtocolError, match="released counts"):
        coord.receive_aggregates(HomeAggregates.from_bytes(agg.to_bytes()))

