"""server.noise_round: the agreed noise, and a secure round that takes a gradient step.

In-memory nodes (no Flower runtime) answer with the real node-side masking
(clients.masked_update) of known vectors ``[sum of gradients, expected batch]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

from clients import masked_update
from fedid.errors import FederationError
from fedid.records import ConfigValue, content
from server.noise_round import ServerMomentum, agree_noise, rule_learning_rate
from server.secure_round import secure_round
from server.strategy import FedAvg
from server.transport import Messenger

GLOBAL = [np.ones((2, 3), dtype=np.float32), np.zeros(4, dtype=np.float32)]
PRIV = {"epsilon_spent": 0.5, "epsilon_fallback": 1.4, "delta": 1e-5, "epsilon_budget": 1.0,
        "delta_budget": 1e-5}


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


class Nodes:
    """Agencies whose release is ``[batch * gradient, batch]`` (their gradient a constant)."""

    def __init__(self, gradient: Mapping[str, float], batch: Mapping[str, int],
                 required: Mapping[str, float]) -> None:
        self.gradient, self.batch, self.required = dict(gradient), dict(batch), dict(required)
        self.contexts = {a: Context(0, i, {}, RecordDict(), {}) for i, a in enumerate(gradient)}
        self.configs: list[dict[str, object]] = []

    def exchange(self, message_type: str, contents: Mapping[str, RecordDict], *,
                 group: str = "") -> dict[str, Message]:
        out: dict[str, Message] = {}
        for agency, rd in contents.items():
            msg = Message(rd, dst_node_id=1, message_type=message_type, group_id=group)
            out[agency] = Message(self._answer(agency, msg), dst_node_id=0,
                                  message_type=message_type)
        return out

    def _answer(self, agency: str, msg: Message) -> RecordDict:
        if msg.metadata.message_type == "query.noise":
            return content(metrics={"noise_std": self.required[agency]})
        ctx = self.contexts[agency]
        if msg.metadata.message_type == "query.secagg":
            return masked_update.keys_reply(msg, ctx, agency_id=agency, keys=None)
        self.configs.append(dict(msg.content["config"]))
        size = sum(a.size for a in GLOBAL)
        b = self.batch[agency]
        vector = np.concatenate([np.full(size, b * self.gradient[agency]), [b]])
        keys = masked_update.checked_keys(msg, ctx, agency_id=agency, roster=None)
        masked = masked_update.mask_vector(msg, ctx, agency_id=agency, keys=keys,
                                           vector=vector)
        rd = content(config={"secure-aggregation": True}, arrays=[masked], metrics=PRIV)
        return rd


def test_the_agreed_noise_is_the_largest_requirement() -> None:
    nodes = Nodes({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 1, "c": 1},
                  {"a": 10.0, "b": 12.5, "c": 11.0})
    agreed = agree_noise(cast(Messenger, nodes), trainers=["a", "b", "c"],
                         conf={"session": "year", "rounds": 40})
    assert agreed.noise_std == 12.5
    assert agreed.config() == {"distributed-noise": True, "distributed-noise-std": 12.5}
    nodes.required["c"] = float("nan")
    partial = agree_noise(cast(Messenger, nodes), trainers=["a", "b", "c"], conf={})
    assert set(partial.required) == {"a", "b"}
    assert "c" in partial.left_out
    nodes.required = {a: -1.0 for a in nodes.required}
    with pytest.raises(FederationError, match="no trainer answered"):
        agree_noise(cast(Messenger, nodes), trainers=["a", "b", "c"], conf={})


def test_a_round_steps_by_the_mean_gradient_over_the_union_of_samples() -> None:
    nodes = Nodes({"a": 1.0, "b": -2.0, "c": 0.5}, {"a": 100, "b": 300, "c": 600},
                  {"a": 1.0, "b": 1.0, "c": 1.0})
    step = ServerMomentum(learning_rate=0.5, momentum=0.9)
    conf: dict[str, ConfigValue] = {"session": "year", "round": 1, "rounds": 2,
                                    "distributed-noise": True, "distributed-noise-std": 1.0}
    res = secure_round(cast(Messenger, nodes), FedAvg(), trainers=["a", "b", "c"], conf=conf,
                       arrays=GLOBAL, apply=step.apply)
    mean = (100 * 1.0 + 300 * -2.0 + 600 * 0.5) / 1000  # over the union, not per agency
    for got, start in zip(res.result.arrays, GLOBAL, strict=True):
        np.testing.assert_allclose(got, start - 0.5 * mean, atol=1e-6)
    assert all(c["distributed-noise-std"] == 1.0 for c in nodes.configs)
    # the second step carries the momentum: v = 0.9 mean + mean
    res2 = secure_round(cast(Messenger, nodes), FedAvg(), trainers=["a", "b", "c"],
                        conf={**conf, "round": 2}, arrays=res.result.arrays, apply=step.apply)
    np.testing.assert_allclose(res2.result.arrays[1], -0.5 * mean - 0.5 * 1.9 * mean, atol=1e-6)


def test_the_mode_needs_secure_aggregation_on_both_sides() -> None:
    from pathlib import Path

    from fedid.errors import ConfigError
    from server.year_config import YearConfig
    from simulations.simulate import SimulationConfig

    with pytest.raises(ConfigError, match="needs secure-aggregation"):
        YearConfig.from_mapping({"distributed-noise": True})
    cfg = YearConfig.from_mapping({"distributed-noise": True, "secure-aggregation": True})
    assert cfg.distributed_noise
    assert cfg.distributed_noise_learning_rate is None  # the rule: 16 / rounds
    assert rule_learning_rate(20) == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="needs secure aggregation"):
        SimulationConfig(out=Path("unused"), distributed_noise=True)
