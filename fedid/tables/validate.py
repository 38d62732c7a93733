"""Validating and loading one agency's table against the schema.

Layouts (see also the schema file's header comment):

- education (an education-side department): ``student_id`` (required, unique, not
  empty); ``guardian1_id``, ``guardian2_id`` (optional columns, empty cells allowed); the
  source columns of the indicators that department owns (required columns, empty cells
  allowed: not every record is complete); ``applied`` (bool), ``stage`` (k12 |
  senior_high | university), ``label_level`` (a level name or label) and
  ``label_<flag>`` (bool) per dimension flag, all optional.
- department (an evidence-side department): ``person_id`` (required, unique, not empty;
  legacy 15-digit numbers are accepted and upgraded) and the source columns of the
  indicators it owns (required columns, empty cells allowed).

ID columns are canonicalised (normalised, 15 -> 18 upgraded); uniqueness is checked on the
canonical key, so a person listed once with a 15-digit and once with an 18-digit number
is a duplicate. Columns the layout does not know are a warning (they are not loaded), or an
error with ``strict=True``. Validation never stops at the first problem and never
modifies its input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fedid.errors import ConfigError, DataValidationError
from fedid.schema import Indicator, Schema, load_schema
from fedid.tables.columns import STAGES, ColumnSpec, Parsed, parse_column
from fedid.tables.problems import ProblemKind, ValidationReport, problems_frame
from fedid.tables.read import RawTable, read_raw

__all__ = [
    "AgencyTable",
    "Kind",
    "infer_kind",
    "layout",
    "load_agency_table",
    "validate_agency_table",
    "validate_frame",
]

logger = logging.getLogger(__name__)
Kind = Literal["education", "department"]
KEY_COLUMN: dict[str, str] = {"education": "student_id", "department": "person_id"}


def _indicator_spec(ind: Indicator) -> ColumnSpec:
    lo = None if ind.min is None else float(ind.min)
    hi = None if ind.max is None else float(ind.max)
    return ColumnSpec(
        ind.source_field, ind.type, required=True, min=lo, max=hi, categories=ind.categories
    )


def resolve(schema: Schema, kind: Kind, department: str | None) -> str:
    """The department a table belongs to; checks it exists and fits the kind."""
    if kind not in KEY_COLUMN:
        raise ConfigError(f"kind must be 'education' or 'department'. Got {kind!r}")
    side = "education" if kind == "education" else "evidence"
    if department is None:
        candidates = schema.education_departments if kind == "education" else ()
        if len(candidates) != 1:
            raise ConfigError(f"a {kind} table needs its department named (--department)")
        return candidates[0]
    dept = schema.department(department)
    if dept.side != side:
        raise ConfigError(
            f"department {department!r} is on the {dept.side} side; a {kind} table needs an "
            f"{side}-side department"
        )
    return department


def layout(schema: Schema, kind: Kind, department: str | None = None) -> tuple[ColumnSpec, ...]:
    """The columns a table of this kind and department may hold, in canonical order."""
    dept = resolve(schema, kind, department)
    indicators = tuple(_indicator_spec(i) for i in schema.source_fields(dept))
    if kind == "department":
        return (ColumnSpec("person_id", "id", required=True, nullable=False, key=True), *indicators)
    levels = schema.levels
    return (
        ColumnSpec("student_id", "id", required=True, nullable=False, key=True),
        ColumnSpec("guardian1_id", "id"),
        ColumnSpec("guardian2_id", "id"),
        *indicators,
        ColumnSpec("applied", "bool"),
        ColumnSpec("stage", "category", categories=STAGES),
        ColumnSpec(
            "label_level",
            "category",
            categories=tuple(levels.names),
            aliases=dict(zip(levels.labels, levels.names, strict=True)),
        ),
        *(ColumnSpec(f"label_{flag}", "bool") for flag in schema.dimension_flags),
    )


def infer_kind(
    path: Path | str | None, columns: tuple[str, ...], schema: Schema
) -> tuple[Kind, str]:
    """Kind and department of a table from its path (``.../departments/<dept>.parquet``,
    ``.../education/...``) or, failing that, its columns."""
    if path is not None:
        p = Path(path)
        if p.parent.name == "departments" and p.stem in schema.evidence_departments:
            return "department", p.stem
        if p.parent.name == "education" and len(schema.education_departments) == 1:
            return "education", schema.education_departments[0]
    cols = set(columns)
    if "student_id" in cols:
        return "education", resolve(schema, "education", None)
    if "person_id" in cols:
        scores = {
            d: len(cols & {i.source_field for i in schema.owned_by(d)})
            for d in schema.evidence_departments
        }
        best = max(scores.values(), default=0)
        winners = [d for d, s in scores.items() if s == best]
        if best > 0 and len(winners) == 1:
            return "department", winners[0]
        raise ConfigError(
            "cannot tell which department this table belongs to from its columns; pass --department"
        )
    raise ConfigError(
        "cannot tell the table's kind: no student_id or person_id column; pass --kind"
    )


def _column_problems(
    raw: RawTable, specs: tuple[ColumnSpec, ...], strict: bool
) -> list[pd.DataFrame]:
    known = {s.name for s in specs}
    rows = []
    seen: set[str] = set()
    for name in raw.header:
        if name in seen:
            rows.append(("duplicate_column", "error", name, "column name appears more than once"))
        elif name not in known:
            sev = "error" if strict else "warning"
            rows.append(
                ("unknown_column", sev, name, "not a column of this table's layout; not loaded")
            )
        seen.add(name)
    for spec in specs:
        if spec.required and spec.name not in seen:
            rows.append(("missing_column", "error", spec.name, "required column is missing"))
    frame = pd.DataFrame(rows, columns=["kind", "severity", "column", "message"])
    frame.insert(2, "row", pd.array([None] * len(frame), dtype="Int64"))
    return [frame]


def _duplicate_keys(key: Parsed, name: str) -> pd.DataFrame:
    ok = key.ok if key.ok is not None else np.ones(len(key.values), dtype=bool)
    values = key.values[ok]
    positions = pd.Series(np.flatnonzero(ok), index=values.index)
    dup = values.duplicated(keep="first").to_numpy()
    if not dup.any():
        return pd.DataFrame()
    first = positions.groupby(values.to_numpy()).transform("min").to_numpy()
    mask = np.zeros(len(key.values), dtype=bool)
    mask[positions.to_numpy()[dup]] = True
    return pd.DataFrame(
        {
            "kind": str(ProblemKind.DUPLICATE_KEY),
            "severity": "error",
            "row": positions.to_numpy()[dup] + 1,
            "column": name,
            "message": [f"same person as row {int(f) + 1}" for f in first[dup]],
        }
    )


def _inconsistent(parsed: dict[str, Parsed]) -> list[pd.DataFrame]:
    out = []
    student = parsed["student_id"].values
    pairs = [("guardian1_id", student, "equals student_id")]
    pairs += [("guardian2_id", student, "equals student_id")]
    if "guardian1_id" in parsed:
        pairs.append(("guardian2_id", parsed["guardian1_id"].values, "equals guardian1_id"))
    for col, other, what in pairs:
        if col not in parsed:
            continue
        mask = (parsed[col].values == other).fillna(False).to_numpy(dtype=bool)
        rows = np.flatnonzero(mask) + 1
        out.append(
            pd.DataFrame(
                {"kind": str(ProblemKind.INCONSISTENT_KEY), "severity": "warning", "row": rows,
                 "column": col, "message": f"guardian ID {what}"}
            )
        )  # fmt: skip
    return out


@dataclass(frozen=True, slots=True, eq=False)
class AgencyTable:
    """A validated, typed table of one agency.

    ``frame``: the layout's columns present in the file, in layout order; ID columns hold
    canonical 18-character numbers (empty cells: null), numbers are float64 (NaN for
    empty) or nullable Int64, booleans nullable ``boolean``, categories ``category``
    with the schema's categories. Row ``i`` of the frame is data row ``i + 1`` of the file.
    """

    frame: pd.DataFrame
    kind: Kind
    department: str
    schema: Schema
    report: ValidationReport

    @property
    def key_column(self) -> str:
        return KEY_COLUMN[self.kind]

    @property
    def indicators(self) -> tuple[Indicator, ...]:
        return self.schema.owned_by(self.department)

    def __len__(self) -> int:
        return len(self.frame)


def _validate(
    raw: RawTable, *, source: str, schema: Schema, kind: Kind, department: str, strict: bool
) -> tuple[ValidationReport, pd.DataFrame]:
    started = time.perf_counter()
    specs = layout(schema, kind, department)
    frame = raw.frame
    parts = _column_problems(raw, specs, strict)
    parsed: dict[str, Parsed] = {}
    for spec in specs:
        if spec.name in frame.columns:
            parsed[spec.name] = parse_column(frame[spec.name].reset_index(drop=True), spec)
            parts.append(parsed[spec.name].problems)
    key = KEY_COLUMN[kind]
    if key in parsed:
        parts.append(_duplicate_keys(parsed[key], key))
        if kind == "education":
            parts.extend(_inconsistent(parsed))
    if len(frame) == 0:
        parts.append(
            pd.DataFrame([{"kind": "empty_table", "severity": "warning", "row": None,
                           "column": None, "message": "the table has no data rows"}])
        )  # fmt: skip
    typed = pd.DataFrame({name: p.values for name, p in parsed.items()})
    report = ValidationReport(
        path=source,
        kind=kind,
        department=department,
        rows=len(frame),
        columns=raw.header,
        encoding=raw.encoding,
        problems_df=problems_frame(parts),
        legacy_ids=sum(p.legacy for p in parsed.values()),
        strict=strict,
        stats={
            **{f"empty_{name}": p.nulls for name, p in parsed.items() if p.nulls},
            **({"trailing_blank_rows": raw.trailing_blank_rows} if raw.trailing_blank_rows else {}),
        },
    )
    logger.info(
        "validated %s: %d rows, %d errors, %d warnings in %.2f s",
        source, report.rows, report.errors, report.warnings, time.perf_counter() - started,
    )  # fmt: skip
    return report, typed


def validate_frame(
    frame: pd.DataFrame,
    *,
    schema: Schema,
    kind: Kind,
    department: str | None = None,
    strict: bool = False,
    source: str = "<frame>",
) -> ValidationReport:
    """Validate an in-memory table (cells as strings or typed values)."""
    dept = resolve(schema, kind, department)
    raw = RawTable(
        frame=frame.reset_index(drop=True),
        header=tuple(str(c) for c in frame.columns),
        format="parquet",
        encoding=None,
    )
    return _validate(raw, source=source, schema=schema, kind=kind, department=dept, strict=strict)[
        0
    ]


def _unreadable(
    path: Path | str, kind: Kind, dept: str, exc: DataValidationError
) -> ValidationReport:
    problems = pd.DataFrame(
        [{"kind": "unreadable", "severity": "error", "row": None, "column": None,
          "message": str(exc)}]
    )  # fmt: skip
    return ValidationReport(
        path=str(path), kind=kind, department=dept, rows=0, columns=(), encoding=None,
        problems_df=problems_frame([problems]),
    )  # fmt: skip


def _run(
    path: Path | str,
    *,
    schema: Schema | None,
    kind: Kind | None,
    department: str | None,
    encoding: str | None,
    strict: bool,
) -> tuple[ValidationReport, pd.DataFrame | None, Schema, Kind, str]:
    schema = schema if schema is not None else load_schema()
    try:
        raw = read_raw(path, encoding=encoding)
    except DataValidationError as exc:
        k: Kind = kind or "education"
        dept = department or (schema.education_departments[0] if k == "education" else "?")
        return _unreadable(path, k, dept, exc), None, schema, k, dept
    if kind is None or department is None:
        try:
            inferred_kind, inferred = infer_kind(path, raw.header, schema)
        except ConfigError:
            if kind is None:
                raise
            inferred_kind, inferred = kind, None
        kind = kind or inferred_kind
        if department is None and inferred_kind == kind:
            department = inferred
    dept = resolve(schema, kind, department)
    report, typed = _validate(
        raw, source=str(path), schema=schema, kind=kind, department=dept, strict=strict
    )
    return report, typed, schema, kind, dept


def validate_agency_table(
    path: Path | str,
    *,
    schema: Schema | None = None,
    kind: Kind | None = "education",
    department: str | None = None,
    encoding: str | None = None,
    strict: bool = False,
) -> ValidationReport:
    """Every problem of one agency file (CSV or Parquet); never raises for bad data.

    ``kind=None`` infers kind and department from the path or the columns (see
    :func:`infer_kind`). A file that cannot be read yields a report with one
    ``unreadable`` error. Raises :class:`ConfigError` for an unknown department or a
    kind that cannot be inferred.
    """
    return _run(
        path, schema=schema, kind=kind, department=department, encoding=encoding, strict=strict
    )[0]


def load_agency_table(
    path: Path | str,
    *,
    schema: Schema | None = None,
    kind: Kind | None = "education",
    department: str | None = None,
    encoding: str | None = None,
    strict: bool = False,
) -> AgencyTable:
    """Validate and load a table; raises :class:`DataValidationError` (with ``.report``)
    if it has any error. Warnings (e.g. unknown columns) are kept in ``table.report``."""
    report, typed, schema, kind, dept = _run(
        path, schema=schema, kind=kind, department=department, encoding=encoding, strict=strict
    )
    if not report.ok or typed is None:
        raise DataValidationError(f"agency table failed validation: {report.summary()}", report)
    return AgencyTable(frame=typed, kind=kind, department=dept, schema=schema, report=report)
