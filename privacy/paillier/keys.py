"""Paillier keys (tier 3): phe-compatible, fast DJN encryption, CRT decryption, bytes.

A :class:`PaillierPublicKey` is ``n`` (with ``g = n + 1`` as in phe 1.5) plus ``h``, the
key holder's fixed n-th residue for fast Damgård-Jurik-Nielsen encryption (see
:mod:`.fast` for the exponent length and its security assumption). A key converted from
phe has no ``h``; it still encrypts, with phe's classic ``r^n`` (slow), until the key holder
publishes one. Ciphertexts are plain ``int`` values in ``Z_{n^2}^*``, interchangeable with
phe's ``EncryptedNumber.ciphertext()`` at exponent 0.

Every ciphertext is checked before use (:meth:`PaillierPublicKey.validate_ciphertext`):
``0 < c < n^2`` and ``gcd(c, n) = 1``; a ciphertext received from another party also ``c
mod n`` not ``±1`` (:meth:`PaillierPublicKey.validate_received`). The gcd rule: honest
ciphertexts are units mod ``n^2`` (``1 + m n`` and every n-th residue are), so a non-unit
is malformed; worse, it shares a prime factor with ``n``, so accepting it into sums or
decryptions would let a party pass factor-revealing values around, and the CRT decryption
is undefined on it. The ``±1`` rule: ``c mod n`` is ``r^n mod n`` for randomness ``r``, so
``c ≡ ±1 (mod n)`` means ``r = ±1``: a trivial ciphertext whose plaintext anyone can read
and anyone could have made (``c = 1`` encrypts 0), which a relay could inject as if a
party had encrypted it. A fresh encryption lands there with probability ``2/n``; a local
``mul_const(c, 0)`` gives ``1`` legitimately, hence the separate check. Which key a
ciphertext belongs to is carried by :class:`.ciphertext.CiphertextBatch` (a key
fingerprint); a bare integer below ``n^2`` cannot be attributed to a key.

A received ``h`` is checked to be a unit in ``(1, n^2)``; that it is an n-th residue
cannot be checked without the factorisation. In the semi-honest model this is the key
holder's own concern: a wrong ``h`` only garbles ciphertexts meant for the key holder.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import secrets
from collections.abc import Iterable, Sequence
from typing import SupportsIndex

import gmpy2
from phe import paillier as phe_paillier

from privacy import _pool
from privacy.errors import CryptoError

from . import fast, raw

__all__ = [
    "DEFAULT_KEYSIZE",
    "MIN_KEYSIZE",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "generate_paillier_keypair",
]

_LOG = logging.getLogger(__name__)

DEFAULT_KEYSIZE = 3072  # 128-bit security (NIST SP 800-57 Part 1, Table 2)
MIN_KEYSIZE = 2048  # 112-bit security; anything smaller is refused outside test helpers
_PUB_MAGIC = b"FDPK"
_SEC_MAGIC = b"FDSK"
_VERSION = 1


def _fingerprint(n: int, h: int | None) -> bytes:
    """SHA-256 over the whole public key: ``n`` and the DJN base ``h`` (absent: flag 0)."""
    width = (n.bit_length() + 7) // 8
    tail = b"\x00" if h is None else b"\x01" + h.to_bytes(2 * width, "big")
    return hashlib.sha256(b"fedid.paillier.key.v2" + n.to_bytes(width, "big") + tail).digest()


def _classic_chunk(plaintexts: Sequence[int], n: int) -> list[int]:
    n_square = n * n
    return [
        raw.raw_encrypt(n=n, n_square=n_square, plaintext=m, r=_random_unit(n))
        for m in plaintexts
    ]


def _random_unit(n: int) -> int:
    while True:
        r = secrets.randbelow(n - 1) + 1
        if gmpy2.gcd(r, n) == 1:
            return r


class PaillierPublicKey:
    """Public key ``(n, h)``; encrypts, adds, scales, re-randomises and validates ciphertexts."""

    __slots__ = ("_insecure", "fingerprint", "h", "n", "n_square")

    def __init__(self, n: int, h: int | None = None, *, _allow_insecure: bool = False) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise CryptoError(f"modulus n must be an int. Got {type(n).__name__}.")
        if n.bit_length() < MIN_KEYSIZE and not _allow_insecure:
            raise CryptoError(
                f"modulus must have at least {MIN_KEYSIZE} bits. Got {n.bit_length()}."
            )
        if n < 15 or n % 2 == 0 or gmpy2.is_square(n) or gmpy2.is_prime(n):
            raise CryptoError("modulus must be an odd composite, non-square integer.")
        self.n = n
        self.n_square = n * n
        self._insecure = _allow_insecure
        if h is not None and not (1 < h < self.n_square and gmpy2.gcd(h, n) == 1):
            raise CryptoError("DJN base h must be a unit in (1, n^2).")
        self.h = h
        self.fingerprint = _fingerprint(n, h)

    # -- identity -------------------------------------------------------------
    @property
    def bits(self) -> int:
        """Bit length of ``n``."""
        return self.n.bit_length()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaillierPublicKey) and (other.n, other.h) == (self.n, self.h)

    def __hash__(self) -> int:
        return hash((self.n, self.h))

    def __repr__(self) -> str:
        return f"PaillierPublicKey(bits={self.bits}, id={self.fingerprint[:6].hex()})"

    # -- validation -------------------------------------------------------------
    def validate_ciphertext(self, c: int) -> int:
        """Return ``c`` if ``0 < c < n^2`` and ``gcd(c, n) == 1``; else raise CryptoError."""
        if isinstance(c, bool) or not isinstance(c, int):
            raise CryptoError(f"ciphertext must be an int. Got {type(c).__name__}.")
        if not 0 < c < self.n_square:
            raise CryptoError("ciphertext must satisfy 0 < c < n^2 for this key. It does not.")
        if gmpy2.gcd(c, self.n) != 1:
            raise CryptoError("ciphertext must be a unit mod n^2 (gcd(c, n) == 1). It is not.")
        return c

    def validate_ciphertexts(self, ciphertexts: Sequence[int]) -> None:
        """Validate every ciphertext; the error names the first failing index."""
        for i, c in enumerate(ciphertexts):
            try:
                self.validate_ciphertext(c)
            except CryptoError as exc:
                raise CryptoError(f"ciphertext at index {i}: {exc}") from None

    def validate_received(self, ciphertexts: Sequence[int]) -> None:
        """:meth:`validate_ciphertexts`, and refuse trivial ones (``c ≡ ±1 mod n``: randomness
        ``±1``, e.g. ``c = 1``) that an honest sender's fresh encryptions never are."""
        self.validate_ciphertexts(ciphertexts)
        for i, c in enumerate(ciphertexts):
            if c % self.n in (1, self.n - 1):
                raise CryptoError(f"ciphertext at index {i} must not be trivial "
                                  "(c = ±1 mod n: randomness ±1).")

    def _check_plaintext(self, i: int, value: SupportsIndex) -> int:
        try:
            m = operator.index(value)  # int or an integer scalar such as numpy.int64
        except TypeError:
            m = None
        if m is None or isinstance(value, bool):
            raise CryptoError(f"plaintext at index {i} must be an int. "
                              f"Got {type(value).__name__}.")
        if not 0 <= m < self.n:
            raise CryptoError(
                f"plaintext at index {i} must be in [0, n) (use encoding for negatives). "
                f"Got a value of bit length {m.bit_length()}{' (negative)' if m < 0 else ''}."
            )
        return m

    # -- operations ---------------------------------------------------------------
    def precompute(self) -> None:
        """Build the DJN fixed-base tables now, here and in every pool worker.

        Optional: encryption builds them on first use (measured 0.3-0.5 s and 33 MB at 2048
        bits, 0.5-1.1 s and 40 MB at 3072 bits, per process, on the shared 2-core machine);
        calling this first keeps that out of latency-sensitive phases.
        """
        if self.h is None:
            return
        fast.table_for(n=self.n, h=self.h)
        slots = [0] * (4 * _pool.worker_count())
        _pool.map_chunks(fast.warm_chunk, slots, args=(self.n, self.h), min_parallel=2,
                         chunks_per_worker=4)

    def encrypt_ints(self, values: Iterable[SupportsIndex]) -> list[int]:
        """Encrypt plaintexts in ``[0, n)`` (DJN fast path if ``h`` is set; all cores)."""
        values = [self._check_plaintext(i, m) for i, m in enumerate(values)]
        if self.h is None:
            return _pool.map_chunks(_classic_chunk, values, args=(self.n,), min_parallel=4)
        return _pool.map_chunks(fast.encrypt_chunk, values, args=(self.n, self.h))

    def add(self, c1: int, c2: int) -> int:
        """Ciphertext of the sum of the two plaintexts (mod n)."""
        self.validate_ciphertext(c1)
        self.validate_ciphertext(c2)
        return raw.raw_add(n_square=self.n_square, c1=c1, c2=c2)

    def add_all(self, ciphertexts: Sequence[int]) -> int:
        """Ciphertext of the sum of all plaintexts (mod n); at least one ciphertext."""
        if not ciphertexts:
            raise CryptoError("add_all needs at least one ciphertext. Got 0.")
        self.validate_ciphertexts(ciphertexts)
        total = gmpy2.mpz(1)
        for c in ciphertexts:
            total = total * c % self.n_square
        return int(total)

    def mul_const(self, c: int, k: int) -> int:
        """Ciphertext of ``k`` times the plaintext (mod n); ``k`` any int."""
        self.validate_ciphertext(c)
        if isinstance(k, bool) or not isinstance(k, int):
            raise CryptoError(f"constant must be an int. Got {type(k).__name__}.")
        return raw.raw_mul_const(n_square=self.n_square, ciphertext=c, k=k)

    def rerandomize(self, c: int) -> int:
        """A fresh-looking ciphertext of the same plaintext."""
        return self.rerandomize_many([c])[0]

    def rerandomize_many(self, ciphertexts: Sequence[int]) -> list[int]:
        """Re-randomise a batch (all cores for large batches)."""
        ciphertexts = list(ciphertexts)
        self.validate_ciphertexts(ciphertexts)
        if self.h is None:
            zeros = self.encrypt_ints([0] * len(ciphertexts))
            return [raw.raw_add(n_square=self.n_square, c1=c, c2=z)
                    for c, z in zip(ciphertexts, zeros, strict=True)]
        return _pool.map_chunks(fast.rerandomize_chunk, ciphertexts, args=(self.n, self.h))

    # -- conversions ---------------------------------------------------------------
    def to_phe(self) -> phe_paillier.PaillierPublicKey:
        """The same key as a ``phe.PaillierPublicKey`` (``h`` is not carried)."""
        return phe_paillier.PaillierPublicKey(self.n)

    @classmethod
    def from_phe(cls, key: phe_paillier.PaillierPublicKey, *, h: int | None = None
                 ) -> PaillierPublicKey:
        """Wrap a phe public key; without ``h`` encryption uses phe's classic (slow) form."""
        if not isinstance(key, phe_paillier.PaillierPublicKey):
            raise CryptoError(f"expected a phe PaillierPublicKey. Got {type(key).__name__}.")
        if key.g != key.n + 1:
            raise CryptoError("phe key must use g = n + 1. It does not.")
        return cls(int(key.n), h)

    def to_bytes(self) -> bytes:
        """Versioned big-endian bytes: magic, version, width, flags, n, [h]."""
        width = (self.bits + 7) // 8
        flags = 1 if self.h is not None else 0
        out = _PUB_MAGIC + bytes([_VERSION]) + width.to_bytes(2, "big") + bytes([flags])
        out += self.n.to_bytes(width, "big")
        if self.h is not None:
            out += self.h.to_bytes(2 * width, "big")
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        """Parse :meth:`to_bytes` output; refuses short keys and malformed input."""
        return _parse_public(data, allow_insecure=False)


