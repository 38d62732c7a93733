"""Paillier: known answers, round trips, homomorphism, validation, bytes, phe interop."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier as phe_paillier

from privacy.errors import CryptoError
from privacy.paillier import (
    DEFAULT_KEYSIZE,
    CiphertextBatch,
    PaillierPrivateKey,
    PaillierPublicKey,
    decode_fixed,
    decode_signed,
    encode_fixed,
    encode_signed,
    fast,
    from_phe_encrypted,
    generate_paillier_keypair,
    raw,
    to_phe_encrypted,
)
from privacy.paillier.keys import _insecure_test_keypair

# Toy key for known answers: p = 11, q = 13, n = 143, n^2 = 20449, y = 2.
P, Q, N = 11, 13, 143
N2 = N * N
H = 13670  # 2^143 mod 20449


@pytest.fixture(scope="module")
def keys() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    return generate_paillier_keypair(n_length=2048)


@pytest.fixture(scope="module")
def other_keys() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    return generate_paillier_keypair(n_length=2048)


def toy_keys() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    public = PaillierPublicKey(N, H, _allow_insecure=True)
    return public, PaillierPrivateKey(public, P, Q)


# -- known answers -----------------------------------------------------------------------
def test_known_answer_djn_toy_key() -> None:
    assert pow(2, N, N2) == H
    # (1 + 7 * 143) * 13670^5 mod 20449, worked by the formula.
    c = raw.raw_encrypt_djn(n=N, n_square=N2, h=H, plaintext=7, exponent=5)
    assert c == 11945
    assert c == (1 + 7 * N) * pow(H, 5, N2) % N2
    assert fast.encrypt_chunk([7], N, H, [5]) == [11945]
    _, private = toy_keys()
    assert private.decrypt_ints([11945]) == [7]
    phe_private = phe_paillier.PaillierPrivateKey(phe_paillier.PaillierPublicKey(N), P, Q)
    assert phe_private.raw_decrypt(11945) == 7


def test_known_answer_classic_matches_phe() -> None:
    c = raw.raw_encrypt(n=N, n_square=N2, plaintext=7, r=3)
    assert c == 11566 == (1 + 7 * N) * pow(3, N, N2) % N2
    assert phe_paillier.PaillierPublicKey(N).raw_encrypt(7, r_value=3) == 11566


def test_crt_decrypt_every_toy_plaintext() -> None:
    _public, private = toy_keys()
    cts = [raw.raw_encrypt_djn(n=N, n_square=N2, h=H, plaintext=m, exponent=m + 1)
           for m in range(N)]
    assert private.decrypt_ints(cts) == list(range(N))


def test_trivial_ciphertexts_are_refused() -> None:
    public, _private = toy_keys()
    good = raw.raw_encrypt_djn(n=N, n_square=N2, h=H, plaintext=7, exponent=1)
    public.validate_received([good])
    for c in (1, 1 + 7 * N, N2 - 1, (1 + 7 * N) * (N - 1) % N2):
        with pytest.raises(CryptoError, match="index 1 must not be trivial"):
            public.validate_received([good, c])


def test_fingerprint_covers_the_djn_base() -> None:
    public, _ = _insecure_test_keypair(bits=256)
    assert public.h is not None
    other = PaillierPublicKey(public.n, public.h + 1 if public.h + 1 < public.n_square else 2,
                              _allow_insecure=True)
    assert other.fingerprint != public.fingerprint
    assert PaillierPublicKey(public.n, None, _allow_insecure=True).fingerprint != \
        public.fingerprint


@settings(max_examples=50, deadline=None)
@given(base=st.integers(min_value=2, max_value=N2 - 1), e=st.integers(0, 2**40 - 1),
       window=st.integers(1, 9))
def test_fixed_base_table_matches_powmod(base: int, e: int, window: int) -> None:
    table = fast.FixedBaseTable(base=base, modulus=N2, bits=40, window=window)
    assert table.pow(e) == pow(base, e, N2)


def test_fixed_base_table_refuses_long_exponent() -> None:
    table = fast.FixedBaseTable(base=3, modulus=N2, bits=8)
    with pytest.raises(ValueError, match="exponent"):
        table.pow(256)


# -- round trips and homomorphism ------------------------------------------------------------
def test_round_trip_and_bounds(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    values = [0, 1, 2, 12345, public.n // 2, public.n - 1]
    assert private.decrypt_ints(public.encrypt_ints(values)) == values


def test_batch_through_pool_round_trip(
    keys: tuple[PaillierPublicKey, PaillierPrivateKey],
) -> None:
    public, private = keys
    values = list(range(1000, 1200))  # above the pool threshold
    cts = public.encrypt_ints(values)
    assert len(set(cts)) == len(cts)
    assert private.decrypt_ints(cts) == values


def test_two_encryptions_differ(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    c1, c2 = public.encrypt_ints([42, 42])
    assert c1 != c2
    assert private.decrypt_ints([c1, c2]) == [42, 42]


def test_homomorphism(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    c1, c2, c3 = public.encrypt_ints([20, 22, public.n - 5])
    assert private.decrypt_ints([public.add(c1, c2)]) == [42]
    assert private.decrypt_ints([public.add(c1, c3)]) == [15]  # wraps mod n
    assert private.decrypt_ints([public.mul_const(c1, 3)]) == [60]
    assert private.decrypt_ints([public.mul_const(c1, -1)]) == [public.n - 20]
    assert private.decrypt_ints([public.add_all([c1, c2, c1])]) == [62]
    fresh = public.rerandomize(c1)
    assert fresh != c1
    assert private.decrypt_ints([fresh]) == [20]
    many = public.rerandomize_many([c1, c2] * 40)
    assert private.decrypt_ints(many) == [20, 22] * 40


@settings(max_examples=25, deadline=None)
@given(a=st.integers(0, 2**64), b=st.integers(0, 2**64), k=st.integers(0, 2**32))
def test_homomorphism_property(a: int, b: int, k: int) -> None:
    public, private = toy_keys_256()
    ca, cb = public.encrypt_ints([a % public.n, b % public.n])
    out = private.decrypt_ints([public.add(ca, cb), public.mul_const(ca, k)])
    assert out == [(a + b) % public.n, a * k % public.n]


_TOY_256: list[tuple[PaillierPublicKey, PaillierPrivateKey]] = []


def toy_keys_256() -> tuple[PaillierPublicKey, PaillierPrivateKey]:
    if not _TOY_256:
        _TOY_256.append(_insecure_test_keypair(bits=256))
    return _TOY_256[0]


# -- validation ----------------------------------------------------------------------------------
def test_out_of_range_ciphertexts_rejected(
    keys: tuple[PaillierPublicKey, PaillierPrivateKey],
) -> None:
    public, private = keys
    (good,) = public.encrypt_ints([1])
    for bad in (0, -good, public.n_square, public.n_square + good):
        with pytest.raises(CryptoError, match="0 < c < n"):
            public.validate_ciphertext(bad)
    with pytest.raises(CryptoError, match="gcd"):
        public.validate_ciphertext(public.n)
    p_factor = private.p * 7
    with pytest.raises(CryptoError, match="index 1"):
        private.decrypt_ints([good, p_factor])
    with pytest.raises(CryptoError, match="must be an int"):
        public.validate_ciphertext(True)
    with pytest.raises(CryptoError):
        public.add(good, public.n_square)


def test_numpy_integer_plaintexts(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    assert private.decrypt_ints(public.encrypt_ints(np.arange(3, dtype=np.int64))) == [0, 1, 2]
    with pytest.raises(CryptoError, match="index 0 must be an int"):
        public.encrypt_ints([1.0])  # type: ignore[list-item]


def test_plaintexts_out_of_range_rejected(
    keys: tuple[PaillierPublicKey, PaillierPrivateKey],
) -> None:
    public, _ = keys
    for bad in (-1, public.n):
        with pytest.raises(CryptoError, match=r"index 1 must be in \[0, n\)"):
            public.encrypt_ints([0, bad])


def test_wrong_key_batch_rejected(
    keys: tuple[PaillierPublicKey, PaillierPrivateKey],
    other_keys: tuple[PaillierPublicKey, PaillierPrivateKey],
) -> None:
    public, private = keys
    other, _ = other_keys
    batch = CiphertextBatch.create(public, public.encrypt_ints([3, 4]))
    data = batch.to_bytes()
    back = CiphertextBatch.from_bytes(data, public_key=public)
    assert back == batch
    assert private.decrypt_ints(back.ciphertexts) == [3, 4]
    with pytest.raises(CryptoError, match="different key"):
        CiphertextBatch.from_bytes(data, public_key=other)
    with pytest.raises(CryptoError, match="bytes for 2 ciphertexts"):
        CiphertextBatch.from_bytes(data[:-1], public_key=public)
    # A ciphertext of width n^2 that is out of range for the key is caught on parsing.
    tampered = data[:43] + b"\xff" * batch.width + data[43 + batch.width :]
    with pytest.raises(CryptoError, match="index 0"):
        CiphertextBatch.from_bytes(tampered, public_key=public)


# -- key sizes and bytes ------------------------------------------------------------------------
def test_key_sizes() -> None:
    assert DEFAULT_KEYSIZE == 3072
    with pytest.raises(CryptoError, match=">= 2048"):
        generate_paillier_keypair(n_length=1024)
    toy_public, _ = toy_keys_256()
    with pytest.raises(CryptoError, match="at least 2048 bits"):
        PaillierPublicKey(toy_public.n)
    with pytest.raises(CryptoError, match="at least 2048 bits"):
        PaillierPublicKey.from_bytes(toy_public.to_bytes())
    with pytest.raises(CryptoError, match="at least 2048 bits"):
        PaillierPublicKey.from_phe(phe_paillier.PaillierPublicKey(toy_public.n))


def test_key_bytes_round_trip(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    data = public.to_bytes()
    assert PaillierPublicKey.from_bytes(data) == public
    assert PaillierPublicKey.from_bytes(data).fingerprint == public.fingerprint
    secret = PaillierPrivateKey.from_bytes(private.to_bytes())
    assert (secret.p, secret.q) == (private.p, private.q)
    assert secret.public_key == public
    with pytest.raises(CryptoError, match="magic"):
        PaillierPublicKey.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(CryptoError, match="version must be 1"):
        PaillierPublicKey.from_bytes(data[:4] + b"\x02" + data[5:])
    with pytest.raises(CryptoError, match="bytes long"):
        PaillierPublicKey.from_bytes(data[:-3])
    assert "p=" not in repr(private)
    assert str(private.p) not in repr(private)


# -- phe interop ------------------------------------------------------------------------------
def test_ours_decrypt_with_phe(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    phe_private = private.to_phe()
    values = [0, 5, 99999]
    cts = public.encrypt_ints(values)
    assert [phe_private.raw_decrypt(c) for c in cts] == values
    numbers = [to_phe_encrypted(public, c) for c in cts]
    assert [phe_private.decrypt(x) for x in numbers] == values
    total = numbers[1] + numbers[2] + 1
    assert phe_private.decrypt(total) == 100005


def test_phe_decrypt_with_ours(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    phe_public = public.to_phe()
    assert PaillierPublicKey.from_phe(phe_public, h=public.h) == public
    numbers = [phe_public.encrypt(v) for v in (7, -3)]
    cts = [from_phe_encrypted(public, x)[0] for x in numbers]
    decoded = [decode_signed(m, n=public.n) for m in private.decrypt_ints(cts)]
    assert decoded == [7, -3]


def test_phe_generated_keys_work_here() -> None:
    phe_public, phe_private = phe_paillier.generate_paillier_keypair(n_length=2048)
    private = PaillierPrivateKey.from_phe(phe_private)
    assert private.public_key.n == phe_public.n
    assert private.public_key.h is not None
    cts = private.public_key.encrypt_ints([11, 12])
    assert [phe_private.raw_decrypt(c) for c in cts] == [11, 12]
    slow = PaillierPublicKey.from_phe(phe_public)  # no h: phe's classic encryption
    assert slow.h is None
    assert private.decrypt_ints(slow.encrypt_ints([13])) == [13]


def test_fixed_point_encoding_interop(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    m = encode_fixed(-2.5, n=public.n, exponent=-4)
    (c,) = public.encrypt_ints([m])
    assert decode_fixed(private.decrypt_ints([c])[0], n=public.n, exponent=-4) == -2.5
    assert private.to_phe().decrypt(to_phe_encrypted(public, c, exponent=-4)) == -2.5
    with pytest.raises(CryptoError, match="n // 3"):
        encode_signed(public.n // 2, n=public.n)
    with pytest.raises(CryptoError, match="overflow gap"):
        decode_signed(public.n // 2, n=public.n)


@pytest.mark.slow
def test_default_3072_round_trip_and_interop() -> None:
    public, private = generate_paillier_keypair()
    assert public.bits == 3072
    cts = public.encrypt_ints(list(range(100)))
    assert private.decrypt_ints(cts) == list(range(100))
    assert private.to_phe().raw_decrypt(cts[7]) == 7
    assert gmpy2.gcd(public.h, public.n) == 1


def test_key_without_h_uses_classic_form() -> None:
    toy_public, toy_private = toy_keys_256()
    classic = PaillierPublicKey(toy_public.n, _allow_insecure=True)
    (c,) = classic.encrypt_ints([9])
    fresh = classic.rerandomize(c)
    assert fresh != c
    assert toy_private.decrypt_ints([c, fresh]) == [9, 9]
    classic.precompute()  # nothing to build without h


def test_precompute_then_encrypt(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, private = keys
    public.precompute()
    assert public.h is not None
    assert private.decrypt_ints(public.encrypt_ints(list(range(70)))) == list(range(70))


def test_batch_create_validates(keys: tuple[PaillierPublicKey, PaillierPrivateKey]) -> None:
    public, _ = keys
    with pytest.raises(CryptoError, match="index 1"):
        CiphertextBatch.create(public, [*public.encrypt_ints([1]), 0])
    with pytest.raises(CryptoError, match="fingerprint must be 32 bytes"):
        CiphertextBatch(fingerprint=b"short", width=512, ciphertexts=())


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(0, 2**200), max_size=12))
def test_batch_bytes_round_trip_property(values: list[int]) -> None:
    public, private = toy_keys_256()
    cts = public.encrypt_ints([v % public.n for v in values])
    batch = CiphertextBatch.create(public, cts)
    data = batch.to_bytes()
    assert len(data) == 43 + batch.width * len(values)
    back = CiphertextBatch.from_bytes(data, public_key=public)
    assert private.decrypt_ints(back.ciphertexts) == [v % public.n for v in values]
