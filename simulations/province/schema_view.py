"""The few schema facts the generator and the reference join need, from :mod:`fedid.schema`.

A tiny adapter over the validated schema (``fedid/data/default_schema.toml`` by default)
that also keeps the file's text (copied next to the tables): indicator names, owning departments,
types, keys (``keyed_by``), ``source_field`` and ``combine`` rules, categories, levels,
dimension flags and departments by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedid.errors import SchemaError
from fedid.schema import Indicator, default_schema_path, load_schema

__all__ = ["IndicatorView", "SchemaView", "default_schema_path", "load_schema_view"]

@dataclass(frozen=True, slots=True)
class IndicatorView:
    """One indicator: where its value comes from and how a student's value is formed."""

    name: str
    dimension: str
    department: str
    type: str
    keyed_by: str
    source_field: str
    combine: str | None
    categories: tuple[str, ...]
    min: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class SchemaView:
    """Indicators, levels, dimension flags and departments of a schema file."""

    indicators: tuple[IndicatorView, ...]
    levels: tuple[str, ...]
    dimension_flags: tuple[str, ...]
    department_sides: dict[str, str]
    text: str

    def indicator(self, name: str) -> IndicatorView:
        """The indicator called ``name``."""
        for ind in self.indicators:
            if ind.name == name:
                return ind
        raise SchemaError(f"unknown indicator: {name!r}")

    def owned_by(self, department: str) -> tuple[IndicatorView, ...]:
        """Indicators owned by ``department``, in schema order."""
        return tuple(i for i in self.indicators if i.department == department)

    @property
    def evidence_departments(self) -> tuple[str, ...]:
        """Departments on the evidence side, in schema order."""
        return tuple(d for d, side in self.department_sides.items() if side == "evidence")

    @property
    def education_departments(self) -> tuple[str, ...]:
        """Departments on the education side."""
        return tuple(d for d, side in self.department_sides.items() if side == "education")

    def source_fields(self, department: str) -> tuple[str, ...]:
        """Distinct source columns of a department's table, in schema order."""
        out: list[str] = []
        for ind in self.owned_by(department):
            if ind.source_field not in out:
                out.append(ind.source_field)
        return tuple(out)


def _indicator(ind: Indicator) -> IndicatorView:
    return IndicatorView(
        name=ind.name,
        dimension=ind.dimension,
        department=ind.department,
        type=ind.type,
        keyed_by=ind.keyed_by,
        source_field=ind.source_field or ind.name,
        combine=ind.combine,
        categories=tuple(ind.categories),
        min=None if ind.min is None else float(ind.min),
        max=None if ind.max is None else float(ind.max),
    )


def load_schema_view(path: Path | None = None) -> SchemaView:
    """Load and validate a schema file with :func:`fedid.schema.load_schema` (default: the
    packaged default schema) and keep the facts the generator and the join need."""
    src = default_schema_path() if path is None else path
    schema = load_schema(src)
    try:
        text = src.read_text(encoding="utf-8")
    except OSError as exc:  # pragma: no cover - load_schema read it a moment ago
        raise SchemaError(f"cannot read schema file {src.name}: {exc}") from exc
    return SchemaView(
        indicators=tuple(_indicator(i) for i in schema.indicators),
        levels=tuple(schema.levels.names),
        dimension_flags=tuple(schema.dimension_flags),
        department_sides={name: d.side for name, d in schema.departments.items()},
        text=text,
    )
