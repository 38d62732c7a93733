"""Weighted FedAvg over validated replies.

Pure numpy, no Flower: the ServerApp turns Flower replies into :class:`TrainReply`
values and hands them here. Every reply is checked before it can touch the global
model; a bad one is excluded and the reason logged and returned:

- the node answered with an error or refused the round (its budget guard);
- the arrays do not match the global model (count, shapes) or hold NaN/inf;
- the released FedAvg weight is not a positive finite number;
- the declared privacy spend is missing, not finite, above the node's declared
  budget, or lower than what the same node declared before (spend never shrinks).

Weights: ``released`` (default), the weight each node's release policy lets leave (a
public constant 1.0 for fedid nodes: an agency's size never leaves it, see
THREAT_MODEL.md), or ``equal`` (1 whatever a node sent). Nodes do not send their example
counts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fedid.errors import ConfigError, FederationError

__all__ = ["AggregationResult", "FedAvg", "PrivacyDeclaration", "TrainReply"]

_log = logging.getLogger(__name__)
_EPS_SLACK = 1e-9
_WEIGHTINGS = ("released", "equal")


@dataclass(frozen=True, slots=True)
class PrivacyDeclaration:
    """What a node says it has spent in total and what its own budget is."""

    epsilon_spent: float
    delta: float
    epsilon_budget: float
    delta_budget: float


@dataclass(frozen=True, slots=True)
class TrainReply:
    """One node's answer to a training round, transport-free."""

    agency_id: str
    arrays: Sequence[NDArray[np.floating]] | None
    weight: float
    privacy: PrivacyDeclaration | None
    refused: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class AggregationResult:
    """The new global arrays plus which agencies were used or excluded and why."""

    arrays: list[NDArray[np.float32]]
    used: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FedAvg:
    """Weighted federated averaging with per-reply validation."""

    weighting: str = "released"
    min_replies: int = 1
    _last_spend: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weighting not in _WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {_WEIGHTINGS}. Got {self.weighting!r}.")
        if self.min_replies < 1:
            raise ConfigError(f"min_replies must be >= 1. Got {self.min_replies}.")

    def restore_spend(self, spend: Mapping[str, float]) -> None:
        """Reload the last declared spend per agency (from the ledger, on resume)."""
        self._last_spend.update(spend)

    @property
    def last_spend(self) -> dict[str, float]:
        return dict(self._last_spend)

    def check(self, reply: TrainReply, global_arrays: Sequence[NDArray[np.floating]]) -> str:
        """Return why ``reply`` must be excluded, or "" when it is usable."""
        if reply.error:
            return f"node error: {reply.error}"
        if reply.refused:
            return f"node refused the round: {reply.refused}"
        if reply.arrays is None:
            return "no arrays in reply"
        if len(reply.arrays) != len(global_arrays):
            return f"expected {len(global_arrays)} arrays, got {len(reply.arrays)}"
        for i, (got, want) in enumerate(zip(reply.arrays, global_arrays, strict=True)):
            if got.shape != want.shape:
                return f"array {i} has shape {got.shape}, expected {want.shape}"
            if not np.all(np.isfinite(got)):
                return f"array {i} holds non-finite values"
        if not (math.isfinite(reply.weight) and reply.weight > 0):
            return f"the FedAvg weight must be finite and > 0, got {reply.weight}"
        return self._check_privacy(reply)

    def check_privacy(self, reply: TrainReply) -> str:
        """The privacy-declaration part of :meth:`check` (used by server.secure_round)."""
        return self._check_privacy(reply)

    def note_spend(self, spend: Mapping[str, float]) -> None:
        """Record the spend of replies used outside :meth:`aggregate` (secure rounds)."""
        self._last_spend.update(spend)

    def _check_privacy(self, reply: TrainReply) -> str:
        p = reply.privacy
        if p is None:
            return "no privacy spend declared"
        values = (p.epsilon_spent, p.delta, p.epsilon_budget, p.delta_budget)
        if not all(math.isfinite(v) for v in values):
            return "declared privacy spend is not finite"
        if p.epsilon_spent < 0 or p.delta < 0:
            return f"declared spend must be >= 0, got epsilon={p.epsilon_spent}"
        if p.epsilon_spent > p.epsilon_budget + _EPS_SLACK:
            return (
                f"declared epsilon {p.epsilon_spent:.4f} exceeds the node's budget "
                f"{p.epsilon_budget:.4f}"
            )
        if p.delta > p.delta_budget + _EPS_SLACK:
            return f"declared delta {p.delta:.3g} exceeds the node's budget {p.delta_budget:.3g}"
        before = self._last_spend.get(reply.agency_id, 0.0)
        if p.epsilon_spent + _EPS_SLACK < before:
            return f"declared epsilon {p.epsilon_spent:.4f} is below the earlier {before:.4f}"
        return ""

    def aggregate(
        self,
        replies: Sequence[TrainReply],
        global_arrays: Sequence[NDArray[np.floating]],
    ) -> AggregationResult:
        """Average the valid replies; raise FederationError below ``min_replies``."""
        excluded: dict[str, str] = {}
        good: list[TrainReply] = []
        for reply in replies:
            reason = self.check(reply, global_arrays)
            if reason:
                excluded[reply.agency_id] = reason
                _log.warning("excluded reply from %s: %s", reply.agency_id, reason)
            else:
                good.append(reply)
        if len(good) < self.min_replies:
            raise FederationError(
                f"a round needs at least {self.min_replies} valid replies. Got {len(good)} "
                f"(excluded: {excluded})."
            )
        if self.weighting == "released":
            raw = np.array([r.weight for r in good], dtype=np.float64)
        else:
            raw = np.ones(len(good), dtype=np.float64)
        weights = raw / raw.sum()
        out: list[NDArray[np.float32]] = []
        for i in range(len(global_arrays)):
            stacked = np.stack([np.asarray(r.arrays[i], dtype=np.float64) for r in good])  # type: ignore[index]
            out.append(np.tensordot(weights, stacked, axes=1).astype(np.float32))
        for r in good:
            if r.privacy is not None:
                self._last_spend[r.agency_id] = r.privacy.epsilon_spent
        return AggregationResult(
            arrays=out, used=tuple(r.agency_id for r in good), excluded=excluded
        )
