"""The node's train handler: budget enforced on the node, accountant persisted, replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

from clients import node
from clients.config import NodeSettings, node_settings
from clients.privacy_state import NodePrivacyLedger
from fedid.errors import ConfigError
from fedid.model.train import LocalState
from fedid.records import arrays_of, content, metrics_of


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Messages built outside a Flower runtime need a run and node identity."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _settings(province: Path, out: Path, epsilon: float = 1.0) -> dict[str, str | float]:
    table = sorted((province / "agencies" / "education").glob("*.parquet"))[0]
    return {"agency-id": table.stem, "kind": "education", "data": str(table),
            "schema": str(province / "schema.toml"), "out": str(out),
            "epsilon": epsilon, "delta": 1e-5}


def _context(node_config: dict[str, str | float]) -> Context:
    return Context(run_id=1, node_id=7, node_config=dict(node_config), state=RecordDict(),
                   run_config={})


def _train_msg(arrays: list[np.ndarray], rnd: int, rounds: int) -> Message:
    return Message(content(config={"session": "t", "round": rnd, "rounds": rounds, "seed": 1,
                                   "train-local_epochs": 1},
                           arrays=arrays), dst_node_id=7, message_type="train")


def test_budget_enforced_state_persisted_and_replay(small_province: Path, tmp_path: Path) -> None:
    ctx = _context(_settings(small_province, tmp_path / "n"))
    init = arrays_of(Message(node.init(Message(content(config={"seed": 3}), dst_node_id=7,
                                               message_type="query.init"), ctx),
                             dst_node_id=0, message_type="query"))
    assert init is not None
    first = node.train(_train_msg(init, 1, 2), ctx)
    eps1 = metrics_of(Message(first, dst_node_id=0, message_type="query"))["epsilon_spent"]
    assert 0 < eps1 < 1.0
    second = node.train(_train_msg(init, 2, 2), ctx)
    eps2 = metrics_of(Message(second, dst_node_id=0, message_type="query"))["epsilon_spent"]
    assert eps1 < eps2 <= 1.0
    # The accountant state lives in the node's context and on its disk.
    state = LocalState.from_bytes((tmp_path / "n" / "local_state.bin").read_bytes())
    assert state.accountant.epsilon(1e-5) == pytest.approx(eps2, rel=1e-6)
    assert "fedid_privacy" in ctx.state.config_records
    # The same (session, round) again: the stored reply, no new spend.
    again = node.train(_train_msg(init, 2, 2), ctx)
    np.testing.assert_array_equal(
        arrays_of(Message(again, dst_node_id=0, message_type="query"))[0],  # type: ignore[index]
        arrays_of(Message(second, dst_node_id=0, message_type="query"))[0])  # type: ignore[index]
    ledger = json.loads((tmp_path / "n" / "privacy_ledger.json").read_text())
    assert len(ledger["epsilon_after"]) == 2
    # A third round was not planned: the node refuses it, whatever the coordinator asks.
    third = node.train(_train_msg(init, 3, 2), ctx)
    reply = Message(third, dst_node_id=0, message_type="query")
    assert str(reply.content["config"]["refused"]) == "budget"
    assert "arrays" not in reply.content.array_records
    after = LocalState.from_bytes((tmp_path / "n" / "local_state.bin").read_bytes())
    assert after.accountant.epsilon(1e-5) == pytest.approx(eps2, rel=1e-6)
    # A restarted node (fresh context) resumes from its disk, not from zero.
    fresh = _context(_settings(small_province, tmp_path / "n"))
    assert NodePrivacyLedger.load(fresh, tmp_path / "n").state is not None


def test_node_settings_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="epsilon must be > 0"):
        NodeSettings.from_mapping({"agency-id": "a", "kind": "education", "data": "x",
                                   "out": "o", "epsilon": -1, "delta": 1e-5})
    with pytest.raises(ConfigError, match="plain name"):
        NodeSettings.from_mapping({"agency-id": "../a", "kind": "education", "data": "x",
                                   "out": "o", "epsilon": 1.0, "delta": 1e-5})
    # A node without a stated budget does not start (no silent epsilon 1.0).
    for missing in ("epsilon", "delta"):
        raw = {"agency-id": "a", "kind": "education", "data": "x", "out": "o",
               "epsilon": 1.0, "delta": 1e-5}
        del raw[missing]
        with pytest.raises(ConfigError, match=f"node config: {missing} is required"):
            NodeSettings.from_mapping(raw)
    monkeypatch.delenv("FEDID_SIMULATION_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="node-config"):
        node_settings({"partition-id": 0})
    sim = tmp_path / "sim.json"
    sim.write_text(json.dumps({"agencies": [
        {"agency-id": "x", "kind": "department", "department": "tax", "data": "t.parquet",
         "out": "o", "epsilon": 1.0, "delta": 1e-5}]}))
    monkeypatch.setenv("FEDID_SIMULATION_CONFIG", str(sim))
    assert node_settings({"partition-id": 0}).department == "tax"
    with pytest.raises(ConfigError, match="partition-id"):
        node_settings({"partition-id": 3})


def _ctx() -> Context:
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def test_each_run_sees_every_charge_of_the_node(tmp_path: Path) -> None:
    """A coordinator that opens several runs gets one context per run from Flower; the
    node's disk ledger, not a run's stale copy, is what the budget guard reads."""
    run_a, run_b = _ctx(), _ctx()
    first = NodePrivacyLedger.load(run_a, tmp_path)
    first.charge(state=b"after-a", epsilon_total=0.5, delta=1e-5)
    first.save(run_a)
    second = NodePrivacyLedger.load(run_b, tmp_path)  # a second run, fresh context
    assert second.epsilon_total == 0.5
    second.charge(state=b"after-b", epsilon_total=0.9, delta=1e-5)
    second.save(run_b)
    back = NodePrivacyLedger.load(run_a, tmp_path)  # run A again: its context is stale
    assert back.epsilon_total == 0.9
    assert back.state == b"after-b"


def test_interleaved_runs_cannot_pass_the_budget(small_province: Path, tmp_path: Path) -> None:
    from clients.count_release import noised_counts
    from fedid.errors import BudgetExceededError

    table = sorted((small_province / "agencies" / "education").glob("*.parquet"))[0]
    s = NodeSettings(agency_id=table.stem, kind="education", department="education",
                     data=table, schema=None, out=tmp_path, epsilon=1.0, delta=1e-5,
                     release_noise=6.0)
    counts = {"students": 500.0, "level_a": 40.0}
    run_a, run_b = _ctx(), _ctx()
    released = 0
    for ctx in (run_a, run_b, run_a, run_b):  # A, B, A, B: each run's context alone is fresh
        ledger = NodePrivacyLedger.load(ctx, tmp_path)
        try:
            noised_counts(s, ledger, counts)
        except BudgetExceededError:
            continue
        ledger.save(ctx)
        released += 1
    final = NodePrivacyLedger.load(_ctx(), tmp_path)
    assert final.epsilon_total <= 1.0
    state = LocalState.from_bytes(final.state or b"")
    assert state.accountant.steps == released >= 1  # every release is in the accountant


def test_the_update_is_shaped_by_the_public_size(small_province: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The divisor, sample rate and steps come from public-size, or from the row count noised
    once and charged; never from the exact row count: the DP trainer is handed that size."""
    import fedid.model.train as train_module
    from clients.training import SIZE_NOISE, _labelled
    from privacy.dp import count_release_entry

    seen: list[int | None] = []
    real = train_module.dp_train

    def spy(**kwargs: object) -> object:
        seen.append(kwargs["public_n"])  # type: ignore[arg-type]
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "dp_train", spy)
    replies = {}
    for extra, out in (({}, "noised"), ({"public-size": 5000}, "declared")):
        ctx = _context({**_settings(small_province, tmp_path / out), **extra})
        init = arrays_of(Message(node.init(Message(content(config={"seed": 3}), dst_node_id=7,
                                                   message_type="query.init"), ctx),
                                 dst_node_id=0, message_type="query"))
        assert init is not None
        replies[out] = metrics_of(Message(node.train(_train_msg(init, 1, 1), ctx),
                                          dst_node_id=0, message_type="query"))
    n_train = len(_labelled(node_settings(_settings(small_province, tmp_path / "noised")))[0])
    noised, declared = seen
    assert declared == 4000  # 5,000 x (1 - holdout 0.2)
    assert noised is not None
    assert abs(noised - n_train) < 6 * SIZE_NOISE
    state = LocalState.from_bytes((tmp_path / "noised" / "local_state.bin").read_bytes())
    assert state.public_rows == noised
    assert count_release_entry(SIZE_NOISE) in state.accountant.history
    assert replies["noised"]["epsilon_spent"] == pytest.approx(
        state.accountant.epsilon(1e-5), rel=1e-6)
    fixed = LocalState.from_bytes((tmp_path / "declared" / "local_state.bin").read_bytes())
    assert count_release_entry(SIZE_NOISE) not in fixed.accountant.history


