"""Fast Paillier encryption (Damgård-Jurik-Nielsen form) and batch workers.

Encryption is ``c = (1 + m n) * h^a mod n^2`` where ``h = y^n mod n^2`` is a fixed n-th
residue made by the key holder from a secret random ``y`` in ``Z_n^*`` and published with
the key, and ``a`` is a random exponent of :func:`exponent_bits` bits. With ``h`` fixed,
``h^a`` comes from a windowed fixed-base table (:class:`FixedBaseTable`): no squarings,
``ceil(bits / window)`` multiplications mod ``n^2`` per value, against the full
``|n|``-bit exponentiation ``r^n`` of classic Paillier (phe).

Security assumption. The exponent is ``ceil(|n| / 2)`` bits: 1024 bits at 2048-bit keys,
1536 bits at 3072-bit keys, the parameter of Damgård, Jurik and Nielsen, "A generalization
of Paillier's public-key system with applications to electronic voting" (IJIS 9(6), 2010,
Sec. 4: ``h_s`` a generator of the n-th residues, ``r`` of ``ceil(k/2)`` bits), as also used
by SecretFlow HEU's DJ implementation. Semantic security then rests on the decisional
composite residuosity assumption together with the assumption that ``h^a`` for such a short
``a`` is indistinguishable from a uniform element of the subgroup ``<h>`` (the DJN
"short exponent" assumption). The best known generic attack on the exponent (Pollard's
lambda / baby-step giant-step) costs ``2^(bits/2)`` >= ``2^512`` group operations, far
beyond the 112/128-bit level of the modulus itself.

Worker functions here are top level so a process pool can run them; each worker caches
one table per ``(n, h)``. Private key material sent to workers stays in the key holder's
own child processes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2

from . import raw

__all__ = [
    "DEFAULT_WINDOW",
    "FixedBaseTable",
    "decrypt_chunk",
    "encrypt_chunk",
    "exponent_bits",
    "rerandomize_chunk",
    "table_for",
    "warm_chunk",
    "window_for",
]

DEFAULT_WINDOW = 8  # 2^8 entries a row; 1 mult per 8 exponent bits; ~40 MB at 3072 bits


def window_for(n_bits: int) -> int:
    """Table window: 9 bits up to 2048-bit keys (~30 MB, ~9 % faster than 8), else 8."""
    return 9 if n_bits <= 2048 else DEFAULT_WINDOW


def exponent_bits(n_bits: int) -> int:
    """Length of the DJN random exponent for an ``n_bits`` modulus: ``ceil(n_bits / 2)``."""
    return (n_bits + 1) // 2


class FixedBaseTable:
    """Windowed fixed-base exponentiation ``base^e mod modulus`` for ``0 <= e < 2^bits``.

    Row ``i`` holds ``base^(j 2^(w i))`` for ``j < 2^w``, so ``base^e`` is the product of one
    entry per ``w``-bit digit of ``e``.
    """

    __slots__ = ("_mask", "_modulus", "_rows", "_window", "bits")

    def __init__(self, *, base: int, modulus: int, bits: int, window: int = DEFAULT_WINDOW):
        self._modulus = gmpy2.mpz(modulus)
        self._window = window
        self._mask = (1 << window) - 1
        self.bits = bits
        rows: list[list[gmpy2.mpz]] = []
        g = gmpy2.mpz(base) % self._modulus
        for _ in range((bits + window - 1) // window):
            row = [gmpy2.mpz(1), g]
            for _ in range(2, 1 << window):
                row.append(row[-1] * g % self._modulus)
            rows.append(row)
            g = row[-1] * g % self._modulus
        self._rows = rows

    def pow(self, exponent: int) -> gmpy2.mpz:
        """``base^exponent mod modulus``; ``exponent`` must be in ``[0, 2^bits)``."""
        if exponent < 0 or exponent.bit_length() > self.bits:
            raise ValueError(f"exponent must be in [0, 2^{self.bits}). Got bit length "
                             f"{exponent.bit_length()}.")
        result = gmpy2.mpz(1)
        modulus, mask, window = self._modulus, self._mask, self._window
        for row in self._rows:
            digit = exponent & mask
            if digit:
                result = result * row[digit] % modulus
            exponent >>= window
            if not exponent:
                break
        return result


_MAX_TABLES = 2  # live keys per process (one run key, plus one being replaced)
_TABLES: dict[tuple[int, int], FixedBaseTable] = {}


def table_for(*, n: int, h: int) -> FixedBaseTable:
    """The cached table for ``h`` mod ``n^2`` in this process (built on first use)."""
    key = (n, h)
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) >= _MAX_TABLES:  # tables are ~40 MB at 3072 bits; drop the oldest
            _TABLES.pop(next(iter(_TABLES)))
        n_bits = n.bit_length()
        table = FixedBaseTable(base=h, modulus=n * n, bits=exponent_bits(n_bits),
                               window=window_for(n_bits))
        _TABLES[key] = table
    return table


def _djn(n: int, n_square: gmpy2.mpz, plaintext: int, s: gmpy2.mpz) -> int:
    # (1 + m n) s = s + n ((m s) mod n)  (mod n^2): one |n|-bit product instead of |n^2|.
    return int((s + n * (plaintext * s % n)) % n_square)


def encrypt_chunk(
    plaintexts: Sequence[int], n: int, h: int, exponents: Sequence[int] | None = None
) -> list[int]:
    """DJN-encrypt plaintexts in ``[0, n)``; fresh exponents from ``secrets`` unless given."""
    table = table_for(n=n, h=h)
    n_square = gmpy2.mpz(n) * n
    if exponents is None:
        exponents = [secrets.randbits(table.bits) for _ in plaintexts]
    return [_djn(n, n_square, m, table.pow(a)) for m, a in zip(plaintexts, exponents, strict=True)]


def warm_chunk(items: Sequence[int], n: int, h: int) -> list[int]:
    """Build this process's table for ``(n, h)``; one 0 per item."""
    table_for(n=n, h=h)
    return [0 for _ in items]


def rerandomize_chunk(ciphertexts: Sequence[int], n: int, h: int) -> list[int]:
    """Multiply each ciphertext by a fresh ``h^a`` (an encryption of zero)."""
    table = table_for(n=n, h=h)
    n_square = gmpy2.mpz(n) * n
    return [int(c * table.pow(secrets.randbits(table.bits)) % n_square) for c in ciphertexts]


def decrypt_chunk(
    ciphertexts: Sequence[int], p: int, q: int, hp: int, hq: int, p_inverse: int
) -> list[int]:
    """CRT-decrypt ciphertexts (already validated by the caller)."""
    return [
        raw.raw_decrypt_crt(ciphertext=c, p=p, q=q, hp=hp, hq=hq, p_inverse=p_inverse)
        for c in ciphertexts
    ]
