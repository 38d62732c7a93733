"""Distributed-noise mode at the node, through the real ClientApp (release gate included).

The coordinator here is the test: it asks for the noise requirement, runs the key step,
sends the key list, and unmasks the node's vector with the peers' masked vectors.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common.config import parse_config_args

from clients.client_app import app
from clients.gate import read_ledger
from clients.release import undeclared
from fedid.model.train import LocalState
from fedid.records import SIGNATURES_RECORD, arrays_of, content, metrics_of, payload_of
from privacy.dp import expected_batch_size
from privacy.identity import AgencyIdentity, Roster
from privacy.secure_sum import MaskingParty, PublicKeyList, unmask_sum
from privacy.secure_sum_keys import MaskingInstance, sign_masking_key

K = 3


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


PEERS = 4  # peer identities in every node's roster (a round uses some of them)


def _ctx(province: Path, out: Path, **extra: Any) -> Context:
    table = sorted((province / "agencies" / "education").glob("*.parquet"))[0]
    identity = AgencyIdentity.load_or_create(out / "identity", agency=table.stem,
                                             kind="education", department="")
    peers = [AgencyIdentity.load_or_create(out / "peers" / f"peer{i}", agency=f"peer{i}",
                                           kind="education") for i in range(PEERS)]
    Roster.of([identity.public, *(p.public for p in peers)]).save(out / "roster.toml")
    cfg = {"agency-id": table.stem, "kind": "education", "data": str(table),
           "schema": str(province / "schema.toml"), "out": str(out),
           "roster": str(out / "roster.toml"), "epsilon": 1.0, "delta": 1e-5,
           "distributed-noise": True, "distributed-noise-parties": K, **extra}
    return Context(run_id=1, node_id=7, node_config=cfg, state=RecordDict(), run_config={})


def _send(ctx: Context, kind: str, **parts: Any) -> Message:
    return app(Message(content(**parts), dst_node_id=7, message_type=kind), ctx)


def _agency(ctx: Context) -> str:
    return str(ctx.node_config["agency-id"])


class Round:
    """One round's key step for the node and ``peers`` roster peers, every key signed for
    the instance as the nodes do (privacy.secure_sum_keys)."""

    def __init__(self, ctx: Context, peers: int, *, rnd: int = 1, attempt: int = 0) -> None:
        out = Path(str(ctx.node_config["out"]))
        names = sorted([_agency(ctx), *(f"peer{i}" for i in range(peers))])
        self.step = {"session": "s", "round": rnd, "secagg-attempt": attempt,
                     "parties": ",".join(names)}
        reply = _send(ctx, "query.secagg", config=self.step)
        assert not reply.has_error()
        own = reply.content.config_records["signature"]
        self.peers = [MaskingParty(f"peer{i}", "s", rnd, attempt) for i in range(peers)]
        self.keys = PublicKeyList.of({_agency(ctx): payload_of(reply),
                                      **{p.name: p.public_key() for p in self.peers}})
        run = Message(content(), dst_node_id=7, message_type="train").metadata.run_id
        instance = MaskingInstance(run=str(run), session="s", round=rnd, attempt=attempt,
                                   participants=tuple(names))
        issued = int(time.time())
        self.signatures = {_agency(ctx): (int(own["issued"]), bytes(own["data"]))}
        for p in self.peers:
            identity = AgencyIdentity.load(out / "peers" / p.name)
            signed = sign_masking_key(identity, public_key=p.public_key(), instance=instance,
                                      issued=issued)
            self.signatures[p.name] = (signed.issued, signed.signature)

    def train(self, ctx: Context, arrays: list[np.ndarray], std: float, **conf: Any) -> Message:
        config = {**self.step, "rounds": 2, "secure-aggregation": True,
                  "distributed-noise": True, "distributed-noise-std": std, **conf}
        rd = content(config=config, arrays=arrays, payload=self.keys.to_bytes())
        parties = sorted(self.signatures)
        rd[SIGNATURES_RECORD] = ConfigRecord({
            "parties": parties, "issued": [self.signatures[p][0] for p in parties],
            "data": [self.signatures[p][1] for p in parties]})
        return app(Message(rd, dst_node_id=7, message_type="train"), ctx)

    def unmask(self, ctx: Context, reply: Message) -> np.ndarray:
        masked = (arrays_of(reply) or [])[0]
        zeros = np.zeros(masked.size)
        vectors = {p.name: p.mask(zeros, self.keys) for p in self.peers}
        return unmask_sum({_agency(ctx): masked, **vectors}, parties=self.keys.parties)


def _start(province: Path, out: Path, **extra: Any) -> tuple[Context, list[np.ndarray], float]:
    ctx = _ctx(province, out, **extra)
    init = arrays_of(_send(ctx, "query.init", config={"seed": 3})) or []
    noise = _send(ctx, "query.noise", config={"session": "s", "rounds": 2})
    assert not noise.has_error()
    assert undeclared("query.noise", noise.content) == []
    return ctx, init, metrics_of(noise)["noise_std"]


def test_share_unmasks_to_the_noisy_sum_and_both_epsilons_are_recorded(
    small_province: Path, tmp_path: Path
) -> None:
    out = tmp_path / "n"
    ctx, init, std = _start(small_province, out)
    assert std > 0
    rnd = Round(ctx, K - 1)
    reply = rnd.train(ctx, init, std)
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    assert undeclared("train", reply.content) == []  # the release-policy contract
    vector = rnd.unmask(ctx, reply)
    # the last value is the public divisor: the expected batch of the node's public size
    from clients import training
    from clients.node import settings_of

    n_train = len(training.labelled_rows(settings_of(ctx))[0])
    drawn = LocalState.from_bytes((out / "local_state.bin").read_bytes()).public_rows
    assert drawn is not None
    assert abs(drawn - n_train) < 6 * training.SIZE_NOISE
    assert vector[-1] == expected_batch_size(drawn, 2048)
    size = sum(a.size for a in init)
    assert vector.size == size + 1
    # noise of one share: std / sqrt(K) per coordinate (far from the full std)
    spread = float(np.std(vector[:-1]))
    assert spread > 0.5 * std / np.sqrt(K)
    m = metrics_of(reply)
    record = json.loads((out / "privacy_ledger.json").read_text())["distributed_noise"]
    state = LocalState.from_bytes((out / "local_state.bin").read_bytes())
    assert m["epsilon_spent"] == pytest.approx(state.accountant.epsilon(1e-5))
    assert record["spend"]["epsilon"] == pytest.approx(m["epsilon_spent"])
    assert record["spend"]["fallback_epsilon"] == pytest.approx(m["epsilon_fallback"])
    assert m["epsilon_fallback"] > 1.2 * m["epsilon_spent"] > 0
    assert record["participants"]["s-1"] == ",".join(rnd.keys.parties)
    # the trusted entry charged is the sum's multiplier at the node's sample rate
    sigma = std / 5.0
    assert state.accountant.history[-1] == (pytest.approx(sigma), 1.0, 1)
    assert read_ledger(out)[-1]["fields"]["metrics.epsilon_fallback"] == "accounting"


def test_refused_when_the_coordinator_announces_fewer_participants(
    small_province: Path, tmp_path: Path
) -> None:
    out = tmp_path / "n"
    ctx, init, std = _start(small_province, out)
    # before any round: only the node's public-size release (charged when it planned)
    before = json.loads((out / "privacy_ledger.json").read_text())["epsilon_total"]
    reply = Round(ctx, K - 2).train(ctx, init, std)  # 2 participants, the node requires 3
    assert reply.has_error()
    assert reply.error.code == 1004
    assert not (out / "rounds").exists()  # nothing trained, recorded or charged
    assert json.loads((out / "privacy_ledger.json").read_text())["epsilon_total"] == before
    assert before < 0.05
    assert read_ledger(out)[-1]["charged_epsilon"] == 0.0


def test_refused_without_secure_aggregation_signed_keys_the_required_noise_or_opt_in(
    small_province: Path, tmp_path: Path
) -> None:
    ctx, init, std = _start(small_province, tmp_path / "n")
    rnd = Round(ctx, K - 1)
    clear = rnd.train(ctx, init, std, **{"secure-aggregation": False})
    assert clear.has_error()
    assert clear.error.code == 1004
    low = rnd.train(ctx, init, 0.9 * std)
    assert low.has_error()
    assert low.error.code == 1002
    unsigned = Round(ctx, K - 1, attempt=1)
    unsigned.signatures.pop("peer0")  # a peer key the coordinator could have substituted
    refused = unsigned.train(ctx, init, std)
    assert refused.has_error()
    assert refused.error.code == 1005
    local = _send(ctx, "train", config={"session": "s", "round": 1, "rounds": 2}, arrays=init)
    assert local.has_error()
    assert local.error.code == 1002  # an opted-in node trains only in the mode
    other = _ctx(small_province, tmp_path / "m", **{"distributed-noise": False})
    asked = _send(other, "query.noise", config={"session": "s", "rounds": 2})
    assert asked.has_error()
    assert asked.error.code == 1002
    for out in (tmp_path / "n", tmp_path / "m"):
        assert not (out / "rounds").exists()


def test_a_round_is_replayed_only_to_the_same_participants(
    small_province: Path, tmp_path: Path
) -> None:
    ctx, init, std = _start(small_province, tmp_path / "n")
    first = Round(ctx, K)  # 4 participants
    v1 = first.unmask(ctx, first.train(ctx, init, std))
    # the coordinator claims a drop-out and reruns round 1 with one peer fewer: refused
    fewer = Round(ctx, K - 1, attempt=1)
    again = fewer.train(ctx, init, std)
    assert again.has_error()
    assert again.error.code == 1004
    # the same participants in a new attempt get the stored release, not a new draw
    same = Round(ctx, K, attempt=2)
    v2 = same.unmask(ctx, same.train(ctx, init, std))
    np.testing.assert_allclose(v1, v2, atol=1e-6)


def test_the_opt_in_is_the_nodes_own_config_and_reaches_its_supernode(tmp_path: Path) -> None:
    from clients.config import NodeSettings, node_settings
    from clients.deploy import node_config_arg
    from fedid.errors import ConfigError

    raw = {"agency-id": "a", "kind": "education", "data": str(tmp_path / "t.parquet"),
           "out": str(tmp_path / "out"), "epsilon": 1.0, "delta": 1e-5,
           "roster": str(tmp_path / "roster.toml")}
    with pytest.raises(ConfigError, match="needs a roster"):
        NodeSettings.from_mapping({**{k: v for k, v in raw.items() if k != "roster"},
                                   "distributed-noise": True, "distributed-noise-parties": 3})
    with pytest.raises(ConfigError, match="needs distributed-noise-parties"):
        NodeSettings.from_mapping({**raw, "distributed-noise": True})
    with pytest.raises(ConfigError, match="must be >= 2"):
        NodeSettings.from_mapping({**raw, "distributed-noise": True,
                                   "distributed-noise-parties": 1})
    s = NodeSettings.from_mapping({**raw, "distributed-noise": "true",
                                   "distributed-noise-parties": "6"})
    assert (s.distributed_noise, s.distributed_noise_parties) == (True, 6)
    (parsed,) = [parse_config_args([node_config_arg(s)])]
    assert node_settings({k: str(v) for k, v in parsed.items()}) == s


def test_a_refused_noise_query_keeps_the_charged_size_draw(small_province: Path,
                                                           tmp_path: Path) -> None:
    """The size is drawn, charged and saved before the plan can refuse: asking again after a
    budget refusal gets no fresh draw (as for a local-mode round, clients.node.train)."""
    ctx = _ctx(small_province, tmp_path / "n", epsilon=0.1)  # the size release fits only
    drawn = []
    for _ in range(2):
        asked = _send(ctx, "query.noise", config={"session": "s", "rounds": 2})
        assert asked.has_error()
        assert asked.error.code == 1001  # the budget
        state = LocalState.from_bytes((tmp_path / "n" / "local_state.bin").read_bytes())
        drawn.append(state.public_rows)
    assert drawn[0] is not None
    assert drawn[0] == drawn[1]
