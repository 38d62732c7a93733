"""fedid.model: features from the schema, rule layer, reasons, recommendations, card."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedid.errors import DataValidationError, TrainingError
from fedid.model import (
    HardshipModel,
    HardshipNet,
    ModelCard,
    TrainConfig,
    apply_rules,
    build_inputs,
    core_metrics,
    encode,
    evaluate_levels,
    feature_layout,
    load_model,
    new_local_state,
    save_model,
    train_local,
)
from fedid.model.reasons import top_indicator_reasons
from fedid.schema import Schema, load_schema
from tests.fedid.model_fixtures import random_inputs


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def _blank(schema: Schema, n: int) -> pd.DataFrame:
    frame = pd.DataFrame({"student_id": [f"S{i}" for i in range(n)]})
    for ind in schema.indicators:
        frame[ind.name] = pd.Series([None] * n, dtype=object)
    return frame


def test_layout_has_value_and_mask_per_indicator_onehots_and_department_records(
    schema: Schema,
) -> None:
    layout = feature_layout(schema)
    n_cat = sum(len(i.categories) for i in schema.indicators if i.type == "category")
    n_plain = sum(1 for i in schema.indicators if i.type != "category")
    evidence = {
        i.department for i in schema.indicators
        if schema.departments[i.department].side == "evidence"
    }
    assert set(layout.record_departments) == evidence
    assert len(evidence) == 12
    assert layout.width == n_cat + n_plain + len(schema.indicators) + len(evidence)
    assert len(layout.columns_of("family_structure")) == 4 + 1
    assert layout.names[layout.record_column("civil_affairs")] == "civil_affairs:record"


def test_missing_masks_tell_no_record_from_a_partial_record(schema: Schema) -> None:
    frame = _blank(schema, 3)
    # row 0: a civil-affairs record with dibao but no income; row 1: no civil-affairs record;
    # row 2: a full civil-affairs record. Grade percentile (education) missing in row 1 only.
    frame["dibao"] = pd.array([True, None, False], dtype="boolean")
    frame["household_income_per_capita"] = [None, None, 9000.0]
    frame["grade_percentile"] = [40.0, None, 70.0]
    x = encode(frame, schema)
    col = {n: x[:, i] for i, n in enumerate(feature_layout(schema).names)}
    assert col["civil_affairs:record"].tolist() == [1.0, 0.0, 1.0]
    assert col["household_income_per_capita:missing"].tolist() == [1.0, 0.0, 0.0]
    assert col["dibao:missing"].tolist() == [0.0, 0.0, 0.0]
    assert col["tax:record"].tolist() == [0.0, 0.0, 0.0]
    assert col["grade_percentile:missing"].tolist() == [0.0, 1.0, 0.0]


def test_encoding_uses_declared_ranges_only(schema: Schema) -> None:
    frame = _blank(schema, 3)
    frame["household_income_per_capita"] = [0.0, 2_000_000.0, None]
    frame["grade_percentile"] = [50.0, 150.0, 0.0]  # 150 clips to the declared max
    frame["family_structure"] = ["orphan", None, "divorced"]
    frame["dibao"] = pd.array([True, False, None], dtype="boolean")
    x = encode(frame, schema)
    names = feature_layout(schema).names
    col = {n: x[:, i] for i, n in enumerate(names)}
    assert col["household_income_per_capita"].tolist() == [0.0, 1.0, 0.0]
    # civil affairs holds a record in every row (dibao or family structure): a partial record
    assert col["household_income_per_capita:missing"].tolist() == [0.0, 0.0, 1.0]
    assert col["civil_affairs:record"].tolist() == [1.0, 1.0, 1.0]
    assert col["grade_percentile"].tolist() == [0.5, 1.0, 0.0]
    assert col["family_structure=orphan"].tolist() == [1.0, 0.0, 0.0]
    assert col["family_structure=divorced"].tolist() == [0.0, 0.0, 1.0]
    assert col["family_structure:missing"].tolist() == [0.0, 1.0, 0.0]
    assert col["dibao"].tolist() == [1.0, 0.0, 0.0]
    assert col["dibao:missing"].tolist() == [0.0, 0.0, 1.0]
    # the same row encodes identically whatever else is in the frame (no data statistics)
    assert np.array_equal(encode(frame.iloc[[1]], schema)[0], x[1])
    log_half = math.log1p(1000.0) / math.log1p(2_000_000.0)
    frame.loc[0, "household_income_per_capita"] = 1000.0
    assert encode(frame, schema)[0, names.index("household_income_per_capita")] == pytest.approx(
        log_half, rel=1e-6
    )


def test_encoding_rejects_undeclared_values(schema: Schema) -> None:
    frame = _blank(schema, 1)
    frame["family_structure"] = ["grandparents"]
    with pytest.raises(DataValidationError, match="family_structure"):
        encode(frame, schema)
    frame = _blank(schema, 1)
    frame["dibao"] = ["maybe"]
    with pytest.raises(DataValidationError, match="dibao"):
        encode(frame, schema)


def test_build_inputs_joins_evidence_by_student(schema: Schema) -> None:
    edu = pd.DataFrame(
        {"student_id": ["A", "B", "C"], "campus_card_spending": [300.0, 900.0, None]}
    )
    evidence = pd.DataFrame({"student_id": ["C", "A"], "dibao": [True, False]})
    frame = build_inputs(edu, evidence, schema)
    assert list(frame["student_id"]) == ["A", "B", "C"]
    assert frame["dibao"].tolist()[0] is False or frame["dibao"].tolist()[0] == 0
    assert pd.isna(frame["dibao"].iloc[1])
    assert bool(frame["dibao"].iloc[2])
    assert all(ind.name in frame.columns for ind in schema.indicators)
    assert build_inputs(edu, None, schema)["dibao"].isna().all()
    with pytest.raises(DataValidationError, match="evidence-side"):
        build_inputs(edu, pd.DataFrame({"student_id": ["A"], "grade_percentile": [3.0]}), schema)
    with pytest.raises(DataValidationError, match="once"):
        build_inputs(pd.concat([edu, edu]), None, schema)


def test_rule_layer_cases(schema: Schema) -> None:
    frame = _blank(schema, 7)
    frame["dibao"] = pd.array([True, False, None, None, None, None, None], dtype="boolean")
    frame["family_structure"] = [None, None, "orphan", "bereaved", None, None, None]
    frame["student_disability_grade"] = [None, None, None, None, 1, 3, None]
    frame["num_vehicles"] = [None, 2, None, None, None, None, 0]
    frame["campus_card_spending"] = [None, None, None, None, None, None, 3000.0]
    hits = apply_rules(frame, schema)
    top = len(schema.levels.names) - 1
    assert hits.levels().tolist() == [top, 0, top, 0, top, 0, 0]
    assert hits.reasons(0) == ["direct:dibao"]
    assert hits.reasons(1) == ["exclusion:owns_vehicle"]
    assert hits.reasons(2) == ["direct:orphan"]
    assert hits.reasons(3) == []
    assert hits.reasons(4) == ["direct:severe_student_disability"]
    assert hits.reasons(5) == []  # grade 3 is not severe
    assert hits.reasons(6) == ["exclusion:high_campus_spending"]
    assert hits.review.tolist() == [False, True, False, False, False, False, True]


def _untrained(schema: Schema) -> HardshipModel:
    net = HardshipModel(schema=schema, hidden=(16,)).build_net()
    weights = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return HardshipModel(schema=schema, hidden=(16,), weights=weights)


def test_every_recommendation_has_reasons(schema: Schema) -> None:
    frame = random_inputs(schema, 300, seed=4)
    recs = _untrained(schema).recommend(frame)
    assert len(recs) == 300
    assert (recs["reasons"].str.len() > 0).all()
    ruled = recs["source"] == "rule"
    assert recs.loc[ruled, "reasons"].str.contains("direct:").all()
    assert (recs.loc[ruled, "level_index"] == len(schema.levels.names) - 1).all()
    assert recs["reasons"].str.contains("model:").all()
    assert set(recs["level"]) <= set(schema.levels.names)


def test_core_metrics_known_values() -> None:
    pred = np.array([0, 1, 2, 0, 3, 0])
    true = np.array([0, 1, 0, 2, 3, 0])
    p = np.array([0.1, 0.8, 0.6, 0.2, 0.9, 0.0])
    hidden = np.array([False, False, False, True, False, False])
    m = core_metrics(pred_level=pred, true_level=true, p_hardship=p, n_levels=4, hidden=hidden)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["missed_rate"] == pytest.approx(1 / 3)  # one of 3 in hardship not recommended
    assert m["wrong_aid_rate"] == pytest.approx(1 / 3)  # one of 3 recommended not in hardship
    assert m["hidden_recall"] == 0.0
    # F1: class0 2/3... tp=2 fp=1 fn=1 -> 4/6; class1 1; class2 tp0 fp1 fn1 -> 0; class3 1
    assert m["macro_f1"] == pytest.approx((4 / 6 + 1 + 0 + 1) / 4)


def test_group_gaps(schema: Schema) -> None:
    truth = pd.DataFrame(
        {
            "true_level": ["none", "general", "none", "general"],
            "rural": [True, True, False, False],
            "sex": ["F", "M", "F", "M"],
        }
    )
    out = evaluate_levels(
        pred_level=np.array([0, 1, 1, 1]),
        p_hardship=np.array([0.2, 0.9, 0.7, 0.8]),
        truth=truth,
        schema=schema,
    )
    assert out["groups"]["rural"]["rural"]["accuracy"] == 1.0
    assert out["groups"]["rural"]["urban"]["accuracy"] == 0.5
    assert out["gaps"]["rural"]["accuracy"] == 0.5
    assert out["largest_gaps"][0]["gap"] >= 0.5


def test_save_load_round_trip(schema: Schema, tmp_path: Path) -> None:
    model = _untrained(schema)
    card = ModelCard(name="t", data_counts={"students": 3}, training=TrainConfig().to_dict())
    out = save_model(tmp_path / "m", model, card)
    loaded, card2 = load_model(out)
    frame = random_inputs(schema, 50, seed=1)
    assert np.allclose(loaded.score(frame).p_hardship, model.score(frame).p_hardship)
    assert card2.to_dict() == card.to_dict()
    text = (out / "card.md").read_text()
    assert "people decide" in text
    assert "hyperparameter" in text.lower()
    assert not list(tmp_path.glob(".fedid-model-*"))


def test_weights_of_another_layout_are_refused_with_a_clear_error(schema: Schema) -> None:
    width = feature_layout(schema).width
    old = HardshipNet(width - 12, len(schema.levels.names), len(schema.dimension_flags), (32,))
    weights = {k: v.detach().numpy() for k, v in old.state_dict().items()}
    model = HardshipModel(schema=schema, hidden=(32,), weights=weights)
    with pytest.raises(TrainingError, match=f"do not fit this schema's {width} inputs"):
        model.build_net()
    state = replace(new_local_state(epsilon=1.0, delta=1e-5), weights=weights)
    with pytest.raises(TrainingError, match="do not fit"):  # a federated round refuses too
        train_local(inputs=random_inputs(schema, 50, seed=0), schema=schema, state=state,
                    config=TrainConfig())


def test_reasons_name_department_records_and_evidence_against() -> None:
    labels = [("dibao", "high"), ("household_income_per_capita", "low"), ("tax record", "")]
    contributions = np.array([[0.5, 0.0, 2.0], [-0.1, -0.3, -2.0]])
    reasons = top_indicator_reasons(contributions, labels, k=3)
    assert reasons[0] == ["model:tax record", "model:dibao high"]
    assert reasons[1] == ["model:tax record against"]
