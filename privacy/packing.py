"""Slot packing: several bounded non-negative integers in one Paillier plaintext.

Slot ``i`` occupies bits ``[i w, (i + 1) w)`` of the packed integer (slot 0 least
significant), where ``w = slot_bits + guard_bits`` and
``guard_bits = ceil(log2(max_terms))``. A packed value holds slot values in
``[0, 2^slot_bits - 1]``; the homomorphic sum of up to ``max_terms`` packed values then
holds per-slot sums of at most ``max_terms (2^slot_bits - 1) <= 2^w - 2^guard_bits``,
which never carry into the next slot. A layout fits a key when
``slots * w <= |n| - 1``, so even a full sum stays below ``n`` and is never reduced.

Packing refuses values outside the slot range; unpacking refuses integers wider than the
layout (a sign of more than ``max_terms`` terms or of the wrong layout).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import SupportsIndex

from privacy.errors import CryptoError

__all__ = ["SlotLayout"]


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (numpy integer scalars too), not a bool."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotLayout:
    """``slots`` slots of ``slot_bits`` value bits each, safe for sums of ``max_terms``."""

    slot_bits: int
    slots: int
    max_terms: int = 1

    def __post_init__(self) -> None:
        for name in ("slot_bits", "slots", "max_terms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CryptoError(f"{name} must be an int >= 1. Got {value!r}.")

    @property
    def guard_bits(self) -> int:
        """``ceil(log2(max_terms))`` bits of headroom per slot."""
        return (self.max_terms - 1).bit_length()

    @property
    def slot_width(self) -> int:
        """Bits per slot including the guard bits."""
        return self.slot_bits + self.guard_bits

    @property
    def total_bits(self) -> int:
        """Bits of the packed integer (and of any sum of up to ``max_terms`` of them)."""
        return self.slots * self.slot_width

    @property
    def max_value(self) -> int:
        """Largest value a slot accepts when packing."""
        return (1 << self.slot_bits) - 1

    def fits(self, n: int) -> bool:
        """Whether sums of up to ``max_terms`` packed values stay below ``n``."""
        return self.total_bits <= n.bit_length() - 1

    def check_fits(self, n: int) -> None:
        """Raise CryptoError unless :meth:`fits`."""
        if not self.fits(n):
            raise CryptoError(f"slot layout needs {self.total_bits} bits; a {n.bit_length()}-bit "
                              f"modulus holds at most {n.bit_length() - 1}.")

    @classmethod
    def max_slots(cls, *, slot_bits: int, max_terms: int, n_bits: int) -> int:
        """The most slots of this shape that fit an ``n_bits`` modulus."""
        width = cls(slot_bits=slot_bits, slots=1, max_terms=max_terms).slot_width
        return (n_bits - 1) // width

    def pack(self, values: Iterable[SupportsIndex]) -> int:
        """Pack exactly ``slots`` values, each in ``[0, max_value]``."""
        values = list(values)
        if len(values) != self.slots:
            raise CryptoError(f"pack needs exactly {self.slots} values. Got {len(values)}.")
        packed = 0
        width = self.slot_width
        top = self.max_value
        for i in range(self.slots - 1, -1, -1):
            v = _as_int(values[i])
            if v is None or not 0 <= v <= top:
                got = v if v is not None and v < 0 else ("a non-integer" if v is None
                                                         else "a larger value")
                raise CryptoError(f"slot {i} value must be an int in [0, {top}]. Got {got}.")
            packed = (packed << width) | v
        return packed

    def unpack(self, packed: int) -> list[int]:
        """Slot values (or per-slot sums) of a packed integer of at most ``total_bits``."""
        if isinstance(packed, bool) or not isinstance(packed, int) or packed < 0:
            raise CryptoError("packed value must be a non-negative int.")
        if packed.bit_length() > self.total_bits:
            raise CryptoError(f"packed value must have at most {self.total_bits} bits. "
                              f"Got {packed.bit_length()}.")
        width = self.slot_width
        mask = (1 << width) - 1
        return [(packed >> (i * width)) & mask for i in range(self.slots)]

    def pack_many(self, rows: Iterable[Iterable[SupportsIndex]]) -> list[int]:
        """:meth:`pack` each row; the error names the failing row."""
        out = []
        for r, row in enumerate(rows):
            try:
                out.append(self.pack(row))
            except CryptoError as exc:
                raise CryptoError(f"row {r}: {exc}") from None
        return out

    def unpack_many(self, packed: Sequence[int]) -> list[list[int]]:
        """:meth:`unpack` each packed integer."""
        return [self.unpack(p) for p in packed]
