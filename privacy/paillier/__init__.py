"""phe-compatible Paillier with fast DJN encryption, CRT decryption and versioned bytes.

Tiers as in python-paillier: :mod:`.raw` (integer maths), :mod:`.encoding` (signed and
fixed-point plaintexts), :mod:`.keys` / :mod:`.ciphertext` (the API). :mod:`.fast` holds
the fixed-base tables and the batch workers, and states the security assumption of the
short DJN exponent.
"""

from __future__ import annotations

from .ciphertext import CiphertextBatch
from .encoding import (
    decode_fixed,
    decode_signed,
    encode_fixed,
    encode_signed,
    from_phe_encrypted,
    to_phe_encrypted,
)
from .keys import (
    DEFAULT_KEYSIZE,
    MIN_KEYSIZE,
    PaillierPrivateKey,
    PaillierPublicKey,
    generate_paillier_keypair,
)

__all__ = [
    "DEFAULT_KEYSIZE",
    "MIN_KEYSIZE",
    "CiphertextBatch",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "decode_fixed",
    "decode_signed",
    "encode_fixed",
    "encode_signed",
    "from_phe_encrypted",
    "generate_paillier_keypair",
    "to_phe_encrypted",
]
