"""DP-SGD accounting as values: spend records, a serialisable accountant, noise calibration.

The mechanism is the Poisson-subsampled Gaussian mechanism of DP-SGD. Its history is a tuple
of ``(noise_multiplier, sample_rate, steps)`` entries, exactly Opacus's accountant history, so a
node persists it between federated rounds and every call composes on top of what was already
spent (a fresh Opacus ``PrivacyEngine`` per round would restart epsilon at zero).

The sample rate is the one Opacus counts for a Poisson loader over ``n`` records with expected
batch size ``B``: ``1 / ceil(n / B)`` (``1 / len(loader)``), with ``ceil(n / B)`` steps per epoch.
:func:`opacus_sample_rate` and :func:`steps_per_epoch` give both; calibration and training use
the same pair.

Accountants: ``"prv"`` (default; numerical composition, close to Google's PLD accountant) and
``"rdp"`` (a looser upper bound). Opacus's GDP accountant is refused: it is an asymptotic
approximation that can underestimate epsilon, not a guarantee.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opacus.accountants import create_accountant
from opacus.accountants.accountant import IAccountant

from privacy.errors import AccountingError

__all__ = [
    "ACCOUNTANTS",
    "MECHANISM",
    "Accountant",
    "HistoryEntry",
    "PrivacySpend",
    "calibrate_noise_multiplier",
    "expected_batch_size",
    "opacus_sample_rate",
    "steps_per_epoch",
]

MECHANISM: Final = "poisson_subsampled_gaussian"
ACCOUNTANTS: Final = ("prv", "rdp")
_MAX_SIGMA: Final = 1e4  # beyond this the budget is too small to train anything useful

HistoryEntry = tuple[float, float, int]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Steps Opacus runs per epoch over ``n`` records at expected batch size ``batch_size``."""
    if n < 1:
        raise AccountingError(f"number of records must be >= 1. Got {n}.")
    if batch_size < 1:
        raise AccountingError(f"batch size must be >= 1. Got {batch_size}.")
    return math.ceil(n / batch_size)


def opacus_sample_rate(n: int, batch_size: int) -> float:
    """The Poisson sample rate Opacus counts: ``1 / len(loader) = 1 / ceil(n / B)``."""
    return 1.0 / steps_per_epoch(n, batch_size)


def expected_batch_size(n: int, batch_size: int) -> int:
    """Expected Poisson batch size ``n x q``, rounded (>= 1): the DP optimizer's divisor.

    (Opacus computes ``int(n * q)``, which floating point can floor to one less, even 0.)
    """
    return max(1, round(n * opacus_sample_rate(n, batch_size)))


def _check_entry(noise_multiplier: float, sample_rate: float, steps: int) -> HistoryEntry:
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise AccountingError(f"noise multiplier must be finite and > 0. Got {noise_multiplier}.")
    if not (0 < sample_rate <= 1):
        raise AccountingError(f"sample rate must be in (0, 1]. Got {sample_rate}.")
    if steps < 0 or int(steps) != steps:
        raise AccountingError(f"steps must be a non-negative integer. Got {steps}.")
    return (float(noise_multiplier), float(sample_rate), int(steps))


def _check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise AccountingError(f"delta must be in (0, 1). Got {delta}.")


def _check_kind(kind: str) -> None:
    if kind == "gdp":
        raise AccountingError(
            "accountant 'gdp' is refused: it can underestimate epsilon and is not a guarantee."
            " Use 'prv' or 'rdp'."
        )
    if kind not in ACCOUNTANTS:
        raise AccountingError(f"accountant must be one of {ACCOUNTANTS}. Got {kind!r}.")


