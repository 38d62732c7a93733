"""Distributed noise under a secure sum: the shares, the clipped sum, both epsilons."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from torch import nn

from privacy.dp import (
    Accountant,
    clipped_gradient_sum,
    fallback_history,
    noisy_gradient_share,
    share_noise,
    share_std,
    shared_noise_spend,
)
from privacy.errors import AccountingError

SIGMA, CLIP, K = 3.0, 2.0, 5
M = 200_000  # values per draw: the variance estimate's relative standard error is 0.32 %


def _var_ok(values: np.ndarray, want: float) -> None:
    """Sample variance within 2 % (6 standard errors) and mean within 5 standard errors."""
    assert np.var(values) == pytest.approx(want, rel=0.02)
    assert abs(float(np.mean(values))) < 5 * math.sqrt(want / values.size)


def test_each_share_has_one_kth_and_the_sum_of_k_the_full_variance() -> None:
    std = share_std(noise_multiplier=SIGMA, max_grad_norm=CLIP, parties=K)
    assert std == pytest.approx(SIGMA * CLIP / math.sqrt(K))
    shares = [share_noise(M, std=std) for _ in range(K)]  # production path: CSPRNG, 4 draws
    full = (SIGMA * CLIP) ** 2
    for share in shares:
        _var_ok(share, full / K)
    _var_ok(np.sum(shares, axis=0), full)
    # the parties' shares are independent draws, not one draw K times
    assert abs(np.corrcoef(shares[0], shares[1])[0, 1]) < 5 / math.sqrt(M)


def test_a_party_with_no_sampled_rows_releases_its_share_of_noise_only() -> None:
    net = nn.Linear(1000, 200)  # 200,200 values per release
    names = list(net.state_dict())
    std = share_std(noise_multiplier=SIGMA, max_grad_norm=CLIP, parties=K)

    def loss(forward: Callable[[torch.Tensor], torch.Tensor],
             batch: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.zeros(batch[0].shape[0])

    releases = []
    for _ in range(K):
        share = noisy_gradient_share(
            module=net, state_names=names, tensors=[torch.zeros(0, 1000)], loss=loss,
            max_grad_norm=CLIP, sample_rate=1.0, expected_batch=10, noise_std=std)
        assert share.sampled == 0
        assert share.expected_batch == 10
        releases.append(np.concatenate([share.sums[n].ravel() for n in names]))
    _var_ok(releases[0], (SIGMA * CLIP) ** 2 / K)
    _var_ok(np.sum(releases, axis=0), (SIGMA * CLIP) ** 2)


def _net_and_data(n: int = 64) -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    x = torch.randn(n, 5) * 3
    y = torch.randn(n) * 10
    return net, [x, y]


def _mse(forward: Callable[[torch.Tensor], torch.Tensor],
         batch: Sequence[torch.Tensor]) -> torch.Tensor:
    x, y = batch
    out: torch.Tensor = ((forward(x).squeeze(1) - y) ** 2).to(torch.float32)
    return out


def test_clipped_sum_matches_a_per_record_loop_and_each_record_moves_it_at_most_c() -> None:
    net, (x, y) = _net_and_data()
    got = clipped_gradient_sum(module=net, tensors=[x, y], loss=_mse, max_grad_norm=CLIP)
    want = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in net.named_parameters()}
    for i in range(len(x)):
        net.zero_grad()
        _mse(net, [x[i:i + 1], y[i:i + 1]]).sum().backward()  # type: ignore[no-untyped-call]
        flat = torch.cat([p.grad.reshape(-1) for p in net.parameters()])  # type: ignore[union-attr]
        factor = min(1.0, CLIP / (float(flat.norm()) + 1e-6))
        for k, p in net.named_parameters():
            want[k] += factor * p.grad.double()  # type: ignore[union-attr]
        one = clipped_gradient_sum(module=net, tensors=[x[i:i + 1], y[i:i + 1]], loss=_mse,
                                   max_grad_norm=CLIP)
        assert float(torch.cat([v.reshape(-1) for v in one.values()]).norm()) <= CLIP + 1e-6
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-4)


def _pld_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    accountant = pld_privacy_accountant.PLDAccountant()
    for sigma, rate, steps in history:
        event = dp_accounting.GaussianDpEvent(sigma)
        if rate < 1:
            event = dp_accounting.PoissonSampledDpEvent(rate, event)
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(("sigma", "rate", "trusted", "fallback"), [
    (24.0, 1.0, 1.0297330, 2.6829130),  # 40 full-batch rounds, as the default province
    (6.0, 0.25, 1.0707412, 3.0476764),  # 40 rounds at sample rate 1/4
])
def test_trusted_and_fallback_epsilon(sigma: float, rate: float, trusted: float,
                                      fallback: float) -> None:
    # a matching-aggregates release, 40 shared rounds, the identification release
    history = ((20.0, 1.0, 1), (sigma, rate, 40), (20.0, 1.0, 1))
    spend = shared_noise_spend(Accountant(history=history), shared=[(sigma, rate, 40, 6)],
                               delta=1e-5)
    assert spend.epsilon == pytest.approx(trusted, rel=1e-5)
    assert spend.fallback_epsilon == pytest.approx(fallback, rel=1e-5)
    # the same histories under Google's dp-accounting PLD accountant (independent code)
    assert spend.epsilon == pytest.approx(_pld_epsilon(history, 1e-5), rel=0.015)
    alone = ((20.0, 1.0, 2), (sigma / math.sqrt(6), rate, 40))
    assert spend.fallback_epsilon == pytest.approx(_pld_epsilon(alone, 1e-5), rel=0.015)
    assert spend.to_dict()["shared"] == [[sigma, rate, 40, 6]]


def test_fallback_history_replaces_only_the_shared_steps() -> None:
    history = ((20.0, 1.0, 1), (24.0, 1.0, 40), (20.0, 1.0, 1))
    out = fallback_history(history, shared=[(24.0, 1.0, 30, 4)])
    assert out == ((20.0, 1.0, 1), (24.0, 1.0, 10), (20.0, 1.0, 1), (12.0, 1.0, 30))
    with pytest.raises(AccountingError, match="holds 40 shared steps"):
        fallback_history(history, shared=[(24.0, 1.0, 41, 4)])
    with pytest.raises(AccountingError, match="parties"):
        share_std(noise_multiplier=1.0, max_grad_norm=1.0, parties=0)
