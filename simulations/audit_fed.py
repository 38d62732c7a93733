"""The audit's in-process federation: FedAvg rounds of the nodes' DP-SGD, with canaries.

No Flower here: a Flower run per canary set would take far too long. Each round every
agency trains one DP-SGD call from the global weights and the coordinator averages the
replies with :class:`server.strategy.FedAvg` (the same validation and weighting as the
ServerApp). Two kinds of run:

- :func:`federate`: the nodes' own call, :func:`fedid.model.train.train_local` (calibration
  once for the planned rounds, the budget guard, the persisted accountant), on given rows;
  the black-box attacks read the final global model.
- :func:`canary_federation`: white-box gradient canaries (Dirac canaries, as in the
  strongest published audits). The network gets one extra bias-free linear layer with one
  weight per canary slot; canary ``j`` is a row whose only gradient is a large multiple of
  the unit vector of slot ``j`` (clipping makes it exactly the clipping bound), and real rows
  never touch the slots. Each agency's canaries are extra rows of its training table, each
  present with probability 1/2, independently across canaries and agencies; slot ``j`` is
  shared by canary ``j`` of every agency. In a node's own update only its own canary moves
  its slot; in the sum (secure aggregation) the other agencies' canaries ``j`` add to it,
  unknown to the attacker, like extra noise. The DP-SGD call is :func:`privacy.dp.dp_train` with the
  node's recipe (:class:`~fedid.model.train.TrainConfig`) and the noise multiplier
  calibrated exactly as ``train_local`` does, on the agency's rows plus its present
  canaries. The coordinator's view is each node's per-round update, or with secure
  aggregation only their sum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn

from fedid.errors import ConfigError
from fedid.model.features import encode, feature_layout, flag_targets, level_targets
from fedid.model.net import HardshipNet, per_sample_loss
from fedid.model.recipe import calibrate
from fedid.model.train import LocalState, TrainConfig, new_local_state, train_local
from fedid.schema import Schema
from privacy.dp import (
    Accountant,
    PrivacyBudget,
    dp_train,
    expected_batch_size,
    opacus_sample_rate,
    planned_steps,
)
from server.strategy import FedAvg, PrivacyDeclaration, TrainReply
from simulations.audit_broken import inject

__all__ = ["CanaryRun", "canary_federation", "federate", "hardship_net"]

Weights = dict[str, npt.NDArray[np.float32]]
# A canary row's loss is this multiple of its slot's output: a raw gradient far above any
# clipping bound, so clipping (when it works) cuts it to exactly the bound.
CANARY_GRADIENT = 1e3


def hardship_net(schema: Schema, config: TrainConfig) -> HardshipNet:
    return HardshipNet(feature_layout(schema).width, len(schema.levels.names),
                       len(schema.dimension_flags), config.hidden)


class _CanaryNet(nn.Module):
    """The hardship network plus one weight per canary slot (inputs: features | slot one-hot)."""

    def __init__(self, base: HardshipNet, slots: int) -> None:
        super().__init__()
        self.base = base
        self.canary = nn.Linear(slots, 1, bias=False)
        nn.init.zeros_(self.canary.weight)
        self.width = base.trunk_inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base(x[:, : self.width]), self.canary(x[:, self.width :])], dim=1)


@dataclass(frozen=True, slots=True)
class CanaryRun:
    """One white-box federation: the coordinator's view of each agency's canary slots."""

    included: dict[str, npt.NDArray[np.bool_]]      # agency -> [m] canary present
    node_updates: dict[str, npt.NDArray[np.float64]]  # agency -> [rounds, m] own slots' update
    sum_updates: dict[str, npt.NDArray[np.float64]]   # agency -> [rounds, m] sum over nodes
    epsilon: dict[str, float]                          # agency -> accountant's epsilon
    noise_multiplier: dict[str, float]
    num_examples: dict[str, int]
    known_noise: dict[str, npt.NDArray[np.float64]]    # known_seed: replayed noise trajectory


def _reply(agency: str, arrays: list[npt.NDArray[np.float32]], n: int, eps: float,
           budget: PrivacyBudget) -> TrainReply:
    return TrainReply(
        agency_id=agency, arrays=arrays, weight=1.0,  # the nodes' public constant; n stays home
        privacy=PrivacyDeclaration(epsilon_spent=eps, delta=budget.delta,
                                   epsilon_budget=budget.epsilon, delta_budget=budget.delta))


def federate(
    *,
    frames: Mapping[str, pd.DataFrame],
    schema: Schema,
    config: TrainConfig,
    epsilon: float,
    delta: float,
    seed: int,
    broken: Sequence[str] = (),
    private: bool = True,
) -> Weights:
    """FedAvg of ``train_local`` over ``config.rounds`` rounds; the final global weights.

    ``private=False``: the non-private reference instead, each node running the project's
    non-private recipe (``config.plain_*``: Adam on shuffled minibatches) from the global
    weights every round, FedAvg as before.
    """
    torch.manual_seed(seed)
    net = hardship_net(schema, config)
    names = list(net.state_dict())
    arrays = [v.detach().numpy().astype(np.float32) for v in net.state_dict().values()]
    states = {a: new_local_state(epsilon=epsilon, delta=delta) for a in frames}
    strategy = FedAvg(weighting="released")
    for r in range(config.rounds):
        replies = []
        for i, (agency, frame) in enumerate(sorted(frames.items())):
            start: LocalState = replace(states[agency], weights=dict(zip(names, arrays,
                                                                          strict=True)))
            if not private:
                w = _plain_round(start.weights or {}, frame, schema, config,
                                 seed=seed * 1000 + r * 50 + i)
                replies.append(_reply(agency, [w[n] for n in names], len(frame), 0.0,
                                      start.budget))
                continue
            with _broken(broken, seed=None):
                shaped = replace(config, public_rows=len(frame))  # declared public, as a node may
                result = train_local(inputs=frame, schema=schema, state=start, config=shaped,
                                     seed=seed * 1000 + r * 50 + i)
            states[agency] = result.state
            w = result.state.weights or {}
            replies.append(_reply(agency, [w[n] for n in names], result.n_records,
                                  result.state.epsilon_spent, start.budget))
        arrays = strategy.aggregate(replies, arrays).arrays
    return dict(zip(names, arrays, strict=True))


def _plain_round(weights: Weights, frame: pd.DataFrame, schema: Schema, config: TrainConfig,
                 *, seed: int) -> Weights:
    """One node's non-private round: ``config.plain_epochs`` of Adam from ``weights``."""
    gen = torch.Generator().manual_seed(seed)
    net = hardship_net(schema, config)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    x = torch.from_numpy(encode(frame, schema))
    y = torch.from_numpy(level_targets(frame, schema))
    f = torch.from_numpy(flag_targets(frame, schema))
    opt = torch.optim.Adam(net.parameters(), lr=config.plain_learning_rate)
    n_levels = len(schema.levels.names)
    for _ in range(config.plain_epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), config.plain_batch_size):
            idx = perm[start : start + config.plain_batch_size]
            opt.zero_grad()
            loss = per_sample_loss(net(x[idx]), y[idx], f[idx], n_levels=n_levels,
                                   flag_weight=config.flag_weight,
                                   level_weights=config.level_weights)
            loss.mean().backward()  # type: ignore[no-untyped-call]
            opt.step()
    return {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}


