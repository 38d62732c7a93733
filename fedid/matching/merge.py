"""Map decrypted matches back to students with the schema's keyed_by/source_field/combine rules.

For each evidence indicator released by its department's policy:

* ``keyed_by = "student"``: the field of the record matched to the student's own ID.
* ``keyed_by = "guardian"``: the fields of the records matched to guardian1 and guardian2,
  combined over the non-null values: ``sum``, ``max``, ``any`` (True if any is True),
  ``min_positive`` (smallest value > 0; 0 if the values are all 0).

A student with no matching record (or only null fields) gets null. Columns
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


def _combine(rule: str | None, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(len(a), None, dtype=object)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        vals = [v for v in (x, y) if v is not None]
        if not vals:
            continue
        if rule == "sum":
            out[i] = round(sum(vals), 6) if isinstance(vals[0], float) else sum(vals)
        elif rule == "max":
            out[i] = max(vals)
        elif rule == "any":
            out[i] = any(bool(v) for v in vals)
        elif rule == "min_positive":
            pos = [v for v in vals if v > 0]
            out[i] = min(pos) if pos else 0
        else:
            out[i] = vals[0]
    return out


def _gather(col: np.ndarray, pos: np.ndarray) -> np.ndarray:
    out = np.full(len(pos), None, dtype=object)
    ok = pos >= 0
    out[ok] = col[pos[ok]]
    return out


def _typed(ind: Indicator, values: np.ndarray) -> pd.Series:
    s = pd.Series(values, dtype=object)
    if ind.type == "bool":
        return s.astype("boolean")
    if ind.type in ("int", "ordinal"):
        return s.astype("Int64")
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
        lay = layouts.get(ind.department)
        if lay is None or ind.source_field not in {f.name for f in lay.fields}:
            continue
        col = fields_by_department.get(ind.department, {}).get(ind.source_field)
        if col is None:
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
