"""DP-SGD training of one party's model for one call (one federated round) on Opacus.

Each call builds a FRESH module (Opacus cannot wrap one module twice), loads the given weights,
wraps it for per-sample gradients (``grad_sample_mode``: ``"ghost"`` clipping by default,
``"hooks"``, ``"functorch"``, ``"ew"``), and runs ``epochs x ceil(n / B)`` DP-SGD steps. Every step:

1. Poisson sampling: each record joins the batch independently with probability
   ``q = 1 / ceil(n / B)`` (Opacus's sample rate). Batches are drawn from tensors directly (no
   DataLoader); an empty batch still takes a noise-only step and is counted, as the analysis
   of the subsampled Gaussian mechanism requires.
2. Per-sample gradients clipped to ``max_grad_norm`` (flat), summed, Gaussian noise of standard
   deviation ``noise_multiplier x max_grad_norm`` added, divided by the expected batch size.
3. The Opacus accountant, loaded with the persisted history, counts the step.

Public size: the sample rate, the number of steps and the divisor are functions of the row
count, so a party whose size is secret passes ``public_n`` (a size it declares public) and
every one of them comes from that instead; the Poisson masks still run over the real rows.
The guarantee needs nothing from ``public_n`` (each record joins a batch with probability
``q`` whatever the row count); what the update then reveals about the row count is what the
noised sum of clipped gradients reveals, which the DP guarantee covers. A ``public_n`` far
from the row count costs utility only (batches larger or smaller than the divisor).

Before anything runs, :func:`privacy.dp.budget.check_budget` composes the planned steps onto the
history and refuses the call if the budget would be exceeded. The result carries the new
weights, the new accountant (history) and a :class:`~privacy.dp.accounting.PrivacySpend`.

``ema_decay`` > 0 returns an exponential moving average of the iterates instead of the last
one: post-processing of already released noisy iterates, so it costs no privacy and damps
the noise of the last steps.

Randomness (see THREAT_MODEL.md, "Node randomness"): with ``seed=None`` (production) the
Poisson masks are drawn from the OS CSPRNG (``os.urandom``) and the Gaussian noise from a
torch generator seeded from the OS CSPRNG on every call, with Opacus ``secure_mode`` noise
(the sum of four draws, robust to the floating-point attacks on a single draw). Nothing a
caller receives from another party can make it reproducible. ``seed`` is for tests only:
a node sets it from its own test configuration, never from a message.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from opacus.grad_sample import prepare_module
from opacus.optimizers import get_optimizer_class
from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping
from torch import nn

from privacy.dp.accounting import (
    ACCOUNTANTS,
    MECHANISM,
    Accountant,
    PrivacySpend,
    expected_batch_size,
    opacus_sample_rate,
    steps_per_epoch,
)
from privacy.dp.budget import PrivacyBudget, check_budget
from privacy.errors import AccountingError

__all__ = [
    "GRAD_SAMPLE_MODES",
    "DPSGDConfig",
    "DPTrainResult",
    "PerSampleLoss",
    "dp_train",
    "planned_steps",
    "poisson_mask",
]

_log = logging.getLogger(__name__)

GRAD_SAMPLE_MODES: Final = ("ghost", "hooks", "functorch", "ew")
_OPTIMIZERS: Final = ("sgd", "adam")

# per_sample_loss(module, batch_tensors) -> losses of shape [batch] (no reduction)
PerSampleLoss = Callable[[nn.Module, Sequence[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True, slots=True)
class DPSGDConfig:
    """DP-SGD hyperparameters of one training call (fixed a priori, never tuned on private data)."""

    noise_multiplier: float
    max_grad_norm: float = 1.0
    batch_size: int = 256
    epochs: int = 1
    learning_rate: float = 0.01
    optimizer: str = "adam"
    momentum: float = 0.0
    grad_sample_mode: str = "ghost"
    accountant: str = "prv"
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise AccountingError(
                f"noise multiplier must be finite and > 0. Got {self.noise_multiplier}."
            )
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise AccountingError(
                f"max_grad_norm must be finite and > 0. Got {self.max_grad_norm}."
            )
        if self.batch_size < 1:
            raise AccountingError(f"batch_size must be >= 1. Got {self.batch_size}.")
        if self.epochs < 1:
            raise AccountingError(f"epochs must be >= 1. Got {self.epochs}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise AccountingError(
                f"learning_rate must be finite and > 0. Got {self.learning_rate}."
            )
        if self.optimizer not in _OPTIMIZERS:
            raise AccountingError(
                f"optimizer must be one of {_OPTIMIZERS}. Got {self.optimizer!r}."
            )
        if not (0 <= self.momentum < 1):
            raise AccountingError(f"momentum must be in [0, 1). Got {self.momentum}.")
        if not (0 <= self.ema_decay < 1):
            raise AccountingError(f"ema_decay must be in [0, 1). Got {self.ema_decay}.")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise AccountingError(
                f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}."
                f" Got {self.grad_sample_mode!r}."
            )
        if self.accountant not in ACCOUNTANTS:
            raise AccountingError(
                f"accountant must be one of {ACCOUNTANTS}. Got {self.accountant!r}."
            )


@dataclass(frozen=True, slots=True)
class DPTrainResult:
    """Outcome of one DP training call."""

    state_dict: dict[str, torch.Tensor]
    accountant: Accountant
    spend: PrivacySpend
    empty_batches: int
    mean_loss: float


def planned_steps(n: int, config: DPSGDConfig) -> int:
    """DP-SGD steps of one call over ``n`` records: ``epochs x ceil(n / batch_size)``."""
    return config.epochs * steps_per_epoch(n, config.batch_size)


def _check_tensors(tensors: Sequence[torch.Tensor]) -> int:
    if not tensors:
        raise AccountingError("training needs at least one tensor. Got none.")
    n = int(tensors[0].shape[0])
    for t in tensors:
        if int(t.shape[0]) != n:
            raise AccountingError(
                f"all tensors must have the same number of rows. Got {int(t.shape[0])} and {n}."
            )
    if n < 1:
        raise AccountingError(f"training needs at least one record. Got {n}.")
    return n


def _base_optimizer(params: list[nn.Parameter], config: DPSGDConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum)


def dp_train(
    *,
    build_module: Callable[[], nn.Module],
    state_dict: Mapping[str, torch.Tensor] | None,
    tensors: Sequence[torch.Tensor],
    per_sample_loss: PerSampleLoss,
    config: DPSGDConfig,
    budget: PrivacyBudget,
    accountant: Accountant,
    public_n: int | None = None,
    seed: int | None = None,
) -> DPTrainResult:
    """Run one call of DP-SGD; refuses (BudgetExceededError) before any step if over budget.

    Args:
        build_module: returns a new, unwrapped module each call.
        state_dict: weights to start from (None: the module's initialisation).
        tensors: row-aligned tensors (inputs and targets) handed to ``per_sample_loss``.
        per_sample_loss: loss per record, shape ``[batch]``, no reduction.
        config: DP-SGD hyperparameters; ``config.accountant`` must match ``accountant.kind``.
        budget: the party's own total budget.
        accountant: the persisted accountant (history of all previous calls).
        public_n: the party's public size (see "Public size" in the module docstring): the
            sample rate, the number of steps and the divisor come from it, not from the
            private row count. None: the row count (only where the size is not secret,
            e.g. a model that never leaves the party).
        seed: reproducible sampling and noise (tests only; None: OS CSPRNG, see the module).
    """
    n = _check_tensors(tensors)
    shape_n = n if public_n is None else public_n
    if shape_n < 1:
        raise AccountingError(f"public size must be >= 1. Got {shape_n}.")
    if config.accountant != accountant.kind:
        raise AccountingError(
            f"config accountant must match the persisted accountant {accountant.kind!r}."
            f" Got {config.accountant!r}."
        )
    sample_rate = opacus_sample_rate(shape_n, config.batch_size)
    steps = planned_steps(shape_n, config)
    projected = check_budget(
        budget,
        accountant,
        noise_multiplier=config.noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
    )
    epsilon_before = accountant.epsilon(budget.delta)

    module = build_module()
    if state_dict is not None:
        module.load_state_dict(dict(state_dict))
    module.train()
    extra = {"max_grad_norm": config.max_grad_norm} if config.grad_sample_mode == "ghost" else {}
    wrapped = prepare_module(
        module,
        grad_sample_mode=config.grad_sample_mode,
        batch_first=True,
        loss_reduction="mean",
        **extra,
    )
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    optim_class = get_optimizer_class(
        clipping="flat", distributed=False, grad_sample_mode=config.grad_sample_mode
    )
    optimizer = optim_class(
        _base_optimizer(list(wrapped.parameters()), config),
        noise_multiplier=config.noise_multiplier,
        max_grad_norm=config.max_grad_norm,
        expected_batch_size=expected_batch_size(shape_n, config.batch_size),
        loss_reduction="mean",
        generator=generator,
        secure_mode=seed is None,
    )
    opacus_accountant = accountant.to_opacus()
    optimizer.attach_step_hook(opacus_accountant.get_optimizer_hook_fn(sample_rate=sample_rate))

    ema = (
        {k: v.detach().clone() for k, v in module.state_dict().items()}
        if config.ema_decay > 0
        else None
    )
    empty = 0
    loss_sum = 0.0
    seen = 0
    ghost = config.grad_sample_mode == "ghost"
    with warnings.catch_warnings():
        # Opacus's hooks fire on module outputs because inputs carry no grad: expected here.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(steps):
            mask = poisson_mask(n, sample_rate, generator=None if seed is None else generator)
            idx = mask.nonzero().squeeze(1)
            batch = [t.index_select(0, idx) for t in tensors]
            size = int(idx.shape[0])
            optimizer.zero_grad(set_to_none=True)
            if size == 0:
                empty += 1
                _noise_only_step(wrapped, optimizer)
            else:
                losses = per_sample_loss(wrapped, batch)
                if ghost:
                    dp_loss = DPTensorFastGradientClipping(wrapped, optimizer, losses, "mean")
                    dp_loss.backward()
                else:
                    losses.mean().backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                loss_sum += float(losses.detach().sum())
                seen += size
            if ema is not None:
                _ema_update(ema, module, config.ema_decay)

    after = Accountant.from_opacus(opacus_accountant)
    planned = accountant.record(
        noise_multiplier=config.noise_multiplier, sample_rate=sample_rate, steps=steps
    )
    if after.history != planned.history:
        raise AccountingError(
            f"accountant must count every step as planned: expected {planned.steps} steps,"
            f" counted {after.steps}."
        )
    new_state = (
        ema if ema is not None else {k: v.detach().clone() for k, v in module.state_dict().items()}
    )
    if hasattr(wrapped, "_close"):
        wrapped._close()
    epsilon = projected  # the recorded history is exactly the one the guard projected
    spend = PrivacySpend(
        mechanism=MECHANISM,
        accountant=after.kind,
        noise_multiplier=config.noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        epsilon_before=epsilon_before,
        epsilon=epsilon,
        delta=budget.delta,
    )
    _log.info(
        "DP-SGD call: %d steps (%d empty batches), epsilon %.4g -> %.4g at delta %.3g",
        steps,
        empty,
        epsilon_before,
        epsilon,
        budget.delta,
    )
    return DPTrainResult(
        state_dict=new_state,
        accountant=after,
        spend=spend,
        empty_batches=empty,
        mean_loss=loss_sum / seen if seen else math.nan,
    )


def poisson_mask(n: int, rate: float, *, generator: torch.Generator | None) -> torch.Tensor:
    """Which of ``n`` records join one Poisson batch (each with probability ``rate``).

    ``generator`` None: 53-bit uniforms from the OS CSPRNG (production); a seeded generator
    only in tests.
    """
    if generator is not None:
        return torch.rand(n, generator=generator) < rate
    bits = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
    return torch.from_numpy(bits.astype(np.float64) * 2.0**-53 < rate)


def _ema_update(ema: dict[str, torch.Tensor], module: nn.Module, decay: float) -> None:
    """Exponential moving average of the iterates (post-processing: no privacy cost)."""
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(decay).add_(v, alpha=1.0 - decay)
            else:
                ema[k].copy_(v)


def _noise_only_step(wrapped: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """An empty Poisson batch: the sum of clipped gradients is zero; release noise only.

    Sets zero per-sample gradients of batch size 0 so the DP optimizer clips nothing, adds its
    Gaussian noise, divides by the expected batch size, steps, and calls the accountant hook.
    """
    for p in wrapped.parameters():
        if p.requires_grad:
            zero = torch.zeros((0, *p.shape), dtype=p.dtype)
            p.grad_sample = zero  # type: ignore[attr-defined]
            p.grad = torch.zeros_like(p)
    optimizer.step()
