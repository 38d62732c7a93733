"""ristretto255 blinding: commutativity, distinctness, domain separation, point checks."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest
import rbcl
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import _pool
from privacy.blinding import BlindingKey, hash_to_group, make_domain
from privacy.errors import CryptoError

DOMAIN = make_domain(protocol="fedid.test", run_id=b"run-1")
FIELD_P = 2**255 - 19
GROUP_L = 2**252 + 27742317777372353535851937790883648493


def test_hash_to_group_is_deterministic_valid_and_distinct() -> None:
    ids = [f"{i:018d}".encode() for i in range(300)]
    points = hash_to_group(ids, domain=DOMAIN)
    assert points == hash_to_group(ids, domain=DOMAIN)
    assert len(set(points)) == len(ids)
    assert all(rbcl.crypto_core_ristretto255_is_valid_point(p) for p in points)


def test_hash_to_group_known_answer() -> None:
    # SHA-512 over tag, domain, then the ID, each 8-byte length-prefixed; RFC 9496 map.
    tag = b"fedid.ristretto255.hash_to_group.v1"
    ident = b"110101199003077777"
    msg = b"".join(len(x).to_bytes(8, "big") + x for x in (tag, DOMAIN, ident))
    expected = rbcl.crypto_core_ristretto255_from_hash(hashlib.sha512(msg).digest())
    assert hash_to_group([ident], domain=DOMAIN) == [expected]


def test_domain_separation() -> None:
    ids = [b"110101199003077777", b"x"]
    other_run = make_domain(protocol="fedid.test", run_id=b"run-2")
    other_protocol = make_domain(protocol="fedid.other", run_id=b"run-1")
    base = hash_to_group(ids, domain=DOMAIN)
    assert not set(base) & set(hash_to_group(ids, domain=other_run))
    assert not set(base) & set(hash_to_group(ids, domain=other_protocol))
    key = BlindingKey.generate()
    assert key.hash_and_blind(ids, domain=DOMAIN) != key.hash_and_blind(ids, domain=other_run)
    # Length prefixes: moving bytes between protocol and run id changes the domain.
    assert make_domain(protocol="ab", run_id=b"c") != make_domain(protocol="a", run_id=b"bc")


def test_commutativity_and_inverse() -> None:
    ids = [f"id-{i}".encode() for i in range(50)]
    a, b = BlindingKey.generate(), BlindingKey.generate()
    ab = b.blind(a.hash_and_blind(ids, domain=DOMAIN))
    ba = a.blind(b.hash_and_blind(ids, domain=DOMAIN))
    assert ab == ba
    assert a.inverse().blind(a.blind(hash_to_group(ids, domain=DOMAIN))) == hash_to_group(
        ids, domain=DOMAIN)
    assert a.hash_and_blind(ids, domain=DOMAIN) == a.blind(hash_to_group(ids, domain=DOMAIN))
    assert a.hash_and_blind(ids, domain=DOMAIN) != b.hash_and_blind(ids, domain=DOMAIN)


@settings(max_examples=30, deadline=None)
@given(ids=st.lists(st.binary(max_size=40), min_size=1, max_size=20, unique=True))
def test_commutativity_property(ids: list[bytes]) -> None:
    a, b = BlindingKey.generate(), BlindingKey.generate()
    ab = b.blind(a.hash_and_blind(ids, domain=DOMAIN))
    assert ab == a.blind(b.hash_and_blind(ids, domain=DOMAIN))
    assert len(set(ab)) == len(ids)


def test_batches_through_pool_match_inline() -> None:
    ids = [f"{i:018d}".encode() for i in range(1500)]  # above the pool threshold
    a, b = BlindingKey.generate(), BlindingKey.generate()
    pooled = b.blind(a.hash_and_blind(ids, domain=DOMAIN))
    inline = [b.blind(a.hash_and_blind([x], domain=DOMAIN))[0] for x in ids[:40]]
    assert pooled[:40] == inline
    assert len(set(pooled)) == len(ids)
    assert pooled == a.blind(b.hash_and_blind(ids, domain=DOMAIN))


def _invalid_point() -> bytes:
    for i in range(1000):
        candidate = hashlib.sha256(i.to_bytes(4, "big")).digest()[:31] + b"\x00"
        candidate = bytes([candidate[0] & 0xFE]) + candidate[1:]  # even, canonical field elt
        if not rbcl.crypto_core_ristretto255_is_valid_point(candidate):
            return candidate
    raise AssertionError("no invalid encoding found")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (bytes(32), "identity"),
        (FIELD_P.to_bytes(32, "little"), "canonical"),  # non-canonical encoding of 0
        ((FIELD_P + 2).to_bytes(32, "little"), "canonical"),  # non-canonical encoding of 2
        (b"\x01" + bytes(31), "canonical"),  # odd ("negative") s is never canonical
        (b"\xff" * 32, "canonical"),
        (bytes(31), "32 bytes"),
        ("not bytes", "must be bytes"),
    ],
)
def test_invalid_points_rejected_with_index(bad: object, message: str) -> None:
    key = BlindingKey.generate()
    good = hash_to_group([b"a", b"b", b"c"], domain=DOMAIN)
    with pytest.raises(CryptoError, match=f"index 3 .*{message}"):
        key.blind([*good, bad])  # type: ignore[list-item]


def test_off_group_point_rejected() -> None:
    key = BlindingKey.generate()
    with pytest.raises(CryptoError, match="index 0 must be a canonical"):
        key.blind([_invalid_point()])


def test_invalid_point_in_large_batch_names_index() -> None:
    key = BlindingKey.generate()
    points = hash_to_group([str(i).encode() for i in range(1200)], domain=DOMAIN)
    points[1103] = bytes(32)
    with pytest.raises(CryptoError, match="index 1103 must not be the identity"):
        key.blind(points)


def test_key_checks() -> None:
    with pytest.raises(CryptoError, match="nonzero"):
        BlindingKey(bytes(32))
    with pytest.raises(CryptoError, match="canonical"):
        BlindingKey(GROUP_L.to_bytes(32, "little"))
    with pytest.raises(CryptoError, match="32 bytes"):
        BlindingKey(b"\x01")
    key = BlindingKey.generate()
    assert "secret" in repr(key)
    assert BlindingKey.generate().hash_and_blind([b"x"], domain=DOMAIN) != key.hash_and_blind(
        [b"x"], domain=DOMAIN)
    with pytest.raises(CryptoError, match="domain"):
        key.hash_and_blind([b"x"], domain=b"")
    with pytest.raises(CryptoError, match="index 1 must be bytes"):
        hash_to_group([b"x", "y"], domain=DOMAIN)  # type: ignore[list-item]


def test_pool_recovers_from_a_dead_worker() -> None:
    ids = [f"{i:018d}".encode() for i in range(1200)]
    key = BlindingKey.generate()
    expected = key.hash_and_blind(ids, domain=DOMAIN)
    pool = _pool._get_pool()
    pids = list(pool._processes)
    if not pids:
        pytest.skip("pool has no live workers to kill")
    os.kill(pids[0], signal.SIGKILL)
    assert key.hash_and_blind(ids, domain=DOMAIN) == expected  # inline fallback
    assert key.hash_and_blind(ids, domain=DOMAIN) == expected  # fresh pool


def test_secret_bytes_restore_the_same_key() -> None:
    key = BlindingKey.generate()
    restored = BlindingKey(key.secret_bytes())
    points = hash_to_group([b"110105194912310021"], domain=b"test")
    assert restored.blind(points) == key.blind(points)
    assert BlindingKey.generate().blind(points) != key.blind(points)


def test_encoding_with_bit_255_set_is_refused() -> None:
    """RFC 9496 4.3.1: a non-canonical encoding (top bit set) is rejected, not aliased."""
    key = BlindingKey.generate()
    point = hash_to_group([b"id"], domain=make_domain(protocol="t", run_id=b"r"))[0]
    alias = point[:31] + bytes([point[31] | 0x80])
    with pytest.raises(CryptoError, match="bit 255"):
        key.blind([point, alias])
    assert len(key.blind([point])) == 1
