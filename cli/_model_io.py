"""Reading the tables the model commands take (education table, evidence, ground truth)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedid.errors import DataValidationError
from fedid.model import build_inputs
from fedid.schema import Schema

__all__ = ["load_inputs", "read_frame"]


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame."""
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, encoding="utf-8-sig", dtype={"student_id": str})
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"could not read table {path.name}: {exc!s}") from exc


def load_inputs(data: Path, evidence: Path | None, schema: Schema) -> pd.DataFrame:
    """Validate the education table, join the matched evidence, return the model's inputs.

    Evidence comes from ``evidence`` (student_id + evidence-side indicators) or, without it,
    from evidence-side indicator columns already merged into ``data``.
    """
    from fedid.tables import load_agency_table

    table = load_agency_table(data, schema=schema, kind="education")
    frame = table.frame
    raw = read_frame(data)
    labels = [c for c in raw.columns if c.startswith("label_") and c not in frame.columns]
    if labels and len(raw) == len(frame):
        frame = frame.assign(**{c: raw[c].to_numpy() for c in labels})
    ev = read_frame(evidence) if evidence is not None else None
    merged = [  # a table with evidence already merged in (``fedid match`` resolved output)
        ind.name
        for ind in schema.indicators
        if schema.departments[ind.department].side == "evidence"
        and ind.name in raw.columns
        and ind.name not in frame.columns
    ]
    if ev is None and merged and "student_id" in raw.columns:
        ev = raw[["student_id", *merged]]
    return build_inputs(frame, ev, schema)
