"""Baselines outside the federation: centralized training on pooled rows (DP or plain) and
a non-private federated round with the DP recipe's settings (benchmarks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from fedid.errors import TrainingError
from fedid.model.model import HardshipModel
from fedid.model.net import check_weights, per_sample_loss
from fedid.model.train import _builder, _tensors, _to_numpy, train_local
from fedid.model.train_config import TrainConfig
from fedid.model.train_state import LocalState, Weights, new_local_state
from fedid.schema import Schema
from privacy.dp import PrivacyBudget

__all__ = ["train_centralized", "train_local_plain"]


def train_local_plain(
    *, inputs: pd.DataFrame, schema: Schema, weights: Weights | None, config: TrainConfig,
    seed: int | None = None,
) -> Weights:
    """One non-private round with the DP recipe's optimiser, batch and epochs, no clipping
    or noise (the non-private federated baseline of the benchmarks)."""
    x, y, f = _tensors(inputs, schema)
    n, n_levels = int(x.shape[0]), len(schema.levels.names)
    config = config.for_agency(n)
    gen = torch.Generator().manual_seed(seed if seed is not None else 0)
    net = _builder(schema, config.hidden)
    if weights is not None:
        check_weights(net, weights)
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    opt = torch.optim.SGD(net.parameters(), lr=config.learning_rate, momentum=config.momentum)
    for _ in range(config.local_epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            opt.zero_grad()
            per_sample_loss(net(x[idx]), y[idx], f[idx], n_levels=n_levels,
                            flag_weight=config.flag_weight,
                            level_weights=config.level_weights).mean().backward()  # type: ignore[no-untyped-call]
            opt.step()
    return _to_numpy(net.state_dict())


def _train_plain(
    inputs: pd.DataFrame, schema: Schema, config: TrainConfig, seed: int | None
) -> Weights:
    """Non-private baseline: the same network and loss; Adam on shuffled minibatches."""
    x, y, f = _tensors(inputs, schema)
    gen = torch.Generator().manual_seed(seed if seed is not None else 0)
    torch.manual_seed(seed if seed is not None else 0)
    net = _builder(schema, config.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=config.plain_learning_rate)
    n = int(x.shape[0])
    n_levels = len(schema.levels.names)
    for _ in range(config.plain_epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, config.plain_batch_size):
            idx = perm[start : start + config.plain_batch_size]
            opt.zero_grad()
            out = net(x[idx])
            per_sample_loss(
                out,
                y[idx],
                f[idx],
                n_levels=n_levels,
                flag_weight=config.flag_weight,
                level_weights=config.level_weights,
            ).mean().backward()  # type: ignore[no-untyped-call]
            opt.step()
    return _to_numpy(net.state_dict())


def train_centralized(
    *,
    inputs: pd.DataFrame,
    schema: Schema,
    config: TrainConfig,
    budget: PrivacyBudget | None,
    seed: int | None = None,
) -> tuple[HardshipModel, LocalState | None]:
    """Centralized training on pooled ``inputs``: DP-SGD under ``budget``, or plain if None.

    The DP variant runs ``config.rounds`` calls of :func:`train_local` (same accounting as an
    agency); the non-private one trains ``config.plain_epochs`` epochs.
    """
    if budget is None:
        weights = _train_plain(inputs, schema, config, seed)
        model = HardshipModel(
            schema=schema,
            hidden=config.hidden,
            weights=weights,
        )
        return model, None
    state = new_local_state(
        epsilon=budget.epsilon, delta=budget.delta, accountant=config.accountant
    )
    for r in range(config.rounds):
        state = train_local(
            inputs=inputs,
            schema=schema,
            state=state,
            config=config,
            seed=None if seed is None else seed + r,
        ).state
    if state.weights is None:
        raise TrainingError("DP training produced no weights.")
    model = HardshipModel(
        schema=schema,
        hidden=config.hidden,
        weights=state.weights,
    )
    return model, state
