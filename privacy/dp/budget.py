"""An agency's own privacy budget and the guard that enforces it before any step runs.

The guard composes the planned steps onto the accountant's persisted history and refuses the
request (``BudgetExceededError``) if the projected epsilon would exceed the budget. It is the
node's decision: whatever a coordinator asks, a refused request trains nothing and records
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from privacy.dp.accounting import Accountant
from privacy.errors import AccountingError, BudgetExceededError

__all__ = ["PrivacyBudget", "check_budget"]


@dataclass(frozen=True, slots=True)
class PrivacyBudget:
    """Total (epsilon, delta) an agency allows over all training it ever runs on one table."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise AccountingError(f"budget epsilon must be finite and > 0. Got {self.epsilon}.")
        if not (0 < self.delta < 1):
            raise AccountingError(f"budget delta must be in (0, 1). Got {self.delta}.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"epsilon": self.epsilon, "delta": self.delta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyBudget:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(epsilon=float(data["epsilon"]), delta=float(data["delta"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise AccountingError(f"privacy budget is malformed: {exc!s}") from exc


def check_budget(
    budget: PrivacyBudget,
    accountant: Accountant,
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
) -> float:
    """Projected cumulative epsilon of the planned steps; raises if it exceeds the budget.

    Raises:
        BudgetExceededError: the history plus the planned steps would exceed ``budget.epsilon``
            at ``budget.delta``. Nothing has been spent when this is raised.
    """
    projected = accountant.projected_epsilon(
        delta=budget.delta,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
    )
    if projected > budget.epsilon:
        spent = accountant.epsilon(budget.delta)
        raise BudgetExceededError(
            f"training refused: epsilon must stay <= the budget {budget.epsilon:.4g}"
            f" at delta {budget.delta:.3g}; already spent {spent:.4g}, {steps} more steps"
            f" would bring it to {projected:.4g} ({accountant.kind} accountant)."
        )
    return projected
