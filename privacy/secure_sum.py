"""Secure sum by pairwise masking (Bonawitz et al., CCS 2017, without dropout recovery).

Why not Flower's SecAgg+: it runs only through Flower's legacy ``NumPyClient`` path
(``secaggplus_mod`` plus the legacy strategy workflow), and fedid's apps use the Message
API (``@app.train()`` replies built by hand, several query types per run). So the masking
is built here on ``cryptography``'s X25519, HKDF-SHA256 and ChaCha20, and the Flower
glue lives in :mod:`clients.masked_update` / :mod:`server.secure_round`.

Protocol (one instance per session, round and attempt; parties are named by strings):

1. keys     every party makes a fresh X25519 key pair (:class:`MaskingParty`) and sends
            its 32-byte public key to the coordinator, which broadcasts the list of all
            keys (:class:`PublicKeyList`) to every party.
2. mask     every party checks every key (32 bytes; a low-order key gives an all-zero
            shared secret, refused as :class:`~privacy.errors.CryptoError`), derives one
            seed per peer ``HKDF-SHA256(X25519(sk_i, pk_j), info = tag | session | round |
            attempt | min(i, j) | max(i, j))`` (each field 8-byte length-prefixed),
            encodes its vector in fixed point (:class:`FixedPoint`) as integers mod 2^64,
            adds ``ChaCha20(seed_ij)`` for every peer ``j > i`` and subtracts it for
            ``j < i``, and sends the masked vector.
3. sum      the coordinator adds the masked vectors mod 2^64 (:func:`unmask_sum`); the
            masks cancel pairwise, leaving the sum of the encodings, which it decodes.

What each party learns. The coordinator: the public keys and the sum (each masked
vector alone is uniform mod 2^64 to anyone without one of the pair seeds). A party: the
others' public keys only. Semi-honest model: a coordinator that lies about the key list
or colludes with all but one party learns that party's vector, as in Bonawitz et al.

No dropout recovery. There is no secret sharing of the seeds, so a party that gets the
key list and then does not send its masked vector leaves masks that cannot be removed:
:func:`unmask_sum` FAILS CLOSED (:class:`MissingPartyError`) rather than output garbage.
The caller must rerun the instance from step 1 with the remaining parties (a new
attempt, hence fresh keys and seeds).

Use for weighted FedAvg (:mod:`clients.masked_update`): a node masks ``[w * delta..., w]``
with ``w`` its example count, so the coordinator learns ``sum(w * delta)`` and the total
weight only, not any node's example count (unlike plain FedAvg, where counts travel in
clear). Masking adds no noise and changes no epsilon: each node's DP guarantee comes from
its own DP-SGD, secure aggregation only hides the individual (already DP) updates.

Encoding: a value ``x`` with ``|x| <= bound`` becomes ``round(x * 2^frac_bits) mod 2^64``
(two's complement); anything outside the bound, or not finite, is refused with
:class:`~privacy.errors.CryptoError` (never clipped silently). The decoded sum is exact
up to ``n * 2^-(frac_bits+1)`` per coordinate for ``n`` parties, and cannot wrap while
``n * bound * 2^frac_bits < 2^63`` (checked).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from privacy.errors import CryptoError

__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_FRAC_BITS",
    "FixedPoint",
    "MaskingParty",
    "MissingPartyError",
    "PublicKeyList",
    "check_public_key",
    "derive_seed",
    "prg_words",
    "unmask_sum",
]

DEFAULT_FRAC_BITS = 24  # resolution 2^-24 ~ 6e-8 per value
DEFAULT_BOUND = float(2**20)  # |value| <= ~1e6: weighted deltas (n_examples * delta)
_MOD_BITS = 64
_KEY_BYTES = 32
_TAG = b"fedid/secure-sum/v1"


class MissingPartyError(CryptoError):
    """A party of the key list sent no masked vector: the sum cannot be unmasked."""


def _frame(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">Q", len(p)) + p for p in parts)


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """Fixed-point encoding into integers mod 2^64: ``|x| <= bound``, ``2^frac_bits`` scale."""

    frac_bits: int = DEFAULT_FRAC_BITS
    bound: float = DEFAULT_BOUND

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 52:
            raise CryptoError(f"frac_bits must be in [0, 52]. Got {self.frac_bits}.")
        if not (np.isfinite(self.bound) and self.bound > 0):
            raise CryptoError(f"bound must be finite and > 0. Got {self.bound}.")
        if self.bound * 2.0**self.frac_bits >= 2.0**62:
            raise CryptoError("bound * 2^frac_bits must be < 2^62 to leave room for a sum.")

    def max_parties(self) -> int:
        """How many encoded values may be summed before the sum could wrap."""
        return int(2.0**63 // (self.bound * 2.0**self.frac_bits + 1))

    def encode(self, values: NDArray[np.floating]) -> NDArray[np.uint64]:
        """Encode; CryptoError if a value is not finite or outside ``[-bound, bound]``."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(x)):
            raise CryptoError(f"secure-sum inputs must be finite; {int(np.sum(~np.isfinite(x)))}"
                              " values are not.")
        worst = float(np.max(np.abs(x))) if x.size else 0.0
        if worst > self.bound:
            raise CryptoError(
                f"secure-sum inputs must lie in [-{self.bound:g}, {self.bound:g}]. "
                f"Got a value of magnitude {worst:.4g}."
            )
        scaled = np.rint(x * 2.0**self.frac_bits).astype(np.int64)
        return scaled.view(np.uint64)

    def decode_sum(self, total: NDArray[np.uint64], *, parties: int) -> NDArray[np.float64]:
        """Decode a sum of ``parties`` encodings (two's complement mod 2^64)."""
        if parties > self.max_parties():
            raise CryptoError(
                f"at most {self.max_parties()} parties fit this encoding. Got {parties}."
            )
        signed = np.asarray(total, dtype=np.uint64).view(np.int64)
        return signed.astype(np.float64) / 2.0**self.frac_bits


