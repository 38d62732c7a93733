"""The plaintext reference join of agency tables: each student's value of every indicator.

This is what private matching must reproduce exactly, computed in the clear (simulation and
tests only). Rules, from the schema:

- education-owned indicators come from the student's own education row;
- a student-keyed evidence indicator is the ``source_field`` of the department's row whose
  ``person_id`` (canonicalised: normalised, 15-digit legacy numbers upgraded) equals the
  student's ID; null if the department has no such row or the field is null there;
- a guardian-keyed evidence indicator combines the ``source_field`` values of the rows of
  guardian1 and guardian2 (either may be absent): ``sum`` and ``max`` over non-null values,
  ``any`` true if any non-null value is true, ``min_positive`` the smallest value > 0, else
  0 if some value is non-null (all zero); null when no guardian has a non-null value.

Types: float -> Float64, int/ordinal -> Int64, bool -> boolean, category -> string.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedid.errors import DataValidationError
from fedid.ids import to_canonical
from simulations.province.departments import PANDAS_TYPES, typed_column
from simulations.province.schema_view import SchemaView

__all__ = ["join_evidence"]

FloatArray = npt.NDArray[np.float64]


_POWERS = 10 ** np.arange(16, -1, -1, dtype=np.int64)


def _canonical_keys(ids: pd.Series, *, what: str) -> npt.NDArray[np.int64]:
    """Canonical IDs as int64 keys (their first 17 digits; -1 for null).

    The check character is a function of the first 17 digits, so the key is one-to-one on
    valid canonical numbers; 15-digit legacy numbers are upgraded first.
    """
    present = ids.notna().to_numpy()
    keys = np.full(len(ids), -1, dtype=np.int64)
    if present.any():
        canon = to_canonical(ids[present].to_numpy(dtype=str))
        codes = np.ascontiguousarray(canon, dtype="U18").view(np.uint32).reshape(len(canon), 18)
        keys[present] = (codes[:, :17].astype(np.int64) - 48) @ _POWERS
    if what == "person_id":
        if not present.all():
            raise DataValidationError("person_id must not be null in a departmental table")
        if len(np.unique(keys)) != len(keys):
            raise DataValidationError(
                "person_id must be unique in a departmental table (after canonicalisation)"
            )
    return keys


def _sorted(table_keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """(order, sorted keys) of a departmental table's keys, computed once per table."""
    order = np.argsort(table_keys, kind="stable")
    return order, table_keys[order]


def _positions(
    table: tuple[npt.NDArray[np.int64], ...], keys: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Row of the table holding each of ``keys``; -1 where none (or the key is null)."""
    order, ranked = table
    if len(ranked) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    idx = np.minimum(np.searchsorted(ranked, keys), len(ranked) - 1)
    hit = (ranked[idx] == keys) & (keys >= 0)
    out: npt.NDArray[np.int64] = np.where(hit, order[idx], -1)
    return out


def _as_float(column: pd.Series) -> FloatArray:
    if isinstance(column.dtype, pd.BooleanDtype) or column.dtype == bool:
        column = column.astype("Float64")
    out: FloatArray = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _lookup(pos: npt.NDArray[np.int64], values: FloatArray) -> FloatArray:
    out: FloatArray = np.where(
        pos >= 0, values[np.maximum(pos, 0)] if len(values) else np.nan, np.nan
    )
    return out


def _combine(rule: str, a: FloatArray, b: FloatArray) -> FloatArray:
    both_null = np.isnan(a) & np.isnan(b)
    if rule == "sum":
        out = np.where(both_null, np.nan, np.nansum(np.stack([a, b]), axis=0))
    elif rule in ("max", "any"):
        out = np.fmax(a, b)
    elif rule == "min_positive":
        pa = np.where(a > 0, a, np.inf)
        pb = np.where(b > 0, b, np.inf)
        m = np.minimum(pa, pb)
        out = np.where(np.isfinite(m), m, np.where(both_null, np.nan, 0.0))
    else:
        raise DataValidationError(f"unknown combine rule {rule!r}")
    result: FloatArray = out
    return result


def join_evidence(
    students: pd.DataFrame, departments: Mapping[str, pd.DataFrame], schema: SchemaView
) -> pd.DataFrame:
    """Every indicator's value for each row of ``students`` (see module docstring).

    ``students`` needs student_id, guardian1_id, guardian2_id and the education-owned
    indicator columns; ``departments`` maps department name to its table. The result has
    one column per indicator, in schema order, on ``students``' index.
    """
    keys = {
        col: _canonical_keys(students[col], what=col)
        for col in ("student_id", "guardian1_id", "guardian2_id")
    }
    tables: dict[str, tuple[npt.NDArray[np.int64], ...]] = {}
    positions: dict[tuple[str, str], npt.NDArray[np.int64]] = {}

    def pos(dept: str, col: str) -> npt.NDArray[np.int64]:
        if dept not in tables:
            person = departments[dept]["person_id"]
            tables[dept] = _sorted(_canonical_keys(person, what="person_id"))
        if (dept, col) not in positions:
            positions[dept, col] = _positions(tables[dept], keys[col])
        return positions[dept, col]

    out: dict[str, object] = {}
    for ind in schema.indicators:
        if schema.department_sides.get(ind.department) == "education":
            out[ind.name] = students[ind.name].astype(PANDAS_TYPES[ind.type]).array
            continue
        table = departments.get(ind.department)
        if table is None:
            raise DataValidationError(f"no table for department {ind.department!r}")
        if ind.type == "category":
            where = pos(ind.department, "student_id")
            vals = table[ind.source_field].to_numpy(dtype=object, na_value=None)
            picked = np.where(where >= 0, vals[np.maximum(where, 0)] if len(vals) else None, None)
            out[ind.name] = typed_column(picked, "category")
            continue
        values = _as_float(table[ind.source_field])
        if ind.keyed_by == "student":
            joined = _lookup(pos(ind.department, "student_id"), values)
        else:
            joined = _combine(
                ind.combine or "",
                _lookup(pos(ind.department, "guardian1_id"), values),
                _lookup(pos(ind.department, "guardian2_id"), values),
            )
        out[ind.name] = typed_column(joined, ind.type)
    return pd.DataFrame(out, index=students.index)
