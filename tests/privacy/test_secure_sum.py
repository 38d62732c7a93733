"""Pairwise-masking secure sum: exact sums, masked vectors look uniform, fail closed."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.errors import CryptoError
from privacy.secure_sum import (
    FixedPoint,
    MaskingParty,
    MissingPartyError,
    PublicKeyList,
    derive_seed,
    unmask_sum,
)


def _round(names: list[str], attempt: int = 0) -> tuple[list[MaskingParty], PublicKeyList]:
    parties = [MaskingParty(n, "sess", 3, attempt) for n in names]
    return parties, PublicKeyList.of({p.name: p.public_key() for p in parties})


@pytest.mark.parametrize("n", [3, 4, 5])
def test_sum_is_exact_after_masking(n: int) -> None:
    rng = np.random.default_rng(n)
    parties, keys = _round([f"agency_{i}" for i in range(n)])
    inputs = {p.name: rng.uniform(-1000, 1000, size=257) for p in parties}
    masked = {p.name: p.mask(inputs[p.name], PublicKeyList.from_bytes(keys.to_bytes()))
              for p in parties}
    total = unmask_sum(masked, parties=keys.parties)
    want = np.sum(list(inputs.values()), axis=0)
    assert np.max(np.abs(total - want)) <= n * 2.0 ** -24
    # A masked vector alone is far from its input's encoding.
    enc = FixedPoint().encode(inputs[parties[0].name])
    assert np.mean(masked[parties[0].name] == enc) < 0.01


def test_masked_vectors_look_uniform_and_hide_the_input() -> None:
    parties, keys = _round(["a", "b", "c"])
    zeros = np.zeros(4096)
    ones = np.ones(4096)
    m0 = parties[0].mask(zeros, keys)
    m1 = parties[0].mask(ones, keys)
    # Same masks, different inputs: differences are the encodings only (masks cancel);
    # yet each masked vector differs from the other everywhere and looks uniform.
    assert np.all(m0 != m1)
    for masked in (m0, m1):
        top = (masked >> np.uint64(60)).astype(np.int64)  # 16 bins of the top 4 bits
        counts = np.bincount(top, minlength=16)
        assert counts.min() > 4096 / 16 * 0.7
        assert counts.max() < 4096 / 16 * 1.3
        bits = np.unpackbits(masked.view(np.uint8))
        assert abs(float(bits.mean()) - 0.5) < 0.01
    # A fresh attempt gives fresh masks for the same input.
    again, keys2 = _round(["a", "b", "c"], attempt=1)
    assert np.mean(again[0].mask(zeros, keys2) == m0) < 0.01


def test_pair_seeds_agree_and_are_domain_separated() -> None:
    (a, b), _ = _round(["a", "b"])
    a_key = MaskingParty.from_private_bytes(a.private_bytes(), name="a", session="s", round=3)
    s_ab = derive_seed(private_key=a._key, peer_key=b.public_key(), party="a", peer="b",
                       session="sess", round=3, attempt=0)
    s_ba = derive_seed(private_key=b._key, peer_key=a.public_key(), party="b", peer="a",
                       session="sess", round=3, attempt=0)
    assert a_key.public_key() == a.public_key()
    assert s_ab == s_ba
    other = derive_seed(private_key=a._key, peer_key=b.public_key(), party="a", peer="b",
                        session="sess", round=4, attempt=0)
    assert other != s_ab


def test_missing_party_fails_closed() -> None:
    parties, keys = _round(["a", "b", "c", "d"])
    masked = {p.name: p.mask(np.ones(10), keys) for p in parties[:3]}
    with pytest.raises(MissingPartyError, match="rerun from the key exchange"):
        unmask_sum(masked, parties=keys.parties)
    # Summing only the three that answered (as if d never existed) is not a valid sum:
    wrong = unmask_sum(masked, parties=("a", "b", "c"))
    assert not np.allclose(wrong, 3.0)


def test_lengths_and_dtypes_must_agree() -> None:
    parties, keys = _round(["a", "b"])
    masked = {"a": parties[0].mask(np.ones(5), keys), "b": parties[1].mask(np.ones(6), keys)}
    with pytest.raises(CryptoError, match="one length"):
        unmask_sum(masked, parties=keys.parties)
    with pytest.raises(CryptoError, match="outside the key list"):
        unmask_sum({"a": masked["a"], "b": masked["a"], "z": masked["a"]}, parties=("a", "b"))


def test_bad_public_keys_are_rejected() -> None:
    (a, b), keys = _round(["a", "b"])
    with pytest.raises(CryptoError, match="32 bytes"):
        PublicKeyList.of({"a": a.public_key(), "b": b.public_key()[:31]})
    low_order = bytes(32)  # u = 0: all-zero shared secret
    with pytest.raises(CryptoError, match="low order"):
        a.mask(np.ones(3), PublicKeyList.of({"a": a.public_key(), "b": low_order}))
    with pytest.raises(CryptoError, match="different public key"):
        a.mask(np.ones(3), PublicKeyList.of({"a": b.public_key(), "b": a.public_key()}))
    with pytest.raises(CryptoError, match="not in the public key list"):
        a.mask(np.ones(3), PublicKeyList.of({"b": b.public_key(), "c": a.public_key()}))
    with pytest.raises(CryptoError, match="truncated"):
        PublicKeyList.from_bytes(keys.to_bytes()[:-1])


def test_encoding_bounds_are_refused() -> None:
    enc = FixedPoint(frac_bits=16, bound=100.0)
    with pytest.raises(CryptoError, match=r"\[-100, 100\]. Got a value of magnitude 101"):
        enc.encode(np.array([0.0, -101.0]))
    with pytest.raises(CryptoError, match="finite"):
        enc.encode(np.array([np.nan]))
    with pytest.raises(CryptoError, match="2\\^62"):
        FixedPoint(frac_bits=40, bound=2.0**30)
    x = np.array([-100.0, 0.5, 99.99])
    back = enc.decode_sum(enc.encode(x), parties=1)
    assert np.max(np.abs(back - x)) <= 2.0 ** -17


def test_private_key_round_trip() -> None:
    a = MaskingParty("a", "s", 1)
    again = MaskingParty.from_private_bytes(a.private_bytes(), name="a", session="s", round=1)
    assert again.public_key() == a.public_key()