@contextlib.contextmanager
def _broken(modes: Sequence[str], *, seed: int | None) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for mode in modes:
            record = stack.enter_context(inject(mode, seed=seed))
            stack.callback(_check_injected, record.mode, record)
        yield


def _check_injected(mode: str, record: object) -> None:
    if getattr(record, "optimizers_built", 0) < 1:
        from fedid.errors import FederationError

        raise FederationError(
            f"broken mode {mode} was not injected: the trainer built no optimizer through"
            " privacy.dp.trainer.get_optimizer_class (0 built)."
        )


def _canary_tensors(frame: pd.DataFrame, schema: Schema, *, slots: int, first: int,
                    present: npt.NDArray[np.bool_]) -> list[torch.Tensor]:
    x = encode(frame, schema)
    y = level_targets(frame, schema)
    f = flag_targets(frame, schema)
    n, k = x.shape[0], int(present.sum())
    slot_x = np.zeros((n + k, slots), dtype=np.float32)
    slot_x[np.arange(n, n + k), first + np.flatnonzero(present)] = 1.0
    feats = np.vstack([x, np.zeros((k, x.shape[1]), dtype=np.float32)])
    return [
        torch.from_numpy(np.hstack([feats, slot_x])),
        torch.from_numpy(np.concatenate([y, np.zeros(k, dtype=y.dtype)])),
        torch.from_numpy(np.vstack([f, np.zeros((k, f.shape[1]), dtype=f.dtype)])),
        torch.from_numpy(np.r_[np.zeros(n, dtype=bool), np.ones(k, dtype=bool)]),
    ]


