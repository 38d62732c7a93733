"""Commutative blinding of ID keys with X25519 (RFC 7748) and an Elligator 2 hash (RFC 9380).

A second backend with the interface of :mod:`privacy.blinding` (ristretto255), about a
third cheaper per operation: ``cryptography``'s X25519 ladder costs ~33 us here against
libsodium's ristretto255 scalar multiplication at ~50 us.

Hash. :func:`hash_to_group` takes SHA-512 over the same framing as the ristretto255 module
(a fixed tag of its own, the caller's ``domain`` from :func:`make_domain`, then the ID, each
8-byte length-prefixed), reads the 64 bytes as a big-endian integer reduced mod
``p = 2^255 - 19`` (bias below 2^-256), and maps that field element ``r`` with RFC 9380's
``map_to_curve_elligator2`` for curve25519 (``Z = 2``, as in the suite
``curve25519_XMD:SHA-512_ELL2_NU_``; only the framing differs from that suite's
``hash_to_field``): ``x1 = -A / (1 + 2 r^2)``; if ``g(x1) = x1^3 + A x1^2 + x1`` is a square
then ``u = x1``, else ``u = -x1 - A``, for which ``g(u) = 2 r^2 g(x1)`` is a square because
2 is not. Either way ``u`` is the u-coordinate of a point ON THE CURVE, never of the twist.
The point may carry a component of order dividing 8 (the cofactor); X25519 clamps every
scalar to a multiple of 8, so the first blinding ``k P`` kills that component and lands in
the prime-order subgroup (order ``L = 2^252 + ...``), where all later blindings stay.

Blinding. A :class:`BlindingKey` is 32 bytes from the OS CSPRNG; blinding maps ``u`` to
``X25519(k, u)``, the u-coordinate of ``k P``. For clamped scalars this commutes:
``X25519(a, X25519(b, u)) = u(a b P) = X25519(b, X25519(a, u))``, so two parties holding
``a`` and ``b`` obtain equal tokens for equal IDs (decisional Diffie-Hellman in the
prime-order subgroup).

Security argument (semi-honest parties, as for the ristretto255 backend).

* The twist bit. A raw hash used as a u-coordinate lands on the twist half the time, and
  ``k P`` stays on whichever of curve or twist ``P`` was on, so anyone can read one bit of the
  hashed ID from every blinded token (Legendre symbol of ``g(u)``). Elligator 2 outputs
  curve points only, so that bit is constant (always "curve") and carries nothing; after
  the first blinding every token is the u-coordinate of a point of the prime-order
  subgroup, like any X25519 public value, and is pseudorandom there under DDH.
* Only u travels. ``P`` and ``-P`` share their u-coordinate, and so do ``k P`` and
  ``-k P``: tokens identify the pair ``{P, -P}``. Equality of tokens is still equality of
  hashed IDs up to a collision of ``{P, -P}`` classes (after the cofactor is cleared),
  whose probability for ``n`` IDs is of order ``n^2 / 2^250``, negligible; the PSI and
  matching only test equality.
* Validation of every received point (:meth:`BlindingKey.blind`): 32 bytes; canonical
  (``u < p``, so also the top bit clear; RFC 7748 would silently mask it, letting one
  point have two encodings); on the curve (the Legendre symbol of ``g(u)`` is not -1; the
  X25519 ladder itself would accept a twist point, and although curve25519's twist has
  order 4 times a prime, so little of ``k`` could leak, no honest party ever sends one:
  rejected with the element's index); and not of small order (the X25519 result is not
  all-zero: ``cryptography`` raises on it, wrapped here as ``CryptoError``). A point with a
  small-order component is accepted: the clamped scalar removes it. The model is
  semi-honest, as for ristretto255: validation stops malformed input, it does not make a
  malicious party's choice of IDs or keys honest.
* No :meth:`inverse`. X25519 clamps every scalar (bit 254 set, low three bits clear), so
  ``k^-1 mod L`` is reachable as a clamped scalar for only about half the keys, and a
  multiple of 8 can never restore a hashed point's cofactor component. Neither PSI nor
  the matching protocol unblinds (tokens are compared after both keys are applied), so
  this backend has no ``inverse``.

Batches of at least a few hundred elements are split across worker processes
(:mod:`privacy._pool`), like the ristretto255 backend.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import gmpy2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from privacy import _pool
from privacy.blinding import _check_ids, _framed_sha512, make_domain
from privacy.errors import CryptoError

__all__ = [
    "POINT_BYTES", "BlindingKey", "elligator2", "hash_to_group", "make_domain", "on_curve",
]

_LOG = logging.getLogger(__name__)

POINT_BYTES = 32
FIELD_P = 2**255 - 19
MONTGOMERY_A = 486662  # curve25519: v^2 = u^3 + A u^2 + u
_TAG = b"fedid.x25519.elligator2.hash_to_group.v1"
_MIN_PARALLEL = 512
_P = gmpy2.mpz(FIELD_P)
_A = gmpy2.mpz(MONTGOMERY_A)
_NEG_A = _P - _A


def _elligator2(r: gmpy2.mpz) -> gmpy2.mpz:
    t = (2 * r * r + 1) % _P
    x1 = _NEG_A * gmpy2.invert(t, _P) % _P if t else _NEG_A  # inv0(0) = 0, then x1 = -A
    if gmpy2.legendre(x1 * (x1 * (x1 + _A) + 1) % _P, _P) != -1:
        return x1
    return (_NEG_A - x1) % _P


def elligator2(r: int) -> int:
    """RFC 9380 ``map_to_curve_elligator2`` (curve25519, Z = 2): the u-coordinate only."""
    return int(_elligator2(gmpy2.mpz(r) % _P))


def _map_chunk(ids: Sequence[bytes], domain: bytes) -> list[bytes]:
    mpz, p, ell = gmpy2.mpz, _P, _elligator2
    return [int(ell(mpz(int.from_bytes(d, "big")) % p)).to_bytes(32, "little")
            for d in _framed_sha512(ids, tag=_TAG, domain=domain)]


def on_curve(point: bytes) -> bool:
    """True when ``point`` is a canonical 32-byte u-coordinate of a curve25519 point."""
    if len(point) != POINT_BYTES:
        return False
    u = int.from_bytes(point, "little")
    return u < FIELD_P and gmpy2.legendre((u * (u * (u + MONTGOMERY_A) + 1)) % FIELD_P,
                                          FIELD_P) != -1


def hash_to_group(ids: Sequence[bytes], *, domain: bytes) -> list[bytes]:
    """Map each ID to the u-coordinate of a curve25519 point (32 bytes, little-endian)."""
    if not isinstance(domain, bytes) or not domain:
        raise CryptoError("domain must be non-empty bytes (see make_domain).")
    items = _check_ids(ids)
    return _pool.map_chunks(_map_chunk, items, args=(domain,), min_parallel=2 * _MIN_PARALLEL)


def _point_problem(p: object) -> str:
    if not isinstance(p, bytes):
        return f"must be bytes. Got {type(p).__name__}"
    if len(p) != POINT_BYTES:
        return f"must be {POINT_BYTES} bytes. Got {len(p)}"
    u = int.from_bytes(p, "little")
    if u >= FIELD_P:
        top = "top bit set" if p[31] & 0x80 else "u >= p"
        return f"must be a canonical u-coordinate (u < 2^255 - 19). Got a {top}"
    if not on_curve(p):
        return "must be on curve25519. It is on the twist"
    return "must not be of small order (X25519 result is all-zero)"


def _exchange_chunk(points: Sequence[bytes], scalar: bytes) -> list[bytes | None]:
    """``X25519(k, u)`` per valid point; None where a point fails a check or the exchange."""
    key = X25519PrivateKey.from_private_bytes(scalar)
    exchange, load = key.exchange, X25519PublicKey.from_public_bytes
    legendre, p, a = gmpy2.legendre, FIELD_P, MONTGOMERY_A
    out: list[bytes | None] = []
    for q in points:
        u = int.from_bytes(q, "little")
        if u >= p or legendre(u * (u * (u + a) + 1) % p, p) == -1:
            out.append(None)
            continue
        try:
            out.append(exchange(load(q)))
        except ValueError:  # all-zero shared secret: a small-order point
            out.append(None)
    return out


def _hash_exchange_chunk(ids: Sequence[bytes], domain: bytes,
                         scalar: bytes) -> list[bytes | None]:
    key = X25519PrivateKey.from_private_bytes(scalar)
    exchange, load = key.exchange, X25519PublicKey.from_public_bytes
    out: list[bytes | None] = []
    for q in _map_chunk(ids, domain):
        try:
            out.append(exchange(load(q)))
        except ValueError:  # only r = 0 maps to a small-order point (u = 0): prob. 1/p
            out.append(None)
    return out


def _unwrap(results: list[bytes | None], what: str,
            problem: list[bytes] | None = None) -> list[bytes]:
    out: list[bytes] = []
    for i, q in enumerate(results):
        if q is None:
            detail = _point_problem(problem[i]) if problem is not None else (
                "hashes to a small-order point (X25519 result is all-zero)")
            raise CryptoError(f"{what} at index {i} {detail}.")
        out.append(q)
    return out


class BlindingKey:
    """A secret X25519 scalar (32 bytes, clamped at use); fresh per run (:meth:`generate`)."""

    __slots__ = ("_scalar",)

    def __init__(self, scalar: bytes) -> None:
        if not isinstance(scalar, bytes) or len(scalar) != 32:
            raise CryptoError("blinding scalar must be 32 bytes.")
        self._scalar = scalar

    @classmethod
    def generate(cls) -> BlindingKey:
        """32 bytes from the OS CSPRNG (``os.urandom``); X25519 clamps them at every use."""
        return cls(os.urandom(32))

    def __repr__(self) -> str:
        return "BlindingKey(<secret>)"

    def secret_bytes(self) -> bytes:
        """The 32-byte scalar, for the key holder's own storage or sealed delivery only.

        Warning: this is the secret; ``BlindingKey(secret)`` restores the key.
        """
        return self._scalar

    def blind(self, points: Sequence[bytes]) -> list[bytes]:
        """``X25519(k, u)`` for each received u-coordinate, after validating every one."""
        items = list(points)
        for i, q in enumerate(items):
            if not isinstance(q, bytes) or len(q) != POINT_BYTES:
                raise CryptoError(f"point at index {i} {_point_problem(q)}.")
        out = _pool.map_chunks(_exchange_chunk, items, args=(self._scalar,),
                               min_parallel=_MIN_PARALLEL)
        return _unwrap(out, "point", items)

    def hash_and_blind(self, ids: Sequence[bytes], *, domain: bytes) -> list[bytes]:
        """``X25519(k, H(id))`` for each ID (:func:`hash_to_group` then blind, one pass)."""
        if not isinstance(domain, bytes) or not domain:
            raise CryptoError("domain must be non-empty bytes (see make_domain).")
        items = _check_ids(ids)
        out = _pool.map_chunks(_hash_exchange_chunk, items, args=(domain, self._scalar),
                               min_parallel=_MIN_PARALLEL)
        return _unwrap(out, "ID")
