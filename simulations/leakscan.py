"""Scanning a recorded transcript for raw IDs and plaintext values (reviewer tool).

Input: the ``*.bin`` files :mod:`clients.transcript` writes (every reply that left a
node, as serialised by Flower) and the province's tables. Looked for, at every byte
offset of every file:

- national IDs of every student, guardian and department record, 18-digit and 15-digit
  forms, as ASCII, UTF-16 (LE/BE) and UTF-32 (LE/BE) text and as 7/8-byte integers in
  either byte order;
- plaintext indicator values of the departments' records: non-integer floats with
  ``|v| >= 10`` as float64 (either order) and as decimal text, and integers
  ``>= 10000`` (amounts, fixed-point codes of :mod:`fedid.matching.policy`) as float64
  and decimal text, and as 8-byte integers when ``>= 2**24`` (smaller ones are the tail
  bytes of ordinary float64 values such as released counts).

Text forms are found with byte regexes (a digit run standing alone, not inside a hex
digest or a word) and checked against the needle sets; binary forms with a sliding
8-byte window (numpy) checked with ``isin``. Integer amounts below 10,000 and
integer-valued small counts are not looked for (too common to tell from noise), nor the
body length in the header Flower puts before each serialised object (framing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["LeakReport", "Needles", "needles_from_province", "scan"]

# Text forms stand alone: a digit run inside a hex digest or a word is not a value.
_ASCII_ID = re.compile(rb"(?<![0-9A-Za-z])[0-9]{15}(?:[0-9]{2}[0-9X])?(?![0-9A-Za-z])")
# Flower writes each record's byte size as text after its type ("ConfigRecord  240665"): a
# length, not a value (a signed payload's size once equalled an amount of the province).
_DECIMAL = re.compile(
    rb"(?<![0-9A-Za-z.])(?<!Record  )-?[0-9]+(?:\.[0-9]+)?(?![0-9A-Za-z])")
_WIDE = [
    (re.compile(rb"(?:[0-9X]\x00){15,18}"), "utf-16-le"),
    (re.compile(rb"(?:\x00[0-9X]){15,18}"), "utf-16-be"),
    (re.compile(rb"(?:[0-9X]\x00\x00\x00){15,18}"), "utf-32-le"),
    (re.compile(rb"(?:\x00\x00\x00[0-9X]){15,18}"), "utf-32-be"),
]


_MIN_BINARY_INT = 1 << 24

# Flower's header of each serialised object: "<type> <child ids> <body length>\x00". The
# body length is framing, not data; blanked (same length) before the decimal-text scan, so
# a message whose size happens to equal an amount is not reported.
_FLOWER_HEADER = re.compile(
    rb"(?:Array|ArrayRecord|ConfigRecord|MetricRecord|RecordDict|Message) [0-9a-f,]* [0-9]+\x00")


def legacy_form(id18: str) -> str:
    """The 15-digit form of an 18-digit ID (drop the century and check character)."""
    return id18[:6] + id18[8:17]


@dataclass
class Needles:
    ids: set[str] = field(default_factory=set)
    id_ints: set[int] = field(default_factory=set)
    floats: set[float] = field(default_factory=set)
    float_text: set[bytes] = field(default_factory=set)
    ints: set[int] = field(default_factory=set)


@dataclass
class LeakReport:
    files: int = 0
    bytes: int = 0
    id_hits: dict[str, int] = field(default_factory=dict)
    value_hits: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.id_hits and not self.value_hits


def needles_from_province(province: Path) -> Needles:
    """Every ID form and distinctive plaintext value of the province's tables."""
    out = Needles()
    ids: set[str] = set()
    for path in sorted((province / "agencies" / "education").glob("*.parquet")):
        frame = pd.read_parquet(path)
        for col in ("student_id", "guardian1_id", "guardian2_id"):
            ids.update(str(x) for x in frame[col].dropna())
    for path in sorted((province / "agencies" / "departments").glob("*.parquet")):
        frame = pd.read_parquet(path)
        ids.update(str(x) for x in frame["person_id"].dropna())
        for col in frame.columns:
            if col == "person_id":
                continue
            values = pd.to_numeric(frame[col], errors="coerce").dropna().to_numpy(np.float64)
            for v in values.tolist():
                if abs(v) >= 10 and v != round(v):
                    out.floats.add(float(v))
                    out.float_text.update({repr(v).encode(), f"{v:.2f}".encode()})
                elif abs(v) >= 10000 and v == round(v):
                    out.ints.add(int(v))
                    out.floats.add(float(v))
    for i in list(ids):
        if len(i) == 18:
            ids.add(legacy_form(i))
    out.ids = ids
    out.id_ints = {int(i) for i in ids if i.isdigit()}
    return out


def _windows(blob: bytes) -> npt.NDArray[np.uint8]:
    arr = np.frombuffer(blob, dtype=np.uint8)
    if len(arr) < 8:
        return np.zeros((0, 8), dtype=np.uint8)
    return np.lib.stride_tricks.sliding_window_view(arr, 8)


def _binary_hits(blob: bytes, needles: Needles) -> tuple[int, int]:
    win = np.ascontiguousarray(_windows(blob))
    if not len(win):
        return 0, 0
    le = win.view("<u8").ravel()
    be = win.view(">u8").ravel()
    le7 = le & np.uint64(0x00FFFFFFFFFFFFFF)
    be7 = be >> np.uint64(8)
    id_arr = np.fromiter(needles.id_ints, dtype=np.uint64, count=len(needles.id_ints))
    # As raw 8-byte integers only values of 3+ significant bytes: a small one (e.g. 12608,
    # bytes 00..31 40) is also the tail of any float64 like 17.0 (a released count).
    big = [v for v in needles.ints if v >= _MIN_BINARY_INT]
    int_arr = np.fromiter(big, dtype=np.uint64, count=len(big))
    id_hits = sum(int(np.isin(x, id_arr).sum()) for x in (le, be, le7, be7)) if len(id_arr) else 0
    val_hits = sum(int(np.isin(x, int_arr).sum()) for x in (le, be)) if len(int_arr) else 0
    if needles.floats:
        f_arr = np.fromiter(needles.floats, dtype=np.float64, count=len(needles.floats))
        for dt in ("<f8", ">f8"):
            vals = win.view(dt).ravel()
            val_hits += int(np.isin(vals, f_arr).sum())
    return id_hits, val_hits


def scan(files: Iterable[Path], needles: Needles) -> LeakReport:
    """Look for every needle form in every file."""
    report = LeakReport()
    int_text = {str(v).encode() for v in needles.ints}
    for path in files:
        blob = path.read_bytes()
        report.files += 1
        report.bytes += len(blob)
        name = path.name
        hits = sum(1 for m in _ASCII_ID.findall(blob) if m.decode() in needles.ids)
        for pattern, enc in _WIDE:
            hits += sum(1 for m in pattern.findall(blob) if m.decode(enc) in needles.ids)
        framed = _FLOWER_HEADER.sub(lambda m: b"\x00" * len(m.group(0)), blob)
        values = sum(1 for m in _DECIMAL.findall(framed)
                     if m in needles.float_text or m in int_text)
        bin_ids, bin_values = _binary_hits(blob, needles)
        if hits + bin_ids:
            report.id_hits[name] = hits + bin_ids
        if values + bin_values:
            report.value_hits[name] = values + bin_values
    return report
