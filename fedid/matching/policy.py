"""Release policy of each evidence agency and the payload layout built from the schema.

A department releases the source fields of the indicators it owns (``Schema.source_fields``),
each either as a value or as a band (data minimisation). Every field becomes a small
non-negative integer code, 0 meaning "null" (the department has the person but the field
does not apply)::

    bool       1 = False, 2 = True                                      2 bits
    category   1 + index in the schema's categories
    int/ordinal 1 + (value - min)
    float      1 + round(value * 10^decimals) - round(min * 10^decimals)   (fixed point)
    band       1 + number of band edges <= value

Fixed-point precision: amounts are released to ``decimals`` decimal places (default 2, i.e.
0.01 CNY); a value is recovered as ``(code - 1 + round(min * 10^d)) / 10^d``.

A department's record payload concatenates its field codes (``width`` bits). In a Paillier
plaintext, records sit in slots of ``width + MASK_BITS + 1`` bits: the extra bits give room
for the coordinator's statistical mask (see :mod:`fedid.matching.protocol`), so slot sums
never carry into a neighbour. Each ciphertext holds ``slots`` records of ONE department.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedid.errors import ConfigError, DataValidationError
from fedid.schema import Indicator, Schema

__all__ = [
    "MASK_BITS",
    "DepartmentLayout",
    "EvidencePolicy",
    "FieldCodec",
    "FieldRelease",
    "build_layouts",
    "default_policies",
]

MASK_BITS = 40  # statistical hiding of masked slots: distance <= 2^-40 per slot

Codes = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FieldRelease:
    """How one source field is released: ``value`` (fixed point) or ``band`` (index)."""

    mode: Literal["value", "band"] = "value"
    decimals: int = 2
    band_edges: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("value", "band"):
            raise ConfigError(f"release mode must be 'value' or 'band'. Got {self.mode!r}.")
        if not 0 <= self.decimals <= 6:
            raise ConfigError(f"decimals must be in [0, 6]. Got {self.decimals}.")
        if self.mode == "band" and (
            not self.band_edges or list(self.band_edges) != sorted(set(self.band_edges))
        ):
            raise ConfigError("band release needs strictly increasing band_edges.")


@dataclass(frozen=True, slots=True)
class EvidencePolicy:
    """What one department releases: source field -> release (fields absent: withheld)."""

    department: str
    releases: Mapping[str, FieldRelease] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.releases:
            raise ConfigError(f"policy of {self.department!r} releases no field.")


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """Integer code of one released source field (0 = null)."""

    name: str
    indicator: Indicator
    release: FieldRelease
    bits: int
    offset: int

    @property
    def _scale(self) -> int:
        return int(10 ** self.release.decimals)

    def encode(self, column: pd.Series) -> Codes:
        """Codes of a column; raises DataValidationError for a value out of range."""
        ind, rel = self.indicator, self.release
        null = column.isna().to_numpy()
        out = np.zeros(len(column), dtype=np.int64)
        vals = column[~null]
        if rel.mode == "band":
            edges = np.asarray(rel.band_edges)
            codes = np.searchsorted(edges, vals.astype(float), side="right") + 1
        elif ind.type == "bool":
            codes = np.where(vals.astype(bool).to_numpy(), 2, 1)
        elif ind.type == "category":
            index = {c: i for i, c in enumerate(ind.categories)}
            mapped = vals.map(index)
            if mapped.isna().any():
                raise DataValidationError(
                    f"field {self.name}: value outside the schema's categories "
                    f"({int(mapped.isna().sum())} rows)"
                )
            codes = mapped.to_numpy(dtype=np.int64) + 1
        elif ind.type == "float":
            lo = round(float(ind.min or 0) * self._scale)
            codes = np.rint(vals.to_numpy(dtype=float) * self._scale).astype(np.int64) - lo + 1
        else:
            codes = vals.to_numpy(dtype=np.int64) - int(ind.min or 0) + 1
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and (codes.min() < 1 or codes.max() >= 1 << self.bits):
            raise DataValidationError(
                f"field {self.name}: value outside the schema range [{ind.min}, {ind.max}]"
            )
        out[~null] = codes
        return out

    def decode(self, code: int) -> object:
        """The released value of a code (None for 0)."""
        if code == 0:
            return None
        ind, rel = self.indicator, self.release
        if rel.mode == "band":
            edges = (float(ind.min or 0), *rel.band_edges)
            return edges[code - 1]
        if ind.type == "bool":
            return code == 2
        if ind.type == "category":
            return ind.categories[code - 1]
        if ind.type == "float":
            lo = round(float(ind.min or 0) * self._scale)
            return (code - 1 + lo) / self._scale
        return code - 1 + int(ind.min or 0)


def _bits_for(ind: Indicator, rel: FieldRelease) -> int:
    if rel.mode == "band":
        top = len(rel.band_edges) + 1
    elif ind.type == "bool":
        top = 2
    elif ind.type == "category":
        top = len(ind.categories)
    elif ind.type == "float":
        scale = 10**rel.decimals
        top = round(float(ind.max or 0) * scale) - round(float(ind.min or 0) * scale) + 1
    else:
        top = int(ind.max or 0) - int(ind.min or 0) + 1
    return max(1, int(top).bit_length())


@dataclass(frozen=True, slots=True)
class DepartmentLayout:
    """Bit layout of one department's record payload and its records per plaintext."""

    department: str
    fields: tuple[FieldCodec, ...]
    width: int

    @property
    def slot_bits(self) -> int:
        return self.width + MASK_BITS + 1

    def slots(self, modulus_bits: int) -> int:
        """Records per plaintext under a modulus of ``modulus_bits`` (plaintext < n)."""
        k = (modulus_bits - 1) // self.slot_bits
        if k < 1:
            raise ConfigError(
                f"{self.department}: a record slot of {self.slot_bits} bits does not fit a "
                f"{modulus_bits}-bit modulus"
            )
        return k

    def encode(self, frame: pd.DataFrame) -> list[int]:
        """One payload integer per row of a department frame (its source-field columns)."""
        payload = np.zeros(len(frame), dtype=object)
        payload[:] = 0
        for f in self.fields:
            if f.name not in frame.columns:
                raise DataValidationError(f"{self.department}: missing column {f.name!r}")
            codes = f.encode(frame[f.name]).astype(object)
            payload = payload + (codes * (1 << f.offset))
        return [int(v) for v in payload]

    def decode(self, payload: int) -> dict[str, object]:
        """Field name -> released value of one payload."""
        return {
            f.name: f.decode((payload >> f.offset) & ((1 << f.bits) - 1)) for f in self.fields
        }

    def pack(self, payloads: Sequence[int], *, modulus_bits: int) -> list[int]:
        """Pack payloads ``slots`` at a time into plaintexts (record ``i`` in slot ``i % k``)."""
        k = self.slots(modulus_bits)
        s = self.slot_bits
        out: list[int] = []
        for start in range(0, len(payloads), k):
            m = 0
            for j, p in enumerate(payloads[start : start + k]):
                m |= p << (j * s)
            out.append(m)
        return out

    def unpack(self, plaintext: int, *, modulus_bits: int) -> list[int]:
        """Slot contents of a plaintext, the mask room included (callers keep ``width`` bits)."""
        k = self.slots(modulus_bits)
        s = self.slot_bits
        return [(plaintext >> (j * s)) & ((1 << s) - 1) for j in range(k)]


