"""The indicator schema: indicators, departments, hardship levels and the rule layer.

A schema is data: the default one is ``fedid/data/default_schema.toml`` (28 indicators; its
header comment documents every field) and a province may supply its own file of the same
shape. :func:`load_schema` reads and validates it; every error names the file, the entry
(``indicators[3] 'dibao'``) and the rule broken. :meth:`Schema.to_toml` writes a schema back
so that ``parse_schema(tomllib.loads(s.to_toml())) == s``.

The validation rules live in :mod:`fedid._schema_parse`; the dataclasses run them on
construction, so a schema built in code is held to the same rules as one read from a file.
This module's one responsibility is the schema model: its dataclasses, building them from
TOML data (the builder below) and reading and writing schema files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import tomli_w

from fedid._schema_parse import (
    COMBINES,
    DIMENSIONS,
    DIRECTIONS,
    KEYED_BY,
    NUMERIC_TYPES,
    OPS,
    RESERVED_COLUMNS,
    SIDES,
    TRANSFORMS,
    TYPES,
    _is_number,
    check_indicator,
    check_rule_shape,
    check_schema,
)
from fedid.errors import ConfigError, SchemaError
from fedid.label_noise import LabelNoise

__all__ = [
    "COMBINES",
    "DIMENSIONS",
    "DIRECTIONS",
    "KEYED_BY",
    "OPS",
    "RESERVED_COLUMNS",
    "SIDES",
    "TRANSFORMS",
    "TYPES",
    "Department",
    "Indicator",
    "Levels",
    "Rule",
    "RuleValue",
    "Schema",
    "default_schema_path",
    "load_schema",
    "parse_schema",
    "schema_format",
]

Scalar = bool | int | float | str
RuleValue = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Department:
    """A department that holds records; ``side`` is ``"education"`` or ``"evidence"``."""

    name: str
    side: Literal["education", "evidence"]
    label: str = ""

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise SchemaError(f"department {self.name!r}: side must be one of {SIDES}")


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator, as declared in the schema file (see its header comment)."""

    name: str
    dimension: str
    department: str
    type: Literal["float", "int", "bool", "ordinal", "category"]
    unit: str = ""
    min: float | int | None = None
    max: float | int | None = None
    categories: tuple[str, ...] = ()
    transform: Literal["linear", "log1p"] | None = None
    keyed_by: Literal["student", "guardian"] = "student"
    direction: Literal["harder_when_high", "harder_when_low", "neutral"] = "neutral"
    source_field: str = ""
    combine: Literal["sum", "max", "any", "min_positive"] | None = None

    def __post_init__(self) -> None:
        if not self.source_field:
            object.__setattr__(self, "source_field", self.name)
        if self.transform is None and self.type in NUMERIC_TYPES:
            object.__setattr__(self, "transform", "linear")
        check_indicator(self)

    @property
    def is_numeric(self) -> bool:
        """True for float, int and ordinal indicators (those with a range)."""
        return self.type in NUMERIC_TYPES

    def to_dict(self) -> dict[str, Any]:
        """The TOML table of this indicator (defaults left out)."""
        out: dict[str, Any] = {
            "name": self.name,
            "dimension": self.dimension,
            "department": self.department,
            "type": self.type,
            "unit": self.unit,
        }
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.categories:
            out["categories"] = list(self.categories)
        if self.transform is not None:
            out["transform"] = self.transform
        out["keyed_by"] = self.keyed_by
        out["direction"] = self.direction
        if self.source_field != self.name:
            out["source_field"] = self.source_field
        if self.combine is not None:
            out["combine"] = self.combine
        return out


