"""The one settings parser: required keys, optional paths, renamed keys, custom parsers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fedid.errors import ConfigError
from fedid.settings import parse_settings, setting


@dataclass(frozen=True, slots=True)
class _Node:
    agency_id: str
    epsilon: float
    schema: Path | None = None
    keys: Path | None = field(default=None, metadata=setting(key="education-keys"))
    tags: tuple[str, ...] = field(
        default=(), metadata=setting(parse=lambda _k, v: tuple(str(v).split(","))))


def test_required_keys_have_no_default() -> None:
    with pytest.raises(ConfigError, match=r"node config: epsilon is required\. Got no value"):
        parse_settings(_Node, {"agency-id": "tax"}, what="node config")


def test_optional_paths_renamed_keys_and_custom_parsers() -> None:
    node = parse_settings(_Node, {"agency-id": "tax", "epsilon": 1, "schema": "",
                                  "education-keys": "/k", "tags": "a,b"}, what="node config")
    assert node == _Node("tax", 1.0, None, Path("/k"), ("a", "b"))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['keys'\]"):
        parse_settings(_Node, {"agency-id": "tax", "epsilon": 1, "keys": "/k"}, what="node")


@dataclass(frozen=True, slots=True)
class _Grouped:
    data: Path
    budget: float
    group: tuple[str, ...] = field(default=(), metadata=setting(
        prefix="train-", parse=lambda prefix, found: tuple(sorted(found))))


def test_every_missing_key_named_groups_and_path_objects() -> None:
    with pytest.raises(ConfigError, match=r"node: data, budget are required"):
        parse_settings(_Grouped, {}, what="node")
    got = parse_settings(_Grouped, {"data": Path("/d"), "budget": "2", "train-a": 1},
                         what="node")
    assert got == _Grouped(Path("/d"), 2.0, ("train-a",))
    assert parse_settings(_Grouped, {"data": "/d", "budget": 1}, what="node").group == ()
