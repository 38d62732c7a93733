"""fedid.model training: train_local across rounds with persisted state, guard, centralized."""

from __future__ import annotations

import numpy as np
import pytest

from fedid.errors import BudgetExceededError, TrainingError
from fedid.model import (
    HardshipModel,
    LocalState,
    TrainConfig,
    core_metrics,
    level_targets,
    new_local_state,
    train_centralized,
    train_local,
)
from fedid.schema import Schema, load_schema
from privacy.dp import Accountant
from tests.fedid.model_fixtures import random_inputs


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def test_rounds_accumulate_to_the_budget_and_the_next_is_refused(schema: Schema) -> None:
    frame = random_inputs(schema, 600, seed=2)
    config = TrainConfig(hidden=(16,), batch_size=100, local_epochs=1, rounds=3)
    state = new_local_state(epsilon=1.0, delta=1e-4)
    epsilons = []
    for r in range(3):
        result = train_local(inputs=frame, schema=schema, state=state, config=config, seed=r)
        state = LocalState.from_bytes(result.state.to_bytes())  # persisted between rounds
        epsilons.append(result.spend.epsilon)
        assert result.spend.steps == 6
    assert epsilons[0] < epsilons[1] < epsilons[2] <= 1.0
    assert epsilons[2] > 0.97  # calibrated over the whole plan: ends at the budget
    sigma = state.noise_multiplier
    assert sigma is not None
    fresh = Accountant(history=((sigma, 1 / 6, 18),)).epsilon(1e-4)
    assert epsilons[2] == pytest.approx(fresh)
    weights = {k: v.copy() for k, v in (state.weights or {}).items()}
    with pytest.raises(BudgetExceededError, match="budget"):
        train_local(inputs=frame, schema=schema, state=state, config=config)
    assert len(state.spends) == 3
    assert state.accountant.steps == 18
    for k, v in weights.items():
        assert np.array_equal(v, (state.weights or {})[k])


def test_state_round_trip_and_malformed(schema: Schema) -> None:
    state = new_local_state(epsilon=2.0, delta=1e-5, accountant="rdp")
    assert LocalState.from_bytes(state.to_bytes()) == state
    with pytest.raises(TrainingError):
        LocalState.from_bytes(b"not a state")
    with pytest.raises(TrainingError):
        new_local_state(epsilon=-1.0, delta=1e-5)


def test_centralized_non_private_learns(schema: Schema) -> None:
    frame = random_inputs(schema, 1500, seed=5)
    config = TrainConfig(plain_epochs=8, plain_learning_rate=0.01)
    model, state = train_centralized(inputs=frame, schema=schema, config=config, budget=None)
    assert state is None
    assert isinstance(model, HardshipModel)
    scores = model.score(frame)
    true = level_targets(frame, schema)
    m = core_metrics(
        pred_level=scores.level, true_level=true, p_hardship=scores.p_hardship, n_levels=4
    )
    majority = max(float(np.mean(true > 0)), float(np.mean(true == 0)))
    assert m["accuracy"] > majority + 0.05
