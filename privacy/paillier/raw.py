"""Paillier integer maths (tier 1 of 3): pure functions, keyword-only, randomness injected.

The scheme is Paillier with ``g = n + 1`` (as in python-paillier ``phe`` 1.5), so
``(n + 1)^m = 1 + m n (mod n^2)`` and a ciphertext of ``m`` is ``(1 + m n) * s (mod n^2)``
for an ``n``-th residue ``s``:

* classic form (phe): ``s = r^n`` with ``r`` uniform in ``Z_n^*``;
* Damgård-Jurik-Nielsen form: ``s = h^a`` with ``h = y^n mod n^2`` a fixed n-th residue
  published with the key and ``a`` a short random exponent (see :mod:`.fast`).

Both forms decrypt with the same private key, so the DJN ciphertexts are ordinary phe
ciphertexts. Nothing here checks ranges or keys; callers in :mod:`.keys` do.
"""

from __future__ import annotations

import gmpy2

__all__ = [
    "crt_constants",
    "raw_add",
    "raw_decrypt_crt",
    "raw_encrypt",
    "raw_encrypt_djn",
    "raw_mul_const",
    "raw_nude",
]


def raw_nude(*, n: int, n_square: int, plaintext: int) -> int:
    """``(n + 1)^m mod n^2 = 1 + (m mod n) n`` for ``g = n + 1``."""
    return (1 + (plaintext % n) * n) % n_square


def raw_encrypt(*, n: int, n_square: int, plaintext: int, r: int) -> int:
    """Classic Paillier (phe's form): ``(1 + m n) * r^n mod n^2``; ``r`` in ``Z_n^*``."""
    obfuscator = gmpy2.powmod(r, n, n_square)
    return int(gmpy2.mul(raw_nude(n=n, n_square=n_square, plaintext=plaintext), obfuscator)
               % n_square)


def raw_encrypt_djn(*, n: int, n_square: int, h: int, plaintext: int, exponent: int) -> int:
    """DJN form: ``(1 + m n) * h^a mod n^2``; ``h`` an n-th residue, ``a = exponent``.

    Reference (slow, one full modular exponentiation); :class:`.fast.FixedBaseTable`
    computes the same value with a precomputed table.
    """
    obfuscator = gmpy2.powmod(h, exponent, n_square)
    return int(gmpy2.mul(raw_nude(n=n, n_square=n_square, plaintext=plaintext), obfuscator)
               % n_square)


def raw_add(*, n_square: int, c1: int, c2: int) -> int:
    """Homomorphic addition: ``Dec(c1 c2) = Dec(c1) + Dec(c2) mod n``."""
    return int(gmpy2.mul(c1, c2) % n_square)


def raw_mul_const(*, n_square: int, ciphertext: int, k: int) -> int:
    """Homomorphic multiplication by a plaintext: ``Dec(c^k) = k Dec(c) mod n``.

    A negative ``k`` uses the inverse of ``c`` (``c`` must be a unit mod ``n^2``).
    """
    return int(gmpy2.powmod(ciphertext, k, n_square))


def _h_function(*, x: int, x_square: int, n: int) -> int:
    """phe's ``h_p = L_p((n + 1)^(p - 1) mod p^2)^-1 mod p``."""
    lx = (int(gmpy2.powmod(n + 1, x - 1, x_square)) - 1) // x
    return int(gmpy2.invert(lx, x))


def crt_constants(*, p: int, q: int) -> tuple[int, int, int]:
    """Precomputation for :func:`raw_decrypt_crt`: ``(h_p, h_q, p^-1 mod q)`` (needs p < q)."""
    n = p * q
    return (
        _h_function(x=p, x_square=p * p, n=n),
        _h_function(x=q, x_square=q * q, n=n),
        int(gmpy2.invert(p, q)),
    )


def raw_decrypt_crt(
    *, ciphertext: int, p: int, q: int, hp: int, hq: int, p_inverse: int
) -> int:
    """Decrypt with the CRT over ``p^2`` and ``q^2`` (as phe does); returns ``m`` in ``[0, n)``.

    ``m_p = L_p(c^(p-1) mod p^2) h_p mod p`` (same for ``q``), then Garner's recombination.
    """
    p_square = p * p
    q_square = q * q
    up = gmpy2.powmod(ciphertext % p_square, p - 1, p_square)
    uq = gmpy2.powmod(ciphertext % q_square, q - 1, q_square)
    mp = ((up - 1) // p) * hp % p
    mq = ((uq - 1) // q) * hq % q
    u = (mq - mp) * p_inverse % q
    return int(mp + u * p)
