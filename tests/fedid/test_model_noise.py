"""fedid.label_noise: the noisy-label threshold and its use in the model's levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedid.errors import ConfigError, TrainingError
from fedid.model import (
    PUBLISHED_SELF_REPORT,
    HardshipModel,
    LabelNoise,
    Scores,
    per_sample_loss,
)
from fedid.schema import load_schema


def test_published_rates_give_the_natarajan_threshold() -> None:
    noise = PUBLISHED_SELF_REPORT
    rho_neg = 0.23 / 0.77 * 0.83 * 0.20 / 0.80
    assert noise.rho_pos == 0.17
    assert noise.rho_neg == pytest.approx(rho_neg)
    assert noise.hardship_threshold == pytest.approx((1 - 0.17 + rho_neg) / 2)
    # the noisy posterior at the threshold maps back to clean posterior 1/2
    eta = (noise.hardship_threshold - noise.rho_neg) / (1 - noise.rho_pos - noise.rho_neg)
    assert eta == pytest.approx(0.5)
    assert load_schema().label_noise == noise  # the default schema declares this process


def test_no_noise_keeps_one_half_and_bad_rates_are_refused() -> None:
    assert LabelNoise(0.0, 0.0, 0.2).hardship_threshold == 0.5
    with pytest.raises(ConfigError, match="missed_rate"):
        LabelNoise(1.2, 0.1, 0.2)
    with pytest.raises(ConfigError, match="sum to < 1"):
        LabelNoise(0.9, 0.5, 0.5)


def test_levels_use_the_threshold_on_the_first_cut_only() -> None:
    p = np.array([[0.47, 0.47, 0.1], [0.40, 0.2, 0.1], [0.9, 0.6, 0.52]])
    scores = Scores(p_greater=p, p_flags=np.zeros((3, 0)))
    assert scores.level.tolist() == [0, 0, 3]
    assert scores.levels(0.446).tolist() == [1, 0, 3]
    model = HardshipModel(schema=load_schema(), hidden=(4,))
    assert model.hardship_threshold == pytest.approx(PUBLISHED_SELF_REPORT.hardship_threshold)
    with pytest.raises(ConfigError):
        HardshipModel(schema=load_schema(), hidden=(4,), hardship_threshold=1.0)


def test_level_weights_scale_the_level_term() -> None:
    out = torch.zeros(3, 3)  # 4 levels, no flags
    levels = torch.tensor([0, 1, 3])
    flags = torch.zeros(3, 0)
    plain = per_sample_loss(out, levels, flags, n_levels=4)
    weighted = per_sample_loss(out, levels, flags, n_levels=4, level_weights=(1, 2, 2, 3))
    assert torch.allclose(weighted, plain * torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TrainingError, match="one weight per level"):
        per_sample_loss(out, levels, flags, n_levels=4, level_weights=(1, 2))
