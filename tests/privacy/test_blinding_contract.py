"""Blinding contract for both backends (ristretto255, X25519 + Elligator 2), then X25519 specifics.

The X25519 known-answer test uses RFC 9380's curve25519_XMD:SHA-512_ELL2_NU_ vectors (appendix
J.7.2): ``hash_to_field`` is recomputed here with ``expand_message_xmd`` from the message and
the suite's test DST and must give the listed ``u``; the map must give ``Q.x``; and ``8 Q``
(computed with an independent RFC 7748 ladder below) must give ``P.x``.
"""

from __future__ import annotations

import hashlib
import random
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from privacy import blinding, blinding_x25519
from privacy.errors import CryptoError

P = 2**255 - 19
A = 486662
DOMAIN = blinding.make_domain(protocol="fedid.test", run_id=b"run-1")
BACKENDS = [pytest.param(blinding, id="ristretto255"), pytest.param(blinding_x25519, id="x25519")]


def _is_square(x: int) -> bool:
    """Euler's criterion (pure Python, independent of the module's gmpy2 Legendre)."""
    return pow(x % P, (P - 1) // 2, P) != P - 1


def _g(u: int) -> int:
    return (u * u * u + A * u * u + u) % P


def _ladder_xz(k: int, u: int) -> tuple[int, int]:
    """RFC 7748 section 5 Montgomery ladder with an unclamped scalar: projective (X, Z)."""
    x2, z2, x3, z3, swap = 1, 0, u, 1, 0
    for t in reversed(range(k.bit_length())):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, u * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return x2, z2


def _ladder(k: int, u: int) -> int:
    x, z = _ladder_xz(k, u)
    return x * pow(z, P - 2, P) % P


# ---------------------------------------------------------------- contract, both backends


@pytest.mark.parametrize("mod", BACKENDS)
def test_commutativity_and_distinct_tokens(mod: ModuleType) -> None:
    ids = [f"{i:018d}".encode() for i in range(700)]  # above the pool threshold
    a, b = mod.BlindingKey.generate(), mod.BlindingKey.generate()
    ab = b.blind(a.hash_and_blind(ids, domain=DOMAIN))
    assert ab == a.blind(b.hash_and_blind(ids, domain=DOMAIN))
    assert len(set(ab)) == len(ids)
    assert all(len(x) == mod.POINT_BYTES == 32 for x in ab)
    assert a.hash_and_blind(ids[:50], domain=DOMAIN) == a.blind(
        mod.hash_to_group(ids[:50], domain=DOMAIN))
    assert a.hash_and_blind(ids[:50], domain=DOMAIN) != b.hash_and_blind(ids[:50], domain=DOMAIN)


@pytest.mark.parametrize("mod", BACKENDS)
def test_hash_is_deterministic_and_domain_separated(mod: ModuleType) -> None:
    ids = [b"110101199003077777", b"x", b""]
    base = mod.hash_to_group(ids, domain=DOMAIN)
    assert base == mod.hash_to_group(ids, domain=DOMAIN)
    assert len(set(base)) == len(ids)
    other_run = mod.make_domain(protocol="fedid.test", run_id=b"run-2")
    other_protocol = mod.make_domain(protocol="fedid.other", run_id=b"run-1")
    assert not set(base) & set(mod.hash_to_group(ids, domain=other_run))
    assert not set(base) & set(mod.hash_to_group(ids, domain=other_protocol))
    with pytest.raises(CryptoError, match="domain"):
        mod.hash_to_group(ids, domain=b"")
    with pytest.raises(CryptoError, match="index 1 must be bytes"):
        mod.BlindingKey.generate().hash_and_blind([b"x", "y"], domain=DOMAIN)


@pytest.mark.parametrize("mod", BACKENDS)
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (bytes(32), "identity|small order"),  # ristretto identity; X25519 u = 0 (order 2)
        (b"\xff" * 32, "canonical"),
        ((P + 2).to_bytes(32, "little"), "canonical"),  # 2 + p: non-canonical for both
        (bytes(31), "32 bytes"),
        (bytes(33), "32 bytes"),
        ("not bytes", "must be bytes"),
    ],
)
def test_invalid_points_rejected_with_index(mod: ModuleType, bad: object, message: str) -> None:
    key = mod.BlindingKey.generate()
    good = mod.hash_to_group([b"a", b"b", b"c"], domain=DOMAIN)
    with pytest.raises(CryptoError, match=f"index 3 .*({message})"):
        key.blind([*good, bad])


@pytest.mark.parametrize("mod", BACKENDS)
def test_invalid_point_in_pooled_batch_names_index(mod: ModuleType) -> None:
    points = mod.hash_to_group([str(i).encode() for i in range(1100)], domain=DOMAIN)
    points[1013] = (P + 1).to_bytes(32, "little")
    with pytest.raises(CryptoError, match="index 1013 must be a canonical"):
        mod.BlindingKey.generate().blind(points)


@pytest.mark.parametrize("mod", BACKENDS)
def test_key_checks(mod: ModuleType) -> None:
    with pytest.raises(CryptoError, match="32 bytes"):
        mod.BlindingKey(b"\x01")
    assert "secret" in repr(mod.BlindingKey.generate())


# ---------------------------------------------------------------- X25519 + Elligator 2


def test_x25519_hash_known_answer_framing() -> None:
    ident = b"110101199003077777"
    tag = b"fedid.x25519.elligator2.hash_to_group.v1"
    msg = b"".join(len(x).to_bytes(8, "big") + x for x in (tag, DOMAIN, ident))
    r = int.from_bytes(hashlib.sha512(msg).digest(), "big") % P
    expected = blinding_x25519.elligator2(r).to_bytes(32, "little")
    assert blinding_x25519.hash_to_group([ident], domain=DOMAIN) == [expected]


