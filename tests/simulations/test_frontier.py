"""The diagnostic operating point against the rate targets, and the rubric's ranking score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulations.frontier import operating_point
from simulations.province.truth import noiseless_score


def test_operating_point_finds_the_cut_that_meets_both_targets() -> None:
    # 10 in hardship (scores 10..19), 90 not (0..89 scaled below 10 except 3 high ones)
    hard = np.array([True] * 10 + [False] * 90)
    score = np.concatenate([np.arange(10, 20), np.linspace(0, 9, 87), [15.5, 16.5, 17.5]])
    recognised = np.zeros(100, dtype=bool)
    best = operating_point(score, recognised, hard, missed_target=0.1, wrong_target=0.25)
    # cut at 10: all 10 found, 3 wrongly aided out of 13 -> wrong 0.231, missed 0
    assert best["missed_rate"] == 0.0
    assert best["wrong_aid_rate"] == pytest.approx(3 / 13)
    assert best["target_ratio"] == pytest.approx((3 / 13) / 0.25)
    assert best["min_wrong_aid_at_missed_target"] == pytest.approx(3 / 13)


def test_operating_point_reports_unmet_targets_and_counts_rule_hits() -> None:
    hard = np.array([True, True, False, False])
    score = np.array([0.1, 0.8, 0.9, 0.2])  # row 2 (not in hardship) ranks above row 1
    recognised = np.array([True, False, False, False])  # the rule layer already aids row 0
    best = operating_point(score, recognised, hard, missed_target=0.01, wrong_target=0.01)
    assert best["target_ratio"] > 1.0  # every cut misses row 1 or wrongly aids row 2
    # no cut: only the rule hit is aided (missed 1/2, ratio 50); at 0.8: wrong 1/3 (ratio 33)
    assert best["missed_rate"] == 0.0
    assert best["wrong_aid_rate"] == pytest.approx(1 / 3)
    assert best["min_wrong_aid_at_missed_target"] == pytest.approx(1 / 3)


def test_noiseless_score_ranks_direct_recognition_first() -> None:
    frame = pd.DataFrame(
        {"dibao": [True, False], "household_income_per_capita": [50_000.0, 3_000.0]}
    )
    for col in ("tekun", "poverty_monitoring", "low_income_edge", "martyr_family"):
        frame[col] = [False, False]
    frame["family_structure"] = ["both_parents", "both_parents"]
    frame["student_disability_grade"] = [0, 0]
    frame["parent_disability_grade"] = [0, 0]
    for col in ("medical_out_of_pocket", "major_illness_in_family", "parents_unemployed",
                "household_size", "labour_force_count", "siblings_in_school", "rural_hukou",
                "left_behind_child", "disaster_loss", "temporary_relief", "taxable_income",
                "social_insurance_base", "housing_fund_deposit", "num_properties",
                "num_vehicles", "business_owner", "campus_card_spending", "grade_percentile",
                "psych_risk_level"):
        frame[col] = pd.Series([None, None], dtype="Float64")
    score = noiseless_score(frame)
    assert np.isinf(score[0])
    assert np.isfinite(score[1])
    assert score[1] > 0  # a low income scores hardship points