def _merge(history: Iterable[HistoryEntry]) -> tuple[HistoryEntry, ...]:
    """Merge adjacent entries with the same (noise, rate); drop zero-step entries."""
    merged: list[HistoryEntry] = []
    for sigma, rate, steps in history:
        if steps == 0:
            continue
        if merged and merged[-1][0] == sigma and merged[-1][1] == rate:
            merged[-1] = (sigma, rate, merged[-1][2] + steps)
        else:
            merged.append((sigma, rate, steps))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class PrivacySpend:
    """What one training call spent, and the cumulative guarantee after it.

    ``steps`` are this call's DP-SGD steps at ``noise_multiplier`` and ``sample_rate``;
    ``epsilon`` is the cumulative epsilon at ``delta`` over the whole history after the call,
    computed by ``accountant``; ``epsilon_before`` the same before it.
    """

    mechanism: str
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_before: float
    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if self.mechanism != MECHANISM:
            raise AccountingError(f"mechanism must be {MECHANISM!r}. Got {self.mechanism!r}.")
        _check_kind(self.accountant)
        _check_entry(self.noise_multiplier, self.sample_rate, self.steps)
        _check_delta(self.delta)
        if not (0 <= self.epsilon_before <= self.epsilon) or not math.isfinite(self.epsilon):
            raise AccountingError(
                "epsilon must be finite with 0 <= epsilon_before <= epsilon."
                f" Got {self.epsilon_before} and {self.epsilon}."
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "mechanism": self.mechanism,
            "accountant": self.accountant,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "epsilon_before": self.epsilon_before,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacySpend:
        """Inverse of :meth:`to_dict`; raises AccountingError on a missing or bad field."""
        try:
            return cls(
                mechanism=str(data["mechanism"]),
                accountant=str(data["accountant"]),
                noise_multiplier=float(data["noise_multiplier"]),
                sample_rate=float(data["sample_rate"]),
                steps=int(data["steps"]),
                epsilon_before=float(data["epsilon_before"]),
                epsilon=float(data["epsilon"]),
                delta=float(data["delta"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AccountingError(f"privacy spend record is malformed: {exc!s}") from exc


@dataclass(frozen=True, slots=True)
class Accountant:
    """An immutable accountant: the kind (``prv``/``rdp``) and the composed history.

    ``record`` returns a new accountant; ``to_opacus`` builds an Opacus accountant with the
    history loaded (for attaching to a DP optimizer); ``to_dict``/``from_dict`` persist it.
    """

    kind: str = "prv"
    history: tuple[HistoryEntry, ...] = ()

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        checked = tuple(_check_entry(*entry) for entry in self.history)
        object.__setattr__(self, "history", _merge(checked))

    @property
    def steps(self) -> int:
        """Total DP-SGD steps composed so far."""
        return sum(steps for _, _, steps in self.history)

    def record(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> Accountant:
        """A new accountant with ``steps`` more steps at (noise_multiplier, sample_rate)."""
        entry = _check_entry(noise_multiplier, sample_rate, steps)
        return Accountant(kind=self.kind, history=(*self.history, entry))

    def epsilon(self, delta: float) -> float:
        """Cumulative epsilon at ``delta`` (0.0 for an empty history)."""
        _check_delta(delta)
        if not self.history:
            return 0.0
        opacus_accountant = self.to_opacus()
        try:
            with warnings.catch_warnings():
                # RDP (also used by PRV to size its domain) warns when the best order is at the
                # edge of the orders tried: the bound stays valid, only possibly looser.
                warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest)")
                # PRV at sample rate 1 evaluates log(1 - q) = log(0) on a masked branch.
                warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"opacus\.")
                return float(opacus_accountant.get_epsilon(delta=delta))
        except (ValueError, OverflowError, RuntimeError) as exc:
            raise AccountingError(f"{self.kind} accountant failed: {exc!s}") from exc

    def projected_epsilon(
        self, *, delta: float, noise_multiplier: float, sample_rate: float, steps: int
    ) -> float:
        """Epsilon after ``steps`` more steps, without recording them."""
        return self.record(
            noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps
        ).epsilon(delta)

    def to_opacus(self) -> IAccountant:
        """A fresh Opacus accountant of this kind with this history loaded."""
        accountant = create_accountant(mechanism=self.kind)
        accountant.load_state_dict(
            {"history": [list(entry) for entry in self.history], "mechanism": self.kind}
        )
        accountant.history = [tuple(entry) for entry in self.history]
        return accountant

    @classmethod
    def from_opacus(cls, accountant: IAccountant) -> Accountant:
        """Read an Opacus accountant's kind and history."""
        return cls(
            kind=str(accountant.mechanism()),
            history=tuple((float(s), float(q), int(k)) for s, q, k in accountant.history),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "history": [list(entry) for entry in self.history]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Accountant:
        """Inverse of :meth:`to_dict`; raises AccountingError on a malformed state."""
        try:
            raw: Sequence[Sequence[Any]] = data["history"]
            history = tuple((float(e[0]), float(e[1]), int(e[2])) for e in raw)
            return cls(kind=str(data["kind"]), history=history)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise AccountingError(f"accountant state is malformed: {exc!s}") from exc


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    tolerance: float = 0.005,
    reserved: Sequence[HistoryEntry] = (),
) -> float:
    """Smallest noise multiplier (within ``tolerance`` in epsilon) meeting the target.

    ``reserved``: other planned releases (history entries, e.g. a Gaussian count release
    ``(sigma, 1.0, 1)``) composed with the training; the target holds for the whole.

    ``steps`` is the WHOLE planned training: rounds x local epochs x steps per epoch, with
    ``sample_rate`` from :func:`opacus_sample_rate`. The returned multiplier gives
    ``epsilon <= target_epsilon`` over those steps (bisection on the accountant's epsilon).
    """
    _check_kind(accountant)
    _check_delta(delta)
    _check_entry(1.0, sample_rate, steps)
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise AccountingError(f"target epsilon must be finite and > 0. Got {target_epsilon}.")
    if steps < 1:
        raise AccountingError(f"planned steps must be >= 1. Got {steps}.")

    def eps(sigma: float) -> float:
        try:
            history = ((sigma, sample_rate, steps), *reserved)
            return Accountant(kind=accountant, history=history).epsilon(delta)
        except AccountingError:  # numerically out of range for tiny noise: treat as unbounded
            return math.inf

    low, high = 0.0, 1.0
    while eps(high) > target_epsilon:
        low, high = high, 2 * high
        if high > _MAX_SIGMA:
            raise AccountingError(
                f"target epsilon {target_epsilon} at delta {delta} needs a noise multiplier"
                f" above {_MAX_SIGMA} for {steps} steps at sample rate {sample_rate}."
            )
    eps_high = eps(high)
    while target_epsilon - eps_high > tolerance and high - low > 1e-6:
        mid = (low + high) / 2
        eps_mid = eps(mid)
        if eps_mid <= target_epsilon:
            high, eps_high = mid, eps_mid
        else:
            low = mid
    return high