def default_policies(schema: Schema) -> dict[str, EvidencePolicy]:
    """Every evidence department releases every source field it owns, as values."""
    out: dict[str, EvidencePolicy] = {}
    for dep in schema.evidence_departments:
        fields = schema.source_fields(dep)
        if fields:
            out[dep] = EvidencePolicy(
                department=dep, releases={i.source_field: FieldRelease() for i in fields}
            )
    return out


def build_layouts(
    schema: Schema, policies: Mapping[str, EvidencePolicy]
) -> dict[str, DepartmentLayout]:
    """The payload layout of every department with a policy, fields in schema order."""
    layouts: dict[str, DepartmentLayout] = {}
    for dep, policy in policies.items():
        if schema.department(dep).side != "evidence":
            raise ConfigError(f"policy for {dep!r}: not an evidence department")
        owned = {i.source_field: i for i in schema.source_fields(dep)}
        unknown = set(policy.releases) - set(owned)
        if unknown:
            raise ConfigError(f"policy for {dep!r} names fields it does not own: {sorted(unknown)}")
        codecs: list[FieldCodec] = []
        offset = 0
        for name, ind in owned.items():
            rel = policy.releases.get(name)
            if rel is None:
                continue
            if rel.mode == "band" and not ind.is_numeric:
                raise ConfigError(f"{dep}.{name}: bands need a numeric field")
            bits = _bits_for(ind, rel)
            codecs.append(FieldCodec(name=name, indicator=ind, release=rel, bits=bits,
                                     offset=offset))
            offset += bits
        layouts[dep] = DepartmentLayout(department=dep, fields=tuple(codecs), width=offset)
    return layouts
