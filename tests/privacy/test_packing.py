"""Slot packing: bounds, guard bits, refusal of out-of-range values, with real Paillier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.errors import CryptoError
from privacy.packing import SlotLayout
from privacy.paillier.keys import _insecure_test_keypair


def test_geometry() -> None:
    layout = SlotLayout(slot_bits=8, slots=4, max_terms=5)
    assert layout.guard_bits == 3  # ceil(log2(5))
    assert layout.slot_width == 11
    assert layout.total_bits == 44
    assert layout.max_value == 255
    assert SlotLayout(slot_bits=8, slots=1, max_terms=1).guard_bits == 0
    assert SlotLayout(slot_bits=8, slots=1, max_terms=4).guard_bits == 2
    assert SlotLayout(slot_bits=8, slots=1, max_terms=2).guard_bits == 1


def test_pack_unpack_at_bounds() -> None:
    layout = SlotLayout(slot_bits=8, slots=4, max_terms=4)
    for row in ([0, 0, 0, 0], [255, 255, 255, 255], [255, 0, 255, 0], [0, 1, 254, 255]):
        assert layout.unpack(layout.pack(row)) == row


def test_sum_of_max_terms_at_max_never_carries() -> None:
    layout = SlotLayout(slot_bits=8, slots=3, max_terms=4)
    top = layout.pack([255, 255, 255])
    assert layout.unpack(4 * top) == [1020, 1020, 1020]
    # One more term than the layout allows overflows the top slot: refused, not misread.
    with pytest.raises(CryptoError, match="at most 30 bits"):
        layout.unpack(5 * top)


def test_guard_bits_are_tight() -> None:
    layout = SlotLayout(slot_bits=4, slots=2, max_terms=4)
    packed = layout.pack([15, 0])
    # 5 copies of 15 = 75 > 63 = 2^6 - 1 carries into slot 1: why max_terms matters.
    assert layout.unpack(5 * packed) != [75, 0]


@pytest.mark.parametrize("bad", [-1, 256, True, 1.0])
def test_out_of_range_values_refused(bad: object) -> None:
    layout = SlotLayout(slot_bits=8, slots=2, max_terms=2)
    with pytest.raises(CryptoError, match=r"slot 1 value must be an int in \[0, 255\]"):
        layout.pack([0, bad])  # type: ignore[list-item]


def test_numpy_integers_accepted() -> None:
    layout = SlotLayout(slot_bits=8, slots=3)
    packed = layout.pack(np.array([0, 7, 255], dtype=np.int64))
    assert layout.unpack(packed) == [0, 7, 255]
    with pytest.raises(CryptoError, match="slot 0 value"):
        layout.pack(np.array([256, 0, 0]))


def test_wrong_count_and_bad_layouts_refused() -> None:
    layout = SlotLayout(slot_bits=8, slots=2)
    with pytest.raises(CryptoError, match="exactly 2 values"):
        layout.pack([1, 2, 3])
    with pytest.raises(CryptoError, match="row 1"):
        layout.pack_many([[1, 2], [1, 999]])
    with pytest.raises(CryptoError, match="non-negative"):
        layout.unpack(-1)
    for kwargs in ({"slot_bits": 0, "slots": 1}, {"slot_bits": 8, "slots": 0},
                   {"slot_bits": 8, "slots": 1, "max_terms": 0}):
        with pytest.raises(CryptoError, match=">= 1"):
            SlotLayout(**kwargs)


def test_fits_modulus_boundary() -> None:
    n = (1 << 2047) + 1  # a 2048-bit number
    width = SlotLayout(slot_bits=30, slots=1, max_terms=8).slot_width  # 33
    most = SlotLayout.max_slots(slot_bits=30, max_terms=8, n_bits=2048)
    assert most == 2047 // width
    assert SlotLayout(slot_bits=30, slots=most, max_terms=8).fits(n)
    too_many = SlotLayout(slot_bits=30, slots=most + 1, max_terms=8)
    assert not too_many.fits(n)
    with pytest.raises(CryptoError, match="2048-bit modulus holds at most 2047"):
        too_many.check_fits(n)
    exact = SlotLayout(slot_bits=2047, slots=1)
    assert exact.fits(n)
    assert not SlotLayout(slot_bits=2048, slots=1).fits(n)


def test_packed_homomorphic_sum_with_paillier() -> None:
    public, private = _insecure_test_keypair(bits=512)
    layout = SlotLayout(slot_bits=16, slots=SlotLayout.max_slots(
        slot_bits=16, max_terms=8, n_bits=public.bits), max_terms=8)
    layout.check_fits(public.n)
    rows = [[layout.max_value - (i * 7 + j) % 3 for j in range(layout.slots)]
            for i in range(8)]
    cts = public.encrypt_ints(layout.pack_many(rows))
    (total,) = private.decrypt_ints([public.add_all(cts)])
    assert layout.unpack(total) == [sum(col) for col in zip(*rows, strict=True)]


@settings(max_examples=100, deadline=None)
@given(data=st.data(), slot_bits=st.integers(1, 40), slots=st.integers(1, 8),
       max_terms=st.integers(1, 64))
def test_sums_unpack_slotwise(data: st.DataObject, slot_bits: int, slots: int,
                              max_terms: int) -> None:
    layout = SlotLayout(slot_bits=slot_bits, slots=slots, max_terms=max_terms)
    terms = data.draw(st.integers(1, max_terms))
    value = st.integers(0, layout.max_value)
    rows = [data.draw(st.lists(value, min_size=slots, max_size=slots)) for _ in range(terms)]
    total = sum(layout.pack(r) for r in rows)
    assert layout.unpack(total) == [sum(col) for col in zip(*rows, strict=True)]
