"""Map decrypted matches back to students with the schema's keyed_by/source_field/combine rules.

For each evidence indicator released by its department's policy:

* ``keyed_by = "student"``: the field of the record matched to the student's own ID.
* ``keyed_by = "guardian"``: the fields of the records matched to guardian1 and guardian2,
  combined over the non-null values: ``sum``, ``max``, ``any`` (True if any is True),
  ``min_positive`` (smallest value > 0; 0 if the values are all 0).

A student with no matching record (or only null fields) gets null, as does every
student for a field the department's policy withholds. Columns
``matched_<department>`` say whether any record of the department matched the student
or a guardian.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fedid.matching.policy import DepartmentLayout
from fedid.schema import Indicator, Schema

__all__ = ["decode_positions", "merge_evidence"]


def decode_positions(
    layout: DepartmentLayout, positions: np.ndarray, payloads: Sequence[int], key_count: int
) -> dict[str, np.ndarray]:
    """Field -> object array over key positions (None where no record or null)."""
    out: dict[str, np.ndarray] = {}
    for f in layout.fields:
        col = np.full(key_count, None, dtype=object)
        mask = (1 << f.bits) - 1
        col[positions] = [f.decode((p >> f.offset) & mask) for p in payloads]
        out[f.name] = col
    return out


def _floats(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    ok = np.array([v is not None for v in values.tolist()], dtype=bool)
    if ok.any():
        out[ok] = np.asarray([float(v) for v in values[ok].tolist()])
    return out


def _combine(rule: str | None, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two guardians' values (object arrays, None = null), vectorised over floats."""
    x, y = _floats(a), _floats(b)
    some = ~(np.isnan(x) & np.isnan(y))
    with np.errstate(invalid="ignore"):
        if rule == "sum":
            r = np.nansum(np.stack([x, y]), axis=0)
        elif rule == "max":
            r = np.fmax(x, y)
        elif rule == "any":
            r = ((x == 1) | (y == 1)).astype(float)
        elif rule == "min_positive":
            px = np.where(x > 0, x, np.inf)
            py = np.where(y > 0, y, np.inf)
            m = np.minimum(px, py)
            r = np.where(np.isinf(m), 0.0, m)
        else:
            r = np.where(np.isnan(x), y, x)
    r = np.round(r, 6)
    out = np.full(len(a), None, dtype=object)
    out[some] = r[some]
    return out


def _gather(col: np.ndarray, pos: np.ndarray) -> np.ndarray:
    out = np.full(len(pos), None, dtype=object)
    ok = pos >= 0
    out[ok] = col[pos[ok]]
    return out


def _typed(ind: Indicator, values: np.ndarray) -> pd.Series:
    s = pd.Series(values, dtype=object)
    if ind.type == "bool":
        return s.map(lambda v: None if v is None else bool(v)).astype("boolean")
    if ind.type in ("int", "ordinal"):
        return s.map(lambda v: None if v is None else round(v)).astype("Int64")
    if ind.type == "float":
        return s.astype("Float64")
    return s.astype("string")


def merge_evidence(
    *,
    schema: Schema,
    students: pd.DataFrame,
    layouts: Mapping[str, DepartmentLayout],
    fields_by_department: Mapping[str, dict[str, np.ndarray]],
    student_pos: np.ndarray,
    guardian_pos: Sequence[np.ndarray],
    matched_by_department: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """The students' table with the evidence indicators and ``matched_<dept>`` columns."""
    out = students.copy()
    for ind in schema.indicators:
        if ind.department not in layouts and ind.name in out.columns:
            continue  # education-owned (or otherwise local) indicator: keep the agency's own
        col = fields_by_department.get(ind.department, {}).get(ind.source_field)
        if col is None:  # not released by policy, no table, or no match at all: null
            values = np.full(len(students), None, dtype=object)
        elif ind.keyed_by == "student":
            values = _gather(col, student_pos)
        else:
            values = _combine(ind.combine, _gather(col, guardian_pos[0]),
                              _gather(col, guardian_pos[1]))
        out[ind.name] = _typed(ind, values).to_numpy()
    for dep, matched in matched_by_department.items():
        out[f"matched_{dep}"] = matched
    return out
