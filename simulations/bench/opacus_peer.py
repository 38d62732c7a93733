"""The peer of the real-data benchmark: a plain Opacus + FedAvg loop, written from scratch.

Nothing from :mod:`fedid.model` or :mod:`privacy` is used: the peer is what a practitioner
would write from the Opacus tutorial. Each agency holds a feature matrix and integer labels;
the model is an MLP with a softmax over the levels (cross-entropy); each agency wraps its own
model, optimiser and Poisson loader once with ``PrivacyEngine.make_private_with_epsilon``
(PRV accountant, or RDP when fedid uses RDP) for the whole planned training
(``rounds x local_epochs`` epochs) at the agency's own epsilon, then, every round, loads the
global weights, trains ``local_epochs`` epochs and returns its weights; the server averages
them weighted by row counts (FedAvg; ``weighting="equal"``: every agency alike, the control
for fedid's constant weights). ``epsilon=None`` runs the same loop without DP.

Peer settings (SGD, momentum 0.9, learning rate 0.5, clipping 1.0, expected batch
``min(n, 128)``, 1 local epoch, 5 rounds; non-private: the same with lr 0.1) are the
Opacus tutorial's defaults adjusted on the development dataset only (``fair``, seeds 0-1).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

__all__ = ["PeerConfig", "peer_fedavg"]


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """The peer's hyperparameters (see the module docstring)."""

    rounds: int = 5
    local_epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 0.5
    plain_learning_rate: float = 0.1
    momentum: float = 0.9
    max_grad_norm: float = 1.0
    hidden: tuple[int, ...] = (32,)
    accountant: str = "prv"
    weighting: str = "size"  # FedAvg weights: "size" (row counts) or "equal"


def _mlp(n_in: int, n_out: int, hidden: Sequence[int]) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def peer_fedavg(
    agencies: Sequence[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]],
    *,
    n_levels: int,
    epsilon: float | None,
    delta: float,
    config: PeerConfig,
    seed: int,
) -> tuple[nn.Module, list[float]]:
    """Train; return the global model (logits over levels) and each agency's epsilon spent."""
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    n_in = agencies[0][0].shape[1]
    global_model = _mlp(n_in, n_levels, config.hidden)
    workers = []
    for x, y in agencies:
        model = _mlp(n_in, n_levels, config.hidden)
        lr = config.plain_learning_rate if epsilon is None else config.learning_rate
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum)
        data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        loader = torch.utils.data.DataLoader(
            data, batch_size=min(len(x), config.batch_size), shuffle=True
        )
        engine = None
        if epsilon is not None:
            engine = PrivacyEngine(accountant=config.accountant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, opt, loader = engine.make_private_with_epsilon(
                    module=model, optimizer=opt, data_loader=loader,
                    target_epsilon=epsilon, target_delta=delta,
                    epochs=config.rounds * config.local_epochs,
                    max_grad_norm=config.max_grad_norm,
                )
        workers.append((model, opt, loader, engine, len(x)))
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(config.rounds):
        states, sizes = [], []
        for model, opt, loader, _engine, n in workers:
            inner = getattr(model, "_module", model)
            inner.load_state_dict(global_model.state_dict())
            model.train()
            for _ in range(config.local_epochs):
                for xb, yb in loader:
                    if len(xb) == 0:
                        continue
                    opt.zero_grad()
                    loss_fn(model(xb), yb).backward()
                    opt.step()
            states.append({k: v.detach().clone() for k, v in inner.state_dict().items()})
            sizes.append(n)
        if config.weighting == "equal":
            sizes = [1] * len(sizes)
        w = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
        global_model.load_state_dict({
            k: sum(wi * s[k].double() for wi, s in zip(w, states, strict=True)).float()
            for k in states[0]
        })
    spent = [
        float(engine.get_epsilon(delta)) if engine is not None else float("inf")
        for _m, _o, _l, engine, _n in workers
    ]
    return global_model.eval(), spent
