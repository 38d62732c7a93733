"""Bring your own data: custom schemas (binary, five levels, no evidence department), the
schema's threshold, the federated model's format, a user ground truth equal to the labels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from fedid.ids import make_ids
from fedid.model import HardshipModel, build_inputs, load_model, train_local
from fedid.model.recipe import MIN_NOISE, calibrate
from fedid.model.train import TrainConfig, new_local_state
from fedid.schema import Schema, load_schema
from fedid.tables import load_agency_table
from privacy.dp import Accountant

SCHEMA = """
[schema]
name = "custom"
[levels]
names = {levels}
[labels]
{labels}
[departments.survey]
side = "education"
[[indicators]]
name = "need_score"
dimension = "my_own_dimension"
department = "survey"
type = "float"
min = 0
max = 1
[[indicators]]
name = "has_support"
dimension = "another_group"
department = "survey"
type = "bool"
"""


def _province(folder: Path, levels: list[str], *, labels: str = "", n: int = 300) -> Path:
    """A one-department province (no evidence department) with a learnable label."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.toml").write_text(
        SCHEMA.format(levels=json.dumps(levels), labels=labels), encoding="utf-8")
    rng = np.random.default_rng(0)
    score = rng.random(n)
    level = np.minimum((score * len(levels)).astype(int), len(levels) - 1)
    ids = make_ids(address_codes=110101, birth_dates="2006-05-01", sequences=np.arange(n))
    table = pd.DataFrame({"student_id": ids, "need_score": score,
                          "has_support": rng.random(n) < 0.3,
                          "label_level": np.asarray(levels)[level]})
    edu = folder / "agencies" / "education"
    edu.mkdir(parents=True, exist_ok=True)
    table.to_csv(edu / "school.csv", index=False)
    return edu / "school.csv"


@pytest.mark.parametrize("levels", [["none", "yes"], ["none", "a", "b", "c", "d"]])
def test_binary_and_five_level_schemas_train_score_and_evaluate(
    tmp_path: Path, levels: list[str]
) -> None:
    table = _province(tmp_path, levels)
    runner = CliRunner()
    model_dir = tmp_path / "model"
    trained = runner.invoke(app, ["train", "--data", str(table), "--schema",
                                  str(tmp_path / "schema.toml"), "--epsilon", "8",
                                  "--out", str(model_dir), "--seed", "0"])
    assert trained.exit_code == 0, trained.output
    model, _card = load_model(model_dir)
    assert tuple(model.schema.levels) == tuple(levels)
    assert model.threshold == 0.5
    recs_path = tmp_path / "recs.csv"
    evaluated = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--data", str(table),
                                    "--recommendations", str(recs_path)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output.strip().splitlines()[-1])
    recs = pd.read_csv(recs_path)
    assert set(recs["level"]) <= set(levels)  # no dummy level
    assert metrics["accuracy"] > 1.0 / len(levels)  # it learned something at epsilon 8


def test_threshold_comes_from_the_schema_and_survives_saving(tmp_path: Path) -> None:
    _province(tmp_path, ["none", "yes"], labels="threshold = 0.8")
    schema = load_schema(tmp_path / "schema.toml")
    frame = load_agency_table(tmp_path / "agencies" / "education" / "school.csv",
                              schema=schema, kind="education").frame
    inputs = build_inputs(frame, None, schema)
    model = HardshipModel(schema=schema, hidden=(4,))
    assert model.threshold == 0.8
    p = model.score(inputs).p_hardship
    recs = model.recommend(inputs)
    assert np.array_equal(recs["level_index"].to_numpy() > 0, p > 0.8)
    relaxed = HardshipModel(schema=schema, hidden=(4,), weights=model.build_net().state_dict())
    assert relaxed.threshold == 0.8
    custom = _plain_schema(schema)
    assert HardshipModel(schema=custom, hidden=(4,)).threshold == 0.5  # none declared


def _plain_schema(schema: Schema) -> Schema:
    import dataclasses

    return dataclasses.replace(schema, threshold=None)


def test_no_evidence_department_trains_in_process(tmp_path: Path) -> None:
    table = _province(tmp_path, ["none", "yes"])
    schema = load_schema(tmp_path / "schema.toml")
    assert schema.evidence_departments == ()
    inputs = build_inputs(load_agency_table(table, schema=schema).frame, None, schema)
    result = train_local(inputs=inputs, schema=schema, config=TrainConfig(rounds=1, recipe="rule"),
                         state=new_local_state(epsilon=1.0, delta=1e-5), seed=0)
    assert 0 < result.state.epsilon_spent <= 1.0


