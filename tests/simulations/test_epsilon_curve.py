"""The epsilon curve's points come from a year's summary (the federated model or the reference)."""

from __future__ import annotations

from simulations.epsilon_curve import curve_point


def test_curve_point_reads_the_model_and_its_queue() -> None:
    def queue(missed: float) -> list[dict[str, float]]:
        return [{"capacity": 0.05, "missed_rate": 0.5, "wrong_aid_rate": 0.5,
                 "level_accuracy": 0.5},
                {"capacity": 0.10, "missed_rate": missed, "wrong_aid_rate": 0.02,
                 "level_accuracy": 0.95}]

    summary = {
        "identification": {
            "federated": {"macro_f1": 0.55, "missed_rate": 0.4, "wrong_aid_rate": 0.05},
            "centralized_nonprivate": {"macro_f1": 0.7, "missed_rate": 0.2,
                                       "wrong_aid_rate": 0.06}},
        "review_queue": {"curves": {"1": {"federated": queue(0.054),
                                          "centralized": queue(0.042)}}},
        "privacy": {"per_agency": {"a": {"epsilon_spent": 0.97}, "b": {"epsilon_spent": 0.99}}},
    }
    dp = curve_point(summary, epsilon=1.0, capacity=0.10)
    assert dp == {"epsilon": 1.0, "macro_f1": 0.55, "missed_rate": 0.4, "wrong_aid_rate": 0.05,
                  "queue_missed_rate": 0.054, "queue_wrong_aid_rate": 0.02,
                  "queue_level_accuracy": 0.95, "epsilon_spent_max": 0.99}
    plain = curve_point(summary, epsilon=None, capacity=0.10)
    assert plain["macro_f1"] == 0.7
    assert plain["queue_missed_rate"] == 0.042
    assert "epsilon_spent_max" not in plain