def test_a_node_that_requires_secure_aggregation_refuses_a_plain_round(
        small_province: Path, tmp_path: Path) -> None:
    from fedid.errors import ProtocolError

    ctx = _context({**_settings(small_province, tmp_path / "n"),
                    "require-secure-aggregation": True})
    init = arrays_of(Message(node.init(Message(content(config={"seed": 3}), dst_node_id=7,
                                               message_type="query.init"), ctx),
                             dst_node_id=0, message_type="query"))
    assert init is not None
    with pytest.raises(ProtocolError, match="secure aggregation"):
        node.train(_train_msg(init, 1, 1), ctx)
    assert not (tmp_path / "n" / "local_state.bin").exists()


def test_a_refused_first_round_keeps_the_charged_size_draw(small_province: Path,
                                                           tmp_path: Path) -> None:
    """The noisy size is drawn and charged once, before calibration: a round refused on the
    budget keeps it, so a coordinator that asks again sees no fresh draw."""
    from clients.training import SIZE_NOISE
    from privacy.dp import count_release_entry

    ctx = _context(_settings(small_province, tmp_path / "n", epsilon=0.1))  # size fits only
    init = arrays_of(Message(node.init(Message(content(config={"seed": 3}), dst_node_id=7,
                                               message_type="query.init"), ctx),
                             dst_node_id=0, message_type="query"))
    assert init is not None
    drawn = []
    for _ in range(2):
        reply = Message(node.train(_train_msg(init, 1, 2), ctx), dst_node_id=0,
                        message_type="train")
        assert reply.content.config_records["config"]["refused"] == "budget"
        ledger = NodePrivacyLedger.load(_context(_settings(small_province, tmp_path / "n",
                                                           epsilon=0.1)), tmp_path / "n")
        state = LocalState.from_bytes(ledger.state or b"")
        assert state.accountant.history == (count_release_entry(SIZE_NOISE),)
        drawn.append(state.public_rows)
    assert drawn[0] is not None
    assert drawn[0] == drawn[1]