def test_training_after_an_earlier_release_still_meets_the_budget(tmp_path: Path) -> None:
    """train_local calibrates for what is left: a state that already spent (here a node's
    charged size release) ends at the budget, not above it."""
    from clients.training import SIZE_FLOOR, noisy_rows

    table = _province(tmp_path, ["none", "yes"], n=40)
    schema = load_schema(tmp_path / "schema.toml")
    inputs = build_inputs(load_agency_table(table, schema=schema).frame, None, schema)
    rows, state = noisy_rows(new_local_state(epsilon=1.0, delta=1e-5), len(inputs), seed=7)
    assert rows >= SIZE_FLOOR > len(inputs)  # a 40-row table never shapes below the floor
    assert state.accountant.epsilon(1e-5) > 0
    result = train_local(inputs=inputs, schema=schema,
                         config=TrainConfig(rounds=1, recipe="rule", public_rows=rows),
                         state=state, seed=0)
    assert 0.95 < result.state.epsilon_spent <= 1.0


def test_training_after_the_budget_is_spent_is_a_budget_refusal(tmp_path: Path) -> None:
    from fedid.errors import BudgetExceededError

    table = _province(tmp_path, ["none", "yes"], n=60)
    schema = load_schema(tmp_path / "schema.toml")
    inputs = build_inputs(load_agency_table(table, schema=schema).frame, None, schema)
    state = new_local_state(epsilon=1.0, delta=1e-5)
    spent = replace(state, accountant=state.accountant.record(
        noise_multiplier=0.5, sample_rate=1.0, steps=20))  # far past 1
    with pytest.raises(BudgetExceededError, match="no room"):
        train_local(inputs=inputs, schema=schema, config=TrainConfig(rounds=1, recipe="rule"),
                    state=spent, seed=0)


def test_calibration_is_fast_bounded_and_meets_the_target() -> None:
    sigma = calibrate(target_epsilon=1.0, delta=1e-5, sample_rate=0.125, steps=40)
    spent = Accountant(history=((sigma, 0.125, 40),)).epsilon(1e-5)
    assert 0.97 < spent <= 1.0
    huge = calibrate(target_epsilon=1000.0, delta=1e-5, sample_rate=0.125, steps=40)
    assert huge == MIN_NOISE  # the floor: a large budget is not spent down to no noise
    assert Accountant(history=((huge, 0.125, 40),)).epsilon(1e-5) <= 1000.0


def test_user_truth_equal_to_labels_and_final_model_directory(tmp_path: Path) -> None:
    from simulations import review
    from simulations.simulate import save_final_model

    table = _province(tmp_path, ["none", "yes"])
    schema_path = tmp_path / "schema.toml"
    schema = load_schema(schema_path)
    frame = pd.read_csv(table, dtype={"student_id": str})
    node = tmp_path / "run" / "nodes" / "school"
    node.mkdir(parents=True)
    (tmp_path / "run" / "coordinator").mkdir()
    model = HardshipModel(schema=schema, hidden=TrainConfig().hidden)
    np.savez(tmp_path / "run" / "coordinator" / "final_model.npz",
             *[v.detach().numpy() for v in model.build_net().state_dict().values()])
    sim: dict[str, Any] = {"agencies": [{"agency-id": "school", "kind": "education",
                                         "data": str(table), "out": str(node),
                                         "schema": str(schema_path),
                                         "epsilon": 1.0, "delta": 1e-5}]}
    (tmp_path / "run" / "simulation.json").write_text(json.dumps(sim))
    saved = save_final_model(tmp_path / "run", schema_path)
    assert saved is not None
    runner = CliRunner()
    evaluated = runner.invoke(app, ["evaluate", "--model", str(saved), "--data", str(table)])
    assert evaluated.exit_code == 0, evaluated.output
    # recommendations equal to the labels; truth equal to the labels (no 'applied' column)
    recs = frame[["student_id"]].assign(level=frame["label_level"], p_hardship=0.5,
                                        source="model")
    recs.to_parquet(node / "recommendations.parquet")
    (tmp_path / "ground_truth").mkdir()
    frame[["student_id"]].assign(true_level=frame["label_level"]).to_csv(
        tmp_path / "ground_truth" / "students.csv", index=False)
    cfg = SimpleNamespace(out=tmp_path / "run", reference=False, seed=0)
    summary = review.summarise(cfg=cfg, province=tmp_path, schema=schema_path, year={})
    fed = summary["identification"]["federated"]
    assert fed["accuracy"] == 1.0
    assert fed["missed_rate"] == 0.0
    assert summary["identification"]["operating_points"] == {}  # no target when labels = truth


def test_auc_matches_the_pairwise_definition() -> None:
    from fedid.model.evaluate import auc

    score = np.array([0.1, 0.4, 0.35, 0.8, 0.4])
    positive = np.array([False, False, True, True, True])
    pairs = [(p, q) for p in score[positive] for q in score[~positive]]
    expected = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs])
    assert auc(score, positive) == pytest.approx(expected)
    assert auc(score, np.ones(5, dtype=bool)) is None
