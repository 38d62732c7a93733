"""DP accounting, budget guard and DP-SGD trainer (privacy.dp)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import dp_accounting
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from privacy.dp import (
    GRAD_SAMPLE_MODES,
    Accountant,
    DPSGDConfig,
    PrivacyBudget,
    PrivacySpend,
    calibrate_noise_multiplier,
    check_budget,
    dp_train,
    expected_batch_size,
    opacus_sample_rate,
    planned_steps,
    steps_per_epoch,
)
from privacy.errors import AccountingError, BudgetExceededError

SIGMA, RATE, STEPS, DELTA = 1.1, 0.01, 1000, 1e-5
# Computed once with Opacus 1.6 (PRV: eps_error 0.01, upper bound; RDP: default orders).
EXPECTED_PRV = 1.5254726
EXPECTED_RDP = 1.7117701


def _google(kind: str) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(RATE, dp_accounting.GaussianDpEvent(SIGMA)), STEPS
    )
    acc: dp_accounting.PrivacyAccountant = (
        dp_accounting.pld.PLDAccountant() if kind == "pld" else dp_accounting.rdp.RdpAccountant()
    )
    acc.compose(event)
    return float(acc.get_epsilon(DELTA))


def test_fixed_epsilon_prv_matches_hardcoded_and_google_pld() -> None:
    eps = Accountant(kind="prv", history=((SIGMA, RATE, STEPS),)).epsilon(DELTA)
    assert eps == pytest.approx(EXPECTED_PRV, rel=1e-4)
    assert eps == pytest.approx(_google("pld"), rel=0.02)


def test_fixed_epsilon_rdp_matches_hardcoded_and_google_rdp() -> None:
    eps = Accountant(kind="rdp", history=((SIGMA, RATE, STEPS),)).epsilon(DELTA)
    assert eps == pytest.approx(EXPECTED_RDP, rel=1e-4)
    assert eps == pytest.approx(_google("rdp"), rel=0.02)


def test_gdp_accountant_refused() -> None:
    with pytest.raises(AccountingError, match="not a guarantee"):
        Accountant(kind="gdp")


def test_sample_rate_is_opacus_loader_rate() -> None:
    assert steps_per_epoch(1000, 300) == 4
    assert opacus_sample_rate(1000, 300) == 0.25  # 1/ceil(n/B), not B/n = 0.3
    cfg = DPSGDConfig(noise_multiplier=1.0, batch_size=300, epochs=3)
    assert planned_steps(1000, cfg) == 12


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 100_000), b=st.integers(1, 5000))
def test_sample_rate_properties(n: int, b: int) -> None:
    q = opacus_sample_rate(n, b)
    assert 0 < q <= 1
    assert q <= min(1.0, b / n) + 1e-12  # ceil(n/B) >= n/B
    assert expected_batch_size(n, b) >= 1
    assert abs(expected_batch_size(n, b) - n * q) <= 0.5
    assert steps_per_epoch(n, b) * q == pytest.approx(1.0)


def test_split_history_merges_and_gives_same_epsilon() -> None:
    split = Accountant(history=((SIGMA, RATE, 400), (SIGMA, RATE, 600)))
    assert split.history == ((SIGMA, RATE, STEPS),)
    assert split.epsilon(DELTA) == pytest.approx(EXPECTED_PRV, rel=1e-6)
    assert Accountant().epsilon(DELTA) == 0.0


def test_accountant_and_spend_round_trip() -> None:
    acc = Accountant(kind="rdp").record(noise_multiplier=2.0, sample_rate=0.1, steps=5)
    assert Accountant.from_dict(acc.to_dict()) == acc
    spend = PrivacySpend(
        mechanism="poisson_subsampled_gaussian",
        accountant="prv",
        noise_multiplier=1.0,
        sample_rate=0.1,
        steps=10,
        epsilon_before=0.0,
        epsilon=1.0,
        delta=1e-5,
    )
    assert PrivacySpend.from_dict(spend.to_dict()) == spend
    with pytest.raises(AccountingError):
        Accountant.from_dict({"kind": "prv"})
    with pytest.raises(AccountingError):
        Accountant(history=((-1.0, 0.1, 3),))


@pytest.mark.parametrize("kind", ["prv", "rdp"])
def test_calibration_meets_target_tightly(kind: str) -> None:
    sigma = calibrate_noise_multiplier(
        target_epsilon=1.0, delta=DELTA, sample_rate=0.02, steps=500, accountant=kind
    )
    at = Accountant(kind=kind, history=((sigma, 0.02, 500),)).epsilon(DELTA)
    below = Accountant(kind=kind, history=((sigma * 0.97, 0.02, 500),)).epsilon(DELTA)
    assert at <= 1.0
    assert at > 0.98
    assert below > 1.0


def test_budget_guard_projects_and_refuses() -> None:
    budget = PrivacyBudget(epsilon=1.6, delta=DELTA)
    acc = Accountant(history=((SIGMA, RATE, 900),))
    projected = check_budget(budget, acc, noise_multiplier=SIGMA, sample_rate=RATE, steps=100)
    assert projected == pytest.approx(EXPECTED_PRV, rel=1e-6)
    with pytest.raises(BudgetExceededError, match="budget"):
        check_budget(budget, acc, noise_multiplier=SIGMA, sample_rate=RATE, steps=300)
    with pytest.raises(AccountingError):
        PrivacyBudget(epsilon=0.0, delta=DELTA)


# ----------------------------------------------------------------------- the trainer


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2))


def _mse(module: nn.Module, batch: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    x, y = batch
    out: torch.Tensor = module(x)
    return ((out - y) ** 2).sum(dim=1)


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)


@pytest.mark.parametrize("mode", GRAD_SAMPLE_MODES)
def test_per_sample_clipping_bound(mode: str) -> None:
    # Two records, q = 1 (both always sampled), plain SGD lr 1, negligible noise: the update is
    # exactly minus the mean of the per-record gradients, each clipped to norm C.
    x = torch.tensor([[100.0, -50.0, 30.0], [0.1, 0.2, -0.1]])
    y = torch.tensor([[500.0, -400.0], [0.0, 0.1]])
    clip = 1.0
    start = _linear()
    per_record = []
    for i in range(2):
        start.zero_grad()
        _mse(start, (x[i : i + 1], y[i : i + 1])).sum().backward()
        g = torch.cat([p.grad.flatten() for p in start.parameters() if p.grad is not None])
        per_record.append(g * min(1.0, clip / float(g.norm())))
    assert float(per_record[0].norm()) == pytest.approx(clip, rel=1e-5)  # record 0 was clipped
    expected = -(per_record[0] + per_record[1]) / 2
    cfg = DPSGDConfig(
        noise_multiplier=1e-4,
        max_grad_norm=clip,
        batch_size=2,
        learning_rate=1.0,
        optimizer="sgd",
        grad_sample_mode=mode,
        accountant="rdp",
    )
    result = dp_train(
        build_module=_linear,
        state_dict=None,
        tensors=[x, y],
        per_sample_loss=_mse,
        config=cfg,
        budget=PrivacyBudget(epsilon=1e12, delta=DELTA),
        accountant=Accountant(kind="rdp"),
        seed=0,
    )
    before = torch.cat([p.detach().flatten() for p in _linear().parameters()])
    after = torch.cat([result.state_dict[k].flatten() for k in ("0.weight", "0.bias")])
    assert torch.allclose(after - before, expected, atol=2e-3)
    assert float((after - before).norm()) <= clip * 1.01


def test_epsilon_accumulates_across_calls_with_persisted_history() -> None:
    x, y = _data(200)
    cfg = DPSGDConfig(noise_multiplier=1.5, batch_size=50, epochs=2)
    budget = PrivacyBudget(epsilon=10.0, delta=1e-3)
    acc = Accountant()
    state = None
    spends = []
    for _ in range(3):
        result = dp_train(
            build_module=_linear,
            state_dict=state,
            tensors=[x, y],
            per_sample_loss=_mse,
            config=cfg,
            budget=budget,
            accountant=acc,
            seed=1,
        )
        state, acc = result.state_dict, result.accountant
        spends.append(result.spend)
    assert acc.history == ((1.5, 0.25, 24),)
    assert spends[0].epsilon_before == 0.0
    for a, b in itertools.pairwise(spends):
        assert b.epsilon_before == pytest.approx(a.epsilon)
        assert b.epsilon > a.epsilon
    fresh = Accountant(history=((1.5, 0.25, 24),)).epsilon(1e-3)
    assert spends[-1].epsilon == pytest.approx(fresh)
    # Restarting the accountant (the Opacus pitfall) would report only one call's epsilon.
    assert spends[-1].epsilon > spends[0].epsilon * 1.3


def test_budget_guard_refuses_before_any_step() -> None:
    x, y = _data(100)
    cfg = DPSGDConfig(noise_multiplier=1.0, batch_size=25, epochs=1)
    one_call = Accountant().projected_epsilon(
        delta=1e-3, noise_multiplier=1.0, sample_rate=0.25, steps=4
    )
    budget = PrivacyBudget(epsilon=one_call * 1.2, delta=1e-3)
    first = dp_train(
        build_module=_linear,
        state_dict=None,
        tensors=[x, y],
        per_sample_loss=_mse,
        config=cfg,
        budget=budget,
        accountant=Accountant(),
        seed=0,
    )
    built: list[int] = []

    def counting() -> nn.Module:
        built.append(1)
        return _linear()

    weights = {k: v.clone() for k, v in first.state_dict.items()}
    with pytest.raises(BudgetExceededError):
        dp_train(
            build_module=counting,
            state_dict=weights,
            tensors=[x, y],
            per_sample_loss=_mse,
            config=cfg,
            budget=budget,
            accountant=first.accountant,
        )
    assert built == []  # no module built, no step run
    assert first.accountant.steps == 4  # nothing recorded
    for k, v in weights.items():
        assert torch.equal(v, first.state_dict[k])


def test_empty_poisson_batches_take_noise_only_steps_and_are_counted() -> None:
    x, y = _data(3)
    cfg = DPSGDConfig(noise_multiplier=2.0, batch_size=1, epochs=10)  # q = 1/3, 30 steps
    result = dp_train(
        build_module=_linear,
        state_dict=None,
        tensors=[x, y],
        per_sample_loss=_mse,
        config=cfg,
        budget=PrivacyBudget(epsilon=1e6, delta=1e-2),
        accountant=Accountant(),
        seed=3,
    )
    assert result.empty_batches > 0
    assert result.accountant.history == ((2.0, 1 / 3, 30),)
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())
    assert math.isfinite(result.mean_loss)


def test_config_and_accountant_must_agree() -> None:
    x, y = _data(10)
    with pytest.raises(AccountingError, match="accountant"):
        dp_train(
            build_module=_linear,
            state_dict=None,
            tensors=[x, y],
            per_sample_loss=_mse,
            config=DPSGDConfig(noise_multiplier=1.0, accountant="rdp"),
            budget=PrivacyBudget(epsilon=10.0, delta=1e-3),
            accountant=Accountant(kind="prv"),
        )
    with pytest.raises(AccountingError, match="grad_sample_mode"):
        DPSGDConfig(noise_multiplier=1.0, grad_sample_mode="ghost_fsdp")


def test_ema_returns_average_of_iterates_at_no_privacy_cost() -> None:
    x, y = _data(64)
    common = {"noise_multiplier": 1.0, "batch_size": 16, "epochs": 2, "accountant": "rdp"}
    budget = PrivacyBudget(epsilon=100.0, delta=1e-3)
    runs = {}
    for decay in (0.0, 0.9):
        runs[decay] = dp_train(
            build_module=_linear,
            state_dict=None,
            tensors=[x, y],
            per_sample_loss=_mse,
            config=DPSGDConfig(ema_decay=decay, **common),
            budget=budget,
            accountant=Accountant(kind="rdp"),
            seed=7,
        )
    last, ema = runs[0.0], runs[0.9]
    assert ema.spend == last.spend  # same steps, same accounting
    assert not torch.equal(ema.state_dict["0.weight"], last.state_dict["0.weight"])
    with pytest.raises(AccountingError, match="ema_decay"):
        DPSGDConfig(noise_multiplier=1.0, ema_decay=1.0)


def test_count_release_is_one_gaussian_step_and_calibration_reserves_it() -> None:
    from privacy.dp import (
        Accountant,
        calibrate_noise_multiplier,
        count_release_entry,
        poisson_mask,
        release_counts_gaussian,
        secure_rng,
    )

    entry = count_release_entry(20.0)
    assert entry == (20.0, 1.0, 1)
    plain = calibrate_noise_multiplier(target_epsilon=1.0, delta=1e-5, sample_rate=1.0,
                                       steps=40)
    reserved = calibrate_noise_multiplier(target_epsilon=1.0, delta=1e-5, sample_rate=1.0,
                                          steps=40, reserved=(entry,))
    assert reserved > plain
    total = Accountant(history=((reserved, 1.0, 40), entry)).epsilon(1e-5)
    assert 0.99 < total <= 1.0
    # std = noise multiplier x sqrt(counts per record); values are integers >= 0
    counts = {f"c{i}": 10_000.0 for i in range(4)}
    draws = [release_counts_gaussian(counts, noise_multiplier=20.0, max_counts_per_record=4,
                                     rng=secure_rng(i)).values for i in range(300)]
    values = np.array([[d[k] for k in sorted(d)] for d in draws])
    assert np.all(values == np.round(values))
    assert np.std(values - 10_000.0) == pytest.approx(40.0, rel=0.1)
    # CSPRNG Poisson masks: the sample rate holds, two masks differ
    a, b = poisson_mask(20_000, 0.3, generator=None), poisson_mask(20_000, 0.3, generator=None)
    assert abs(float(a.float().mean()) - 0.3) < 0.02
    assert not bool((a == b).all())


def _wide() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4000))


def _silent(module: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    # every per-record gradient is zero (the coordinator's "dead units"): the update is noise only
    out: torch.Tensor = module(batch[0])
    return (out * 0.0).sum(dim=1)


def _noise_scale(n: int, public_n: int | None) -> tuple[float, PrivacySpend]:
    x, y = _data(n)
    cfg = DPSGDConfig(noise_multiplier=2.0, max_grad_norm=1.0, batch_size=4096, epochs=3,
                      learning_rate=1.0, optimizer="sgd", momentum=0.0, accountant="rdp")
    result = dp_train(build_module=_wide, state_dict=None, tensors=[x, y],
                      per_sample_loss=_silent, config=cfg,
                      budget=PrivacyBudget(epsilon=1e6, delta=DELTA),
                      accountant=Accountant(kind="rdp"), public_n=public_n)
    before = _wide().state_dict()["0.weight"]
    return float((result.state_dict["0.weight"] - before).std()), result.spend


def test_update_scale_reveals_the_public_size_not_the_row_count() -> None:
    # Full-batch agencies of 1,000 and 1,500 rows. Shaped by their row counts, the noise-only
    # update divides by n and its scale gives n away (ratio 1.5); shaped by one public size,
    # the two updates have one distribution and the same declared spend.
    private = [_noise_scale(n, None)[0] for n in (1000, 1500)]
    assert private[0] / private[1] == pytest.approx(1.5, rel=0.05)
    (small, spend_small), (large, spend_large) = (_noise_scale(n, 1000) for n in (1000, 1500))
    assert small / large == pytest.approx(1.0, rel=0.05)
    assert small == pytest.approx(2.0 * math.sqrt(3) / 1000, rel=0.05)  # sigma C sqrt(T) / D
    assert (spend_small.sample_rate, spend_small.steps, spend_small.epsilon) == (
        spend_large.sample_rate, spend_large.steps, spend_large.epsilon)
