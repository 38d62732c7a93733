"""A coordinator that cannot reach its minimum of nodes stops with a clear message."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from fedid.errors import FederationError
from server.transport import Messenger
from server.year import YearConfig


class _Grid:
    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)


def test_too_few_nodes_times_out_with_a_clear_message() -> None:
    messenger = Messenger(grid=_Grid([1, 2]), timeout=5.0)  # type: ignore[arg-type]
    with pytest.raises(FederationError, match=r"at least 3 nodes; only 2 connected within 1 s"):
        messenger.wait_for_nodes(3, 1.0)


def test_enough_nodes_returns_them() -> None:
    messenger = Messenger(grid=_Grid([5, 2, 9]), timeout=5.0)  # type: ignore[arg-type]
    assert messenger.wait_for_nodes(3, 1.0) == [2, 5, 9]


def test_year_config_from_run_config() -> None:
    cfg = YearConfig.from_mapping({"out": "/tmp/x", "rounds": 3, "min-nodes": 4,
                                   "train-local_epochs": 10, "grouping": "per_agency"})
    assert cfg.rounds == 3
    assert cfg.min_nodes == 4
    assert cfg.train == {"local_epochs": 10.0}
    assert cfg.grouping == "per_agency"
