"""The hardship model's distributed-noise step: one agency's share of one DP-FedSGD round.

In distributed-noise mode (:mod:`privacy.dp.distributed_noise`) an agency does not train
locally: per round it releases, under the secure sum, the sum of its records' clipped
gradients at the global weights over one Poisson sample, plus its share
``N(0, (sigma C)^2 / K)`` of the noise. The coordinator divides the unmasked sum by the sum
of the agencies' public expected batch sizes and takes the step.

Shape: the sample rate ``q = 1 / ceil(n_pub / batch_size)`` and the expected batch
``round(n_pub q)`` come from the agency's public training size ``n_pub``
(``config.public_rows``), never its row count; the clipping bound is ``config.max_grad_norm``
and the loss the model's (:func:`fedid.model.net.per_sample_loss`). Local epochs and the
learning rate are not used: the step is the coordinator's post-processing.

Noise: calibrated once for the whole plan (:func:`shared_noise_multiplier`): ``rounds``
steps at ``q``, composed with what the agency already spent and its reserved releases, so
the TRUSTED epsilon (multiplier sigma per round) meets the budget. The budget guard charges
the trusted entry ``(sigma, q, 1)`` per round (:func:`shared_step`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from fedid.errors import AccountingError, TrainingError
from fedid.model.features import encode, feature_layout, flag_targets, level_targets
from fedid.model.net import HardshipNet, check_weights, per_sample_loss
from fedid.model.recipe import calibrate_remaining
from fedid.model.train_config import TrainConfig
from fedid.model.train_state import LocalState
from fedid.schema import Schema
from privacy.dp import (
    MECHANISM,
    GradientShare,
    HistoryEntry,
    PrivacySpend,
    check_budget,
    expected_batch_size,
    noisy_gradient_share,
    opacus_sample_rate,
    share_noise,
    share_std,
)

__all__ = ["SharedStep", "noise_only_share", "shared_noise_multiplier", "shared_step"]


@dataclass(frozen=True, slots=True)
class SharedStep:
    """One round's share: the release (noisy sums and the public divisor), the new state
    (accountant with the trusted entry), and this round's spend record."""

    share: GradientShare
    state: LocalState
    spend: PrivacySpend
    sample_rate: float


def _net(schema: Schema, config: TrainConfig) -> HardshipNet:
    return HardshipNet(feature_layout(schema).width, len(schema.levels.names),
                       len(schema.dimension_flags), config.hidden)


def _shape(config: TrainConfig, n: int) -> tuple[float, int]:
    rows = config.shape_rows(n)
    return (opacus_sample_rate(rows, config.batch_size),
            expected_batch_size(rows, config.batch_size))


def shared_noise_multiplier(
    *, state: LocalState, config: TrainConfig, rows: int, reserved: Sequence[HistoryEntry] = (),
) -> float:
    """Sigma of the SUM for ``config.rounds`` shared rounds at the sample rate of the public
    size ``rows``, composed with ``state``'s history and ``reserved`` (e.g. the planned
    identification release), meeting the budget. BudgetExceededError if nothing fits."""
    q, _ = _shape(replace(config, public_rows=rows), rows)
    return calibrate_remaining(state=state, sample_rate=q, steps=config.rounds,
                               accountant=config.accountant, reserved=reserved,
                               what="distributed-noise training")


def _loss(schema: Schema, config: TrainConfig) -> Callable[
        [Callable[[torch.Tensor], torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]:
    n_levels = len(schema.levels.names)

    def loss(forward: Callable[[torch.Tensor], torch.Tensor],
             batch: Sequence[torch.Tensor]) -> torch.Tensor:
        x, y, f = batch
        return per_sample_loss(forward(x), y, f, n_levels=n_levels,
                               flag_weight=config.flag_weight,
                               level_weights=config.level_weights)
    return loss


def shared_step(
    *, inputs: pd.DataFrame, schema: Schema, state: LocalState, config: TrainConfig,
    noise_multiplier: float, parties: int, seed: int | None = None,
) -> SharedStep:
    """One agency's share at ``state.weights`` (the global model), budget-guarded.

    Raises:
        BudgetExceededError: the trusted entry would pass the budget; nothing was computed.
        TrainingError: no rows, weights that do not fit the schema, bad parameters.
    """
    if state.weights is None:
        raise TrainingError("a distributed-noise step needs the global weights.")
    n = len(inputs)
    if n < 1:
        raise TrainingError("training needs at least one student. Got 0.")
    q, batch = _shape(config, n)
    try:
        after = check_budget(state.budget, state.accountant, noise_multiplier=noise_multiplier,
                             sample_rate=q, steps=1)
        before = state.accountant.epsilon(state.budget.delta)
        net = _net(schema, config)
        check_weights(net, state.weights)
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.weights.items()})
        tensors = [torch.from_numpy(encode(inputs, schema)),
                   torch.from_numpy(level_targets(inputs, schema)),
                   torch.from_numpy(flag_targets(inputs, schema))]
        share = noisy_gradient_share(
            module=net, state_names=list(net.state_dict()), tensors=tensors,
            loss=_loss(schema, config), max_grad_norm=config.max_grad_norm, sample_rate=q,
            expected_batch=batch,
            noise_std=share_std(noise_multiplier=noise_multiplier,
                                max_grad_norm=config.max_grad_norm, parties=parties),
            seed=seed)
        spend = PrivacySpend(mechanism=MECHANISM, accountant=state.accountant.kind,
                             noise_multiplier=noise_multiplier, sample_rate=q, steps=1,
                             epsilon_before=before, epsilon=after, delta=state.budget.delta)
    except AccountingError as exc:
        raise TrainingError(f"distributed-noise step failed: {exc!s}") from exc
    accountant = state.accountant.record(noise_multiplier=noise_multiplier, sample_rate=q,
                                         steps=1)
    new_state = replace(state, accountant=accountant, spends=(*state.spends, spend))
    return SharedStep(share=share, state=new_state, spend=spend, sample_rate=q)


def noise_only_share(
    *, schema: Schema, config: TrainConfig, noise_multiplier: float, parties: int,
    seed: int | None = None,
) -> dict[str, NDArray[np.float64]]:
    """The share of an agency that contributes no records this round (it refused on its
    budget): noise only, so the sum keeps the noise the other agencies counted on. It reads
    no record and costs no privacy."""
    std = share_std(noise_multiplier=noise_multiplier, max_grad_norm=config.max_grad_norm,
                    parties=parties)
    out: dict[str, NDArray[np.float64]] = {}
    for i, (name, value) in enumerate(_net(schema, config).state_dict().items()):
        size = math.prod(value.shape)
        out[name] = share_noise(size, std=std, seed=None if seed is None else seed + i) \
            .reshape(tuple(value.shape))
    return out
