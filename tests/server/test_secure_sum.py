"""Secure aggregation in a short simulated year: same global model, no unmasked update.

Two runs on the small province with the same seeds (matching off, 2 rounds): plain
FedAvg and with ``secure_aggregation``. Training is seeded (each node's own test-seed), so
the final global models
must agree within fixed-point and float32 precision; the secure run's train replies
must not contain any node's local weights or its example count.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulations.simulate import SimulationConfig, run

ROUNDS = 2


def _run(province: Path, out: Path, *, secure: bool) -> Path:
    cfg = SimulationConfig(out=out, data=province, rounds=ROUNDS, epsilon=1.0, matching=False,
                           min_nodes=3, transcript=True, secure_aggregation=secure,
                           reference=False, node_test_seed=11)
    run(cfg)
    return out


@pytest.fixture(scope="module")
def runs(small_province: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("secagg")
    plain = _run(small_province, base / "plain", secure=False)
    secure = _run(small_province, base / "secure", secure=True)
    return plain, secure


def _local_chunks(run_dir: Path) -> list[bytes]:
    """64-byte pieces of every node's local weights of every round (kept on the node)."""
    chunks = []
    for path in sorted((run_dir / "nodes").glob("*/rounds/*.npz")):
        with np.load(path) as data:
            first = np.asarray(data["a0"], dtype=np.float32).tobytes()
        chunks.append(first[1000:1064])
    return chunks


def _train_replies(run_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((run_dir / "transcript").glob("*-train-*.bin"))]


def test_secure_run_equals_plain_run(runs: tuple[Path, Path]) -> None:
    plain, secure = runs
    year = json.loads((secure / "coordinator" / "year.json").read_text())
    assert year["training"]["secure_aggregation"] is True
    assert len(year["training"]["rounds"]) == ROUNDS
    for rnd in year["training"]["rounds"]:
        assert rnd["excluded"] == {}
        assert len(rnd["used"]) == 6
    with np.load(plain / "coordinator" / "final_model.npz") as a, \
            np.load(secure / "coordinator" / "final_model.npz") as b:
        assert list(a) == list(b)
        for key in a:
            assert a[key].shape == b[key].shape
            assert np.max(np.abs(a[key] - b[key])) < 1e-5


def test_coordinator_never_receives_an_unmasked_update(runs: tuple[Path, Path]) -> None:
    plain, secure = runs
    assert list((secure / "transcript").glob("*-query.secagg-*.bin"))
    plain_replies, secure_replies = _train_replies(plain), _train_replies(secure)
    assert len(secure_replies) == len(plain_replies) == 6 * ROUNDS
    plain_chunks, secure_chunks = _local_chunks(plain), _local_chunks(secure)
    assert len(secure_chunks) == 6 * ROUNDS
    # The check can fail: in the plain run every local update is there in the clear.
    assert all(any(c in r for r in plain_replies) for c in plain_chunks)
    assert not any(c in r for c in secure_chunks for r in secure_replies)
    # No node sends its example count, masked or not (the FedAvg weight is a constant).
    assert not any(b"num_examples" in r for r in plain_replies + secure_replies)


def test_simulated_nodes_sign_their_masking_keys(runs: tuple[Path, Path]) -> None:
    # simulate gives every node an identity key and the roster (as for matching), so the
    # default path is authenticated: every key step released a signature, every node
    # checked its peers' before training (a refusal would exclude it from the round)
    _plain, secure = runs
    for node in sorted((secure / "nodes").iterdir()):
        if not (node / "releases.jsonl").exists():
            continue
        entries = [json.loads(line) for line in
                   (node / "releases.jsonl").read_text().splitlines()]
        keys = [e for e in entries if e["kind"] == "query.secagg"]
        if not keys:  # a department: no training
            continue
        assert len(keys) == ROUNDS
        for entry in keys:
            assert entry["status"] == "released"
            assert entry["fields"]["signature.data"] == "protocol"
            assert entry["fields"]["signature.issued"] == "public"
