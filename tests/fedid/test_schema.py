"""The indicator schema: the default file, round trip, and every validation rule."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedid.errors import ConfigError, SchemaError
from fedid.schema import (
    _INDICATOR_KEYS,
    DIMENSIONS,
    Indicator,
    Levels,
    Rule,
    Schema,
    default_schema_path,
    load_schema,
    parse_schema,
    schema_format,
)

DEFAULT = tomllib.loads(default_schema_path().read_text(encoding="utf-8"))


def test_default_schema_contract() -> None:
    s = load_schema()
    assert len(s.indicators) == 28
    assert s.levels == ("none", "general", "hardship", "special")
    assert s.levels[0] == "none"
    assert s.levels.top == "special"
    assert s.levels.labels[-1] == "特别困难"
    assert set(s.dimension_flags) <= set(DIMENSIONS)
    assert {i.dimension for i in s.indicators} == set(DIMENSIONS)
    assert s.departments["education"].side == "education"
    assert len(s.evidence_departments) == 12
    assert s.indicator("dibao").combine == "any"
    assert s.indicator("household_size").source_field == "household_size"
    assert s.indicator("parents_unemployed").source_field == "unemployed"
    assert s.indicator("campus_card_spending").transform == "log1p"
    assert [r.name for r in s.direct_rules][:2] == ["dibao", "tekun"]
    assert s.exclusion_rules[0].kind == "exclusion"
    assert s.label_columns[0] == "label_level"


def test_owned_by_and_source_fields() -> None:
    s = load_schema()
    owned = s.owned_by("disability_federation")
    assert [i.name for i in owned] == ["student_disability_grade", "parent_disability_grade"]
    assert [i.source_field for i in s.source_fields("disability_federation")] == [
        "disability_grade"
    ]
    assert sum(len(s.owned_by(d)) for d in s.departments) == 28
    with pytest.raises(SchemaError, match="no department named 'nope'"):
        s.owned_by("nope")
    with pytest.raises(SchemaError, match="no indicator named 'nope'"):
        s.indicator("nope")


def test_round_trip_to_toml(tmp_path: Path) -> None:
    s = load_schema()
    path = tmp_path / "s.toml"
    path.write_text(s.to_toml(), encoding="utf-8")
    again = load_schema(path)
    assert again == s
    assert again.to_toml() == s.to_toml()
    assert again.source == str(path)


def test_rule_applies_vectorised() -> None:
    s = load_schema()
    severe = next(r for r in s.direct_rules if r.name == "severe_student_disability")
    assert severe.applies(np.array([0, 1, 2, 3, np.nan])).tolist() == [0, 1, 1, 0, 0]
    orphan = next(r for r in s.direct_rules if r.name == "orphan")
    vals = np.array(["orphan", None, "divorced"], dtype=object)
    assert orphan.applies(vals).tolist() == [True, False, False]
    car = next(r for r in s.exclusion_rules if r.name == "owns_vehicle")
    assert car.applies(np.array([0, 1, 3])).tolist() == [False, True, True]


def _mutated(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    import tomli_w

    data = copy.deepcopy(DEFAULT)
    change(data)
    path = tmp_path / "province.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _ind(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in data["indicators"] if i["name"] == name)


def _set(target: str, /, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        ind = _ind(data, target)
        for k, v in fields.items():
            if v is None:
                ind.pop(k, None)
            else:
                ind[k] = v

    return change


def _levels(names: list[str]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["levels"] = {"names": names}

    return change


def _dup(data: dict[str, Any]) -> None:
    data["indicators"].append(copy.deepcopy(data["indicators"][0]))


def _rule(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["rules"]["direct"][0].update(fields)

    return change


def _labels(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["labels"] = fields

    return change


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "bad dimension",
        _set("dibao", dimension="Wealth Index"),
        r"indicators\[15\] 'dibao': dimension must be a lower-case identifier",
    ),
    ("unknown type", _set("dibao", type="flag"), "type must be one of"),
    ("unknown department", _set("dibao", department="police"), "unknown department 'police'"),
    ("min > max", _set("household_size", min=5, max=1), "min must be <= max"),
    ("missing max", _set("household_size", max=None), "max is required"),
    ("float range on int", _set("household_size", min=0.5), "must be an integer"),
    ("range on bool", _set("dibao", min=0), "takes no min/max"),
    ("log1p negative", _set("taxable_income", min=-5.0), "log1p' needs min >= 0"),
    ("category w/o categories", _set("family_structure", categories=None), "non-empty list"),
    ("duplicate categories", _set("family_structure", categories=["a", "a"]), "unique"),
    ("categories on float", _set("taxable_income", categories=["a"]), "only for type 'category'"),
    ("combine on student", _set("household_size", combine="sum"), "only for guardian-keyed"),
    ("guardian w/o combine", _set("dibao", combine=None), "combine is required"),
    ("combine type", _set("dibao", combine="sum"), "combine 'sum' needs type"),
    ("education guardian", _set("household_size", keyed_by="guardian", combine="max"), "keyed_by"),
    ("reserved name", _set("dibao", name="student_id"), "reserved column"),
    ("bad identifier", _set("dibao", name="Di Bao"), "lower-case identifier"),
    ("unknown key", _set("dibao", dimesion="x"), "unknown key.*dimesion"),
    ("duplicate name", _dup, r"duplicate name \(first at indicators\[0\]\)"),
    ("only none", _levels(["none"]), "one or more levels"),
    ("labels and threshold", _labels(threshold=0.3, missed_rate=0.1), "not both"),
    ("threshold range", _labels(threshold=1.5), r"threshold must be in \(0, 1\)"),
    ("partial process", _labels(missed_rate=0.1), "needs numbers missed_rate"),
    ("no none", _levels(["low", "a", "b"]), 'must be "none"'),
    ("dup levels", _levels(["none", "a", "a"]), "unique"),
    ("rule unknown indicator", _rule(indicator="ghost"), r"rules.direct\[0\].*unknown indicator"),
    ("rule bad op", _rule(op="~="), "op must be one of"),
    ("rule bool value", _rule(value=3), "value must be true or false"),
    ("rule in scalar", _rule(op="in"), "op 'in' takes a non-empty list"),
    ("rule ordering on bool", _rule(op=">="), "does not apply to a bool"),
    ("source field clash", _set("parent_disability_grade", max=3), "shares source_field"),
]


@pytest.mark.parametrize(("label", "change", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_invalid_schema_names_file_entry_and_rule(
    tmp_path: Path, label: str, change: Callable[[dict[str, Any]], None], pattern: str
) -> None:
    path = _mutated(tmp_path, change)
    with pytest.raises(SchemaError, match=pattern) as info:
        load_schema(path)
    assert str(path) in str(info.value), label
    assert isinstance(info.value, ConfigError)


def test_rule_value_out_of_range(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["rules"]["exclusion"][0]["value"] = 99

    with pytest.raises(SchemaError, match=r"rules.exclusion\[0\] 'owns_vehicle'.*in \[0, 50\]"):
        load_schema(_mutated(tmp_path, change))


def test_department_rules(tmp_path: Path) -> None:
    def bad_side(data: dict[str, Any]) -> None:
        data["departments"]["tax"]["side"] = "both"

    with pytest.raises(SchemaError, match="side must be one of"):
        load_schema(_mutated(tmp_path, bad_side))

    def no_education(data: dict[str, Any]) -> None:
        data["departments"]["education"]["side"] = "evidence"
        for ind in data["indicators"]:
            if ind["department"] == "education":
                ind["department"] = "tax"

    with pytest.raises(SchemaError, match="at least one department with side 'education'"):
        load_schema(_mutated(tmp_path, no_education))


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read"):
        load_schema(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[levels\nnames = 1", encoding="utf-8")
    with pytest.raises(SchemaError, match="not valid TOML"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="unknown key"):
        parse_schema({**DEFAULT, "extra": {}})


def test_two_level_province_schema() -> None:
    data = copy.deepcopy(DEFAULT)
    data["levels"] = {"names": ["none", "hardship", "special"], "labels": ["否", "困难", "特困"]}
    s = parse_schema(data, source="two-levels")
    assert len(s.levels) == 3
    assert s.levels.hardship == ("hardship", "special")


def test_dataclasses_validate_on_construction() -> None:
    with pytest.raises(SchemaError, match="min must be <= max"):
        Indicator("x", "economic", "tax", "float", min=2.0, max=1.0)
    with pytest.raises(SchemaError, match="labels must have one label per level"):
        Levels(("none", "a", "b"), ("x",))
    with pytest.raises(SchemaError, match="op 'in' takes"):
        Rule("r", "dibao", "in", True)
    s = load_schema()
    with pytest.raises(SchemaError, match="duplicate name"):
        dataclasses.replace(s, indicators=(*s.indicators, s.indicators[0]))


def test_cli_schema_show_and_validate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    shown = runner.invoke(app, ["schema", "show", "--toml"])
    assert shown.exit_code == 0
    assert parse_schema(tomllib.loads(shown.output)) == load_schema()
    table = runner.invoke(app, ["schema", "show"])
    assert "28 indicators" in table.output
    assert "特别困难" in table.output
    ok = runner.invoke(app, ["schema", "validate", str(default_schema_path())])
    assert ok.exit_code == 0
    assert "28 indicators, 4 levels" in ok.output
    assert "keyed_by" in table.output
    assert "[labels]" in table.output
    assert "# [levels]" in shown.output
    bad = _mutated(tmp_path, _levels(["x", "y"]))
    result = runner.invoke(app, ["schema", "validate", str(bad)])
    assert isinstance(result.exception, SchemaError)


def test_schema_pickles_and_departments_are_read_only() -> None:
    import pickle

    s = load_schema()
    again = pickle.loads(pickle.dumps(s))
    assert again == s
    assert again.levels.labels == s.levels.labels
    with pytest.raises(TypeError):
        s.departments["x"] = s.departments["tax"]  # type: ignore[index]


def test_binary_five_level_free_dimensions_and_no_evidence_departments() -> None:
    def schema(levels: list[str], labels: dict[str, Any] | None = None) -> Schema:
        data: dict[str, Any] = {
            "levels": {"names": levels},
            "departments": {"survey": {"side": "education"}},
            "indicators": [{"name": "score", "dimension": "my_group", "department": "survey",
                            "type": "float", "min": 0, "max": 1}],
        }
        if labels is not None:
            data["labels"] = labels
        return parse_schema(data)

    binary = schema(["none", "positive"])
    assert binary.levels.hardship == ("positive",)
    assert binary.evidence_departments == ()
    assert binary.hardship_threshold == 0.5  # no label process declared: no correction
    five = schema(["none", "a", "b", "c", "d"], {"threshold": 0.3})
    assert len(five.levels) == 5
    assert five.hardship_threshold == 0.3
    assert parse_schema(tomllib.loads(five.to_toml())) == five
    noisy = schema(["none", "yes"], {"missed_rate": 0.17, "wrong_aid_rate": 0.23,
                                     "hardship_share": 0.2})
    assert noisy.hardship_threshold == pytest.approx(0.446, abs=1e-3)
    assert load_schema().hardship_threshold == pytest.approx(0.446, abs=1e-3)


def test_documented_toml_reads_back_and_names_every_indicator_field() -> None:
    schema = load_schema()
    text = schema.to_toml(documented=True)
    assert parse_schema(tomllib.loads(text)) == schema
    doc = schema_format()
    for key in [*sorted(_INDICATOR_KEYS), "[labels]", "threshold", "missed_rate", "label_level"]:
        assert key in doc, key
