"""A node's persisted training state (:class:`LocalState`): budget, accountant history,
spends, weights and the calibrated noise, serialised as numpy ``.npz`` (no pickle)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fedid.errors import AccountingError, TrainingError
from privacy.dp import Accountant, PrivacyBudget, PrivacySpend

__all__ = ["LocalState", "Weights", "new_local_state"]

Weights = dict[str, npt.NDArray[np.float32]]


@dataclass(frozen=True, slots=True)
class LocalState:
    """A node's persisted training state: budget, accountant history, spends, weights, noise."""

    budget: PrivacyBudget
    accountant: Accountant
    spends: tuple[PrivacySpend, ...] = ()
    weights: Weights | None = field(default=None, compare=False)  # arrays: no == on them
    noise_multiplier: float | None = None
    #: the training size the node's update is shaped by, once drawn (clients.training
    #: ``public_rows``); None: not drawn yet, or the node declares its public size
    public_rows: int | None = None

    @property
    def epsilon_spent(self) -> float:
        """Cumulative epsilon at the budget's delta (0 before any training)."""
        return self.spends[-1].epsilon if self.spends else 0.0

    def to_bytes(self) -> bytes:
        """Serialise (numpy ``.npz``; no pickle)."""
        header = {
            "budget": self.budget.to_dict(),
            "accountant": self.accountant.to_dict(),
            "spends": [s.to_dict() for s in self.spends],
            "noise_multiplier": self.noise_multiplier,
            "public_rows": self.public_rows,
            "weight_names": list(self.weights) if self.weights is not None else None,
        }
        arrays: dict[str, npt.NDArray[Any]] = {
            f"w{i}": v for i, v in enumerate((self.weights or {}).values())
        }
        buf = io.BytesIO()
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalState:
        """Inverse of :meth:`to_bytes`; raises TrainingError on a malformed state."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(bytes(npz["header"]).decode())
                names = header["weight_names"]
                weights = (
                    None
                    if names is None
                    else {n: np.array(npz[f"w{i}"]) for i, n in enumerate(names)}
                )
            return cls(
                budget=PrivacyBudget.from_dict(header["budget"]),
                accountant=Accountant.from_dict(header["accountant"]),
                spends=tuple(PrivacySpend.from_dict(s) for s in header["spends"]),
                weights=weights,
                noise_multiplier=header["noise_multiplier"],
                public_rows=header.get("public_rows"),
            )
        except (OSError, ValueError, KeyError, TypeError, AccountingError) as exc:
            raise TrainingError(f"local training state is malformed: {exc!s}") from exc


def new_local_state(*, epsilon: float, delta: float, accountant: str = "prv") -> LocalState:
    """A fresh state with the agency's own budget and an empty accountant."""
    try:
        return LocalState(
            budget=PrivacyBudget(epsilon=epsilon, delta=delta),
            accountant=Accountant(kind=accountant),
        )
    except AccountingError as exc:
        raise TrainingError(str(exc)) from exc
