"""The few schema facts the generator and the reference join need, read from the TOML.

A tiny adapter over the schema file (``fedid/data/default_schema.toml`` by default) so the
generator does not depend on the full schema API: indicator names, owning departments,
types, keys (``keyed_by``), ``source_field`` and ``combine`` rules, categories, levels,
dimension flags and departments by side.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fedid.errors import SchemaError

__all__ = ["IndicatorView", "SchemaView", "default_schema_path", "load_schema_view"]

_COMBINES = frozenset({"sum", "max", "any", "min_positive"})


def default_schema_path() -> Path:
    """Path of the packaged default schema."""
    return Path(str(resources.files("fedid.data").joinpath("default_schema.toml")))


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


def _indicator(raw: dict[str, Any], sides: dict[str, str]) -> IndicatorView:
    name = str(raw.get("name", ""))
    dept = str(raw.get("department", ""))
    if dept not in sides:
        raise SchemaError(f"indicator {name!r}: unknown department {dept!r}")
    keyed_by = str(raw.get("keyed_by", "student"))
    combine = raw.get("combine")
    if keyed_by == "guardian" and combine not in _COMBINES:
        raise SchemaError(
            f"indicator {name!r}: guardian-keyed needs combine in {sorted(_COMBINES)}. "
            f"Got {combine!r}"
        )
    return IndicatorView(
        name=name,
        dimension=str(raw.get("dimension", "")),
        department=dept,
        type=str(raw.get("type", "")),
        keyed_by=keyed_by,
        source_field=str(raw.get("source_field", name)),
        combine=None if combine is None else str(combine),
        categories=tuple(str(c) for c in raw.get("categories", ())),
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
    )


def load_schema_view(path: Path | None = None) -> SchemaView:
    """Read a schema TOML file (default: the packaged default schema)."""
    src = default_schema_path() if path is None else path
    try:
        text = src.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"cannot read schema file {src.name}: {exc}") from exc
    sides = {str(k): str(v.get("side", "")) for k, v in data.get("departments", {}).items()}
    indicators = tuple(_indicator(raw, sides) for raw in data.get("indicators", []))
    levels = tuple(str(x) for x in data.get("levels", {}).get("names", ()))
    flags = tuple(str(x) for x in data.get("outputs", {}).get("dimension_flags", ()))
    if not indicators or len(levels) < 3 or not flags:
        raise SchemaError(
            f"schema needs indicators, >= 3 level names and dimension flags. Got "
            f"{len(indicators)} indicators, {len(levels)} levels, {len(flags)} flags"
        )
    return SchemaView(
        indicators=indicators,
        levels=levels,
        dimension_flags=flags,
        department_sides=sides,
        text=text,
    )
