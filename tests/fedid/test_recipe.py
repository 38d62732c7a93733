"""The recipe's rule: settings from public quantities only (fedid.model.recipe.by_rule)."""

from __future__ import annotations

import math

import pytest

from fedid.errors import TrainingError
from fedid.model.recipe import BATCH, by_rule
from fedid.model.train_config import TrainConfig


@pytest.mark.parametrize(("n", "batch", "steps_per_epoch"),
                         [(35, 35, 1), (128, 128, 1), (1_000, 128, 8), (10_000, 128, 79)])
def test_batch_is_fixed_so_steps_grow_with_the_rows(n: int, batch: int,
                                                    steps_per_epoch: int) -> None:
    rule = by_rule(n=n, rounds=5)
    assert BATCH == 128
    assert rule.batch_size == batch
    assert math.ceil(n / rule.batch_size) == steps_per_epoch


@pytest.mark.parametrize(("rounds", "epochs"), [(1, 5), (2, 2), (5, 1), (20, 1)])
def test_epochs_are_split_over_the_rounds(rounds: int, epochs: int) -> None:
    assert by_rule(n=500, rounds=rounds).local_epochs == epochs


def test_step_length_and_clipping_and_the_agency_config() -> None:
    rule = by_rule(n=2_000, rounds=5)
    assert rule.max_grad_norm == 1.0
    assert rule.learning_rate * rule.max_grad_norm == pytest.approx(0.5)
    config = TrainConfig(recipe="rule").for_agency(2_000)
    assert (config.batch_size, config.local_epochs, config.learning_rate,
            config.max_grad_norm) == (128, 1, rule.learning_rate, 1.0)
    assert TrainConfig().for_agency(2_000).batch_size == 2048  # fixed: as given


def test_the_rule_refuses_empty_agencies_and_no_rounds() -> None:
    with pytest.raises(TrainingError, match=r"n >= 1 and rounds >= 1\. Got 0, 5"):
        by_rule(n=0, rounds=5)
    with pytest.raises(TrainingError, match="Got 10, 0"):
        by_rule(n=10, rounds=0)
