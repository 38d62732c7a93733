"""National ID numbers (GB 11643-1999), vectorised over numpy arrays of str.

An ID number has 18 characters: a 6-digit address code (the first two digits are the
province), an 8-digit birth date YYYYMMDD, a 3-digit sequence (odd = male) and a check
character. The check character is ``"10X98765432"[S mod 11]`` where ``S`` is the dot
product of the first 17 digits with the weights ``7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2``.
Legacy 15-digit numbers (YYMMDD, no check character) upgrade by inserting ``"19"`` after
the address code (``"18"`` for sequence codes 996-999) and computing the check character.

Every function takes a 1-D array-like of strings (a list, a numpy ``str``/``object`` array, a
pandas column or a pyarrow string array) and works on the whole array at once: the strings
are viewed as a ``(n, width)`` matrix of code points (read straight from the Arrow buffer
for pyarrow-backed columns), so a million IDs validate in about a second or less. Null
entries (``None``, NaN, ``pd.NA``) and empty strings are reported as :attr:`IdReason.MISSING`.

Normalisation removes every whitespace character anywhere in the string (ASCII space, tab,
no-break space, ideographic space U+3000, zero-width space, BOM), maps full-width digits and
full-width X to ASCII, and upper-cases ``x``.

Errors never contain an ID: they name the rule broken and the position (0-based index in
the input) of the first failing element, with counts per rule.

Birth dates: a real calendar date, not after ``today`` and not before 1800 (the standard's
own example ``440524188001010014`` and the 996-999 upgrade rule cover people born in the
1800s, so a 1900 floor would reject valid numbers).
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from fedid._id_codes import (
    NINE,
    ZERO,
    BoolArray,
    StrArray,
    X,
    codes_of,
    from_codes,
    input_codes,
    normalise_codes,
    to_str_array,
)
from fedid.errors import IdNumberError

__all__ = [
    "CHECK_CHARACTERS",
    "MIN_BIRTH_YEAR",
    "PROVINCE_CODES",
    "REGION_BY_PROVINCE",
    "WEIGHTS",
    "IdCheck",
    "IdReason",
    "ParsedIds",
    "check_characters",
    "make_ids",
    "normalise",
    "parse",
    "to_canonical",
    "validate",
]

WEIGHTS: npt.NDArray[np.int64] = np.array(
    [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64
)
_WEIGHTS32 = WEIGHTS.astype(np.int32)
CHECK_CHARACTERS = "10X98765432"
MIN_BIRTH_YEAR = 1800  # the 996-999 legacy rule and the standard's own 1880 example

_EAST = (11, 12, 13, 21, 31, 32, 33, 35, 37, 44, 46, 71, 81, 82, 83)
_CENTRAL = (14, 22, 23, 34, 36, 41, 42, 43)
_WEST = (15, 45, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65)
#: Province code -> region in the standard three-region classification (east / central /
#: west). 71 (Taiwan), 81 (Hong Kong), 82 (Macao) and 83 (residence permits for Taiwan
#: residents) are counted as east.
REGION_BY_PROVINCE: Mapping[int, str] = {
    **{p: "east" for p in _EAST},
    **{p: "central" for p in _CENTRAL},
    **{p: "west" for p in _WEST},
}
PROVINCE_CODES: frozenset[int] = frozenset(REGION_BY_PROVINCE)

_PROVINCE_OK = np.zeros(100, dtype=bool)
_PROVINCE_OK[list(PROVINCE_CODES)] = True
_REGION_NAMES = np.array(["", "east", "central", "west"])
_REGION_INDEX = np.zeros(100, dtype=np.int8)
for _p, _r in REGION_BY_PROVINCE.items():
    _REGION_INDEX[_p] = {"east": 1, "central": 2, "west": 3}[_r]

_CHECK_CODES = np.array([ord(c) for c in CHECK_CHARACTERS], dtype=np.uint32)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class IdReason(enum.IntEnum):
    """Why an ID number failed; the first rule broken, checked in this order."""

    OK = 0
    MISSING = 1
    LENGTH = 2
    CHARSET = 3
    PROVINCE = 4
    BIRTH_DATE = 5
    BIRTH_DATE_RANGE = 6
    CHECK = 7

    @property
    def rule(self) -> str:
        """A one-line statement of the rule, for error messages and reports."""
        return _RULES[self]


_RULES: dict[IdReason, str] = {
    IdReason.OK: "valid",
    IdReason.MISSING: "an ID number is required (got an empty or null value)",
    IdReason.LENGTH: "length must be 18 (or 15 for a legacy number) after normalisation",
    IdReason.CHARSET: (
        "the first 17 characters must be digits and the last a digit or X "
        "(all 15 digits for a legacy number)"
    ),
    IdReason.PROVINCE: (
        "the first two digits must be a province code "
        "(11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81-83)"
    ),
    IdReason.BIRTH_DATE: "the birth-date digits must form a real calendar date YYYYMMDD",
    IdReason.BIRTH_DATE_RANGE: (
        f"the birth date must not be in the future nor before {MIN_BIRTH_YEAR}"
    ),
    IdReason.CHECK: "the check character must match the checksum of the first 17 digits",
}

Errors = Literal["raise", "mask"]


@dataclass(frozen=True, slots=True)
class IdCheck:
    """Per-element result of :func:`validate`.

    ``ok``: valid mask. ``reason``: :class:`IdReason` codes (uint8, 0 where valid).
    ``canonical``: the normalised 18-character number (legacy numbers upgraded), ``""``
    where invalid. ``legacy``: the input was a valid 15-digit number.
    """

    ok: BoolArray
    reason: npt.NDArray[np.uint8]
    canonical: StrArray
    legacy: BoolArray

    def __post_init__(self) -> None:
        n = len(self.ok)
        if not (len(self.reason) == len(self.canonical) == len(self.legacy) == n):
            raise ValueError("IdCheck arrays must have equal length")

    def __len__(self) -> int:
        return len(self.ok)

    @property
    def all_ok(self) -> bool:
        """True when every element is valid."""
        return bool(self.ok.all())

    def counts(self) -> dict[IdReason, int]:
        """Number of failing elements per rule (rules with no failure are left out)."""
        values = np.bincount(self.reason, minlength=len(IdReason))
        return {IdReason(i): int(c) for i, c in enumerate(values) if i and c}

    def describe_failures(self, *, what: str = "ID numbers") -> str:
        """A message naming the rules broken, counts and first failing index; no IDs."""
        bad = np.flatnonzero(~self.ok)
        if bad.size == 0:
            return f"all {len(self)} {what} are valid"
        first = int(bad[0])
        parts = "; ".join(f"{r.name.lower()}: {c}" for r, c in self.counts().items())
        return (
            f"{bad.size} of {len(self)} {what} break GB 11643-1999 ({parts}); first at "
            f"index {first}: {IdReason(int(self.reason[first])).rule}"
        )

    def raise_if_invalid(self, *, what: str = "ID numbers") -> None:
        """Raise :class:`IdNumberError` describing the failures, if any."""
        if not self.all_ok:
            raise IdNumberError(self.describe_failures(what=what), report=self)


@dataclass(frozen=True, slots=True)
class ParsedIds:
    """Fields derived from ID numbers by :func:`parse` (invalid elements: empty values).

    ``birth_date`` is ``datetime64[D]`` (NaT where invalid); ``sex`` is ``"male"`` or
    ``"female"``; ``province`` the 2-digit code as int16 (0 where invalid);
    ``address_code`` the 6-digit code as str; ``region`` ``"east"|"central"|"west"``.
    """

    ok: BoolArray
    canonical: StrArray
    birth_date: npt.NDArray[np.datetime64]
    sex: StrArray
    province: npt.NDArray[np.int16]
    address_code: StrArray
    region: StrArray
    legacy: BoolArray

    def __len__(self) -> int:
        return len(self.ok)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True, slots=True)
class _Checked:
    check: IdCheck
    digits: npt.NDArray[np.int32]  # (n, 17) canonical first-17 digits (0 where invalid)
    year: npt.NDArray[np.int32]
    month: npt.NDArray[np.int32]
    day: npt.NDArray[np.int32]


def _today_ymd(today: _dt.date | None) -> int:
    day = today if today is not None else _dt.date.today()
    return day.year * 10000 + day.month * 100 + day.day


def _is_leap(year: npt.NDArray[np.int32]) -> BoolArray:
    leap: BoolArray = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return leap


def _check(ids: Any, *, today: _dt.date | None) -> _Checked:
    codes, null = input_codes(ids)
    codes = normalise_codes(codes)
    n = codes.shape[0]
    length = np.count_nonzero(codes, axis=1)
    is18 = length == 18
    is15 = length == 15
    digit = (codes[:, :18] >= ZERO) & (codes[:, :18] <= NINE)
    chars_ok = np.where(
        is18,
        digit[:, :17].all(axis=1) & (digit[:, 17] | (codes[:, 17] == X)),
        digit[:, :15].all(axis=1),
    ) & (is18 | is15)

    first17 = codes[:, :17].copy()
    legacy_rows = np.flatnonzero(is15 & chars_ok)
    if legacy_rows.size:
        src = codes[legacy_rows]
        seq = (src[:, 12] - ZERO) * 100 + (src[:, 13] - ZERO) * 10 + (src[:, 14] - ZERO)
        block = np.empty((legacy_rows.size, 11), dtype=np.uint32)
        block[:, 0] = ord("1")
        block[:, 1] = np.where(seq >= 996, ord("8"), ord("9"))
        block[:, 2:] = src[:, 6:15]
        first17[legacy_rows, 6:17] = block
    digits = first17.astype(np.int32) - ZERO
    digits[~chars_ok] = 0

    province = digits[:, 0] * 10 + digits[:, 1]
    year = digits[:, 6] * 1000 + digits[:, 7] * 100 + digits[:, 8] * 10 + digits[:, 9]
    month = digits[:, 10] * 10 + digits[:, 11]
    day = digits[:, 12] * 10 + digits[:, 13]
    month_ok = (month >= 1) & (month <= 12)
    dim = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + ((month == 2) & _is_leap(year))
    date_ok = month_ok & (day >= 1) & (day <= dim)
    ymd = year * 10000 + month * 100 + day
    range_ok = (year >= MIN_BIRTH_YEAR) & (ymd <= _today_ymd(today))
    expected = _CHECK_CODES[(digits @ _WEIGHTS32) % 11]
    check_ok = is15 | (codes[:, 17] == expected)

    reason = np.zeros(n, dtype=np.uint8)
    for rule, bad in (
        (IdReason.CHECK, ~check_ok),
        (IdReason.BIRTH_DATE_RANGE, ~range_ok),
        (IdReason.BIRTH_DATE, ~date_ok),
        (IdReason.PROVINCE, ~_PROVINCE_OK[province]),
        (IdReason.CHARSET, ~chars_ok),
        (IdReason.LENGTH, ~(is18 | is15)),
        (IdReason.MISSING, null | (length == 0)),
    ):  # last assignment wins: the first rule in IdReason order
        reason[bad] = rule
    ok = reason == 0

    out = np.zeros((n, 18), dtype=np.uint32)
    out[:, :17] = first17
    out[:, 17] = expected
    out[~ok] = 0
    check = IdCheck(ok=ok, reason=reason, canonical=from_codes(out), legacy=ok & is15)
    return _Checked(check=check, digits=digits, year=year, month=month, day=day)


# --------------------------------------------------------------------------- public API


def normalise(ids: Any) -> StrArray:
    """Normalised strings: whitespace removed, full-width digits/X to ASCII, ``x`` to ``X``.

    Nulls become ``""``. No validation; see :func:`validate`.
    """
    arr, _ = to_str_array(ids)
    return from_codes(normalise_codes(codes_of(arr)))


def check_characters(first17: Any) -> StrArray:
    """The GB 11643-1999 check character of each 17-digit string.

    Raises :class:`IdNumberError` if an element is not exactly 17 ASCII digits.
    """
    arr, null = to_str_array(first17)
    codes = codes_of(arr, min_width=17)
    ok = ~null & (codes[:, :17] >= ZERO).all(axis=1) & (codes[:, :17] <= NINE).all(axis=1)
    if codes.shape[1] > 17:
        ok &= (codes[:, 17:] == 0).all(axis=1)
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise IdNumberError(
            f"check_characters needs exactly 17 ASCII digits per element; {bad.size} of "
            f"{len(arr)} elements are not (first at index {int(bad[0])})"
        )
    digits = codes[:, :17].astype(np.int64) - ZERO
    return from_codes(_CHECK_CODES[(digits @ WEIGHTS) % 11].reshape(-1, 1))


def validate(ids: Any, *, today: _dt.date | None = None) -> IdCheck:
    """Check every ID number; never raises for bad IDs (see :class:`IdCheck`).

    Valid 15-digit legacy numbers are accepted (``legacy`` mask) and upgraded in
    ``canonical``. ``today`` (default: the local date) bounds birth dates from above.
    """
    return _check(ids, today=today).check


def to_canonical(ids: Any, *, errors: Errors = "raise", today: _dt.date | None = None) -> StrArray:
    """Normalised, upgraded (15 -> 18) and validated 18-character ID numbers.

    ``errors="raise"`` raises :class:`IdNumberError` naming the rule broken, the counts
    per rule and the index of the first failure; ``errors="mask"`` returns ``""`` for
    invalid elements instead.
    """
    if errors not in ("raise", "mask"):
        raise ValueError(f"errors must be 'raise' or 'mask'. Got {errors!r}")
    check = validate(ids, today=today)
    if errors == "raise":
        check.raise_if_invalid()
    return check.canonical


def parse(ids: Any, *, errors: Errors = "raise", today: _dt.date | None = None) -> ParsedIds:
    """Birth date, sex, province, address code and region of each ID number.

    ``errors`` as in :func:`to_canonical`; with ``"mask"`` invalid elements get NaT, ``""``
    and 0 and ``ok`` says which they are.
    """
    if errors not in ("raise", "mask"):
        raise ValueError(f"errors must be 'raise' or 'mask'. Got {errors!r}")
    checked = _check(ids, today=today)
    check = checked.check
    if errors == "raise":
        check.raise_if_invalid()
    ok = check.ok
    digits = checked.digits
    months = np.where(ok, (checked.year - 1970) * 12 + checked.month - 1, 0)
    birth = months.astype("datetime64[M]").astype("datetime64[D]") + np.where(
        ok, checked.day - 1, 0
    )
    birth[~ok] = np.datetime64("NaT")
    province = np.where(ok, digits[:, 0] * 10 + digits[:, 1], 0)
    sex = np.where(ok, np.where(digits[:, 16] % 2 == 1, "male", "female"), "")
    address = from_codes(codes_of(check.canonical, min_width=18)[:, :6].copy())
    return ParsedIds(
        ok=ok,
        canonical=check.canonical,
        birth_date=birth,
        sex=sex.astype("U6"),
        province=province.astype(np.int16),
        address_code=address,
        region=_REGION_NAMES[_REGION_INDEX[province]],
        legacy=check.legacy,
    )


def make_ids(*, address_codes: Any, birth_dates: Any, sequences: Any) -> StrArray:
    """Valid 18-character ID numbers from their parts (for generators and tests).

    ``address_codes``: 6-digit ints or strings; ``birth_dates``: ``datetime64`` values or
    ISO ``"YYYY-MM-DD"`` strings; ``sequences``: ints 0-999 (odd = male). Scalars broadcast.
    Raises :class:`IdNumberError` naming the rule and the first failing index when a part
    is out of range (unknown province, birth date before 1800 or in the future).
    """
    address = np.asarray(address_codes)
    address = address.astype(np.int64) if address.dtype.kind in "UOS" else address
    dates = np.asarray(birth_dates, dtype="datetime64[D]")
    seq = np.asarray(sequences)
    if address.dtype.kind not in "iu" or seq.dtype.kind not in "iu":
        raise TypeError("address_codes and sequences must be integers (or digit strings)")
    address, dates, seq = np.broadcast_arrays(address, dates, seq)
    address, dates, seq = address.ravel(), dates.ravel(), seq.ravel().astype(np.int64)
    address = address.astype(np.int64)
    year = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = dates.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (dates - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    province = np.clip(address // 10000, 0, 99)
    ymd = year * 10000 + month * 100 + day
    for bad, rule in (
        ((address < 100000) | (address > 999999), "address codes must have 6 digits"),
        (~_PROVINCE_OK[province], IdReason.PROVINCE.rule),
        (np.isnat(dates), "birth dates must be given (got NaT)"),
        ((year < MIN_BIRTH_YEAR) | (ymd > _today_ymd(None)), IdReason.BIRTH_DATE_RANGE.rule),
        ((seq < 0) | (seq > 999), "sequences must be in 0..999"),
    ):
        idx = np.flatnonzero(bad)
        if idx.size:
            raise IdNumberError(
                f"make_ids: {rule}; {idx.size} of {len(address)} elements break it "
                f"(first at index {int(idx[0])})"
            )
    digits = np.empty((len(address), 17), dtype=np.int64)
    for k in range(6):
        digits[:, k] = address // 10 ** (5 - k) % 10
    for k in range(8):
        digits[:, 6 + k] = ymd // 10 ** (7 - k) % 10
    for k in range(3):
        digits[:, 14 + k] = seq // 10 ** (2 - k) % 10
    out = np.empty((len(address), 18), dtype=np.uint32)
    out[:, :17] = digits + ZERO
    out[:, 17] = _CHECK_CODES[(digits @ WEIGHTS) % 11]
    return from_codes(out)
