"""Distributed Gaussian noise under a secure sum: one DP-FedSGD step per party and round.

K parties each hold records; a secure sum (:mod:`privacy.secure_sum`) reveals only the sum
of their vectors. Each party adds only its SHARE of the Gaussian noise, so that the sum
carries the full noise:

1. sample   every record of party i joins the step with probability ``q_i`` (Poisson, OS
            CSPRNG), ``q_i`` from the party's public size (never its row count);
2. clip     per-record gradients at the common weights, each clipped to L2 norm ``C``
            (flat clipping over every parameter), summed: ``S_i``;
3. share    ``S_i + Z_i`` with ``Z_i ~ N(0, (sigma C)^2 / K)`` per coordinate
            (:func:`share_std`; secure-mode draws, the sum of four Gaussians, as Opacus);
4. sum      the secure sum gives ``sum_i S_i + Z`` with ``Z ~ N(0, (n/K) (sigma C)^2)`` for
            the ``n >= K`` parties whose vectors are in it; the receiver divides by the sum
            of the parties' public expected batch sizes and takes the step (post-processing).

Why one step per round. The party's release is one noisy sum of clipped gradients at weights
it did not choose: its sensitivity to one record is ``C`` under add/remove adjacency. After
several local DP-SGD steps a party's update is an adaptive composition of its own steps, and
the final weights have no bounded sensitivity to one record, so noise other parties add to a
sum of such updates protects nothing; each party's local DP-SGD must then carry the full
noise (fedid's default mode).

Accounting, per party, both as accountant histories (:class:`SharedNoiseSpend`):

- **trusted** (the secure sum holds, and at least K parties including this one add their
  share and keep it secret): from this party's records, each round is the Poisson-subsampled
  Gaussian mechanism with multiplier ``sigma`` (the other parties' sums are independent of
  its records): the entry ``(sigma, q_i, 1)`` per round, the one the budget guard charges;
- **fallback** (its own share only: the secure sum broken, e.g. substituted masking keys,
  or the others adding nothing): multiplier ``sigma / sqrt(K)``,
  :func:`fallback_history`; recorded and reported, not enforced.

With fewer than K parties in a sum the trusted statement is false, so a party must refuse a
sum announced with fewer participants than its own K (done by the caller, which knows the
key list; :mod:`clients.noise_share`).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.func import functional_call, grad, vmap

from privacy.dp.accounting import Accountant, HistoryEntry
from privacy.dp.trainer import poisson_mask
from privacy.errors import AccountingError

__all__ = [
    "SHARED_MECHANISM",
    "ForwardLoss",
    "GradientShare",
    "SharedEntry",
    "SharedNoiseSpend",
    "clipped_gradient_sum",
    "fallback_history",
    "noisy_gradient_share",
    "share_noise",
    "share_std",
    "shared_noise_spend",
]

SHARED_MECHANISM: Final = "poisson_subsampled_gaussian_distributed"
_CHUNK: Final = 1024  # rows per vectorised per-record gradient pass (bounds memory)

#: loss(forward, batch) -> per-record losses ``[batch]``; ``forward(x)`` is the model
ForwardLoss = Callable[[Callable[[torch.Tensor], torch.Tensor], Sequence[torch.Tensor]],
                       torch.Tensor]


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise AccountingError(f"{name} must be finite and > 0. Got {value}.")


def _parties(parties: int) -> None:
    if isinstance(parties, bool) or int(parties) != parties or parties < 1:
        raise AccountingError(f"parties must be an integer >= 1. Got {parties}.")


def share_std(*, noise_multiplier: float, max_grad_norm: float, parties: int) -> float:
    """Standard deviation of one party's noise share: ``sigma C / sqrt(K)``."""
    _positive("noise multiplier", noise_multiplier)
    _positive("max_grad_norm", max_grad_norm)
    _parties(parties)
    return noise_multiplier * max_grad_norm / math.sqrt(parties)


