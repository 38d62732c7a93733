"""A coordinator that cannot reach its minimum of nodes stops with a clear message."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from flwr.app import Message

from fedid.errors import ConfigError, FederationError
from server.transport import AgencyInfo, Messenger
from server.year_config import YearConfig


class _Grid:
    """Node ids, and ``query.info`` answers from the agencies named in ``who``."""

    def __init__(self, nodes: list[int], who: dict[int, str] | None = None) -> None:
        self.nodes = nodes
        self.who = who or {}
        self.asked: list[int] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def send_and_receive(self, msgs: Iterable[Message], *, timeout: float) -> list[_Reply]:
        replies = []
        for msg in msgs:
            node = msg.metadata.dst_node_id
            self.asked.append(node)
            if node in self.who:  # the others stay silent
                replies.append(_Reply(_Meta(node), {"info": {
                    "agency-id": self.who[node], "kind": "education",
                    "department": "education", "labelled": True}}))
        return replies


@dataclass
class _Meta:
    src_node_id: int


@dataclass
class _Reply:
    metadata: _Meta
    content: dict[str, Any] = field(default_factory=dict)

    def has_error(self) -> bool:
        return False


def _info(agency: str, node: int) -> AgencyInfo:
    return AgencyInfo(agency_id=agency, kind="education", department="education",
                      node_id=node, labelled=True)


def test_too_few_nodes_times_out_with_a_clear_message() -> None:
    messenger = Messenger(grid=_Grid([1, 2]), timeout=5.0)  # type: ignore[arg-type]
    with pytest.raises(FederationError, match=r"at least 3 nodes; only 2 connected within 1 s"):
        messenger.wait_for_nodes(3, 1.0)


def test_enough_nodes_returns_them() -> None:
    messenger = Messenger(grid=_Grid([5, 2, 9]), timeout=5.0)  # type: ignore[arg-type]
    assert messenger.wait_for_nodes(3, 1.0, settle=0.5) == [2, 5, 9]


class _ArrivingGrid(_Grid):
    """Nodes that connect one at a time, one per ``get_node_ids`` call."""

    def __init__(self, nodes: list[int]) -> None:
        super().__init__(nodes)
        self.calls = 0

    def get_node_ids(self) -> Iterable[int]:
        self.calls += 1
        return list(self.nodes[: self.calls])


def test_waits_for_every_expected_node_not_just_the_minimum() -> None:
    grid = _ArrivingGrid([1, 2, 3, 4, 5])
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    assert messenger.wait_for_nodes(2, 30.0, expected=5) == [1, 2, 3, 4, 5]


def test_without_an_expected_count_waits_until_no_more_arrive() -> None:
    grid = _ArrivingGrid([1, 2, 3, 4])
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    assert messenger.wait_for_nodes(2, 30.0, settle=1.0) == [1, 2, 3, 4]


def test_expected_nodes_missing_goes_on_with_the_minimum() -> None:
    messenger = Messenger(grid=_Grid([1, 2]), timeout=5.0)  # type: ignore[arg-type]
    assert messenger.wait_for_nodes(2, 1.0, expected=5) == [1, 2]


def test_year_config_from_run_config() -> None:
    cfg = YearConfig.from_mapping({"out": "/tmp/x", "rounds": 3, "min-nodes": 4,
                                   "expected-nodes": 18,
                                   "train-local_epochs": 10, "grouping": "per_agency"})
    assert cfg.rounds == 3
    assert cfg.min_nodes == 4
    assert cfg.expected_nodes == 18
    assert cfg.train == {"local_epochs": 10.0}
    assert cfg.grouping == "per_agency"


@pytest.mark.usefixtures("in_a_run")
def test_discover_maps_agencies_to_the_nodes_that_answered() -> None:
    grid = _Grid([1, 2, 3], who={1: "a", 2: "b"})
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    found = messenger.discover([1, 2, 3], passes=2)
    assert {a: i.node_id for a, i in found.items()} == {"a": 1, "b": 2}
    assert grid.asked.count(3) == 2  # the silent node was asked again


@pytest.mark.usefixtures("in_a_run")
def test_restarted_node_rejoins_under_its_new_node_id() -> None:
    grid = _Grid([1, 7], who={7: "b"})
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    messenger.agencies = {"a": _info("a", 1), "b": _info("b", 2)}  # b was node 2, now dead
    assert messenger.refresh() == ["b"]
    assert messenger.agencies["b"].node_id == 7
    assert messenger.agencies["a"].node_id == 1
    assert grid.asked == [7]  # known nodes are not asked again
    assert messenger.refresh() == []


@pytest.mark.usefixtures("in_a_run")
def test_agency_unknown_at_discovery_stays_out() -> None:
    grid = _Grid([1, 9], who={9: "late"})
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    messenger.agencies = {"a": _info("a", 1)}
    assert messenger.refresh() == []
    assert set(messenger.agencies) == {"a"}
    assert messenger.refresh() == []
    assert grid.asked == [9]  # an outsider is asked once, not every round


@pytest.mark.usefixtures("in_a_run")
def test_node_is_believed_only_about_the_agency_its_key_was_registered_for() -> None:
    # node 3 (the tax department's key) claims to be university_a once that node is gone
    grid = _Grid([1, 3], who={1: "university_b", 3: "university_a"})
    messenger = Messenger(grid=grid, timeout=5.0,  # type: ignore[arg-type]
                          bound={1: "university_b", 2: "university_a", 3: "tax"})
    messenger.agencies = {"university_a": _info("university_a", 2)}
    assert messenger.refresh() == []
    assert messenger.agencies["university_a"].node_id == 2
    found = messenger.discover([1, 3], passes=1)
    assert set(found) == {"university_b"}


def test_node_agencies_parse_from_the_run_config() -> None:
    cfg = YearConfig.from_mapping({"out": "/tmp/x", "node-agencies": "12=university_a, 7=tax"})
    assert cfg.node_agencies == {12: "university_a", 7: "tax"}
    assert YearConfig.from_mapping({"out": "/tmp/x"}).node_agencies == {}
    with pytest.raises(ConfigError, match="node-agencies"):
        YearConfig.from_mapping({"out": "/tmp/x", "node-agencies": "university_a"})


@pytest.mark.usefixtures("in_a_run")
def test_claim_on_an_agency_whose_node_is_still_connected_is_refused() -> None:
    grid = _Grid([1, 9], who={1: "a", 9: "a"})  # no keys bound (simulation, --insecure)
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    messenger.agencies = {"a": _info("a", 1)}
    for _ in range(5):
        assert messenger.refresh(tries=3) == []
    assert messenger.agencies["a"].node_id == 1
    assert grid.asked == [9, 9, 9]  # refused each time, asked a bounded number of times
    grid.nodes = [9]  # the old node is gone: now the claim is a rejoin
    messenger._strikes.clear()
    assert messenger.refresh() == ["a"]
    assert messenger.agencies["a"].node_id == 9


@pytest.mark.usefixtures("in_a_run")
def test_silent_node_is_asked_a_bounded_number_of_times() -> None:
    grid = _Grid([1, 5])  # node 5 never answers
    messenger = Messenger(grid=grid, timeout=5.0)  # type: ignore[arg-type]
    messenger.agencies = {"a": _info("a", 1)}
    for _ in range(5):
        assert messenger.refresh(tries=2) == []
    assert grid.asked == [5, 5]
    assert messenger.refresh(tries=3) == []
    assert grid.asked == [5, 5, 5]


def test_expected_nodes_below_the_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected-nodes must be 0 or >= min-nodes"):
        YearConfig.from_mapping({"out": "/tmp/x", "min-nodes": 3, "expected-nodes": 2})
