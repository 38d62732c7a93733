"""Reading agency files: CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) and Parquet.

CSV files are read entirely as text (every cell a string, nothing converted, no row
skipped: blank lines become empty rows so row numbers stay true; blank lines at the very
end are counted, not loaded), with pyarrow's fast reader, or pandas' when the file has
blank or ragged lines (a ragged line is an error naming its line), after detecting the
encoding: UTF-8 (with or without BOM) first, then GBK, then GB18030 (its superset), each
strictly; the first that decodes the whole file wins. Pass ``encoding`` to force one.
Files are opened read-only and never modified.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import csv as pa_csv

from fedid.errors import DataValidationError

__all__ = ["FORMATS", "RawTable", "decode", "read_raw"]

FORMATS: dict[str, Literal["csv", "parquet"]] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CANDIDATES = ("utf-8", "gbk", "gb18030")


@dataclass(frozen=True, slots=True, eq=False)
class RawTable:
    """A file's cells as read (strings for CSV), its header as written, and its encoding."""

    frame: pd.DataFrame
    header: tuple[str, ...]
    format: Literal["csv", "parquet"]
    encoding: str | None
    trailing_blank_rows: int = 0  # empty lines at the end of a CSV, not counted as rows


def decode(data: bytes, *, encoding: str | None = None, source: str = "<bytes>") -> tuple[str, str]:
    """Text and encoding name of a CSV file's bytes (see the module docstring)."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DataValidationError(f"{source}: unknown encoding {encoding!r}") from None
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            raise DataValidationError(
                f"{source}: not valid {encoding} text (byte offset {exc.start}: {exc.reason})"
            ) from exc
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise DataValidationError(
                f"{source}: starts with a UTF-8 BOM but is not valid UTF-8 "
                f"(byte offset {exc.start + 3}: {exc.reason})"
            ) from exc
    for name in _CANDIDATES:
        try:
            return data.decode(name), name
        except UnicodeDecodeError:
            continue
    raise DataValidationError(
        f"{source}: not UTF-8, GBK or GB18030 text; pass the file's encoding (--encoding)"
    )


def _read_csv(path: Path, encoding: str | None) -> RawTable:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot read the file ({exc.strerror})") from exc
    text, used = decode(data, encoding=encoding, source=str(path))
    if not text.strip():
        raise DataValidationError(f"{path}: the file is empty (no header row)")
    body = text.rstrip("\r\n")
    trailing_lines = max(text[len(body) :].count("\n") - 1, 0)
    frame, header = _fast_csv(body)
    if frame is None:
        frame, header = _careful_csv(body, path)
    blank = (frame.isna() | (frame == "")).all(axis=1).to_numpy()
    trailing = len(blank) - (int(np.flatnonzero(~blank)[-1]) + 1 if (~blank).any() else 0)
    if trailing:
        frame = frame.iloc[: len(frame) - trailing]
    return RawTable(
        frame=frame,
        header=header,
        format="csv",
        encoding=used,
        trailing_blank_rows=trailing + trailing_lines,
    )


def _fast_csv(text: str) -> tuple[pd.DataFrame | None, tuple[str, ...]]:
    """pyarrow's reader (about 10x pandas'); None when the file has blank or ragged lines,
    which it cannot keep in place, so the careful reader reports them by row."""
    header = tuple(h.strip() for h in next(csv.reader(io.StringIO(text)), []))
    names = _unique_names(header)
    try:
        table = pa_csv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, csv.Error):
        return None, header
    return table.to_pandas(), header


def _careful_csv(text: str, path: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """pandas' C reader keeping blank lines as empty rows; ragged rows are an error."""
    try:
        # header=None: the header row is data too, so a row with more fields than the
        # header is an error instead of silently becoming an index or being cut off.
        cells = pd.read_csv(
            io.StringIO(text),
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataValidationError(f"{path}: malformed CSV ({exc})") from exc
    header = tuple(str(h).strip() for h in cells.iloc[0])
    frame = cells.iloc[1:].reset_index(drop=True)
    frame.columns = pd.Index(_unique_names(header))
    return frame, header


def _unique_names(header: tuple[str, ...]) -> list[str]:
    """Header names, later duplicates renamed ``name#2`` so the frame stays addressable."""
    seen: dict[str, int] = {}
    out = []
    for name in header:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _read_parquet(path: Path) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"{path}: cannot read as Parquet ({exc})") from exc
    except Exception as exc:  # pyarrow's own error types (ArrowInvalid ...)
        raise DataValidationError(f"{path}: cannot read as Parquet ({exc})") from exc
    header = tuple(str(c) for c in frame.columns)
    frame.columns = pd.Index(_unique_names(header))
    return RawTable(
        frame=frame.reset_index(drop=True), header=header, format="parquet", encoding=None
    )


def read_raw(path: Path | str, *, encoding: str | None = None) -> RawTable:
    """Read a CSV or Parquet file without interpreting its cells.

    Raises :class:`DataValidationError` for an unsupported suffix, an unreadable file,
    an undecodable CSV or malformed content.
    """
    file = Path(path)
    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise DataValidationError(
            f"{file}: unsupported file type {file.suffix!r}; expected {', '.join(FORMATS)}"
        )
    if not file.is_file():
        raise DataValidationError(f"{file}: no such file")
    return _read_csv(file, encoding) if fmt == "csv" else _read_parquet(file)
