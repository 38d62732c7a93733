"""The coordinator's side of distributed noise: agree on the noise, then DP-FedSGD rounds.

On with ``distributed-noise = true`` in the run config, which needs
``secure-aggregation = true`` (``fedid simulate --secure-aggregation --distributed-noise``).
The node's side is :mod:`clients.noise_share`; the mechanism and its accounting are in
:mod:`privacy.dp.distributed_noise`.

1. agree  once per session, ``query.noise`` to every trainer (config: ``session``,
          ``rounds`` and the run's ``train-*`` proposals); each replies the standard
          deviation of the sum's noise its own budget requires (``noise_std``,
          ``tau_i = sigma_i C``). The coordinator announces the largest, ``tau``, in every
          train message (``distributed-noise-std``): every agency's share is then a share of
          one noise that meets every agency's budget (one that needs less spends less than
          its budget). A trainer that fails to answer is left out of training.
2. round  each round is a secure round (:func:`server.secure_round.secure_round`) whose
          train messages ask for distributed noise; each node replies its masked
          ``[noisy sum of clipped gradients ..., expected batch]``. The coordinator unmasks
          the sum only and divides by the total expected batch: the mean clipped gradient
          over the union of the agencies' Poisson samples, with noise of standard deviation
          ``tau sqrt(n / K) / sum(B)`` per coordinate for ``n`` participants.
3. step   server-side SGD with momentum (:class:`ServerMomentum`): ``v = mu v + g``,
          ``w = w - lr v``: post-processing of the released sums, so the learning rate and
          momentum are the coordinator's choice and cost no privacy (default: the rule
          :func:`rule_learning_rate`, momentum 0.9). The momentum restarts
          at zero if the coordinator restarts mid-year (the checkpoint holds the weights).

What the coordinator learns beyond the secure round's: each trainer's required noise (a
function of its budget, its spend and its public size, like its declared spend) and the sum
of the trainers' expected batches (from their public sizes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedid.errors import ConfigError, FederationError
from fedid.records import ConfigValue, content, metrics_of
from server.secure_round import add_flat
from server.transport import Messenger

__all__ = ["LR_TIMES_ROUNDS", "NoiseAgreement", "ServerMomentum", "agree_noise",
           "rule_learning_rate"]

_log = logging.getLogger(__name__)

#: the server step's rule: learning rate x rounds constant (with momentum 0.9), so the
#: planned steps move the model about as far whatever the rounds. 16 was chosen on province
#: seed 101 (never reported): at 40 rounds learning rates 0.2-0.8 gave macro-F1 0.63-0.66,
#: 0.1 gave 0.62 and 1.6 gave 0.60 (BENCHMARKS.md, "distributed noise")
LR_TIMES_ROUNDS = 16.0


def rule_learning_rate(rounds: int) -> float:
    """The server step's learning rate for ``rounds`` shared rounds: ``16 / rounds``."""
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1. Got {rounds}.")
    return LR_TIMES_ROUNDS / rounds


@dataclass(frozen=True, slots=True)
class NoiseAgreement:
    """The session's agreed noise: ``noise_std`` (tau, the largest requirement), each
    trainer's requirement, and the trainers left out (no usable answer) with the reason."""

    noise_std: float
    required: dict[str, float]
    left_out: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, ConfigValue]:
        """What every train message of the session carries."""
        return {"distributed-noise": True, "distributed-noise-std": self.noise_std}

    def to_json(self) -> dict[str, Any]:
        return {"noise_std": self.noise_std, "required": dict(self.required),
                "left_out": dict(self.left_out)}


def agree_noise(
    messenger: Messenger, *, trainers: Sequence[str], conf: dict[str, ConfigValue],
) -> NoiseAgreement:
    """Step 1 (module docstring): ask every trainer, announce the largest requirement."""
    replies = messenger.exchange("query.noise", {a: content(config=conf) for a in trainers})
    required: dict[str, float] = {}
    left_out: dict[str, str] = {}
    for agency in trainers:
        msg = replies.get(agency)
        if msg is None or msg.has_error():
            left_out[agency] = "no reply" if msg is None else \
                f"node error: {msg.error.reason or 'unspecified error'}"
            continue
        std = metrics_of(msg).get("noise_std", math.nan)
        if not (math.isfinite(std) and std > 0):
            left_out[agency] = f"bad noise requirement {std}"
            continue
        required[agency] = float(std)
    for agency, why in left_out.items():
        _log.warning("distributed noise: %s left out of training: %s", agency, why)
    if not required:
        raise FederationError(f"no trainer answered the distributed-noise query: {left_out}.")
    return NoiseAgreement(noise_std=max(required.values()), required=required,
                          left_out=left_out)


@dataclass(slots=True)
class ServerMomentum:
    """Step 3: SGD with heavy-ball momentum on the decoded mean gradient."""

    learning_rate: float
    momentum: float = 0.0
    _velocity: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning rate must be finite and > 0. Got {self.learning_rate}.")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1). Got {self.momentum}.")

    def apply(self, arrays: Sequence[NDArray[np.floating]],
              gradient: NDArray[np.float64]) -> list[NDArray[np.float32]]:
        """New global arrays from the old ones and the flat mean gradient."""
        sizes = [int(np.asarray(a).size) for a in arrays]
        if gradient.size != sum(sizes):
            raise FederationError(f"the mean gradient has {gradient.size} values; the model "
                                  f"has {sum(sizes)}.")
        velocity = gradient if self._velocity is None else \
            self.momentum * self._velocity + gradient
        self._velocity = velocity
        return add_flat(arrays, -self.learning_rate * velocity)
