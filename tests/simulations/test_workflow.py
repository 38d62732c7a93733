"""The workflow evaluation against a small case computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from simulations.workflow import Cohort, after_review, outcome, rule_order, workflow_curve


def _cohort() -> Cohort:
    # two agencies of 5; levels 0 none, 1 low, 2 high
    #            a0 a1 a2 a3 a4 | b0 b1 b2 b3 b4
    truth = np.array([2, 0, 1, 0, 0, 1, 1, 0, 0, 0])
    recorded = np.array([0, 1, 1, 0, 0, 0, 2, 1, 0, 0])
    agency = np.array(["a"] * 5 + ["b"] * 5, dtype=object)
    rural = np.array([True, False, True, False, True, True, False, False, True, False])
    return Cohort(agency=agency, recorded=recorded, truth=truth, rural=rural)


def test_self_report_by_hand() -> None:
    c = _cohort()
    base = outcome(c.truth, c.recorded)
    # hardship: a0, a2, b0, b1 (4); recognised of them: a2, b1 -> missed 2/4
    assert base["missed_rate"] == pytest.approx(0.5)
    # recognised: a1, a2, b1, b2 (4); not in hardship: a1, b2 -> wrong aid 2/4
    assert base["wrong_aid_rate"] == pytest.approx(0.5)
    # exact level: a2, a3, a4, b3, b4 -> 5/10
    assert base["level_accuracy"] == pytest.approx(0.5)


def test_queue_at_capacity_by_hand() -> None:
    c = _cohort()
    # capacity 40 % of 5 = 2 per agency: a reviews a1 then a0; b reviews b3 then b0
    order = {"a": np.array([1, 0, 2, 3, 4]), "b": np.array([8, 5, 6, 7, 9])}
    curve = workflow_curve(c, {"mine": order}, capacities=(0.4,), accuracies=(1.0,))
    point = curve["curves"]["1"]["mine"][0]
    # after review: a0 -> 2, a1 -> 0, b0 -> 1 (b3 stays 0)
    # hardship a0, a2, b0, b1 all recognised -> missed 0
    assert point["missed_rate"] == 0.0
    # recognised a0, a2, b0, b1, b2; b2 not in hardship -> 1/5
    assert point["wrong_aid_rate"] == pytest.approx(0.2)
    # exact: a0, a1, a2, a3, a4, b0, b3, b4 -> 8/10 (b1 recorded 2, true 1; b2)
    assert point["level_accuracy"] == pytest.approx(0.8)
    assert point["reviewed_share"] == pytest.approx(0.4)
    # rural missed 0 and urban missed 0 -> gap 0 points
    assert point["rural_minus_urban_missed_points"] == 0.0
    assert curve["self_report"]["missed_rate"] == pytest.approx(0.5)
    # the random queue is there at the same capacity and reviews the same number
    assert curve["curves"]["1"]["random"][0]["reviewed_share"] == pytest.approx(0.4)


def test_reviewers_who_err() -> None:
    truth = np.array([1, 0, 2, 0])
    recorded = np.array([0, 0, 2, 1])
    queued = np.array([True, True, True, False])
    rng = np.random.default_rng(0)
    # accuracy 0: a wrong record stays wrong, a right one is changed to a wrong level
    assert list(after_review(recorded, truth, queued, accuracy=0.0, rng=rng)) == [0, 1, 0, 1]
    assert list(after_review(recorded, truth, queued, accuracy=1.0, rng=rng)) == [1, 0, 2, 1]
    many = np.zeros(10_000, dtype=np.int64)
    done = after_review(many, np.ones(10_000, dtype=np.int64), np.ones(10_000, dtype=bool),
                        accuracy=0.9, rng=rng)
    assert 0.88 < float(np.mean(done == 1)) < 0.92


def test_rule_queue_tiers() -> None:
    c = _cohort()
    rule_level = np.array([2, 0, 2, 0, 0, 0, 0, 0, 0, 2])
    exclusion = np.array([False, True, False, False, False, False, False, True, False, False])
    order = rule_order(c, rule_level=rule_level, exclusion=exclusion,
                       rng=np.random.default_rng(0))
    # a: a0 (hit, unrecognised), a2 (hit, recognised below top), a1 (aided + exclusion)
    assert list(order["a"]) == [0, 2, 1]
    # b: b4 (hit, unrecognised), b2 (aided + exclusion); nothing else is queued
    assert list(order["b"]) == [9, 7]
