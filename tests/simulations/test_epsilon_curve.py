"""The epsilon curve's points come from a year's summary (the federated model or the reference)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from simulations import epsilon_curve
from simulations.epsilon_curve import add_budgets, config_of, curve_point
from simulations.simulate import SimulationConfig


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


def _summary(cfg: SimulationConfig, f1: float) -> dict[str, Any]:
    queue = [{"capacity": 0.10, "missed_rate": 1 - f1, "wrong_aid_rate": 0.02,
              "level_accuracy": 0.95}]
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in ((f.name, getattr(cfg, f.name)) for f in fields(cfg))},
        "identification": {
            "students_scored": 100,
            "federated": {"macro_f1": f1, "missed_rate": 0.4, "wrong_aid_rate": 0.05},
            "centralized_nonprivate": {"macro_f1": 0.7, "missed_rate": 0.2,
                                       "wrong_aid_rate": 0.06}},
        "review_queue": {"curves": {"1": {"federated": queue, "centralized": queue}}},
        "privacy": {"per_agency": {"a": {"epsilon_spent": cfg.epsilon * 0.99,
                                         "epsilon_budget": cfg.epsilon, "delta": 1e-5,
                                         "within_budget": True}}},
        "wall_seconds": {"province": 1.0, "flower_total": 2.0, "review": 3.0},
    }


def test_config_round_trips_through_the_summary(tmp_path: Path) -> None:
    cfg = SimulationConfig(out=tmp_path / "run", students=240_000, seed=7, epsilon=2.0,
                           train=(("local_epochs", 4.0),), recipe="rule")
    assert config_of(_summary(cfg, 0.5)) == cfg


def test_budgets_reuse_the_base_year_and_keep_earlier_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_cfg = SimulationConfig(out=tmp_path / "run", seed=7)
    evidence = base_cfg.out / "nodes" / "county_a" / "evidence.parquet"
    evidence.parent.mkdir(parents=True)
    evidence.write_bytes(b"matched")
    ran: list[SimulationConfig] = []

    def fake_run(cfg: SimulationConfig, _progress: object = None) -> dict[str, Any]:
        # the base year's matched evidence is there before the year runs
        assert (cfg.out / "nodes" / "county_a" / "evidence.parquet").read_bytes() == b"matched"
        ran.append(cfg)
        return _summary(cfg, 0.5 + cfg.epsilon / 100)

    monkeypatch.setattr(epsilon_curve, "run", fake_run)
    base = _summary(base_cfg, 0.51)
    add_budgets(base, epsilons=(0.25, 1.0))
    curve = add_budgets(base, epsilons=(4.0,))  # a second call adds to the first
    assert [c.epsilon for c in ran] == [0.25, 4.0]
    for cfg in ran:  # same province, no second matching, no second reference
        assert cfg.data == base_cfg.out / "province"
        assert not cfg.matching
        assert not cfg.reference
        assert cfg.out == base_cfg.out / "epsilon_curve" / f"eps_{cfg.epsilon:g}"
    assert [p["epsilon"] for p in curve["points"]] == [0.25, 1.0, 4.0, None]
    assert [p["matching"] for p in curve["points"][:3]] == [False, True, False]
    saved = json.loads((base_cfg.out / "epsilon_curve.json").read_text())
    assert saved == curve
    assert json.loads((base_cfg.out / "summary.json").read_text())["epsilon_curve"] == curve
    assert "Epsilon curve" in (base_cfg.out / "report.html").read_text()
