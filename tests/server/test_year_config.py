"""The coordinator's settings: one typed parser, every key checked, errors name key and value."""

from __future__ import annotations

import pytest

from fedid.errors import ConfigError
from server.year_config import YearConfig


@pytest.mark.parametrize(("raw", "expected"), [
    (True, True), (False, False), ("true", True), ("False", False), ("TRUE", True),
])
def test_booleans_parse_one_way(raw: object, expected: bool) -> None:
    cfg = YearConfig.from_mapping({"matching": raw, "secure-aggregation": raw})
    assert cfg.matching is expected
    assert cfg.secure_aggregation is expected


@pytest.mark.parametrize("raw", ["yes", "0", 1, 0.0, ""])
def test_anything_else_is_not_a_boolean(raw: object) -> None:
    with pytest.raises(ConfigError, match=r"secure-aggregation must be true or false\. Got"):
        YearConfig.from_mapping({"secure-aggregation": raw})


def test_numbers_and_paths() -> None:
    cfg = YearConfig.from_mapping({"out": "/tmp/x", "rounds": "3", "wait-nodes": 5,
                                   "timeout": "2.5", "train-lr": "0.1", "train-epochs": 4})
    assert (cfg.rounds, cfg.wait_nodes, cfg.timeout) == (3, 5.0, 2.5)
    assert cfg.train == {"lr": 0.1, "epochs": 4.0}
    assert str(cfg.out) == "/tmp/x"
    assert YearConfig.from_mapping({}) == YearConfig()


@pytest.mark.parametrize(("raw", "message"), [
    ({"rounds": 2.5}, r"rounds must be an integer\. Got 2\.5"),
    ({"rounds": True}, r"rounds must be an integer\. Got True"),
    ({"timeout": "soon"}, r"timeout must be a finite number\. Got 'soon'"),
    ({"timeout": float("nan")}, r"timeout must be a finite number"),
    ({"timeout": 0}, r"timeout must be > 0\. Got 0"),
    ({"out": 3}, r"out must be a string\. Got 3"),
    ({"train-lr": "fast"}, r"train-lr must be a finite number"),
    ({"weighting": "votes"}, r"weighting must be one of .*Got 'votes'"),
    ({"grouping": "county"}, r"grouping must be one of .*Got 'county'"),
    ({"min-train-replies": 0}, r"min-train-replies must be >= 1\. Got 0"),
    ({"roudns": 3}, r"unknown key\(s\) \['roudns'\]"),
])
def test_bad_values_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        YearConfig.from_mapping(raw)


def test_pyproject_run_config_parses() -> None:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    app_config = tomllib.loads(pyproject.read_text())["tool"]["flwr"]["app"]["config"]
    cfg = YearConfig.from_mapping(app_config)
    assert cfg.rounds == app_config["rounds"]
    assert cfg.secure_aggregation is app_config["secure-aggregation"]