def share_noise(size: int, *, std: float, seed: int | None = None) -> NDArray[np.float64]:
    """``size`` Gaussian values of standard deviation ``std`` (float64).

    ``seed`` None (production): a torch generator seeded from the OS CSPRNG, and each value
    the sum of four draws of standard deviation ``std / 2`` (Opacus's ``secure_mode``,
    robust to the floating-point attacks on one draw). A seed (tests only): one draw each.
    """
    _positive("noise std", std)
    if size < 0:
        raise AccountingError(f"size must be >= 0. Got {size}.")
    gen = torch.Generator()
    gen.manual_seed(secrets.randbits(63) if seed is None else seed)
    if seed is not None:
        return torch.normal(0.0, std, (size,), generator=gen, dtype=torch.float64).numpy()
    draws = sum(torch.normal(0.0, std / 2, (size,), generator=gen, dtype=torch.float64)
                for _ in range(4))
    return torch.as_tensor(draws).numpy()


def clipped_gradient_sum(
    *, module: nn.Module, tensors: Sequence[torch.Tensor], loss: ForwardLoss,
    max_grad_norm: float,
) -> dict[str, torch.Tensor]:
    """Sum over the rows of ``tensors`` of each row's gradient clipped to ``max_grad_norm``.

    Per-row gradients of every trainable parameter (``torch.func``: ``vmap`` of ``grad``,
    in chunks of rows), flat clipping by ``min(1, C / (norm + 1e-6))`` as Opacus, summed.
    Returns one tensor per parameter name (float64); no rows: zeros.
    """
    _positive("max_grad_norm", max_grad_norm)
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in module.named_buffers()}
    total = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in params.items()}
    n = int(tensors[0].shape[0]) if tensors else 0

    def one(p: dict[str, torch.Tensor], *row: torch.Tensor) -> torch.Tensor:
        def forward(x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(module, (p, buffers), (x,))
            return out
        return loss(forward, [r.unsqueeze(0) for r in row]).sum()

    per_row = vmap(grad(one), in_dims=(None, *([0] * len(tensors))))
    for start in range(0, n, _CHUNK):
        chunk = [t[start:start + _CHUNK] for t in tensors]
        grads: dict[str, torch.Tensor] = per_row(params, *chunk)
        flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)
        norms = flat.to(torch.float64).norm(dim=1)
        factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        for k, g in grads.items():
            total[k] += torch.einsum("b,b...->...", factor, g.to(torch.float64))
    return total


@dataclass(frozen=True, slots=True)
class GradientShare:
    """One party's release for one round: the noisy sum of clipped gradients per weight
    name (float64), and the public expected batch size the receiver divides by.

    ``sampled`` (how many rows the Poisson sample drew) stays with the party: it is not
    part of the release.
    """

    sums: dict[str, NDArray[np.float64]]
    expected_batch: int
    sampled: int


def noisy_gradient_share(
    *, module: nn.Module, state_names: Sequence[str], tensors: Sequence[torch.Tensor],
    loss: ForwardLoss, max_grad_norm: float, sample_rate: float, expected_batch: int,
    noise_std: float, seed: int | None = None,
) -> GradientShare:
    """Steps 1-3 of the module docstring at ``module``'s weights.

    ``state_names``: every name of the module's state dict, in order (a name that is not a
    trainable parameter gets noise only: its sensitivity is 0). ``sample_rate`` and
    ``expected_batch`` come from the party's public size. ``seed``: tests only.
    """
    if not 0 < sample_rate <= 1:
        raise AccountingError(f"sample rate must be in (0, 1]. Got {sample_rate}.")
    if expected_batch < 1:
        raise AccountingError(f"expected batch must be >= 1. Got {expected_batch}.")
    n = int(tensors[0].shape[0])
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    mask = poisson_mask(n, sample_rate, generator=gen)
    idx = mask.nonzero().squeeze(1)
    batch = [t.index_select(0, idx) for t in tensors]
    clipped = clipped_gradient_sum(module=module, tensors=batch, loss=loss,
                                   max_grad_norm=max_grad_norm)
    state = module.state_dict()
    sums: dict[str, NDArray[np.float64]] = {}
    for i, name in enumerate(state_names):
        shape = tuple(state[name].shape)
        size = int(np.prod(shape, dtype=np.int64))
        base = clipped[name].numpy() if name in clipped else np.zeros(shape)
        noise = share_noise(size, std=noise_std, seed=None if seed is None else seed + 1 + i)
        sums[name] = np.asarray(base, dtype=np.float64).reshape(shape) + noise.reshape(shape)
    return GradientShare(sums=sums, expected_batch=int(expected_batch), sampled=int(idx.numel()))


