"""One-run audit bound (hand-checked values and jax-privacy as peer) and MIA metrics."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from privacy.audit import (
    audit_scores,
    lira_offline_scores,
    one_run_epsilon,
    one_run_p_value,
    roc_auc,
    tpr_at_fpr,
)
from privacy.errors import AccountingError


def _perfect_bound(m: int, significance: float) -> float:
    """r = v = m, delta = 0: q^m < alpha  <=>  eps < -log(alpha^(-1/m) - 1)."""
    return -math.log(significance ** (-1.0 / m) - 1.0)


def test_perfect_guesses_hand_checked() -> None:
    # 20^(1/10) = 1.349283..., -log(0.349283) = 1.051873...
    assert one_run_epsilon(m=10, r=10, v=10, delta=0.0) == pytest.approx(1.051873, abs=1e-5)
    assert one_run_epsilon(m=100, r=100, v=100, delta=0.0) == pytest.approx(3.492965, abs=1e-5)
    for m in (5, 30, 1000):
        assert one_run_epsilon(m=m, r=m, v=m, delta=0.0) == pytest.approx(
            _perfect_bound(m, 0.05), abs=1e-5)


def test_p_value_small_case_by_hand() -> None:
    # m = r = v = 2, eps = 0: q = 1/2, beta = 1/4; alpha = max(P[B=1]/1, P[B<2]/2) = 1/2
    assert one_run_p_value(m=2, r=2, v=2, epsilon=0.0, delta=1e-3) == pytest.approx(
        0.25 + 2 * 2 * 1e-3 * 0.5)
    q = 1 / (1 + math.exp(-1.0))
    alpha = max(2 * q * (1 - q), (1 - q * q) / 2)
    assert one_run_p_value(m=2, r=2, v=2, epsilon=1.0, delta=0.01) == pytest.approx(
        q * q + 4 * 0.01 * alpha)


def test_delta_weakens_the_bound() -> None:
    pure = one_run_epsilon(m=1000, r=1000, v=1000, delta=0.0)
    approx = one_run_epsilon(m=1000, r=1000, v=1000, delta=1e-5)
    assert 0 < approx < pure


def test_random_guessing_gives_about_zero() -> None:
    rng = np.random.default_rng(3)
    bounds = []
    for _ in range(20):
        inc = rng.random(1000) < 0.5
        bounds.append(audit_scores(rng.normal(size=1000), inc, delta=1e-5).epsilon_lower_bound)
    # at 95 % confidence (Bonferroni over the grid) a random attacker rarely rejects eps = 0
    assert sum(b > 0 for b in bounds) <= 2
    assert max(bounds) < 0.3


def test_perfect_attacker_through_scores() -> None:
    rng = np.random.default_rng(4)
    inc = rng.random(200) < 0.5
    audit = audit_scores(inc.astype(float) + 0.01 * rng.random(200), inc, delta=0.0)
    # 88 of 200 included: the largest all-correct guess set is k = 50 each side (r = v = 100)
    assert audit.included == 88
    assert audit.correct == audit.guesses == 100
    # Bonferroni over the grid: significance 0.05 / len(grid); delta = 0 ignores m
    assert audit.epsilon_lower_bound == pytest.approx(
        _perfect_bound(100, 0.05 / len(audit.grid)), abs=1e-5)


def test_odd_number_of_canaries() -> None:
    rng = np.random.default_rng(7)
    inc = rng.random(563) < 0.5
    audit = audit_scores(rng.normal(size=563), inc, delta=1e-5)
    assert max(audit.grid) == 281
    assert audit.guesses <= 563


def test_rejects_bad_counts() -> None:
    with pytest.raises(AccountingError, match="v <= r <= m"):
        one_run_p_value(m=5, r=6, v=1, epsilon=1.0, delta=0.0)
    with pytest.raises(AccountingError, match="finite"):
        audit_scores([1.0, float("nan")], [True, False], delta=0.0)


def _jax_privacy_auditing() -> ModuleType:
    spec = importlib.util.find_spec("jax_privacy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("jax-privacy not installed (pip install --no-deps jax-privacy)")
    path = Path(next(iter(spec.submodule_search_locations))) / "auditing.py"
    mod_spec = importlib.util.spec_from_file_location("_jp_auditing", path)
    assert mod_spec is not None
    assert mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules["_jp_auditing"] = module  # dataclasses look their module up
    mod_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("m", "r", "v", "delta"), [
    (10, 10, 10, 0.0), (1000, 200, 150, 1e-5), (1000, 1000, 620, 1e-5), (500, 50, 50, 1e-3),
    (2000, 400, 260, 0.0),
])
def test_matches_jax_privacy(m: int, r: int, v: int, delta: float) -> None:
    peer = _jax_privacy_auditing()
    for eps in (0.0, 0.5, 2.0, 6.0):
        assert one_run_p_value(m=m, r=r, v=v, epsilon=eps, delta=delta) == pytest.approx(
            float(peer._one_run_p_value(m, r, v, eps, delta)), rel=1e-9, abs=1e-12)
    assert one_run_epsilon(m=m, r=r, v=v, delta=delta) == pytest.approx(
        float(peer._epsilon_one_run(0.0, m, r, v, 0.05, delta)), abs=1e-5)


def test_auc_and_tpr_against_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    y = rng.random(3000) < 0.5
    s = rng.normal(size=3000) + 0.7 * y
    s[:50] = 0.0  # ties
    assert roc_auc(s, y) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, s)
    for target in (0.001, 0.01, 0.1):
        assert tpr_at_fpr(s, y, fpr=target) == pytest.approx(tpr[fpr <= target].max())


def test_auc_by_hand() -> None:
    assert roc_auc([3.0, 2.0, 1.0, 0.0], [True, True, False, False]) == 1.0
    # pairs (member, non-member): (0,1) (0,2) (1,1)=tie (1,2): 0.5 of 4
    assert roc_auc([0.0, 1.0, 1.0, 2.0], [True, False, True, False]) == pytest.approx(0.125)
    assert tpr_at_fpr([3.0, 2.0, 1.0, 0.0], [True, False, True, False], fpr=0.0) == 0.5


def test_lira_offline_ranks_shifted_targets() -> None:
    rng = np.random.default_rng(6)
    shadow = rng.normal(size=(8, 400)) * np.linspace(0.5, 2.0, 400)
    members = rng.random(400) < 0.5
    target = rng.normal(size=400) * np.linspace(0.5, 2.0, 400) + 1.5 * members
    scores = lira_offline_scores(target, shadow)
    assert roc_auc(scores, members) > 0.75
    with pytest.raises(AccountingError, match="shape"):
        lira_offline_scores(target, shadow[:1])