def _parse_public(data: bytes, *, allow_insecure: bool) -> PaillierPublicKey:
    if not isinstance(data, bytes | bytearray) or len(data) < 8:
        raise CryptoError("public key bytes must be at least 8 bytes long.")
    if data[:4] != _PUB_MAGIC:
        raise CryptoError("public key bytes must start with the fedid public key magic.")
    if data[4] != _VERSION:
        raise CryptoError(f"public key version must be {_VERSION}. Got {data[4]}.")
    width = int.from_bytes(data[5:7], "big")
    flags = data[7]
    expected = 8 + width + (2 * width if flags & 1 else 0)
    if flags not in (0, 1) or len(data) != expected:
        raise CryptoError(f"public key bytes must be {expected} bytes long. Got {len(data)}.")
    n = int.from_bytes(data[8 : 8 + width], "big")
    h = int.from_bytes(data[8 + width :], "big") if flags & 1 else None
    return PaillierPublicKey(n, h, _allow_insecure=allow_insecure)


class PaillierPrivateKey:
    """Private key ``(p, q)`` with CRT constants; decrypts batches on all cores."""

    __slots__ = ("_crt", "p", "public_key", "q")

    def __init__(self, public_key: PaillierPublicKey, p: int, q: int) -> None:
        if p * q != public_key.n or p == q or min(p, q) < 2:
            raise CryptoError("p and q must be distinct factors with p * q == n. They are not.")
        self.public_key = public_key
        self.p, self.q = (p, q) if p < q else (q, p)
        self._crt = raw.crt_constants(p=self.p, q=self.q)

    def __repr__(self) -> str:
        return f"PaillierPrivateKey(bits={self.public_key.bits}, " \
               f"id={self.public_key.fingerprint[:6].hex()})"

    def decrypt_ints(self, ciphertexts: Sequence[int]) -> list[int]:
        """Validate and decrypt; plaintexts in ``[0, n)``."""
        ciphertexts = list(ciphertexts)
        self.public_key.validate_ciphertexts(ciphertexts)
        hp, hq, p_inverse = self._crt
        return _pool.map_chunks(fast.decrypt_chunk, ciphertexts,
                                args=(self.p, self.q, hp, hq, p_inverse), min_parallel=8)

    def to_phe(self) -> phe_paillier.PaillierPrivateKey:
        """The same key as a ``phe.PaillierPrivateKey`` (with its phe public key)."""
        return phe_paillier.PaillierPrivateKey(self.public_key.to_phe(), self.p, self.q)

    @classmethod
    def from_phe(cls, key: phe_paillier.PaillierPrivateKey) -> PaillierPrivateKey:
        """Wrap a phe private key; a fresh DJN base ``h`` is made for its public key."""
        if not isinstance(key, phe_paillier.PaillierPrivateKey):
            raise CryptoError(f"expected a phe PaillierPrivateKey. Got {type(key).__name__}.")
        n = int(key.public_key.n)
        public = PaillierPublicKey(n, _make_h(n))
        return cls(public, int(key.p), int(key.q))

    def to_bytes(self) -> bytes:
        """Versioned bytes: magic, version, public key length, public key, p. Keep secret."""
        pub = self.public_key.to_bytes()
        width = (self.p.bit_length() + 7) // 8
        return (_SEC_MAGIC + bytes([_VERSION]) + len(pub).to_bytes(4, "big") + pub
                + width.to_bytes(2, "big") + self.p.to_bytes(width, "big"))

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPrivateKey:
        """Parse :meth:`to_bytes` output (refuses keys below :data:`MIN_KEYSIZE`)."""
        if not isinstance(data, bytes | bytearray) or len(data) < 9 or data[:4] != _SEC_MAGIC:
            raise CryptoError("private key bytes must start with the fedid private key magic.")
        if data[4] != _VERSION:
            raise CryptoError(f"private key version must be {_VERSION}. Got {data[4]}.")
        pub_len = int.from_bytes(data[5:9], "big")
        public = _parse_public(bytes(data[9 : 9 + pub_len]), allow_insecure=False)
        rest = data[9 + pub_len :]
        width = int.from_bytes(rest[:2], "big")
        if len(rest) != 2 + width:
            raise CryptoError(f"private key bytes must be {11 + pub_len + width} bytes long. "
                              f"Got {len(data)}.")
        p = int.from_bytes(rest[2:], "big")
        if p < 2 or public.n % p:
            raise CryptoError("private key factor must divide n. It does not.")
        return cls(public, p, public.n // p)


def _make_h(n: int) -> int:
    """``h = y^n mod n^2`` for a secret uniform ``y`` in ``Z_n^*`` (DJN base)."""
    return int(gmpy2.powmod(_random_unit(n), n, n * n))


def _random_prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        p = int(gmpy2.next_prime(candidate))
        if p.bit_length() == bits:
            return p


def _generate(n_length: int, *, allow_insecure: bool
              ) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    while True:
        p = _random_prime(n_length // 2)
        q = _random_prime(n_length - n_length // 2)
        n = p * q
        if p != q and n.bit_length() == n_length and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    public = PaillierPublicKey(n, _make_h(n), _allow_insecure=allow_insecure)
    _LOG.debug("generated a %d-bit Paillier key pair", n_length)
    return public, PaillierPrivateKey(public, p, q)


def generate_paillier_keypair(
    *, n_length: int = DEFAULT_KEYSIZE
) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """A fresh key pair from :mod:`secrets`; ``n_length`` >= 2048 (default 3072)."""
    if isinstance(n_length, bool) or not isinstance(n_length, int) or n_length < MIN_KEYSIZE:
        raise CryptoError(f"n_length must be an int >= {MIN_KEYSIZE}. Got {n_length!r}.")
    return _generate(n_length, allow_insecure=False)


def _insecure_test_keypair(*, bits: int = 256) -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    """INSECURE: a small key pair for fast tests only (not exported; import it from this
    module in tests).

    Warning: keys below 2048 bits are factorable; never use this outside tests. Such keys
    are also refused by :meth:`PaillierPublicKey.from_bytes`.
    """
    if bits < 16:
        raise CryptoError(f"test key bits must be >= 16. Got {bits}.")
    return _generate(bits, allow_insecure=True)