def check_public_key(data: bytes) -> X25519PublicKey:
    """Parse a peer's X25519 public key (32 bytes); CryptoError otherwise."""
    if not isinstance(data, bytes) or len(data) != _KEY_BYTES:
        raise CryptoError(f"an X25519 public key must be {_KEY_BYTES} bytes. "
                          f"Got {len(data) if isinstance(data, bytes) else type(data).__name__}.")
    return X25519PublicKey.from_public_bytes(data)


@dataclass(frozen=True, slots=True)
class PublicKeyList:
    """The coordinator's broadcast: every party's public key, sorted by party name."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        names = [n for n, _ in self.keys]
        if len(set(names)) != len(names):
            raise CryptoError("a party appears twice in the public key list.")
        if names != sorted(names):
            raise CryptoError("the public key list must be sorted by party name.")
        if len(names) < 2:
            raise CryptoError(f"a secure sum needs at least 2 parties. Got {len(names)}.")
        for _, key in self.keys:
            check_public_key(key)

    @classmethod
    def of(cls, keys: Mapping[str, bytes]) -> PublicKeyList:
        return cls(tuple(sorted(keys.items())))

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.keys)

    def to_bytes(self) -> bytes:
        return _frame(*(p for name, key in self.keys for p in (name.encode(), key)))

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKeyList:
        parts: list[bytes] = []
        pos = 0
        while pos < len(data):
            if pos + 8 > len(data):
                raise CryptoError("public key list is truncated.")
            (n,) = struct.unpack(">Q", data[pos:pos + 8])
            if pos + 8 + n > len(data):
                raise CryptoError("public key list is truncated.")
            parts.append(data[pos + 8:pos + 8 + n])
            pos += 8 + n
        if len(parts) % 2:
            raise CryptoError("public key list has an odd number of fields.")
        try:
            names = [p.decode() for p in parts[0::2]]
        except UnicodeDecodeError as exc:
            raise CryptoError("a party name in the public key list is not UTF-8.") from exc
        return cls(tuple(zip(names, parts[1::2], strict=True)))


def derive_seed(
    *, private_key: X25519PrivateKey, peer_key: bytes, session: str, round: int,
    attempt: int, party: str, peer: str,
) -> bytes:
    """The 32-byte pair seed, equal on both sides; CryptoError on a bad or low-order key."""
    if party == peer:
        raise CryptoError("a party cannot derive a seed with itself.")
    public = check_public_key(peer_key)
    try:
        shared = private_key.exchange(public)
    except ValueError as exc:  # all-zero shared secret: a low-order point
        raise CryptoError("peer public key is of low order (all-zero shared secret).") from exc
    low, high = sorted((party, peer))
    info = _frame(_TAG, session.encode(), str(round).encode(), str(attempt).encode(),
                  low.encode(), high.encode())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def prg_words(seed: bytes, n: int) -> NDArray[np.uint64]:
    """``n`` pseudorandom 64-bit words: ChaCha20 keystream under ``seed`` (nonce 0)."""
    if len(seed) != 32:
        raise CryptoError(f"a PRG seed must be 32 bytes. Got {len(seed)}.")
    enc = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(b"\x00" * (8 * n)), dtype="<u8").astype(np.uint64)


@dataclass(slots=True)
class MaskingParty:
    """One party of one secure-sum instance (session, round, attempt)."""

    name: str
    session: str
    round: int
    attempt: int = 0
    encoding: FixedPoint = field(default_factory=FixedPoint)
    _key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate, repr=False)

    @classmethod
    def from_private_bytes(
        cls, data: bytes, *, name: str, session: str, round: int, attempt: int = 0,
        encoding: FixedPoint | None = None,
    ) -> MaskingParty:
        """Rebuild a party from its own stored private key (the node's state, never sent)."""
        if len(data) != _KEY_BYTES:
            raise CryptoError(f"an X25519 private key must be {_KEY_BYTES} bytes.")
        return cls(name, session, round, attempt, encoding or FixedPoint(),
                   X25519PrivateKey.from_private_bytes(data))

    def private_bytes(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(serialization.Encoding.Raw,
                                       serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())

    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)

    def mask(self, values: NDArray[np.floating], keys: PublicKeyList) -> NDArray[np.uint64]:
        """Encode ``values`` and add the pairwise masks for every other party in ``keys``."""
        own = dict(keys.keys).get(self.name)
        if own is None:
            raise CryptoError("this party is not in the public key list.")
        if own != self.public_key():
            raise CryptoError("the key list holds a different public key for this party.")
        out = self.encoding.encode(values)
        for peer, key in keys.keys:
            if peer == self.name:
                continue
            seed = derive_seed(private_key=self._key, peer_key=key, session=self.session,
                               round=self.round, attempt=self.attempt, party=self.name,
                               peer=peer)
            words = prg_words(seed, out.size)
            out = out + words if peer > self.name else out - words
        return out


def unmask_sum(
    masked: Mapping[str, NDArray[np.uint64]], *, parties: Sequence[str],
    encoding: FixedPoint | None = None,
) -> NDArray[np.float64]:
    """Sum the masked vectors of exactly ``parties`` and decode; fails closed otherwise."""
    enc = encoding or FixedPoint()
    missing = sorted(set(parties) - set(masked))
    if missing:
        raise MissingPartyError(
            f"{len(missing)} of {len(parties)} parties sent no masked vector; their masks "
            "cannot be removed (no dropout recovery): rerun from the key exchange without them."
        )
    extra = sorted(set(masked) - set(parties))
    if extra:
        raise CryptoError(f"{len(extra)} masked vectors come from parties outside the key list.")
    sizes = {np.asarray(v).size for v in masked.values()}
    if len(sizes) != 1:
        raise CryptoError(f"masked vectors must have one length. Got lengths {sorted(sizes)}.")
    total = np.zeros(sizes.pop(), dtype=np.uint64)
    for name in parties:
        vec = np.asarray(masked[name])
        if vec.dtype != np.uint64:
            raise CryptoError(f"masked vectors must be uint64. Got {vec.dtype}.")
        total = total + vec.ravel()
    return enc.decode_sum(total, parties=len(parties))
