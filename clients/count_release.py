"""Count releases a node charges to its own budget (identification, matching aggregates).

:func:`noised_counts` is the one way a node lets counts computed on its records leave
(see THREAT_MODEL.md): a budget-guarded Gaussian release charged to the node's accountant
(:mod:`privacy.dp.gaussian_release`), then the min-cell rule on the noised values.
"""

from __future__ import annotations

from dataclasses import replace

from clients import training
from clients.config import NodeSettings
from clients.privacy_state import NodePrivacyLedger
from fedid.errors import BudgetExceededError
from fedid.model.train import LocalState
from privacy.dp import check_budget, count_release_entry, release_counts_gaussian, secure_rng
from privacy.errors import BudgetExceededError as RawBudgetExceededError

__all__ = ["noised_counts"]


def noised_counts(s: NodeSettings, ledger: NodePrivacyLedger,
                   exact: dict[str, float]) -> dict[str, float]:
    """Budget-guarded Gaussian release of per-student counts, then min-cell (-1 below it).

    For any reply that releases counts where one student adds at most 1 to each: charges
    ``(release-noise, 1.0, 1)`` to the node's accountant (BudgetExceededError if that would
    pass the budget) and returns the noised counts; :data:`clients.training.PUBLIC_COUNTS`
    pass unchanged. The caller saves ``ledger``.
    """
    state = (LocalState.from_bytes(ledger.state) if ledger.state is not None
             else training.new_state(s))
    private = {k: v for k, v in exact.items() if k not in training.PUBLIC_COUNTS}
    entry = count_release_entry(s.release_noise)
    try:
        after = check_budget(state.budget, state.accountant, noise_multiplier=entry[0],
                             sample_rate=entry[1], steps=entry[2])
    except RawBudgetExceededError as exc:
        raise BudgetExceededError(str(exc)) from exc
    rng = None if s.test_seed is None else secure_rng(s.test_seed)
    noised = release_counts_gaussian(private, noise_multiplier=s.release_noise,
                                     max_counts_per_record=max(1, len(private)), rng=rng)
    charged = replace(state, accountant=state.accountant.record(
        noise_multiplier=entry[0], sample_rate=entry[1], steps=entry[2]))
    ledger.charge(state=charged.to_bytes(), epsilon_total=after, delta=s.delta)
    out = {k: (v if v >= s.min_cell else -1.0) for k, v in noised.values.items()}
    out.update({k: v for k, v in exact.items() if k in training.PUBLIC_COUNTS})
    return out
