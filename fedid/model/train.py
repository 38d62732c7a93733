"""The federated step: one agency's DP-SGD round (``train_local``).

Configuration lives in :mod:`fedid.model.train_config`, the persisted node state in
:mod:`fedid.model.train_state`, centralized and non-private baselines in
:mod:`fedid.model.baselines`; the names are re-exported here.

``train_local`` is called once per federated round with the node's persisted
:class:`LocalState` (global weights in, accountant history and spend records carried over)::

    state = new_local_state(epsilon=1.0, delta=1e-5)
    for each round:
        state = dataclasses.replace(state, weights=global_weights)
        result = train_local(inputs=frame, schema=schema, state=state, config=config)
        state = result.state            # persist; send result.state.weights to the coordinator

With ``config.recipe == "rule"`` the batch size, local epochs and learning rate come from
:func:`fedid.model.recipe.by_rule` (public quantities only). The noise multiplier is
calibrated once, on the first call, for the whole planned training (``config.rounds x
config.local_epochs x ceil(n / batch_size)`` steps at Opacus's sample rate
``1 / ceil(n / batch_size)``) by :func:`fedid.model.recipe.calibrate`, so the planned training
ends at (or, above the noise floor, below) the budget's epsilon. The guard in
:func:`privacy.dp.dp_train` refuses any call that would exceed the budget before a step runs.
Privacy errors from :mod:`privacy` are re-raised as :mod:`fedid.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from fedid.errors import AccountingError, CryptoError, TrainingError
from fedid.model.features import encode, feature_layout, flag_targets, level_targets
from fedid.model.net import HardshipNet, check_weights, per_sample_loss
from fedid.model.recipe import calibrate_remaining
from fedid.model.train_config import TrainConfig, default_delta
from fedid.model.train_state import LocalState, Weights, new_local_state
from fedid.schema import Schema
from privacy.dp import HistoryEntry, PrivacySpend, dp_train, opacus_sample_rate, planned_steps

__all__ = [
    "LocalResult",
    "LocalState",
    "TrainConfig",
    "default_delta",
    "new_local_state",
    "train_local",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalResult:
    """One local call: the new state, this call's spend, records used, mean training loss."""

    state: LocalState
    spend: PrivacySpend
    n_records: int
    mean_loss: float
    empty_batches: int = 0


def _tensors(inputs: pd.DataFrame, schema: Schema) -> list[torch.Tensor]:
    x = torch.from_numpy(encode(inputs, schema))
    y = torch.from_numpy(level_targets(inputs, schema))
    f = torch.from_numpy(flag_targets(inputs, schema))
    return [x, y, f]


def _builder(schema: Schema, hidden: Sequence[int]) -> HardshipNet:
    return HardshipNet(
        feature_layout(schema).width, len(schema.levels.names), len(schema.dimension_flags), hidden
    )


def _to_numpy(state: Mapping[str, torch.Tensor]) -> Weights:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}


def train_local(
    *,
    inputs: pd.DataFrame,
    schema: Schema,
    state: LocalState,
    config: TrainConfig,
    seed: int | None = None,
    reserved: Sequence[HistoryEntry] = (),
) -> LocalResult:
    """One agency's DP-SGD training call (one federated round) on ``inputs``.

    ``inputs`` comes from :func:`fedid.model.features.build_inputs` and carries the labels
    (``label_level``, ``label_<flag>``). Starts from ``state.weights`` (None: a fresh
    initialisation), composes onto ``state.accountant``, and returns the new state.
    Without ``state.noise_multiplier`` the noise is calibrated for the whole planned
    training composed with what the agency already spent and ``reserved`` (other planned
    releases, e.g. a node's identification counts), so all of it fits the budget.

    Raises:
        BudgetExceededError: the call would exceed ``state.budget``; nothing ran or was spent.
        TrainingError: bad inputs, or accounting parameters that cannot be met.
    """
    tensors = _tensors(inputs, schema)
    n = int(tensors[0].shape[0])
    if n < 1:
        raise TrainingError("training needs at least one student. Got 0.")
    n_levels = len(schema.levels.names)
    config = config.for_agency(n)
    shape_n = config.shape_rows(n)
    try:
        sigma = state.noise_multiplier
        if sigma is None:
            q = opacus_sample_rate(shape_n, config.batch_size)
            total = config.rounds * planned_steps(shape_n, config.dp(1.0))
            sigma = calibrate_remaining(state=state, sample_rate=q, steps=total,
                                        accountant=config.accountant, reserved=reserved,
                                        what="training")
            _log.info("calibrated noise multiplier %.4f for %d planned steps", sigma, total)

        def loss(module: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
            x, y, f = batch
            return per_sample_loss(
                module(x),
                y,
                f,
                n_levels=n_levels,
                flag_weight=config.flag_weight,
                level_weights=config.level_weights,
            )

        if state.weights is not None:
            check_weights(_builder(schema, config.hidden), state.weights)
        weights = (
            {k: torch.from_numpy(np.array(v)) for k, v in state.weights.items()}
            if state.weights is not None
            else None
        )
        result = dp_train(
            build_module=lambda: _builder(schema, config.hidden),
            state_dict=weights,
            tensors=tensors,
            per_sample_loss=loss,
            config=config.dp(sigma),
            budget=state.budget,
            accountant=state.accountant,
            public_n=config.public_rows,
            seed=seed,
        )
    except (AccountingError, CryptoError) as exc:
        raise TrainingError(f"DP training failed: {exc!s}") from exc
    new_state = replace(
        state,
        accountant=result.accountant,
        spends=(*state.spends, result.spend),
        weights=_to_numpy(result.state_dict),
        noise_multiplier=sigma,
    )
    return LocalResult(
        state=new_state,
        spend=result.spend,
        n_records=n,
        mean_loss=result.mean_loss,
        empty_batches=result.empty_batches,
    )