#: ``(noise_multiplier, sample_rate, steps, parties)``: shared rounds at one sigma (of the SUM),
#: one sample rate, split in ``parties`` shares
SharedEntry = tuple[float, float, int, int]


def fallback_history(
    history: Sequence[HistoryEntry], *, shared: Sequence[SharedEntry],
) -> tuple[HistoryEntry, ...]:
    """``history`` with each shared entry's steps at ``(sigma, q)`` replaced by steps at
    ``(sigma / sqrt(parties), q)``: the history that holds when only the party's own share
    protects those rounds. Every other entry (count releases, local DP-SGD) stays as it
    was. AccountingError if the history holds fewer such steps than ``shared`` names."""
    rest = [list(entry) for entry in history]
    added: list[HistoryEntry] = []
    for sigma, rate, steps, parties in shared:
        _parties(parties)
        left = int(steps)
        for entry in rest:
            if left and entry[0] == sigma and entry[1] == rate:
                take = min(left, int(entry[2]))
                entry[2] = int(entry[2]) - take
                left -= take
        if left:
            raise AccountingError(
                f"the history holds {steps - left} shared steps at noise {sigma:g} and sample"
                f" rate {rate:g}. Got {steps} to replace.")
        if steps:
            added.append((sigma / math.sqrt(parties), rate, int(steps)))
    kept = tuple((float(e[0]), float(e[1]), int(e[2])) for e in rest if e[2])
    return (*kept, *added)


@dataclass(frozen=True, slots=True)
class SharedNoiseSpend:
    """A party's spend in distributed-noise mode: its whole history under both statements.

    ``shared``: the shared rounds, ``(sigma of the SUM, sample rate, steps, parties)`` each
    (a share's multiplier is sigma / sqrt(parties)); ``epsilon``: the trusted epsilon (what
    the budget guard charges); ``fallback_epsilon``: the one that holds with the party's own
    share only; both over the party's whole history, at ``delta``.
    """

    accountant: str
    shared: tuple[SharedEntry, ...]
    epsilon: float
    fallback_epsilon: float
    delta: float
    mechanism: str = SHARED_MECHANISM

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"mechanism": self.mechanism, "accountant": self.accountant,
                "shared": [list(e) for e in self.shared], "epsilon": self.epsilon,
                "fallback_epsilon": self.fallback_epsilon, "delta": self.delta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedNoiseSpend:
        """Inverse of :meth:`to_dict`; AccountingError on a missing or bad field."""
        try:
            shared = tuple((float(e[0]), float(e[1]), int(e[2]), int(e[3]))
                           for e in data["shared"])
            return cls(accountant=str(data["accountant"]), shared=shared,
                       epsilon=float(data["epsilon"]),
                       fallback_epsilon=float(data["fallback_epsilon"]),
                       delta=float(data["delta"]), mechanism=str(data["mechanism"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise AccountingError(f"distributed-noise spend is malformed: {exc!s}") from exc


def shared_noise_spend(
    accountant: Accountant, *, shared: Sequence[SharedEntry], delta: float,
) -> SharedNoiseSpend:
    """Both epsilons of ``accountant``'s history, whose ``shared`` rounds were protected by
    the sum's noise (trusted) or by the party's own share only (fallback)."""
    fallback = Accountant(kind=accountant.kind,
                          history=fallback_history(accountant.history, shared=shared))
    return SharedNoiseSpend(
        accountant=accountant.kind, shared=tuple(shared),
        epsilon=accountant.epsilon(delta), fallback_epsilon=fallback.epsilon(delta),
        delta=float(delta))
