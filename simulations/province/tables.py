"""Read one table of a written province back with the schema's nullable types restored.

Kept apart from :mod:`simulations.province.io` (which writes a generated province and so
imports the generator) so that readers of a province on disk, such as
:mod:`simulations.reference_join`, do not import the generator.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedid.errors import ConfigError
from simulations.province.departments import PANDAS_TYPES
from simulations.province.schema_view import SchemaView

__all__ = ["read_table"]

_ID_COLUMNS = ("student_id", "guardian1_id", "guardian2_id", "person_id")
_STRING_COLUMNS = ("stage", "label_level", "home_agency", "sex", "region", "true_level")
_BOOL_COLUMNS = ("applied", "rural", "hidden_hardship")


def _dtypes(schema: SchemaView, columns: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    by_field = {i.source_field: i.type for i in schema.indicators}
    by_field.update({i.name: i.type for i in schema.indicators})
    for col in columns:
        if col in _ID_COLUMNS or col in _STRING_COLUMNS:
            out[col] = "string"
        elif col in _BOOL_COLUMNS or (col.startswith(("label_", "true_")) and col != "true_level"):
            out[col] = "boolean"
        elif col in by_field:
            out[col] = PANDAS_TYPES[by_field[col]]
    return out


def read_table(path: Path, schema: SchemaView) -> pd.DataFrame:
    """A province table (Parquet or CSV) with the schema's nullable types restored."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    else:
        raise ConfigError(f"table files must be .parquet or .csv. Got {path.suffix!r}")
    csv = path.suffix == ".csv"
    for col, dtype in _dtypes(schema, list(frame.columns)).items():
        series = frame[col]
        if csv and dtype == "boolean":
            frame[col] = series.map({"True": True, "False": False}).astype("boolean")
        elif csv and dtype in ("Float64", "Int64"):
            frame[col] = pd.to_numeric(series).astype(dtype)
        else:
            frame[col] = series.astype(dtype)
    return frame