def _expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime)
    blocks = [hashlib.sha512(b0.digest() + b"\x01" + dst_prime).digest()]
    while len(blocks) * 64 < length:
        mixed = bytes(x ^ y for x, y in zip(b0.digest(), blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + bytes([len(blocks) + 1]) + dst_prime).digest())
    return b"".join(blocks)[:length]


RFC9380_NU = [  # msg, u[0], Q.x, P.x (big-endian hex)
    (b"", "608d892b641f0328523802a6603427c26e55e6f27e71a91a478148d45b5093cd",
     "51125222da5e763d97f3c10fcc92ea6860b9ccbbd2eb1285728f566721c1e65b",
     "1bb913f0c9daefa0b3375378ffa534bda5526c97391952a7789eb976edfe4d08"),
    (b"abc", "46f5b22494bfeaa7f232cc8d054be68561af50230234d7d1d63d1d9abeca8da5",
     "7d56d1e08cb0ccb92baf069c18c49bb5a0dcd927eff8dcf75ca921ef7f3e6eeb",
     "7c22950b7d900fa866334262fcaea47a441a578df43b894b4625c9b450f9a026"),
    (b"abcdef0123456789", "235fe40c443766ce7e18111c33862d66c3b33267efa50d50f9e8e5d252a40aaa",
     "3fbe66b9c9883d79e8407150e7c2a1c8680bee496c62fabe4619a72b3cabe90f",
     "31ad08a8b0deeb2a4d8b0206ca25f567ab4e042746f792f4b7973f3ae2096c52"),
]


@pytest.mark.parametrize(("msg", "u", "qx", "px"), RFC9380_NU)
def test_elligator2_rfc9380_vectors(msg: bytes, u: str, qx: str, px: str) -> None:
    dst = b"QUUX-V01-CS02-with-curve25519_XMD:SHA-512_ELL2_NU_"
    r = int.from_bytes(_expand_message_xmd(msg, dst, 48), "big") % P
    assert r == int(u, 16)
    q = blinding_x25519.elligator2(r)
    assert q == int(qx, 16)
    assert _ladder(8, q) == int(px, 16)


def test_elligator2_defining_equation() -> None:
    rng = random.Random(9380)
    for _ in range(300):
        r = rng.randrange(P)
        u = blinding_x25519.elligator2(r)
        x1 = -A * pow(1 + 2 * r * r, P - 2, P) % P
        assert u == (x1 if _is_square(_g(x1)) else (-x1 - A) % P)
        assert _is_square(_g(u))
    # r = 0: x1 = -A, g(-A) = -A is not a square, so u = 0, the order-2 point (0, 0); only
    # this r (probability 1/p per ID) gives a small-order output, and hash_and_blind checks.
    assert not _is_square(-A)
    assert blinding_x25519.elligator2(0) == 0


def test_hash_outputs_are_on_the_curve_never_the_twist() -> None:
    ids = [random.Random(7).randbytes(18) + i.to_bytes(4, "big") for i in range(2000)]
    points = blinding_x25519.hash_to_group(ids, domain=DOMAIN)
    us = [int.from_bytes(x, "little") for x in points]
    assert all(u < P and _is_square(_g(u)) for u in us)
    # A raw hash as u would be a twist point about half the time (the leak Elligator avoids).
    raw = [int.from_bytes(hashlib.sha256(x).digest(), "little") % P for x in ids]
    assert 800 < sum(not _is_square(_g(u)) for u in raw) < 1200


def test_twist_point_rejected_and_would_leak() -> None:
    u = next(v for v in range(2, 100) if not _is_square(_g(v)))
    twist = u.to_bytes(32, "little")
    key = blinding_x25519.BlindingKey.generate()
    with pytest.raises(CryptoError, match=r"index 0 must be on curve25519\. It is on the twist"):
        key.blind([twist])
    # Why: the raw ladder keeps a twist point on the twist after blinding (the one-bit leak).
    raw = X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(twist))
    assert not _is_square(_g(int.from_bytes(raw, "little")))
    assert not blinding_x25519.on_curve(twist)


def test_x25519_matches_reference_ladder_and_kills_cofactor() -> None:
    secret = bytes(range(1, 33))
    k = int.from_bytes(secret, "little")
    k = (k & ~7 & ((1 << 255) - 1)) | (1 << 254)  # RFC 7748 clamping
    key = blinding_x25519.BlindingKey(secret)
    point = blinding_x25519.hash_to_group([b"id"], domain=DOMAIN)[0]
    u = int.from_bytes(point, "little")
    out = int.from_bytes(key.blind([point])[0], "little")
    assert out == _ladder(k, u)
    order = 2**252 + 27742317777372353535851937790883648493
    assert _ladder_xz(order, out)[1] == 0  # L (k P) is the point at infinity: prime order
    # Raw map outputs mostly carry a small-order component (L P is not infinity) ...
    raw = blinding_x25519.hash_to_group([bytes([i]) for i in range(16)], domain=DOMAIN)
    assert any(_ladder_xz(order, int.from_bytes(x, "little"))[1] != 0 for x in raw)
    # ... which the clamped scalar (a multiple of 8) removes at the first blinding.
    assert all(_ladder_xz(order, int.from_bytes(x, "little"))[1] == 0 for x in key.blind(raw))


def test_small_order_points_rejected() -> None:
    key = blinding_x25519.BlindingKey.generate()
    for u in (0, 1):  # order 2 and order 4 points, both on curve25519
        assert _is_square(_g(u))
        with pytest.raises(CryptoError, match="index 0 must not be of small order"):
            key.blind([u.to_bytes(32, "little")])
