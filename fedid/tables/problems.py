"""Validation reports: every problem found in an agency table, by row and column.

Problems are kept column-wise (one pandas frame), so a million-row table with a problem in
every row still reports all of them cheaply. ``row`` is the 1-based data row as a user sees
it: row 1 is the first row under the header (line 2 of a CSV file, row 2 of a
spreadsheet); ``row`` is empty for problems of the whole file or of a whole column.

Messages state the rule and the observed value, except for ID columns, whose values never
appear in a report, a message or a log: an ID problem names the GB 11643-1999 rule broken.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

__all__ = ["Problem", "ProblemKind", "Severity", "ValidationReport"]

Severity = Literal["error", "warning"]


class ProblemKind(enum.StrEnum):
    """What is wrong; the summary counts problems per kind."""

    UNREADABLE = "unreadable"  # the file cannot be read or decoded
    MISSING_COLUMN = "missing_column"  # a required column is absent
    UNKNOWN_COLUMN = "unknown_column"  # a column the schema does not know (warning unless strict)
    DUPLICATE_COLUMN = "duplicate_column"  # the same column name twice
    BAD_ID = "bad_id"  # an ID number breaks GB 11643-1999 (the rule is named)
    MISSING_VALUE = "missing_value"  # a required value (the key) is empty
    WRONG_TYPE = "wrong_type"  # a value that does not parse as the column's type
    OUT_OF_RANGE = "out_of_range"  # a number outside the schema's [min, max]
    BAD_CATEGORY = "bad_category"  # a value outside the column's categories
    DUPLICATE_KEY = "duplicate_key"  # the same person twice (after 15 -> 18 upgrade)
    INCONSISTENT_KEY = "inconsistent_key"  # guardian equal to the student or to the other one
    EMPTY_TABLE = "empty_table"  # no data rows (warning)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: where (1-based data row, column) and what (rule and observed value)."""

    kind: ProblemKind
    severity: Severity
    row: int | None
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "severity": self.severity,
            "row": self.row,
            "column": self.column,
            "message": self.message,
        }


PROBLEM_COLUMNS = ("kind", "severity", "row", "column", "message")


def problems_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate problem frames and sort them by row (file-level problems first)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})
    frame = pd.concat(parts, ignore_index=True)
    frame["row"] = frame["row"].astype("Int64")
    order = frame.assign(_r=frame["row"].fillna(0)).sort_values("_r", kind="stable").index
    return frame.loc[order].reset_index(drop=True)


@dataclass(frozen=True, slots=True, eq=False)
class ValidationReport:
    """Every problem of one agency table plus a summary.

    ``ok`` is True when there is no error (warnings allowed). ``problems_df`` holds the
    problems column-wise; iterate the report or call :meth:`problems` for objects.
    """

    path: str
    kind: Literal["education", "department"]
    department: str
    rows: int
    columns: tuple[str, ...]
    encoding: str | None
    problems_df: pd.DataFrame
    legacy_ids: int = 0
    strict: bool = False
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return int((self.problems_df["severity"] == "error").sum())

    @property
    def warnings(self) -> int:
        return int((self.problems_df["severity"] == "warning").sum())

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def counts(self) -> dict[str, int]:
        """Number of problems per kind (only kinds that occur), in ProblemKind order."""
        got = self.problems_df["kind"].value_counts()
        return {str(k): int(got[k]) for k in ProblemKind if k in got.index}

    def problems(self, limit: int | None = None) -> list[Problem]:
        """Problems as objects, in row order (the first ``limit`` if given)."""
        frame = self.problems_df if limit is None else self.problems_df.head(limit)
        return [
            Problem(
                kind=ProblemKind(k),
                severity=s,
                row=None if pd.isna(r) else int(r),
                column=None if c is None or pd.isna(c) else str(c),
                message=str(m),
            )
            for k, s, r, c, m in zip(
                frame["kind"], frame["severity"], frame["row"], frame["column"],
                frame["message"], strict=True,
            )
        ]  # fmt: skip

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems())

    def __len__(self) -> int:
        return len(self.problems_df)

    def summary(self) -> str:
        """One line: file, kind, rows, errors, warnings and counts per kind."""
        per = ", ".join(f"{k}: {n}" for k, n in self.counts().items()) or "no problems"
        return (
            f"{self.path} ({self.kind}, {self.department}): {self.rows} rows, "
            f"{self.errors} errors, {self.warnings} warnings ({per})"
        )

    def to_dict(self, *, max_problems: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict: summary fields and the problems (all unless limited)."""
        shown = self.problems(max_problems)
        return {
            "path": self.path,
            "kind": self.kind,
            "department": self.department,
            "rows": self.rows,
            "columns": list(self.columns),
            "encoding": self.encoding,
            "strict": self.strict,
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "counts": self.counts(),
            "legacy_ids": self.legacy_ids,
            "stats": dict(self.stats),
            "problems_total": len(self),
            "problems": [p.to_dict() for p in shown],
        }