@dataclass(frozen=True, slots=True, eq=False)
class Levels(Sequence[str]):
    """Hardship level names, index 0 = ``"none"``; behaves as the tuple of names.

    ``labels`` are display names (e.g. 特别困难) in the same order.
    """

    names: tuple[str, ...]
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            object.__setattr__(self, "labels", self.names)
        if len(self.names) < 2 or self.names[0] != "none":
            raise SchemaError(
                'levels.names must be "none" followed by one or more levels (one: a binary'
                f" task). Got {list(self.names)}"
            )
        if len(set(self.names)) != len(self.names):
            raise SchemaError(f"levels.names must be unique. Got {list(self.names)}")
        if len(self.labels) != len(self.names):
            raise SchemaError(
                f"levels.labels must have one label per level ({len(self.names)}). "
                f"Got {len(self.labels)}"
            )

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Levels):
            return self.names == other.names and self.labels == other.labels
        if isinstance(other, tuple | list):
            return self.names == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.names, self.labels))

    @property
    def hardship(self) -> tuple[str, ...]:
        """The hardship levels (all but ``"none"``), lowest first."""
        return self.names[1:]

    @property
    def top(self) -> str:
        """The highest level (direct recognition lands here)."""
        return self.names[-1]


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule-layer entry: ``indicator op value`` (``kind`` "direct" or "exclusion")."""

    name: str
    indicator: str
    op: Literal["==", "!=", ">=", ">", "<=", "<", "in"]
    value: RuleValue
    kind: Literal["direct", "exclusion"] = "direct"

    def applies(self, values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Vectorised test of the rule on an indicator's values; nulls never match."""
        arr = np.asarray(values)
        if arr.dtype.kind == "O":
            null = np.fromiter((_is_null(v) for v in arr.ravel()), dtype=bool, count=arr.size)
            null = null.reshape(arr.shape)
        elif arr.dtype.kind == "f":
            null = np.isnan(arr)
        else:
            null = np.zeros(arr.shape, dtype=bool)
        hit = np.zeros(arr.shape, dtype=bool)
        present = arr[~null]
        if isinstance(self.value, tuple):  # op "in" (parse_schema guarantees the pairing)
            hit[~null] = np.isin(present, list(self.value))
        else:
            hit[~null] = np.asarray(_OPS[self.op](present, self.value), dtype=bool)
        return hit

    def __post_init__(self) -> None:
        check_rule_shape(self)

    def to_dict(self) -> dict[str, Any]:
        """The TOML table of this rule."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"name": self.name, "indicator": self.indicator, "op": self.op, "value": value}


def _is_null(value: object) -> bool:
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return not isinstance(value, bool | int | str | np.generic)


_OPS: dict[str, Any] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">=": np.greater_equal,
    ">": np.greater,
    "<=": np.less_equal,
    "<": np.less,
}


class FrozenMapping(Mapping[str, Department]):
    """A read-only, picklable mapping (``types.MappingProxyType`` cannot be pickled)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Department]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Department:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"

    def __reduce__(self) -> tuple[type[FrozenMapping], tuple[dict[str, Department]]]:
        return (FrozenMapping, (self._data,))


@dataclass(frozen=True, slots=True)
class Schema:
    """A validated schema. Build with :func:`load_schema` or :func:`parse_schema`."""

    name: str
    version: int
    levels: Levels
    dimension_flags: tuple[str, ...]
    departments: Mapping[str, Department]
    indicators: tuple[Indicator, ...]
    direct_rules: tuple[Rule, ...] = ()
    exclusion_rules: tuple[Rule, ...] = ()
    #: ``[labels] threshold``: the decision threshold on ``P(level >= 1)``, if declared
    threshold: float | None = None
    #: ``[labels]`` label process (published flip rates), if declared
    label_noise: LabelNoise | None = None
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.departments, FrozenMapping):
            object.__setattr__(self, "departments", FrozenMapping(self.departments))
        check_schema(self)

    @property
    def indicator_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.indicators)

    def indicator(self, name: str) -> Indicator:
        """The indicator called ``name``; :class:`SchemaError` if there is none."""
        for ind in self.indicators:
            if ind.name == name:
                return ind
        raise SchemaError(f"schema {self.source}: no indicator named {name!r}")

    def department(self, name: str) -> Department:
        """The department called ``name``; :class:`SchemaError` if there is none."""
        try:
            return self.departments[name]
        except KeyError:
            raise SchemaError(
                f"schema {self.source}: no department named {name!r}; "
                f"known: {', '.join(sorted(self.departments))}"
            ) from None

    def owned_by(self, department: str) -> tuple[Indicator, ...]:
        """The indicators a department owns, in schema order."""
        self.department(department)
        return tuple(i for i in self.indicators if i.department == department)

    def source_fields(self, department: str) -> tuple[Indicator, ...]:
        """One indicator per distinct source column of a department's table, schema order.

        Indicators sharing a source field (both disability grades read
        ``disability_grade``) are checked to agree in type and range, so either describes
        the column.
        """
        seen: dict[str, Indicator] = {}
        for ind in self.owned_by(department):
            seen.setdefault(ind.source_field, ind)
        return tuple(seen.values())

    @property
    def education_departments(self) -> tuple[str, ...]:
        return tuple(n for n, d in self.departments.items() if d.side == "education")

    @property
    def evidence_departments(self) -> tuple[str, ...]:
        return tuple(n for n, d in self.departments.items() if d.side == "evidence")

    @property
    def hardship_threshold(self) -> float:
        """Decision threshold on ``P(level >= 1)``: ``[labels] threshold`` if declared, else
        the noisy-label correction of a declared label process, else 1/2 (no correction)."""
        if self.threshold is not None:
            return self.threshold
        if self.label_noise is not None:
            return self.label_noise.hardship_threshold
        return 0.5

    @property
    def label_columns(self) -> tuple[str, ...]:
        """Optional label columns of an education table: label_level, label_<flag>..."""
        return ("label_level", *(f"label_{f}" for f in self.dimension_flags))

    def to_dict(self) -> dict[str, Any]:
        """The schema as a TOML-shaped dict."""
        return {
            "schema": {"name": self.name, "version": self.version},
            "levels": {"names": list(self.levels.names), "labels": list(self.levels.labels)},
            "outputs": {"dimension_flags": list(self.dimension_flags)},
            **({"labels": self._labels_dict()} if self._labels_dict() else {}),
            "departments": {
                n: {"label": d.label, "side": d.side} for n, d in self.departments.items()
            },
            "indicators": [i.to_dict() for i in self.indicators],
            "rules": {
                "direct": [r.to_dict() for r in self.direct_rules],
                "exclusion": [r.to_dict() for r in self.exclusion_rules],
            },
        }

    def _labels_dict(self) -> dict[str, Any]:
        if self.threshold is not None:
            return {"threshold": self.threshold}
        if self.label_noise is None:
            return {}
        noise = self.label_noise
        return {"missed_rate": noise.missed_rate, "wrong_aid_rate": noise.wrong_aid_rate,
                "hardship_share": noise.hardship_share, "source": noise.source}

    def to_toml(self, *, documented: bool = False) -> str:
        """TOML text that :func:`load_schema` reads back to an equal schema.

        ``documented``: preceded by the schema format (:func:`schema_format`) as comments.
        """
        body = tomli_w.dumps(self.to_dict())
        if not documented:
            return body
        doc = "".join(f"# {line}".rstrip() + "\n" for line in schema_format().splitlines())
        return doc + "\n" + body