def _loss(n_levels: int, config: TrainConfig) -> Callable[[nn.Module, Sequence[torch.Tensor]],
                                                           torch.Tensor]:
    def loss(module: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        x, y, f, is_canary = batch
        out = module(x)
        real = per_sample_loss(out[:, :-1], y, f, n_levels=n_levels,
                               flag_weight=config.flag_weight, level_weights=config.level_weights)
        return torch.where(is_canary, CANARY_GRADIENT * out[:, -1], real)

    return loss


def canary_federation(
    *,
    frames: Mapping[str, pd.DataFrame],
    schema: Schema,
    config: TrainConfig,
    epsilon: float,
    delta: float,
    canaries: int,
    seed: int,
    rng: np.random.Generator,
    broken: Sequence[str] = (),
) -> CanaryRun:
    """White-box run: ``canaries`` Dirac canaries per agency, each present w.p. 1/2."""
    agencies = sorted(frames)
    slots = canaries  # slot j holds canary j of every agency (independent inclusions)
    torch.manual_seed(seed)
    net = _CanaryNet(hardship_net(schema, config), slots)
    names = list(net.state_dict())
    shapes = [tuple(p.shape) for p in net.parameters()]
    canary_index = names.index("canary.weight")
    arrays = [v.detach().numpy().astype(np.float32) for v in net.state_dict().values()]
    present = {a: rng.random(canaries) < 0.5 for a in agencies}
    tensors = {a: _canary_tensors(frames[a], schema, slots=slots, first=0,
                                  present=present[a]) for a in agencies}
    budget = PrivacyBudget(epsilon=epsilon, delta=delta)
    accountants = {a: Accountant(kind=config.accountant) for a in agencies}
    sigma: dict[str, float] = {}
    for a in agencies:
        n = int(tensors[a][0].shape[0])  # the harness declares each size public (public-size)
        sigma[a] = calibrate(  # the nodes' own calibration (fedid.model.recipe)
            target_epsilon=epsilon, delta=delta,
            sample_rate=opacus_sample_rate(n, config.batch_size),
            steps=config.rounds * planned_steps(n, config.dp(1.0)), accountant=config.accountant)
    node = {a: np.zeros((config.rounds, slots)) for a in agencies}
    known = {a: np.zeros((config.rounds, canaries)) for a in agencies}
    strategy = FedAvg(weighting="released")
    loss = _loss(len(schema.levels.names), config)
    for r in range(config.rounds):
        replies = []
        for i, a in enumerate(agencies):
            n = int(tensors[a][0].shape[0])
            coordinator_seed = seed * 1000 + r * 50 + i  # what a round message would carry
            with _broken(broken, seed=coordinator_seed if "known_seed" in broken else None):
                result = dp_train(
                    build_module=lambda: _CanaryNet(hardship_net(schema, config), slots),
                    state_dict={k: torch.from_numpy(v) for k, v in zip(names, arrays,
                                                                        strict=True)},
                    tensors=tensors[a], per_sample_loss=loss, config=config.dp(sigma[a]),
                    budget=budget, accountant=accountants[a], public_n=n,
                    seed=coordinator_seed + 7)
            accountants[a] = result.accountant
            new = [result.state_dict[k].numpy().astype(np.float32) for k in names]
            node[a][r] = (new[canary_index] - arrays[canary_index]).reshape(-1)
            if "known_seed" in broken:
                known[a][r] = _noise_trajectory(
                    seed=coordinator_seed, config=config, sigma=sigma[a], n=n, shapes=shapes,
                    index=canary_index)
            replies.append(_reply(a, new, n, result.spend.epsilon, budget))
        arrays = strategy.aggregate(replies, arrays).arrays
    total = np.asarray(sum(node.values()))
    return CanaryRun(
        included=present,
        node_updates=node,
        sum_updates={a: total for a in agencies},
        epsilon={a: float(accountants[a].epsilon(delta)) for a in agencies},
        noise_multiplier=sigma,
        num_examples={a: int(tensors[a][0].shape[0]) for a in agencies},
        known_noise=known,
    )


def _noise_trajectory(*, seed: int, config: TrainConfig, sigma: float, n: int,
                      shapes: Sequence[tuple[int, ...]], index: int) -> npt.NDArray[np.float64]:
    """The update a known-seed node's noise alone makes on parameter ``index`` in one call.

    The coordinator replays the noise and runs it through the node's public optimizer
    recipe (SGD with momentum; gradient = noise / expected batch size).
    """
    from simulations.audit_broken import replay_noise

    if config.optimizer != "sgd":
        raise ConfigError(
            f"the known-seed replay models SGD with momentum only. Got {config.optimizer!r}.")
    steps = planned_steps(n, config.dp(1.0))
    z = replay_noise(seed=seed, std=sigma * config.max_grad_norm, shapes=shapes, steps=steps,
                     index=index).double().reshape(steps, -1)
    b = expected_batch_size(n, config.batch_size)
    v = torch.zeros(z.shape[1], dtype=torch.float64)
    w = torch.zeros_like(v)
    for t in range(steps):
        v = config.momentum * v + z[t] / b if t else z[t] / b
        w = w - config.learning_rate * v
    return w.numpy()
