"""The review queue: capacity, the noise-corrected probabilities by hand, ordering, the file."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedid.errors import ConfigError
from fedid.model import HardshipModel, TrainConfig, build_inputs, train_centralized
from fedid.review import (
    QUEUE_FILE,
    AgencyRates,
    Capacity,
    agency_rates,
    build_queue,
    node_queue,
    rank_students,
    true_level_posterior,
)
from fedid.schema import load_schema
from tests.fedid.model_fixtures import random_inputs


def test_capacity_parse_and_slots() -> None:
    assert Capacity.parse("10%").slots(2250) == 225
    assert Capacity.parse(" 7.5 %").slots(1000) == 75
    assert Capacity.parse("250").slots(2250) == 250
    assert Capacity.parse("250").slots(100) == 100  # never more than the agency's students
    assert Capacity.parse("0%").slots(500) == 0
    for bad in ("ten", "-5", "2.5", "150%"):
        with pytest.raises(ConfigError):
            Capacity.parse(bad)


def test_posterior_matches_a_hand_computation() -> None:
    # rates chosen by hand: m = 0.2, hid = 0.1, rho = 0.1, r = 0.2
    rates = AgencyRates(hardship_share=0.2, missed=0.2, hidden=0.1, recognised_if_not=0.1,
                        refused_if_not=0.2)
    # q = 0.5 -> h = (0.5 - 0.1) / (1 - 0.2 - 0.1) = 4/7
    p_greater = np.array([[0.5, 0.25], [0.5, 0.25], [0.5, 0.25], [0.5, 0.25]])
    recorded = np.array([1, 0, 0, 2])
    applied = np.array([True, True, False, True])
    rule = np.array([0, 0, 0, 2])
    post = true_level_posterior(p_greater, recorded=recorded, applied=applied,
                                rule_level=rule, rates=rates)
    h = 4 / 7
    # recognised: L_hard = 0.8, L_not = 0.1
    p_a = h * 0.8 / (h * 0.8 + (1 - h) * 0.1)
    # refused applicant: L_hard = m - hid = 0.1, L_not = r = 0.2
    p_r = h * 0.1 / (h * 0.1 + (1 - h) * 0.2)
    # never applied: L_hard = 0.1, L_not = 1 - 0.1 - 0.2 = 0.7
    p_n = h * 0.1 / (h * 0.1 + (1 - h) * 0.7)
    np.testing.assert_allclose(1 - post[:3, 0], [p_a, p_r, p_n])
    # level given hardship: P(=1) = (0.5 - 0.25) / 0.5, P(=2) = 0.25 / 0.5
    np.testing.assert_allclose(post[0, 1:] / post[0, 1:].sum(), [0.5, 0.5])
    np.testing.assert_allclose(post[3], [0.0, 0.0, 1.0])  # a direct rule hit is certain
    np.testing.assert_allclose(post.sum(axis=1), 1.0)


def test_agency_rates_from_counts() -> None:
    # 20 % recognised, 6 % refused: pi = 0.77 * 0.2 / 0.83, rho = 0.23 * 0.2 / (1 - pi)
    recorded = np.array([1] * 20 + [0] * 80)
    applied = np.array([True] * 26 + [False] * 74)
    rates = agency_rates(recorded=recorded, applied=applied)
    pi = 0.77 * 0.2 / 0.83
    assert rates.hardship_share == pytest.approx(pi)
    assert rates.recognised_if_not == pytest.approx(0.23 * 0.2 / (1 - pi))
    assert rates.refused_if_not == pytest.approx((0.06 - pi * (0.17 - 0.127)) / (1 - pi))


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # 6 students: scores (P(level > 0), P(level > 1)), record, applied, rule hits
    p = np.array([[0.02, 0.01], [0.9, 0.5], [0.95, 0.6], [0.05, 0.01], [0.5, 0.2], [0.3, 0.1]])
    recorded = np.array([0, 0, 1, 1, 0, 0])
    applied = np.array([False, True, True, True, False, False])
    rule = np.array([0, 0, 0, 0, 0, 2])
    return p, recorded, applied, rule


def test_queue_order_and_capacity() -> None:
    p, recorded, applied, rule = _case()
    ranked = rank_students(p, recorded=recorded, applied=applied, rule_level=rule,
                           calibrate=False)
    gain = ranked["gain"].to_numpy()
    assert np.all(np.diff(gain) <= 0)  # best first
    # the unrecognised rule hit is certainly missed: first, gain 1
    assert ranked["row"].iloc[0] == 5
    assert gain[0] == pytest.approx(1.0)
    assert ranked.set_index("row").loc[5, "kind"] == "hidden_hardship"
    # a recognised student the model finds unlikely in hardship is a wrong-aid suspect, and
    # ranks above the recognised student the model agrees with
    order = list(ranked["row"])
    assert ranked.set_index("row").loc[3, "kind"] == "wrong_aid"
    assert order.index(3) < order.index(2)
    # the refused applicant with a high score ranks above the never-applicant with a low one
    assert order.index(1) < order.index(0)
    ids = np.array([f"S{i}" for i in range(6)], dtype=object)
    queue = build_queue(ranked, capacity=Capacity.parse("50%"), student_ids=ids,
                        level_names=["none", "low", "high"],
                        reasons=np.array(["r"] * 6, dtype=object), evidence_missing=["tax"])
    assert list(queue["student_id"]) == list(ids[order[:3]])
    assert list(queue["rank"]) == [1, 2, 3]
    assert set(queue["evidence_missing"]) == {"tax"}
    assert queue.loc[0, "suggested_level"] == "high"
    assert queue.loc[0, "recorded_level"] == "none"
    assert len(build_queue(ranked, capacity=Capacity.parse("2"), student_ids=ids,
                           level_names=["none", "low", "high"])) == 2


def test_node_queue_writes_owner_only_file_and_counts(tmp_path: Path) -> None:
    schema = load_schema(None)
    frame = random_inputs(schema, 300, seed=3)
    inputs = build_inputs(frame, None, schema)
    model, _ = train_centralized(inputs=inputs, schema=schema,
                                 config=TrainConfig(rounds=1, local_epochs=2), budget=None,
                                 seed=0)
    model = HardshipModel(schema=schema, hidden=model.hidden, weights=model.weights)
    recs = model.recommend(inputs)
    counts = node_queue(out=tmp_path, model=model, inputs=inputs, recommendations=recs,
                        capacity=Capacity.parse("10%"), evidence_missing=[])
    path = tmp_path / QUEUE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    queue = pd.read_parquet(path)
    assert len(queue) == 30 == counts["review_queue"]
    assert sum(counts[f"review_queue_{k}"] for k in ("hidden_hardship", "wrong_aid",
                                                      "level_change")) == 30
    assert set(queue["student_id"]) <= set(inputs["student_id"])
    assert queue["expected_errors_fixed"].is_monotonic_decreasing


def test_recalibrate_undoes_a_shrunk_scale() -> None:
    from fedid.review.posterior import recalibrate

    rng = np.random.default_rng(0)
    z = rng.normal(-1.5, 2.0, 20_000)
    truth = 1 / (1 + np.exp(-z))
    y = rng.random(z.size) < truth
    shrunk = 1 / (1 + np.exp(-(0.4 * z + 0.3)))  # a DP-shrunk, shifted score
    fitted = recalibrate(shrunk, y)
    assert np.abs(fitted - truth).mean() < 0.01 < np.abs(shrunk - truth).mean()
