"""Schema rules: the checks behind :mod:`fedid.schema`'s dataclasses.

Each check raises :class:`SchemaError` with the rule broken and the observed value; the
builder in :mod:`fedid.schema` prefixes the file and the entry (``schema FILE:
indicators[3]: ...``). The checks take the dataclasses (an ``Indicator``, ``Rule`` or
``Schema`` of :mod:`fedid.schema`) typed ``Any``: the dataclasses import these rules, so
this module imports nothing from :mod:`fedid.schema` (no import cycle).
Rules (in addition to the field enumerations):

- levels: ``"none"`` followed by one or more unique level names (one: a binary task); one
  label per level;
- departments: identifier names, side ``education`` or ``evidence``, at least one
  education-side department (evidence-side departments are optional);
- indicators: unique identifier names, not a reserved column name; a dimension that is an
  identifier (free-form: :data:`DIMENSIONS` are the default schema's); known department and
  type; float/int/ordinal need ``min <= max`` (integers for int/ordinal,
  ``min >= 0`` for ``log1p``), bool/category take no range; category needs unique
  categories, other types take none; ``combine`` is required for guardian-keyed and
  forbidden for student-keyed indicators and must fit the type; an education-side
  department's indicators are keyed by student; indicators of one department that share a
  source field agree in type, range and categories;
- dimension flags: unique identifiers;
- labels (optional): ``threshold`` in (0, 1), or the label process (``missed_rate``,
  ``wrong_aid_rate``, ``hardship_share``, ``source``), not both;
- rules: unique names per kind, a known indicator, an operator that fits its type, values
  of the indicator's type inside its range or categories.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fedid.errors import SchemaError

__all__ = ["check_indicator", "check_rule_shape", "check_schema"]

DIMENSIONS = (
    "economic",
    "family",
    "special_group",
    "region",
    "sudden_event",
    "consumption",
    "academic",
    "psychological",
)
TYPES = ("float", "int", "bool", "ordinal", "category")
NUMERIC_TYPES = ("float", "int", "ordinal")
TRANSFORMS = ("linear", "log1p")
KEYED_BY = ("student", "guardian")
DIRECTIONS = ("harder_when_high", "harder_when_low", "neutral")
COMBINES = ("sum", "max", "any", "min_positive")
SIDES = ("education", "evidence")
OPS = ("==", "!=", ">=", ">", "<=", "<", "in")
RESERVED_COLUMNS = frozenset(
    {"person_id", "student_id", "guardian1_id", "guardian2_id", "applied", "stage", "label_level"}
)
_COMBINE_TYPES = {
    "sum": ("float", "int"),
    "max": ("float", "int", "ordinal", "bool"),
    "any": ("bool",),
    "min_positive": ("float", "int", "ordinal"),
}
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def _one_of(what: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SchemaError(f"{what} must be one of {', '.join(allowed)}. Got {value!r}")


def _identifier(what: str, value: object) -> None:
    if not isinstance(value, str) or not _IDENT.match(value):
        raise SchemaError(
            f"{what} must be a lower-case identifier (a-z, 0-9, _; starting with a letter). "
            f"Got {value!r}"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- object checks


def check_indicator(ind: Any) -> None:
    """Rules one indicator must satisfy on its own."""
    try:
        _check_indicator(ind)
    except SchemaError as exc:
        raise SchemaError(f"indicator {ind.name!r}: {exc}") from None


def _check_indicator(ind: Any) -> None:
    _identifier("name", ind.name)
    if ind.name in RESERVED_COLUMNS or ind.name.startswith("label_"):
        raise SchemaError(f"name must not be a reserved column name. Got {ind.name!r}")
    _identifier("dimension", ind.dimension)
    _one_of("type", ind.type, TYPES)
    _one_of("keyed_by", ind.keyed_by, KEYED_BY)
    _one_of("direction", ind.direction, DIRECTIONS)
    _identifier("source_field", ind.source_field)
    if ind.source_field in RESERVED_COLUMNS or ind.source_field.startswith("label_"):
        raise SchemaError(f"source_field must not be a reserved column. Got {ind.source_field!r}")
    if not isinstance(ind.unit, str):
        raise SchemaError(f"unit must be a string. Got {ind.unit!r}")
    _check_range(ind)
    _check_categories(ind)
    if ind.keyed_by == "guardian":
        if ind.combine is None:
            raise SchemaError(
                f"combine is required for guardian-keyed indicators ({', '.join(COMBINES)})"
            )
        _one_of("combine", ind.combine, COMBINES)
        if ind.type not in _COMBINE_TYPES[ind.combine]:
            raise SchemaError(
                f"combine {ind.combine!r} needs type {' or '.join(_COMBINE_TYPES[ind.combine])}. "
                f"Got type {ind.type!r}"
            )
    elif ind.combine is not None:
        raise SchemaError(
            f"combine is only for guardian-keyed indicators. Got {ind.combine!r} "
            "with keyed_by 'student'"
        )


def _check_range(ind: Any) -> None:
    if ind.type not in NUMERIC_TYPES:
        if ind.min is not None or ind.max is not None:
            raise SchemaError(f"type {ind.type!r} takes no min/max. Got {ind.min!r}..{ind.max!r}")
        if ind.transform is not None:
            raise SchemaError(f"type {ind.type!r} takes no transform. Got {ind.transform!r}")
        return
    for bound in ("min", "max"):
        value = getattr(ind, bound)
        if value is None:
            raise SchemaError(f"{bound} is required for type {ind.type!r}")
        if not _is_number(value) or not math.isfinite(value):
            raise SchemaError(f"{bound} must be a finite number. Got {value!r}")
        if ind.type != "float" and not isinstance(value, int):
            raise SchemaError(f"{bound} must be an integer for type {ind.type!r}. Got {value!r}")
    lo, hi = float(ind.min or 0), float(ind.max or 0)  # both numbers, checked above
    if lo > hi:
        raise SchemaError(f"min must be <= max. Got min {ind.min!r} > max {ind.max!r}")
    _one_of("transform", ind.transform, TRANSFORMS)
    if ind.transform == "log1p" and lo < 0:
        raise SchemaError(f"transform 'log1p' needs min >= 0. Got min {ind.min!r}")


def _check_categories(ind: Any) -> None:
    if ind.type != "category":
        if ind.categories:
            raise SchemaError(f"categories are only for type 'category'. Got type {ind.type!r}")
        return
    cats = ind.categories
    if not cats or not all(isinstance(c, str) and c for c in cats):
        raise SchemaError(f"type 'category' needs a non-empty list of strings. Got {list(cats)}")
    if len(set(cats)) != len(cats):
        raise SchemaError(f"categories must be unique. Got {list(cats)}")


def check_rule_shape(rule: Any) -> None:
    """Rules one rule-layer entry must satisfy on its own (the indicator is checked later)."""
    _identifier(f"rule {rule.name!r}: name", rule.name)
    _one_of(f"rule {rule.name!r}: kind", rule.kind, ("direct", "exclusion"))
    _one_of(f"rule {rule.name!r}: op", rule.op, OPS)
    is_list = isinstance(rule.value, tuple)
    if (rule.op == "in") != is_list or (is_list and not rule.value):
        raise SchemaError(
            f"rule {rule.name!r}: op 'in' takes a non-empty list and the other operators a "
            f"single value. Got op {rule.op!r} with value {rule.value!r}"
        )


def _check_rule_value(rule: Any, ind: Any) -> None:
    values = rule.value if isinstance(rule.value, tuple) else (rule.value,)
    if ind.type in ("bool", "category") and rule.op not in ("==", "!=", "in"):
        raise SchemaError(f"op {rule.op!r} does not apply to a {ind.type} indicator")
    for v in values:
        if ind.type == "bool":
            ok = isinstance(v, bool)
        elif ind.type == "category":
            ok = v in ind.categories
        else:
            lo = -math.inf if ind.min is None else ind.min
            hi = math.inf if ind.max is None else ind.max
            ok = _is_number(v) and (ind.type == "float" or isinstance(v, int))
            ok = ok and lo <= float(v) <= hi
        if not ok:
            allowed = {
                "bool": "true or false",
                "category": f"one of {list(ind.categories)}",
            }.get(ind.type, f"a {ind.type} in [{ind.min}, {ind.max}]")
            raise SchemaError(f"value must be {allowed}. Got {v!r}")


def check_schema(schema: Any) -> None:
    """Cross-entry rules of a whole schema; messages name ``schema.source`` and the entry."""
    where = f"schema {schema.source}"
    try:
        if not schema.name or not isinstance(schema.name, str):
            raise SchemaError(f"schema.name must be a non-empty string. Got {schema.name!r}")
        if isinstance(schema.version, bool) or not isinstance(schema.version, int):
            raise SchemaError(f"schema.version must be an integer. Got {schema.version!r}")
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None
    if schema.threshold is not None and not 0.0 < schema.threshold < 1.0:
        raise SchemaError(f"{where}: labels.threshold must be in (0, 1). Got {schema.threshold}")
    if schema.threshold is not None and schema.label_noise is not None:
        raise SchemaError(f"{where}: [labels]: give either threshold or the label process")
    _check_departments(schema, where)
    for i, flag in enumerate(schema.dimension_flags):
        try:
            _identifier("dimension flag", flag)
        except SchemaError as exc:
            raise SchemaError(f"{where}: outputs.dimension_flags[{i}]: {exc}") from None
    if len(set(schema.dimension_flags)) != len(schema.dimension_flags):
        raise SchemaError(
            f"{where}: outputs.dimension_flags must be unique. Got {list(schema.dimension_flags)}"
        )
    _check_indicators(schema, where)
    _check_rules(schema, where)


def _check_departments(schema: Any, where: str) -> None:
    for key, dept in schema.departments.items():
        try:
            _identifier("name", key)
            if dept.name != key:
                raise SchemaError(f"name must equal its key. Got {dept.name!r}")
            _one_of("side", dept.side, SIDES)
        except SchemaError as exc:
            raise SchemaError(f"{where}: departments.{key}: {exc}") from None
    if not any(d.side == "education" for d in schema.departments.values()):
        raise SchemaError(f"{where}: departments: at least one department with side 'education'")


def _check_indicators(schema: Any, where: str) -> None:
    if not schema.indicators:
        raise SchemaError(f"{where}: indicators: at least one indicator is required")
    seen: dict[str, int] = {}
    by_field: dict[tuple[str, str], Any] = {}
    for i, ind in enumerate(schema.indicators):
        entry = f"{where}: indicators[{i}] {ind.name!r}"
        if ind.name in seen:
            raise SchemaError(f"{entry}: duplicate name (first at indicators[{seen[ind.name]}])")
        seen[ind.name] = i
        dept = schema.departments.get(ind.department)
        if dept is None:
            raise SchemaError(
                f"{entry}: unknown department {ind.department!r}; "
                f"known: {', '.join(schema.departments)}"
            )
        if dept.side == "education" and ind.keyed_by != "student":
            raise SchemaError(
                f"{entry}: an education-side department's indicators must be keyed_by "
                f"'student'. Got {ind.keyed_by!r}"
            )
        other = by_field.setdefault((ind.department, ind.source_field), ind)
        if other is not ind and (other.type, other.min, other.max, other.categories) != (
            ind.type, ind.min, ind.max, ind.categories,
        ):  # fmt: skip
            raise SchemaError(
                f"{entry}: shares source_field {ind.source_field!r} with {other.name!r} "
                "but differs in type, range or categories"
            )


def _check_rules(schema: Any, where: str) -> None:
    names = {i.name: i for i in schema.indicators}
    for kind, rules in (("direct", schema.direct_rules), ("exclusion", schema.exclusion_rules)):
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            entry = f"{where}: rules.{kind}[{i}] {rule.name!r}"
            if rule.kind != kind:
                raise SchemaError(f"{entry}: kind must be {kind!r}. Got {rule.kind!r}")
            if rule.name in seen:
                raise SchemaError(f"{entry}: duplicate rule name")
            seen.add(rule.name)
            ind = names.get(rule.indicator)
            if ind is None:
                raise SchemaError(f"{entry}: unknown indicator {rule.indicator!r}")
            try:
                _check_rule_value(rule, ind)
            except SchemaError as exc:
                raise SchemaError(f"{entry} on {ind.name!r}: {exc}") from None
