"""The plaintext reference join over a province written to disk (simulation and tests only).

Reads the agency tables of a written province and joins them in the clear with
:func:`simulations.province.join.join_evidence` (its docstring states the join rules): this
is what private matching must reproduce exactly.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulations.province.join import join_evidence
from simulations.province.schema_view import SchemaView, load_schema_view
from simulations.province.tables import read_table

__all__ = ["load_province_tables", "reference_join"]


def load_province_tables(
    root: Path,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], SchemaView]:
    """Education tables, departmental tables and schema of a written province (any format)."""
    schema = load_schema_view(root / "schema.toml")
    tables: list[dict[str, pd.DataFrame]] = []
    for folder in ("education", "departments"):
        paths = sorted((root / "agencies" / folder).iterdir())
        tables.append(
            {p.stem: read_table(p, schema) for p in paths if p.suffix in (".parquet", ".csv")}
        )
    return tables[0], tables[1], schema


def reference_join(root: Path) -> pd.DataFrame:
    """The plaintext join over a written province (Parquet), one row per enrolled student.

    Columns: home_agency, student_id, then every indicator in schema order; rows ordered by
    agency id, then as in that agency's table.
    """
    education, departments, schema = load_province_tables(root)
    parts = []
    for agency, table in education.items():
        joined = join_evidence(table, departments, schema)
        joined.insert(0, "student_id", table["student_id"].astype("string").array)
        joined.insert(0, "home_agency", pd.array([agency] * len(table), dtype="string"))
        parts.append(joined)
    return pd.concat(parts, ignore_index=True)
