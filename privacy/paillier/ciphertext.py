"""Ciphertext batches bound to a key: fingerprint plus fixed-width big-endian integers.

Layout (version 1): ``b"FDCT"``, version byte, 32-byte key fingerprint (SHA-256 of the
key's ``n``), ``u16`` width in bytes (that of ``n^2``), ``u32`` count, then ``count``
ciphertexts of ``width`` bytes each. Parsing checks the fingerprint against the receiving
key (a batch made under another key is rejected) and validates every ciphertext.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privacy.errors import CryptoError

from .keys import PaillierPublicKey

__all__ = ["CiphertextBatch"]

_MAGIC = b"FDCT"
_VERSION = 1
_HEADER = 4 + 1 + 32 + 2 + 4


@dataclass(frozen=True, slots=True, kw_only=True)
class CiphertextBatch:
    """Ciphertexts under the key with ``fingerprint``; build with :meth:`create`."""

    fingerprint: bytes
    width: int
    ciphertexts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.fingerprint) != 32:
            raise CryptoError(f"key fingerprint must be 32 bytes. Got {len(self.fingerprint)}.")
        if not 0 < self.width < 1 << 16:
            raise CryptoError(f"ciphertext width must be in [1, 65535]. Got {self.width}.")

    @classmethod
    def create(cls, public_key: PaillierPublicKey, ciphertexts: Sequence[int]
               ) -> CiphertextBatch:
        """Validate ``ciphertexts`` under ``public_key`` and bind them to it."""
        cts = tuple(ciphertexts)
        public_key.validate_ciphertexts(cts)
        width = (public_key.n_square.bit_length() + 7) // 8
        return cls(fingerprint=public_key.fingerprint, width=width, ciphertexts=cts)

    def check_key(self, public_key: PaillierPublicKey) -> None:
        """Raise CryptoError unless this batch was made under ``public_key``."""
        if self.fingerprint != public_key.fingerprint:
            raise CryptoError("ciphertext batch was made under a different key "
                              "(fingerprint mismatch).")

    def to_bytes(self) -> bytes:
        """Versioned fixed-width big-endian encoding."""
        head = (_MAGIC + bytes([_VERSION]) + self.fingerprint + self.width.to_bytes(2, "big")
                + len(self.ciphertexts).to_bytes(4, "big"))
        return head + b"".join(c.to_bytes(self.width, "big") for c in self.ciphertexts)

    @classmethod
    def from_bytes(cls, data: bytes, *, public_key: PaillierPublicKey) -> CiphertextBatch:
        """Parse, check the key fingerprint, and validate every ciphertext."""
        if not isinstance(data, bytes | bytearray) or len(data) < _HEADER:
            raise CryptoError(f"ciphertext batch must be at least {_HEADER} bytes.")
        if data[:4] != _MAGIC:
            raise CryptoError("ciphertext batch must start with the fedid ciphertext magic.")
        if data[4] != _VERSION:
            raise CryptoError(f"ciphertext batch version must be {_VERSION}. Got {data[4]}.")
        fingerprint = bytes(data[5:37])
        width = int.from_bytes(data[37:39], "big")
        count = int.from_bytes(data[39:43], "big")
        if len(data) != _HEADER + width * count:
            raise CryptoError(f"ciphertext batch must be {_HEADER + width * count} bytes for "
                              f"{count} ciphertexts. Got {len(data)}.")
        batch = cls(fingerprint=fingerprint, width=width, ciphertexts=tuple(
            int.from_bytes(data[i : i + width], "big")
            for i in range(_HEADER, len(data), width)))
        batch.check_key(public_key)
        expected_width = (public_key.n_square.bit_length() + 7) // 8
        if width != expected_width:
            raise CryptoError(f"ciphertext width must be {expected_width} bytes for this key. "
                              f"Got {width}.")
        public_key.validate_ciphertexts(batch.ciphertexts)
        return batch