def schema_format() -> str:
    """The schema file format: every table and field (``fedid schema show`` prints it)."""
    return resources.files("fedid.data").joinpath("schema_format.txt").read_text("utf-8")


# --------------------------------------------------------------------------- builder

_TOP_KEYS = {"schema", "levels", "outputs", "labels", "departments", "indicators", "rules"}
_LABEL_KEYS = {"threshold", "missed_rate", "wrong_aid_rate", "hardship_share", "source"}
_INDICATOR_KEYS = {
    "name", "dimension", "department", "type", "unit", "min", "max", "categories",
    "transform", "keyed_by", "direction", "source_field", "combine",
}  # fmt: skip
_RULE_KEYS = {"name", "indicator", "op", "value"}



def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise SchemaError(f"{where}: [{key}] must be a table. Got {type(value).__name__}")
    return value


def _unknown_keys(entry: str, got: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(got) - allowed)
    if extra:
        raise SchemaError(
            f"{entry}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}"
        )


def _str_list(entry: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{entry} must be a list of strings. Got {value!r}")
    return tuple(value)


def _indicator(raw: object, i: int, where: str) -> Indicator:
    entry = f"{where}: indicators[{i}]"
    if not isinstance(raw, Mapping):
        raise SchemaError(f"{entry} must be a table. Got {type(raw).__name__}")
    entry += f" {raw.get('name', '?')!r}"
    _unknown_keys(entry, raw, _INDICATOR_KEYS)
    missing = [k for k in ("name", "dimension", "department", "type") if k not in raw]
    if missing:
        raise SchemaError(f"{entry}: missing required key(s) {', '.join(missing)}")
    kwargs = dict(raw)
    if "categories" in kwargs:
        kwargs["categories"] = _str_list(f"{entry}: categories", kwargs["categories"])
    if kwargs.get("type") == "float":
        for bound in ("min", "max"):
            if _is_number(kwargs.get(bound)):
                kwargs[bound] = float(kwargs[bound])
    try:
        return Indicator(**kwargs)
    except SchemaError as exc:
        msg = str(exc).removeprefix(f"indicator {kwargs['name']!r}: ")
        raise SchemaError(f"{entry}: {msg}") from None


def _rules(data: Mapping[str, Any], kind: str, where: str) -> tuple[Rule, ...]:
    raw_rules = _table(data, "rules", where).get(kind, [])
    if not isinstance(raw_rules, list):
        raise SchemaError(f"{where}: rules.{kind} must be an array of tables")
    out = []
    for i, raw in enumerate(raw_rules):
        entry = f"{where}: rules.{kind}[{i}]"
        if not isinstance(raw, Mapping):
            raise SchemaError(f"{entry} must be a table. Got {type(raw).__name__}")
        _unknown_keys(entry, raw, _RULE_KEYS)
        missing = [k for k in sorted(_RULE_KEYS) if k not in raw]
        if missing:
            raise SchemaError(f"{entry}: missing required key(s) {', '.join(missing)}")
        value = tuple(raw["value"]) if isinstance(raw["value"], list) else raw["value"]
        try:
            out.append(Rule(raw["name"], raw["indicator"], raw["op"], value, kind))  # type: ignore[arg-type]
        except SchemaError as exc:
            raise SchemaError(f"{entry}: {exc}") from None
    return tuple(out)


def _build_schema(data: Mapping[str, Any], *, source: str) -> Schema:
    """Build a :class:`~fedid.schema.Schema` from a TOML-shaped mapping."""
    where = f"schema {source}"
    _unknown_keys(where, data, _TOP_KEYS)
    meta = _table(data, "schema", where)
    _unknown_keys(f"{where}: [schema]", meta, {"name", "version"})
    levels_raw = _table(data, "levels", where)
    _unknown_keys(f"{where}: [levels]", levels_raw, {"names", "labels"})
    outputs = _table(data, "outputs", where)
    _unknown_keys(f"{where}: [outputs]", outputs, {"dimension_flags"})
    try:
        levels = Levels(
            _str_list("levels.names", levels_raw.get("names")),
            _str_list("levels.labels", levels_raw.get("labels", [])),
        )
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None
    departments = {}
    for key, raw in _table(data, "departments", where).items():
        entry = f"{where}: departments.{key}"
        if not isinstance(raw, Mapping):
            raise SchemaError(f"{entry} must be a table. Got {type(raw).__name__}")
        _unknown_keys(entry, raw, {"label", "side"})
        try:
            departments[key] = Department(key, raw.get("side"), str(raw.get("label", "")))  # type: ignore[arg-type]
        except SchemaError as exc:
            raise SchemaError(f"{where}: {exc}") from None
    raw_inds = data.get("indicators", [])
    if not isinstance(raw_inds, list):
        raise SchemaError(f"{where}: indicators must be an array of tables ([[indicators]])")
    rules = _table(data, "rules", where)
    _unknown_keys(f"{where}: [rules]", rules, {"direct", "exclusion"})
    threshold, label_noise = _labels(data, where)
    return Schema(
        name=meta.get("name", "custom"),
        version=meta.get("version", 1),
        levels=levels,
        dimension_flags=_str_list(
            f"{where}: outputs.dimension_flags", outputs.get("dimension_flags", [])
        ),
        departments=departments,
        indicators=tuple(_indicator(raw, i, where) for i, raw in enumerate(raw_inds)),
        direct_rules=_rules(data, "direct", where),
        exclusion_rules=_rules(data, "exclusion", where),
        threshold=threshold,
        label_noise=label_noise,
        source=source,
    )


def _labels(data: Mapping[str, Any], where: str) -> tuple[float | None, LabelNoise | None]:
    """``[labels]``: an explicit decision threshold, or the declared label process."""
    raw = _table(data, "labels", where)
    _unknown_keys(f"{where}: [labels]", raw, _LABEL_KEYS)
    process = {k: raw[k] for k in ("missed_rate", "wrong_aid_rate", "hardship_share") if k in raw}
    threshold = raw.get("threshold")
    try:
        if threshold is not None and process:
            raise SchemaError("give either threshold or the label process, not both")
        if threshold is not None:
            if not _is_number(threshold):
                raise SchemaError(f"threshold must be a number. Got {threshold!r}")
            return float(threshold), None
        if not process:
            return None, None
        if len(process) != 3 or not all(_is_number(v) for v in process.values()):
            raise SchemaError(
                "the label process needs numbers missed_rate, wrong_aid_rate and"
                f" hardship_share. Got {process!r}"
            )
        return None, LabelNoise(**{k: float(v) for k, v in process.items()},
                                source=str(raw.get("source", "")))
    except (SchemaError, ConfigError) as exc:
        raise SchemaError(f"{where}: [labels]: {exc}") from None


def default_schema_path() -> Path:
    """Path of the embedded default schema file."""
    return Path(str(resources.files("fedid.data").joinpath("default_schema.toml")))


def parse_schema(data: Mapping[str, Any], *, source: str = "<memory>") -> Schema:
    """Validate a TOML-shaped mapping and build a :class:`Schema` (errors name ``source``)."""
    return _build_schema(data, source=source)


def load_schema(path: Path | str | None = None) -> Schema:
    """Load and validate a schema file; ``None`` loads the embedded default.

    Raises :class:`SchemaError` naming the file, the entry and the rule broken.
    """
    file = default_schema_path() if path is None else Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"schema {file}: cannot read the file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise SchemaError(f"schema {file}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"schema {file}: not valid TOML: {exc}") from exc
    return parse_schema(data, source=str(file))
