"""Commutative blinding of ID keys in ristretto255 (RFC 9496) through libsodium (``rbcl``).

An ID becomes a group element by :func:`hash_to_group`: SHA-512 over a domain-separated,
length-prefixed input (a fixed tag, the caller's ``domain`` such as protocol name and run
id from :func:`make_domain`, then the ID bytes), mapped by libsodium's
``crypto_core_ristretto255_from_hash`` (RFC 9496 one-way map: the Elligator-based map
applied to each 32-byte half, results added). The output is uniform in the prime-order
group, and no one knows its discrete logarithm. A :class:`BlindingKey` is a secret
scalar ``k`` drawn from the OS CSPRNG; blinding maps ``P -> k P``. Blinding commutes:
``a (b P) = b (a P) = (a b) P``, so two parties holding ``a`` and ``b`` obtain equal tokens
for equal IDs without revealing either ID or key (decisional Diffie-Hellman).

Why not X25519 with a hashed u-coordinate. Curve25519 has cofactor 8 and a quadratic
twist: a random field element is the u-coordinate of a curve point only about half the
time, otherwise of a twist point. The X25519 ladder happily multiplies either, and
``k P`` stays on whichever of curve or twist ``P`` was on, so anyone can test the
blinded value (Legendre symbol of ``u^3 + A u^2 + u``) and learn one bit of the hashed ID
per element: enough, with a small ID space like national IDs, to split candidates. In
ristretto255 every 32-byte string either decodes to an element of the single prime-order
group or is rejected; there is no twist, no cofactor, and ``from_hash`` lands in the
group by construction, so a blinded token carries no such bit.

Every received point is validated before use: 32 bytes, canonical encoding of a group
element (bit 255 clear: libsodium ignores that bit, RFC 9496 section 4.3.1 requires
rejecting it, else two encodings alias one element), not the identity. libsodium's scalar
multiplication itself decodes (rejecting non-canonical and off-group encodings) and
refuses an identity result; the failing element is then diagnosed and reported by index.
Batches of at least a few hundred elements are split across worker processes
(:mod:`privacy._pool`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import rbcl

from privacy import _pool
from privacy.errors import CryptoError

__all__ = ["POINT_BYTES", "BlindingKey", "hash_to_group", "make_domain"]

_LOG = logging.getLogger(__name__)

POINT_BYTES = 32
_TAG = b"fedid.ristretto255.hash_to_group.v1"
_IDENTITY = bytes(32)
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
_MIN_PARALLEL = 512


def _lp(data: bytes) -> bytes:
    """8-byte big-endian length prefix, so concatenations are unambiguous."""
    return len(data).to_bytes(8, "big") + data


def make_domain(*, protocol: str, run_id: bytes | str) -> bytes:
    """Domain bytes naming a protocol and a run: length-prefixed UTF-8 / raw bytes."""
    rid = run_id.encode() if isinstance(run_id, str) else bytes(run_id)
    return _lp(protocol.encode()) + _lp(rid)


def _framed_sha512(ids: Sequence[bytes], *, tag: bytes, domain: bytes) -> list[bytes]:
    """SHA-512 of ``lp(tag) || lp(domain) || lp(id)`` per ID (``lp``: 8-byte length prefix).

    Shared with :mod:`privacy.blinding_x25519`, which uses its own ``tag``.
    """
    base = hashlib.sha512(_lp(tag) + _lp(domain))
    out = []
    for x in ids:
        h = base.copy()
        h.update(len(x).to_bytes(8, "big"))
        h.update(x)
        out.append(h.digest())
    return out


def _hash_chunk(ids: Sequence[bytes], domain: bytes) -> list[bytes]:
    from_hash = rbcl.crypto_core_ristretto255_from_hash
    return [from_hash(d) for d in _framed_sha512(ids, tag=_TAG, domain=domain)]


def _check_ids(ids: Sequence[bytes]) -> list[bytes]:
    out = list(ids)
    for i, x in enumerate(out):
        if not isinstance(x, bytes):
            raise CryptoError(f"ID at index {i} must be bytes. Got {type(x).__name__}.")
    return out


def hash_to_group(ids: Sequence[bytes], *, domain: bytes) -> list[bytes]:
    """Map each ID to a ristretto255 element (32 bytes), separated by ``domain``."""
    if not isinstance(domain, bytes) or not domain:
        raise CryptoError("domain must be non-empty bytes (see make_domain).")
    items = _check_ids(ids)
    return _pool.map_chunks(_hash_chunk, items, args=(domain,), min_parallel=2 * _MIN_PARALLEL)


def _point_problem(p: object) -> str:
    if not isinstance(p, bytes):
        return f"must be bytes. Got {type(p).__name__}"
    if len(p) != POINT_BYTES:
        return f"must be {POINT_BYTES} bytes. Got {len(p)}"
    if p == _IDENTITY:
        return "must not be the identity element"
    if p[31] & 0x80:
        return "must have bit 255 clear (RFC 9496 canonical encoding). It is set"
    if not rbcl.crypto_core_ristretto255_is_valid_point(p):
        return "must be a canonical ristretto255 encoding of a group element. It is not"
    return ""


def _mult_chunk(points: Sequence[bytes], scalar: bytes) -> list[bytes | None]:
    """``scalar * P`` per point; None where libsodium rejects the input.

    libsodium's ``crypto_scalarmult_ristretto255`` does not clamp (rbcl's docstring says
    it does); it only clears bit 255, which is zero for every canonical scalar (< L).
    """
    mult = rbcl.crypto_scalarmult_ristretto255
    out: list[bytes | None] = []
    for p in points:
        if p == _IDENTITY or p[31] & 0x80:  # libsodium ignores bit 255; RFC 9496 rejects it
            out.append(None)
            continue
        try:
            out.append(mult(scalar, p))
        except RuntimeError:
            out.append(None)
    return out


def _hash_mult_chunk(ids: Sequence[bytes], domain: bytes, scalar: bytes) -> list[bytes]:
    mult = rbcl.crypto_scalarmult_ristretto255
    return [mult(scalar, p) for p in _hash_chunk(ids, domain)]


class BlindingKey:
    """A secret nonzero scalar of ristretto255; fresh per run (:meth:`generate`)."""

    __slots__ = ("_scalar",)

    def __init__(self, scalar: bytes) -> None:
        if not isinstance(scalar, bytes) or len(scalar) != 32:
            raise CryptoError("blinding scalar must be 32 bytes.")
        value = int.from_bytes(scalar, "little")
        if not 0 < value < _GROUP_ORDER:
            raise CryptoError("blinding scalar must be canonical and nonzero (0 < k < L).")
        self._scalar = scalar

    @classmethod
    def generate(cls) -> BlindingKey:
        """A uniform nonzero scalar from libsodium's ``randombytes`` (the OS CSPRNG)."""
        while True:
            scalar = rbcl.crypto_core_ristretto255_scalar_random()
            if any(scalar):
                return cls(scalar)

    def secret_bytes(self) -> bytes:
        """The 32-byte scalar, for the key holder's own storage only.

        Warning: this is the secret. It never goes into a message, a log or a shared folder
        other than the key holder's own; ``BlindingKey(secret)`` restores the key.
        """
        return self._scalar

    def __repr__(self) -> str:
        return "BlindingKey(<secret>)"

    def inverse(self) -> BlindingKey:
        """The key ``k^-1 mod L``, which removes this key's blinding."""
        return BlindingKey(rbcl.crypto_core_ristretto255_scalar_invert(self._scalar))

    def blind(self, points: Sequence[bytes]) -> list[bytes]:
        """``k P`` for each received point, after validating every one of them."""
        items = list(points)
        for i, p in enumerate(items):
            if not isinstance(p, bytes) or len(p) != POINT_BYTES:
                raise CryptoError(f"point at index {i} {_point_problem(p)}.")
        out = _pool.map_chunks(_mult_chunk, items, args=(self._scalar,),
                               min_parallel=_MIN_PARALLEL)
        for i, q in enumerate(out):
            if q is None:
                raise CryptoError(f"point at index {i} {_point_problem(items[i])}.")
        return [q for q in out if q is not None]

    def hash_and_blind(self, ids: Sequence[bytes], *, domain: bytes) -> list[bytes]:
        """``k H(id)`` for each ID (:func:`hash_to_group` then blind, in one pass)."""
        if not isinstance(domain, bytes) or not domain:
            raise CryptoError("domain must be non-empty bytes (see make_domain).")
        items = _check_ids(ids)
        return _pool.map_chunks(_hash_mult_chunk, items, args=(domain, self._scalar),
                                min_parallel=_MIN_PARALLEL)
