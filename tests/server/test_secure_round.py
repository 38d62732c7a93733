"""server.secure_round's round logic over in-memory nodes running clients.masked_update.

No Flower runtime: a fake messenger hands each message to a node function that uses
the real node-side glue (key step, masking) with a real Flower Context per node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

from clients import masked_update as node_side
from fedid.errors import FederationError
from fedid.records import ConfigValue, arrays_of
from server.secure_round import SecureRound, secure_round
from server.strategy import FedAvg
from server.transport import Messenger

GLOBAL = [np.zeros((2, 3), dtype=np.float32), np.zeros(4, dtype=np.float32)]
PRIV = {"epsilon_spent": 0.5, "delta": 1e-5, "epsilon_budget": 1.0, "delta_budget": 1e-5}


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Messages built outside a Flower runtime need a run and node identity."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


class FakeNodes:
    """Agencies answering in memory; ``silent`` ones never answer a given message type."""

    def __init__(self, updates: Mapping[str, float], examples: Mapping[str, int]) -> None:
        self.updates, self.examples = dict(updates), dict(examples)
        self.contexts = {a: Context(0, i, {}, RecordDict(), {}) for i, a in enumerate(updates)}
        self.silent: dict[str, set[str]] = {}
        self.refusing: set[str] = set()
        self.seen: list[tuple[str, str]] = []

    def exchange(self, message_type: str, contents: Mapping[str, RecordDict], *,
                 group: str = "") -> dict[str, Message]:
        out: dict[str, Message] = {}
        for agency, content in contents.items():
            self.seen.append((message_type, agency))
            if agency in self.silent.get(message_type, set()):
                continue
            msg = Message(content, dst_node_id=1, message_type=message_type, group_id=group)
            out[agency] = Message(self._answer(agency, msg), dst_node_id=0,
                                  message_type=message_type)
        return out

    def _answer(self, agency: str, msg: Message) -> RecordDict:
        ctx = self.contexts[agency]
        if msg.metadata.message_type == "query.secagg":
            return node_side.keys_reply(msg, ctx, agency_id=agency, keys=None)
        keys = node_side.checked_keys(msg, ctx, agency_id=agency, roster=None)
        g = arrays_of(msg) or []
        refused = agency in self.refusing
        local = None if refused else [a + np.float32(self.updates[agency]) for a in g]
        metrics = {**PRIV, "weight": 0 if refused else self.examples[agency]}
        return node_side.masked_reply(msg, ctx, agency_id=agency, keys=keys, global_arrays=g,
                                      local_arrays=local, metrics=metrics,
                                      refused="over budget" if refused else "")


def _round(nodes: FakeNodes, strategy: FedAvg | None = None) -> SecureRound:
    conf: dict[str, ConfigValue] = {"session": "year", "round": 1, "rounds": 2, "seed": 0}
    return secure_round(cast(Messenger, nodes), strategy or FedAvg(), trainers=sorted(
        nodes.updates), conf=conf, arrays=GLOBAL)


def test_weighted_fedavg_from_the_sum_only() -> None:
    nodes = FakeNodes({"a": 1.0, "b": -2.0, "c": 0.5}, {"a": 100, "b": 300, "c": 600})
    res = _round(nodes)
    want = (100 * 1.0 + 300 * -2.0 + 600 * 0.5) / 1000
    for arr in res.result.arrays:
        assert np.allclose(arr, want, atol=1e-6)
    assert res.total_weight == pytest.approx(1000)
    assert res.attempts == 1


def test_equal_weighting() -> None:
    # fedid nodes release the public constant weight 1.0 (clients.node.FEDAVG_WEIGHT)
    nodes = FakeNodes({"a": 1.0, "b": -2.0, "c": 0.5}, {"a": 1, "b": 1, "c": 1})
    res = _round(nodes, FedAvg(weighting="equal"))
    assert np.allclose(res.result.arrays[1], (1.0 - 2.0 + 0.5) / 3, atol=1e-6)


def test_a_node_lost_after_the_keys_fails_closed_and_the_round_reruns() -> None:
    nodes = FakeNodes({"a": 1.0, "b": 3.0, "c": 100.0}, {"a": 10, "b": 10, "c": 10})
    nodes.silent["train"] = {"c"}
    res = _round(nodes)
    assert res.attempts == 2
    assert np.allclose(res.result.arrays[0], 2.0, atol=1e-6)
    assert "c" in res.result.excluded
    assert ("query.secagg", "c") in nodes.seen
    assert nodes.seen.count(("query.secagg", "a")) == 2  # fresh keys for the rerun


def test_a_refusing_node_adds_nothing_but_keeps_the_sum_whole() -> None:
    nodes = FakeNodes({"a": 1.0, "b": 3.0, "c": 100.0}, {"a": 10, "b": 30, "c": 10})
    nodes.refusing = {"c"}
    res = _round(nodes)
    assert res.attempts == 1
    assert np.allclose(res.result.arrays[0], 2.5, atol=1e-6)
    assert res.result.used == ("a", "b")
    assert "refused" in res.result.excluded["c"]


def test_too_few_nodes_stop_with_a_clear_error() -> None:
    nodes = FakeNodes({"a": 1.0, "b": 3.0}, {"a": 10, "b": 10})
    nodes.silent["train"] = {"b"}
    with pytest.raises(FederationError, match="at least 2 nodes"):
        _round(nodes)


def test_a_node_lost_during_the_key_exchange_restarts_it_without_that_node() -> None:
    # the others were asked to sign for all three: a key list without the lost one would
    # not be the participant set they signed for, so the exchange starts again
    nodes = FakeNodes({"a": 1.0, "b": 3.0, "c": 100.0}, {"a": 10, "b": 10, "c": 10})
    nodes.silent["query.secagg"] = {"c"}
    res = _round(nodes)
    assert res.attempts == 2
    assert np.allclose(res.result.arrays[0], 2.0, atol=1e-6)
    assert res.dropped == {"c": "no public key"}
    assert ("train", "c") not in nodes.seen
    assert nodes.seen.count(("train", "a")) == 1
