"""Agency tables: read CSV/Parquet, validate against the schema, load typed tables.

``load_agency_table(path, *, schema, kind, department)`` returns an :class:`AgencyTable`
or raises :class:`~fedid.errors.DataValidationError` carrying the full
:class:`ValidationReport`; ``validate_agency_table`` returns the report without raising.
Modules: :mod:`~fedid.tables.read` (files and encodings), :mod:`~fedid.tables.columns`
(column layouts and parsing), :mod:`~fedid.tables.validate` (tables),
:mod:`~fedid.tables.problems` (problems and summaries).
"""

from fedid.tables.columns import STAGES, ColumnSpec
from fedid.tables.problems import Problem, ProblemKind, ValidationReport
from fedid.tables.read import FORMATS, RawTable, decode, read_raw
from fedid.tables.validate import (
    AgencyTable,
    Kind,
    infer_kind,
    layout,
    load_agency_table,
    validate_agency_table,
    validate_frame,
)

__all__ = [
    "FORMATS",
    "STAGES",
    "AgencyTable",
    "ColumnSpec",
    "Kind",
    "Problem",
    "ProblemKind",
    "RawTable",
    "ValidationReport",
    "decode",
    "infer_kind",
    "layout",
    "load_agency_table",
    "read_raw",
    "validate_agency_table",
    "validate_frame",
]
