"""Code-point matrices of ID strings: the vectorised core behind :mod:`fedid.ids`.

An array of n strings becomes an ``(n, width)`` uint32 matrix of code points: a numpy
``str_`` array is viewed in place; a pyarrow string array (a pandas ``str`` column) is read
straight from its buffer when it is plain ASCII. Normalisation works on the matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "NINE",
    "ZERO",
    "BoolArray",
    "StrArray",
    "X",
    "codes_of",
    "from_codes",
    "input_codes",
    "normalise_codes",
    "to_str_array",
]

StrArray = npt.NDArray[np.str_]
BoolArray = npt.NDArray[np.bool_]
X = 0x58
ZERO = 0x30
NINE = 0x39
_WHITESPACE = np.array(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x3000, 0x200B, 0xFEFF], dtype=np.uint32
)


def to_str_array(ids: Any) -> tuple[StrArray, BoolArray]:
    """A 1-D native ``str_`` array and a null mask from any 1-D array-like of strings."""
    if isinstance(ids, str):
        raise TypeError("expected a 1-D array-like of ID strings, got a single str")
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise TypeError(f"expected a 1-D array-like of ID strings, got {arr.ndim} dimensions")
    if arr.dtype.kind == "U":
        return np.ascontiguousarray(arr, dtype=np.str_), np.zeros(len(arr), dtype=bool)
    if arr.dtype.kind == "O":
        null = np.fromiter(
            (not isinstance(x, str | int | np.integer) for x in arr), dtype=bool, count=len(arr)
        )
        vals = ["" if m else str(x) for x, m in zip(arr, null, strict=True)]
        return np.asarray(vals if vals else np.empty(0, dtype="U1"), dtype=np.str_), null
    if arr.dtype.kind == "f":
        null = np.isnan(arr)
        out = np.where(null, "", arr.astype(str))
        return np.ascontiguousarray(out, dtype=np.str_), null
    if arr.dtype.kind in "iuS":
        return np.ascontiguousarray(arr.astype(np.str_)), np.zeros(len(arr), dtype=bool)
    raise TypeError(f"expected ID strings, got an array of dtype {arr.dtype}")


def codes_of(arr: StrArray, min_width: int = 0) -> npt.NDArray[np.uint32]:
    """The ``(n, width)`` uint32 code-point matrix of a native ``str_`` array."""
    n = len(arr)
    width = max(arr.dtype.itemsize // 4, 1)
    codes = (
        np.ascontiguousarray(arr).view(np.uint32).reshape(n, width)
        if n
        else (np.zeros((0, width), dtype=np.uint32))
    )
    if width < min_width:
        codes = np.pad(codes, ((0, 0), (0, min_width - width)))
    return codes


def from_codes(codes: npt.NDArray[np.uint32]) -> StrArray:
    n, width = codes.shape
    return np.ascontiguousarray(codes).view(f"U{width}").reshape(n)


def normalise_codes(codes: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Normalise a code matrix; only rows holding a character other than 0-9, X are touched."""
    clean = ((codes >= ZERO) & (codes <= NINE)) | (codes == X) | (codes == 0)
    dirty = np.flatnonzero(~clean.all(axis=1))
    if dirty.size == 0:
        return codes
    out = codes.copy()
    sub = out[dirty]
    full_width_digit = (sub >= 0xFF10) & (sub <= 0xFF19)
    sub = np.where(full_width_digit, sub - 0xFEE0, sub)
    sub = np.where((sub == 0x78) | (sub == 0xFF38) | (sub == 0xFF58), X, sub)
    sub = np.where(np.isin(sub, _WHITESPACE), 0, sub)
    order = np.argsort(sub == 0, axis=1, kind="stable")  # move removed characters to the end
    out[dirty] = np.take_along_axis(sub, order, axis=1)
    return out


def _arrow_strings(ids: Any) -> Any | None:
    """A pyarrow string array behind ``ids`` (pyarrow array, pandas arrow-backed column)."""
    candidate = getattr(ids, "array", ids)
    if not (
        type(candidate).__module__.startswith("pyarrow") or hasattr(candidate, "__arrow_array__")
    ):
        return None
    import pyarrow as pa

    arr = candidate if isinstance(candidate, pa.Array | pa.ChunkedArray) else pa.array(candidate)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def _arrow_codes(arr: Any) -> tuple[npt.NDArray[np.uint32], BoolArray] | None:
    """Code matrix straight from an ASCII arrow string buffer; None if not plain ASCII."""
    n = len(arr)
    null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(n, bool)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    width = int(lengths.max(initial=0))
    if data_buf is None or width == 0:
        return np.zeros((n, 18), dtype=np.uint32), null
    data = np.frombuffer(data_buf, dtype=np.uint8)
    if width > 64 or (data[offsets[0] : offsets[-1]] >= 0x80).any():
        return None
    if (lengths == width).all():  # every string the same length: a zero-copy reshape
        block = data[offsets[0] : offsets[-1]].reshape(n, width)
        out = np.zeros((n, max(width, 18)), dtype=np.uint32)
        out[:, :width] = block
        return out, null
    width = max(width, 18)
    cols = np.arange(width, dtype=np.int64)
    index = np.minimum(offsets[:-1, None] + cols, len(data) - 1)
    codes = np.where(cols < lengths[:, None], data[index], 0).astype(np.uint32)
    return codes, null


def input_codes(ids: Any) -> tuple[npt.NDArray[np.uint32], BoolArray]:
    arrow = _arrow_strings(ids)
    if arrow is not None:
        fast = _arrow_codes(arrow)
        if fast is not None:
            return fast
        ids = arrow.to_numpy(zero_copy_only=False)
    arr, null = to_str_array(ids)
    return codes_of(arr, min_width=18), null
