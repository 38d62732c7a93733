"""Node config goes through the one settings parser: typed, strict, errors name key and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.common.config import parse_config_args

from clients.config import NodeSettings, TrainingSettings, node_settings
from clients.deploy import node_config_arg
from fedid.errors import ConfigError


def _raw(**extra: Any) -> dict[str, Any]:
    return {"agency-id": "a", "kind": "education", "data": "x.parquet", "out": "o",
            "epsilon": 1.0, "delta": 1e-5, **extra}


def test_defaults_and_types() -> None:
    s = NodeSettings.from_mapping(_raw())
    assert (s.department, s.schema, s.roster, s.identity, s.test_seed) == (
        "education", None, None, None, None)
    assert (s.data, s.out, s.release_noise, s.min_cell, s.holdout) == (
        Path("x.parquet"), Path("o"), 20.0, 10, 0.2)
    assert s.training == TrainingSettings.from_mapping({})
    tax = NodeSettings.from_mapping(_raw(kind="department"))
    assert tax.department == ""
    # Flower hands a node its config as strings (clients.node.settings_of): same settings.
    text = NodeSettings.from_mapping({k: str(v) for k, v in _raw(
        **{"min-cell": 5, "test-seed": 7, "roster": "r.toml", "schema": ""}).items()})
    assert (text.epsilon, text.min_cell, text.test_seed, text.roster, text.schema) == (
        1.0, 5, 7, Path("r.toml"), None)


def test_unknown_and_bad_values_are_named() -> None:
    with pytest.raises(ConfigError, match=r"node config: unknown key\(s\) \['epsilom'\]"):
        NodeSettings.from_mapping(_raw(epsilom=2.0))
    with pytest.raises(ConfigError, match=r"epsilon must be a finite number\. Got 'lots'"):
        NodeSettings.from_mapping(_raw(epsilon="lots"))
    with pytest.raises(ConfigError, match=r"min-cell must be an integer\. Got '2\.5'"):
        NodeSettings.from_mapping(_raw(**{"min-cell": "2.5"}))
    with pytest.raises(ConfigError, match=r"epsilon, delta are required"):
        NodeSettings.from_mapping({k: v for k, v in _raw().items()
                                   if k not in ("epsilon", "delta")})


def test_training_keys() -> None:
    s = NodeSettings.from_mapping(_raw(**{"train-rounds": "3", "train-rounds-range": "1,4"}))
    assert (s.training.values["rounds"], s.training.ranges["rounds"]) == (3.0, (1.0, 4.0))
    assert s.training.explicit == frozenset({"rounds"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['train-round'\]"):
        NodeSettings.from_mapping(_raw(**{"train-round": 3}))
    with pytest.raises(ConfigError, match=r"train-rounds-range must be 'lo,hi'"):
        NodeSettings.from_mapping(_raw(**{"train-rounds-range": "4"}))
    with pytest.raises(ConfigError, match=r"train-rounds must lie in its range"):
        NodeSettings.from_mapping(_raw(**{"train-rounds": 50}))


def test_flower_keys_and_the_deployment_config_round_trip(tmp_path: Path) -> None:
    # Flower's simulation engine adds partition-id and num-partitions to every node config.
    assert node_settings(_raw(**{"partition-id": 0, "num-partitions": 2})).agency_id == "a"
    s = NodeSettings.from_mapping(_raw(
        data=str(tmp_path / "t.parquet"), out=str(tmp_path / "out"),
        roster=str(tmp_path / "roster.toml"), schema=str(tmp_path / "schema.toml")))
    (parsed,) = [parse_config_args([node_config_arg(s)])]
    assert node_settings({k: str(v) for k, v in parsed.items()}) == s
    # Every setting `fedid node` can set reaches the SuperNode (a dropped one is silently
    # the default there: --matching-grouping per_agency was once lost this way).
    every = NodeSettings.from_mapping(_raw(
        data=str(tmp_path / "t.parquet"), out=str(tmp_path / "out"),
        **{"matching-grouping": "per_agency", "public-size": 25000, "holdout": 0.25,
           "review-capacity": "250", "min-cell": 5, "release-noise": 12.5, "test-seed": 3,
           "identity": str(tmp_path / "id"), "train-recipe": "rule",
           "train-rounds": 3, "train-learning_rate-range": "0.05,0.5"}))
    (parsed,) = [parse_config_args([node_config_arg(every)])]
    assert node_settings({k: str(v) for k, v in parsed.items()}) == every
    # TOML would read a backslash as an escape: such a path is refused, not mangled
    with pytest.raises(ConfigError, match="backslashes"):
        node_config_arg(NodeSettings.from_mapping(_raw(out=str(tmp_path / "node\\new"))))


def test_the_recipe_rule_is_the_agencys_opt_in() -> None:
    from clients.config import TrainingSettings

    assert TrainingSettings.from_mapping({}).recipe({}) == "fixed"
    rule = TrainingSettings.from_mapping({"train-recipe": "rule"})
    assert rule.recipe({}) == "rule"
    assert rule.recipe({"learning_rate": 0.1}) == "fixed"  # an accepted proposal is used as is
    assert TrainingSettings.from_mapping(
        {"train-recipe": "rule", "train-batch_size": 512}).recipe({}) == "fixed"
    with pytest.raises(ConfigError, match="train-recipe"):
        TrainingSettings.from_mapping({"train-recipe": "auto"})


def test_matching_peers_and_grouping_reach_the_node(tmp_path: Path) -> None:
    assert NodeSettings.from_mapping(_raw()).matching_peers is None  # unset: as before
    s = NodeSettings.from_mapping(_raw(**{"matching-peers": "edu_b, edu_a,edu_b"}))
    assert s.matching_peers == ("edu_a", "edu_b")
    assert NodeSettings.from_mapping(_raw(**{"matching-peers": ["edu_b"]})).matching_peers \
        == ("edu_b",)
    # a list naming nobody is refused (it once read as unset: any home; attacker review)
    for bad in ("edu_a,,edu_b", "['edu_a']", "../x", ["a b"], "", ",", " , ", [], "a\\b"):
        with pytest.raises(ConfigError, match="matching-peers must"):
            NodeSettings.from_mapping(_raw(**{"matching-peers": bad}))
    with pytest.raises(ConfigError, match="applies to an education node under"):
        NodeSettings.from_mapping(_raw(kind="department", **{"matching-peers": "edu_a"}))
    with pytest.raises(ConfigError, match="grouping 'per_agency'"):
        NodeSettings.from_mapping(_raw(**{"matching-peers": "edu_a",
                                          "matching-grouping": "per_agency"}))
    # what `fedid node` sets travels to the ClientApp in --node-config
    for extra in ({"matching-peers": "edu_a,edu_b"}, {"matching-grouping": "per_agency"}):
        s = NodeSettings.from_mapping(_raw(data=str(tmp_path / "t.parquet"),
                                           out=str(tmp_path / "out"), **extra))
        (parsed,) = [parse_config_args([node_config_arg(s)])]
        assert node_settings({k: str(v) for k, v in parsed.items()}) == s
