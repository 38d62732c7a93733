"""The node's boundary against a coordinator that knows (and sends) everything.

Run through the real ClientApp (its mods included): node-owned noise, the release policy
contract, scrubbed errors, node-owned training settings, and the limits on evaluate and
identify.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict

from clients import node, training
from clients.client_app import app
from clients.config import node_settings
from clients.gate import ERROR_CODES, read_ledger
from clients.release import POLICY, undeclared
from fedid.errors import ConfigError
from fedid.model.train import LocalState
from fedid.records import arrays_of, content, metrics_of
from privacy.identity import AgencyIdentity, Roster


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    TaskIdentity.task_id = 1


def _cfg(province: Path, out: Path, **extra: Any) -> dict[str, Any]:
    table = sorted((province / "agencies" / "education").glob("*.parquet"))[0]
    identity = AgencyIdentity.load_or_create(out / "identity", agency=table.stem,
                                             kind="education", department="")
    Roster.of([identity.public]).save(out / "roster.toml")
    return {"agency-id": table.stem, "kind": "education", "data": str(table),
            "schema": str(province / "schema.toml"), "out": str(out),
            "roster": str(out / "roster.toml"),
            "epsilon": 1.0, "delta": 1e-5, "train-local_epochs": 1, **extra}


def _ctx(cfg: dict[str, Any]) -> Context:
    return Context(run_id=1, node_id=7, node_config=dict(cfg), state=RecordDict(),
                   run_config={})


def _send(ctx: Context, kind: str, **parts: Any) -> Message:
    msg = Message(content(**parts), dst_node_id=7, message_type=kind)
    return app(msg, ctx)


def _init(ctx: Context) -> list[np.ndarray]:
    arrays = arrays_of(_send(ctx, "query.init", config={"seed": 3}))
    assert arrays is not None
    return arrays


def _train(ctx: Context, arrays: list[np.ndarray], *, rnd: int = 1, seed: int = 1,
           **proposals: Any) -> Message:
    conf = {"session": "s", "round": rnd, "rounds": 2, "seed": seed, **proposals}
    return _send(ctx, "train", config=conf, arrays=arrays)


def test_noise_is_the_nodes_own(small_province: Path, tmp_path: Path) -> None:
    a, b = _ctx(_cfg(small_province, tmp_path / "a")), _ctx(_cfg(small_province, tmp_path / "b"))
    init = _init(a)
    ra, rb = _train(a, init), _train(b, init)
    ua, ub = arrays_of(ra), arrays_of(rb)
    assert ua is not None
    assert ub is not None
    # The same messages to two identical nodes: different updates (fresh CSPRNG noise).
    assert not np.allclose(ua[0], ub[0])
    # A coordinator that knows everything it sent (arrays, seed, round, node settings) and
    # re-runs the computation the message seed used to drive cannot reproduce either.
    # Granted even node a's own public size (drawn from its CSPRNG, never sent):
    s = node.settings_of(a)
    values = s.training.resolve({"rounds": 2.0, "local_epochs": 1.0})
    drawn = LocalState.from_bytes((tmp_path / "a" / "local_state.bin").read_bytes()).public_rows
    start = replace(training.new_state(s), public_rows=drawn)
    guess = [training.train_round(s, arrays=init, state=start,
                                  values=values, seed=1 * 1000 + 1).arrays for _ in range(2)]
    np.testing.assert_array_equal(guess[0][0], guess[1][0])  # the seeded path is exact
    assert not np.allclose(guess[0][0], ua[0])
    assert not np.allclose(guess[0][0], ub[0])


def test_only_the_nodes_test_seed_makes_noise_reproducible(
    small_province: Path, tmp_path: Path
) -> None:
    a = _ctx(_cfg(small_province, tmp_path / "a", **{"test-seed": 5}))
    b = _ctx(_cfg(small_province, tmp_path / "b", **{"test-seed": 5}))
    init = _init(a)
    ua, ub = arrays_of(_train(a, init, seed=1)), arrays_of(_train(b, init, seed=99))
    assert ua is not None
    assert ub is not None
    np.testing.assert_array_equal(ua[0], ub[0])  # the message seed has no effect


def test_every_kind_declared_and_undeclared_fields_refused(
    small_province: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = {k.removesuffix(".default") for k in app._registered_funcs}
    assert registered == set(POLICY)
    ctx = _ctx(_cfg(small_province, tmp_path / "n"))
    init = _init(ctx)
    # the same node opted into distributed noise answers query.noise (clients.noise_share)
    noisy = _ctx(_cfg(small_province, tmp_path / "n", **{
        "distributed-noise": True, "distributed-noise-parties": 2}))
    replies = {
        "query.info": _send(ctx, "query.info"),
        "query.init": _send(ctx, "query.init", config={"seed": 3}),
        "query.noise": _send(noisy, "query.noise", config={"session": "s", "rounds": 2}),
        "train": _train(ctx, init),
    }
    agg = arrays_of(replies["train"])
    assert agg is not None
    replies["evaluate"] = _send(ctx, "evaluate", config={"session": "s", "round": 1},
                                arrays=agg)
    replies["query.identify"] = _send(ctx, "query.identify", config={"session": "s"},
                                      arrays=agg)
    # with a roster the node signs its masking key for the named participants
    me = AgencyIdentity.load(tmp_path / "n" / "identity")
    peer = AgencyIdentity.generate(agency="zz_peer", kind="education")
    Roster.of([me.public, peer.public]).save(tmp_path / "n" / "roster.toml")
    replies["query.secagg"] = _send(ctx, "query.secagg", config={
        "session": "s", "round": 2, "parties": f"{me.agency},zz_peer"})
    assert set(replies["query.secagg"].content.config_records["signature"]) == {
        "issued", "data"}
    replies["query.year"] = _send(ctx, "query.year", config={
        "state": "finished", "reason": "", "session": "s"})
    replies["query.match"] = _send(ctx, "query.match", config={
        "step": "home_start", "departments": "", "run": "ab" * 16})
    for kind, reply in replies.items():
        assert not reply.has_error(), (kind, reply.error.reason if reply.has_error() else "")
        assert undeclared(kind, reply.content) == [], kind
    ledger = read_ledger(tmp_path / "n")
    assert {e["kind"] for e in ledger} == set(POLICY)
    assert all(e["status"] == "released" for e in ledger)
    # A reply with a field the policy does not declare never leaves.
    real = node.info

    def leaky(msg: Message, context: Context) -> RecordDict:
        rd = real(msg, context)
        rd["info"]["students"] = 2000
        return rd

    monkeypatch.setattr(node, "info", leaky)
    refused = _send(ctx, "query.info")
    assert refused.has_error()
    assert refused.error.code == 1008
    assert b"2000" not in (refused.error.reason or "").encode()
    assert read_ledger(tmp_path / "n")[-1]["error"] == "undeclared-field"


def test_failures_leave_as_a_code_without_data(
    small_province: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _ctx(_cfg(small_province, tmp_path / "n"))

    def broken(msg: Message, context: Context) -> RecordDict:
        raise ValueError("student 110101200001011234 has income 43217.5")

    monkeypatch.setattr(node, "evaluate", broken)
    reply = _send(ctx, "evaluate", config={"session": "s", "round": 1}, arrays=_init(ctx))
    assert reply.has_error()
    assert reply.error.code == 1000
    assert reply.error.reason == f"fedid node error 1000 {ERROR_CODES[1000]}"
    for secret in ("110101200001011234", "43217", "student", "income"):
        assert secret not in (reply.error.reason or "")


def test_hyperparameters_outside_the_nodes_ranges_refused(
    small_province: Path, tmp_path: Path
) -> None:
    out = tmp_path / "n"
    ctx = _ctx(_cfg(small_province, out, **{"train-learning_rate-range": "0.1,0.3"}))
    init = _init(ctx)
    for bad in ({"train-learning_rate": 5.0}, {"train-local_epochs": 400.0},
                {"train-noise_multiplier": 0.01}, {"rounds": 10_000}):
        reply = _train(ctx, init, **bad)
        assert reply.has_error(), bad
        assert reply.error.code == 1002, bad
        assert "400" not in (reply.error.reason or "")
    assert not (out / "local_state.bin").exists()  # nothing trained, nothing spent
    assert [e.get("error") for e in read_ledger(out)][-4:] == ["config"] * 4
    ok = _train(ctx, init, **{"train-learning_rate": 0.25})
    assert not ok.has_error()
    with pytest.raises(ConfigError, match="must lie in its range"):
        node_settings(_cfg(small_province, out, **{"train-rounds": 50}))


def test_evaluate_and_identify_answer_only_the_rounds_aggregate(
    small_province: Path, tmp_path: Path
) -> None:
    out = tmp_path / "n"
    ctx = _ctx(_cfg(small_province, out))
    init = _init(ctx)
    # No evaluation outside a session the node trains in: not an oracle on any weights.
    assert _send(ctx, "evaluate", config={"session": "s", "round": 1}, arrays=init).has_error()
    agg = arrays_of(_train(ctx, init))
    assert agg is not None
    ev = _send(ctx, "evaluate", config={"session": "s", "round": 1}, arrays=agg)
    assert metrics_of(ev) == {"kept_on_node": 1.0}
    kept = [json.loads(line) for line in (out / "evaluation.jsonl").read_text().splitlines()]
    assert len(kept) == 1
    assert "macro_f1" in kept[0]
    other = [a + 0.5 for a in agg]
    assert _send(ctx, "evaluate", config={"session": "s", "round": 1}, arrays=other).has_error()
    # Round 2 must start from the aggregate evaluated after round 1.
    assert _train(ctx, other, rnd=2).has_error()
    # Identify: only that aggregate, once per session; a retry gets the same counts.
    assert _send(ctx, "query.identify", config={"session": "s"}, arrays=other).has_error()
    before = LocalState.from_bytes((out / "local_state.bin").read_bytes())
    first = metrics_of(_send(ctx, "query.identify", config={"session": "s"}, arrays=agg))
    for private in ("recommendations.parquet", "evaluation.jsonl", "releases.jsonl",
                    "local_state.bin", "privacy_ledger.json"):
        assert (out / private).stat().st_mode & 0o777 == 0o600, private
    again = metrics_of(_send(ctx, "query.identify", config={"session": "s"}, arrays=agg))
    assert first == again
    after = LocalState.from_bytes((out / "local_state.bin").read_bytes())
    s = node.settings_of(ctx)
    assert after.accountant.history[-1] == (s.release_noise, 1.0, 1)
    assert after.accountant.epsilon(1e-5) > before.accountant.epsilon(1e-5)
    assert all(v == -1 or v >= s.min_cell for k, v in first.items()
               if k not in training.PUBLIC_COUNTS)
    # The counts are noised: a node with identical data and arrays releases other values.
    twin = _ctx(_cfg(small_province, tmp_path / "twin"))
    exact = training.identify(node.settings_of(twin), agg)
    noised = {k for k, v in first.items() if v != -1 and v != exact[k]}
    assert noised
    # The ledger's charges add up to the accountant's epsilon.
    ledger = read_ledger(out)
    charged = sum(e["charged_epsilon"] for e in ledger)
    assert charged == pytest.approx(after.accountant.epsilon(1e-5), rel=1e-9)


def test_ledger_command_prints_the_releases(small_province: Path, tmp_path: Path) -> None:
    out = tmp_path / "n"
    ctx = _ctx(_cfg(small_province, out))
    _train(ctx, _init(ctx))
    done = subprocess.run([sys.executable, "-m", "cli.main", "ledger", "--out", str(out)],
                          check=True, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("query.init")
    assert lines[1].startswith("train")
    assert "arrays.*:dp" in lines[1]
    summary = json.loads(lines[-1])
    assert summary["releases"] == 2
    state = LocalState.from_bytes((out / "local_state.bin").read_bytes())
    assert summary["charged_epsilon_sum"] == pytest.approx(state.accountant.epsilon(1e-5))


def test_threat_model_lists_every_released_kind() -> None:
    text = (Path(__file__).resolve().parents[2] / "THREAT_MODEL.md").read_text()
    table = text.split("### Releases and their protection")[1].split("## Attacks")[0]
    for kind, policy in POLICY.items():
        assert f"| `{kind}` |" in table, kind
        for f in policy.fields:
            if f.key not in ("", "*") and f.record != "config":
                assert f.key in table, (kind, f.key)
    assert "## Matching protocol" in text


def test_training_is_calibrated_on_what_the_node_already_spent(
    small_province: Path, tmp_path: Path
) -> None:
    out = tmp_path / "n"
    ctx = _ctx(_cfg(small_province, out))
    init = _init(ctx)
    # A charged release before any training (identification in an earlier session) ...
    assert not _send(ctx, "query.identify", config={"session": "old"}, arrays=init).has_error()
    arrays = init
    for rnd in (1, 2):  # ... and the whole planned training still fits the budget,
        reply = _train(ctx, arrays, rnd=rnd)
        assert not reply.has_error()
        assert "refused" not in reply.content["config"]
        arrays = arrays_of(reply) or []
        ev = _send(ctx, "evaluate", config={"session": "s", "round": rnd}, arrays=arrays)
        assert not ev.has_error()
    # ... as does this session's identification, the one release training reserved room for.
    assert not _send(ctx, "query.identify", config={"session": "s"}, arrays=arrays).has_error()
    state = LocalState.from_bytes((out / "local_state.bin").read_bytes())
    assert 0.99 < state.accountant.epsilon(1e-5) <= 1.0
    # Nothing is left: one more charged release is refused with the budget code.
    late = _send(ctx, "query.identify", config={"session": "late"}, arrays=arrays)
    assert late.has_error()
    assert late.error.code == 1001
