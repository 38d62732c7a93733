"""Weighted FedAvg and reply validation."""

from __future__ import annotations

import numpy as np
import pytest

from fedid.errors import ConfigError, FederationError
from server.strategy import FedAvg, PrivacyDeclaration, TrainReply

GLOBAL = [np.zeros((2, 3), dtype=np.float32), np.zeros(3, dtype=np.float32)]


def _priv(eps: float = 0.5, budget: float = 1.0) -> PrivacyDeclaration:
    return PrivacyDeclaration(epsilon_spent=eps, delta=1e-5, epsilon_budget=budget,
                              delta_budget=1e-5)


def _reply(agency: str, value: float, n: float, **kw: object) -> TrainReply:
    arrays = [np.full((2, 3), value, np.float32), np.full(3, value, np.float32)]
    defaults: dict[str, object] = {"arrays": arrays, "weight": n, "privacy": _priv()}
    defaults.update(kw)
    return TrainReply(agency, **defaults)  # type: ignore[arg-type]


def test_weighted_average_by_released_weights() -> None:
    result = FedAvg().aggregate([_reply("a", 1.0, 100), _reply("b", 4.0, 300)], GLOBAL)
    np.testing.assert_allclose(result.arrays[0], np.full((2, 3), 3.25))
    assert result.used == ("a", "b")
    assert result.excluded == {}


def test_equal_weighting() -> None:
    result = FedAvg(weighting="equal").aggregate(
        [_reply("a", 1.0, 100), _reply("b", 4.0, 300)], GLOBAL)
    np.testing.assert_allclose(result.arrays[1], np.full(3, 2.5))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (_reply("x", 1.0, 10, arrays=[np.zeros((3, 2), np.float32), np.zeros(3, np.float32)]),
         "shape"),
        (_reply("x", 1.0, 10, arrays=[np.zeros((2, 3), np.float32)]), "expected 2 arrays"),
        (_reply("x", np.nan, 10), "non-finite"),
        (_reply("x", 1.0, 0), "weight must be finite and > 0"),
        (_reply("x", 1.0, float("nan")), "weight must be finite and > 0"),
        (_reply("x", 1.0, 10, privacy=None), "no privacy"),
        (_reply("x", 1.0, 10, privacy=_priv(eps=1.5, budget=1.0)), "exceeds"),
        (_reply("x", 1.0, 10, privacy=_priv(eps=float("inf"))), "not finite"),
        (_reply("x", 1.0, 10, refused="budget"), "refused"),
        (_reply("x", 1.0, 10, error="boom"), "node error"),
    ],
)
def test_bad_reply_is_excluded_with_reason(bad: TrainReply, reason: str) -> None:
    result = FedAvg().aggregate([_reply("good", 2.0, 50), bad], GLOBAL)
    assert result.used == ("good",)
    assert reason in result.excluded["x"]
    np.testing.assert_allclose(result.arrays[0], np.full((2, 3), 2.0))


def test_spend_must_not_shrink() -> None:
    strategy = FedAvg()
    strategy.aggregate([_reply("a", 1.0, 10, privacy=_priv(eps=0.6))], GLOBAL)
    result = strategy.aggregate(
        [_reply("a", 1.0, 10, privacy=_priv(eps=0.3)), _reply("b", 1.0, 10)], GLOBAL)
    assert "below the earlier" in result.excluded["a"]


def test_too_few_valid_replies_stops_the_round() -> None:
    with pytest.raises(FederationError, match="at least 2 valid replies"):
        FedAvg(min_replies=2).aggregate([_reply("a", 1.0, 10), _reply("b", np.inf, 10)], GLOBAL)


def test_bad_config_rejected() -> None:
    with pytest.raises(ConfigError):
        FedAvg(weighting="median")
