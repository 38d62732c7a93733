"""Plaintext encodings (tier 2), compatible with phe's ``EncodedNumber`` conventions.

* Signed integers: ``x`` in ``[-max_int, max_int]`` maps to ``x mod n`` with
  ``max_int = n // 3`` (phe's choice, which leaves a gap that detects overflow).
* Fixed point: ``x ~ mantissa * 16^exponent`` (phe's ``BASE = 16``); a ciphertext of an
  encoding with exponent ``e`` is phe's ``EncryptedNumber(public_key, c, e)``.
"""

from __future__ import annotations

import math

from phe import paillier as phe_paillier

from privacy.errors import CryptoError

from .keys import PaillierPublicKey

__all__ = [
    "BASE",
    "decode_fixed",
    "decode_signed",
    "encode_fixed",
    "encode_signed",
    "from_phe_encrypted",
    "to_phe_encrypted",
]

BASE = 16  # phe.EncodedNumber.BASE


def encode_signed(value: int, *, n: int) -> int:
    """``value mod n`` for ``|value| <= n // 3``; raises CryptoError outside that range."""
    max_int = n // 3
    if not -max_int <= value <= max_int:
        raise CryptoError(f"signed plaintext must be within +-(n // 3). "
                          f"Got a value of bit length {value.bit_length()}.")
    return value % n


def decode_signed(plaintext: int, *, n: int) -> int:
    """Inverse of :func:`encode_signed`; raises CryptoError in the overflow gap."""
    max_int = n // 3
    if 0 <= plaintext <= max_int:
        return plaintext
    if n - max_int <= plaintext < n:
        return plaintext - n
    raise CryptoError("decoded plaintext fell in the overflow gap (|value| > n // 3).")


def encode_fixed(value: float, *, n: int, exponent: int = -8) -> int:
    """phe-style fixed point: ``round(value * 16^-exponent)`` as a signed encoding."""
    if not math.isfinite(value):
        raise CryptoError(f"fixed-point value must be finite. Got {value!r}.")
    return encode_signed(round(value * BASE ** (-exponent)), n=n)


def decode_fixed(plaintext: int, *, n: int, exponent: int = -8) -> float:
    """Inverse of :func:`encode_fixed`."""
    return decode_signed(plaintext, n=n) * float(BASE) ** exponent


def to_phe_encrypted(public_key: PaillierPublicKey, ciphertext: int, *, exponent: int = 0
                     ) -> phe_paillier.EncryptedNumber:
    """Wrap a ciphertext as phe's ``EncryptedNumber`` (validated first)."""
    public_key.validate_ciphertext(ciphertext)
    return phe_paillier.EncryptedNumber(public_key.to_phe(), ciphertext, exponent)


def from_phe_encrypted(public_key: PaillierPublicKey, number: phe_paillier.EncryptedNumber
                       ) -> tuple[int, int]:
    """``(ciphertext, exponent)`` of a phe ``EncryptedNumber`` made under ``public_key``."""
    if int(number.public_key.n) != public_key.n:
        raise CryptoError("phe EncryptedNumber was made under a different key.")
    c = int(number.ciphertext(be_secure=False))
    return public_key.validate_ciphertext(c), int(number.exponent)
