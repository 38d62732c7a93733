"""The training recipe: hyperparameters by a stated rule from public quantities, fast noise.

Every agency derives its own settings from quantities that are public or already released:
its public size ``n`` (``clients.training.public_rows``: declared, or its row count noised
once and charged; never the exact count), the planned
rounds, its budget (epsilon, delta) and the model. Nothing is estimated from the data and no
evaluation result feeds back, so the choice itself costs no privacy.

The rule (:func:`by_rule`), for DP-SGD with Poisson sampling and clipping bound ``C``:

- **batch**: expected batch ``B = min(n, BATCH)`` with ``BATCH = 128`` (the Opacus tutorial's),
  so an agency takes ``ceil(n / B)`` steps per epoch: steps grow with its rows. A node's
  FedAvg weight is a public constant (its size never leaves it), so an agency's say in the
  average is how far its update moves the model: with steps in proportion to its rows, a
  large agency counts for more and a small, label-skewed one (a few steps) cannot drag the
  shared model to its own class share;
- **epochs**: ``TOTAL_EPOCHS`` over the whole federation, split evenly over the rounds
  (``local_epochs = max(1, round(TOTAL_EPOCHS / rounds))``): more rounds mean fewer local
  epochs each, so the noise calibrated for the whole plan does not grow with the rounds;
- **clipping and learning rate**: clipping bound ``C = CLIP`` (1: most per-record gradients
  are clipped, so each record moves the model by the same amount and the noise ``sigma C``
  is commensurate with the signal) and learning rate ``LR_TIMES_CLIP / C`` = 0.5 with
  momentum 0.9 (the Opacus tutorial's);
- **noise**: :func:`calibrate` for the whole plan at the agency's epsilon and delta.

How the constants were chosen (development data only: the statsmodels ``fair`` and
``randhie`` splits and the perturbed synthetic province of ``simulations.bench.real_data``
with seeds 0-3, never the seeds BENCHMARKS.md reports). The former rule (``B = clamp(n / 8,
64, n)``: 8 steps per epoch whatever the size; learning rate 0.1) underfitted: 40 steps of
0.1 barely moved the model (AUC 0.49-0.50 on ``randhie``, 0.86-0.87 on the synthetic
province, against 0.53-0.59 and 0.93-0.95 for a plain Opacus loop on the same split). A
learning rate of 0.5 alone fitted ``randhie`` and the synthetic province but let the small,
skewed ``fair`` agencies, which took as many steps as the large ones (on split 1: 35 rows
with 94 % positive beside 634 and 1,149 rows with none), swing the shared model: on 2 of 4
splits it called 24-70 % of people positive (true share 32 %). Steps in proportion to rows
at 0.5 removed the swing on every development split (at most 0.3 % called positive, AUC
0.69-0.73) and fitted the others (AUC 0.59-0.64 on ``randhie``, 0.94-0.95 on the synthetic
province). Neighbours: at 0.25 the AUC fell by 0.02-0.03 on ``randhie`` and the synthetic
province and by up to 0.01 on ``fair``; at 1.0 ``fair`` swung again on one split (97 %
positive). Weighting the average by row counts instead changed nothing beyond run-to-run
spread (the former rule: AUC 0.49 either way on ``randhie``). Weighting it by each node's
charged noisy size (``simulations.bench.real_data --fedid-weighting public-size``) was worse on
development seeds 0-1 (``fair`` seed 1 swung to 35 % positive; ``randhie`` AUC 0.55 against
0.60 with constant weights), so nodes keep the constant weight.

Momentum restarted every round (checked on development seeds 4-11 of ``fair`` and 4-9 of
``randhie`` at epsilon 1, after the rule above). Restarted, an agency with a few steps per
round moves at a fraction of the step momentum builds up, so the shared model stays close to
the base rate: on ``fair`` seed 0 the 99th percentile of P(positive) was 0.40 (nobody called
positive) where the plain Opacus loop, whose optimizer outlives the round, reached 0.66 (0.20
with its momentum cleared every round). Carrying the buffers across rounds (kept on the
node) raised it to 0.57 but let small skewed agencies swing the model again: ``fair`` 1 of 8
splits called 54 % positive, ``randhie`` 1 of 6 fell to 53 % accuracy; accuracy 0.681 /
AUC 0.719 on ``fair`` and AUC 0.598 on ``randhie``, against 0.680 / 0.712 and 0.604
restarted, with no swing. Carried momentum with each node's charged noisy size as its FedAvg
weight removed the swings and gave the best ``fair`` (0.696 / 0.722) but the worst
``randhie`` (AUC 0.575); with restarted momentum, the noisy-size weight gave ``fair`` 0.685 /
0.715 and ``randhie`` AUC 0.580 against the constant weight's 0.680 / 0.712 and 0.604. The
rule keeps the restart and the constant weight: no development split swung.

:func:`calibrate` is fast at any epsilon: it brackets the multiplier with the RDP accountant
(closed form per order, milliseconds) and refines with the PRV accountant by a capped
bisection inside that bracket; the multiplier never goes below :data:`MIN_NOISE` (at which
PRV stays fast and the noise on a clipped mean gradient is already negligible), so a very
large epsilon is met with that floor and spends less than its budget (reported as spent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fedid.errors import AccountingError, BudgetExceededError, TrainingError
from fedid.model.train_state import LocalState
from privacy.dp import Accountant

__all__ = [
    "BATCH",
    "CLIP",
    "LR_TIMES_CLIP",
    "MIN_NOISE",
    "TOTAL_EPOCHS",
    "RuleSettings",
    "by_rule",
    "calibrate",
    "calibrate_remaining",
]

BATCH = 128
TOTAL_EPOCHS = 5
LR_TIMES_CLIP = 0.5
CLIP = 1.0
MIN_NOISE = 0.5
_PRV_EVALS = 10
_SIGMA_RTOL = 0.01


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """What the rule sets for one agency."""

    batch_size: int
    local_epochs: int
    learning_rate: float
    max_grad_norm: float


def by_rule(*, n: int, rounds: int) -> RuleSettings:
    """Batch, local epochs, clipping and learning rate for an agency of ``n`` rows."""
    if n < 1 or rounds < 1:
        raise TrainingError(f"the rule needs n >= 1 and rounds >= 1. Got {n}, {rounds}.")
    return RuleSettings(
        batch_size=min(n, BATCH),
        local_epochs=max(1, round(TOTAL_EPOCHS / rounds)),
        learning_rate=LR_TIMES_CLIP / CLIP,
        max_grad_norm=CLIP,
    )


Entry = tuple[float, float, int]  # (noise multiplier, sample rate, steps)


def _epsilon(kind: str, sigma: float, q: float, steps: int, delta: float,
             reserved: Sequence[Entry] = ()) -> float:
    try:
        history = ((sigma, q, steps), *reserved)
        return Accountant(kind=kind, history=history).epsilon(delta)
    except AccountingError:
        return math.inf


def calibrate_remaining(*, state: LocalState, sample_rate: float, steps: int, accountant: str,
                        reserved: Sequence[Entry] = (), what: str) -> float:
    """:func:`calibrate` for what ``state``'s budget leaves: the plan composed with the
    agency's history and ``reserved``. BudgetExceededError ("``what`` refused") if nothing
    fits."""
    try:
        return calibrate(target_epsilon=state.budget.epsilon, delta=state.budget.delta,
                         sample_rate=sample_rate, steps=steps, accountant=accountant,
                         reserved=(*state.accountant.history, *reserved))
    except (AccountingError, TrainingError) as exc:
        raise BudgetExceededError(
            f"{what} refused: the budget {state.budget.epsilon:g} leaves no room for the"
            f" planned {steps} steps after what was spent ({exc!s}).") from exc


def calibrate(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
              accountant: str = "prv", reserved: Sequence[Entry] = ()) -> float:
    """Smallest noise multiplier (>= :data:`MIN_NOISE`) whose epsilon is <= the target.

    ``reserved``: other planned releases composed with the training (accountant entries,
    e.g. a Gaussian count release ``(sigma, 1.0, 1)``); the target holds for the whole.

    RDP upper-bounds PRV's epsilon, so the RDP multiplier is an upper bracket; the PRV
    bisection runs between ``max(MIN_NOISE, sigma_rdp / 2)`` and it, at most
    ``_PRV_EVALS`` accountant calls, to 1 % in sigma. Always returns a multiplier whose
    epsilon under ``accountant`` is at most the target.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0) or steps < 1:
        raise TrainingError(
            f"calibration needs a finite epsilon > 0 and >= 1 step. Got {target_epsilon},"
            f" {steps}."
        )
    hi = MIN_NOISE
    if _epsilon("rdp", hi, sample_rate, steps, delta, reserved) > target_epsilon:
        lo = hi
        while _epsilon("rdp", hi, sample_rate, steps, delta, reserved) > target_epsilon:
            lo, hi = hi, hi * 2
            if hi > 1e4:
                raise TrainingError(
                    f"epsilon {target_epsilon} at delta {delta} needs a noise multiplier"
                    f" above 1e4 for {steps} steps at sample rate {sample_rate:.4g}."
                )
        for _ in range(40):  # RDP bisection: cheap
            mid = (lo + hi) / 2
            if _epsilon("rdp", mid, sample_rate, steps, delta, reserved) > target_epsilon:
                lo = mid
            else:
                hi = mid
            if hi - lo < _SIGMA_RTOL * hi:
                break
    if accountant == "rdp":
        return hi
    while _epsilon(accountant, hi, sample_rate, steps, delta, reserved) > target_epsilon:
        hi *= 1.05  # PRV above RDP: only by numerical error; step up until it is met
    if hi <= MIN_NOISE:
        return hi
    lo = max(MIN_NOISE, hi / 2)
    if _epsilon(accountant, lo, sample_rate, steps, delta, reserved) <= target_epsilon:
        return lo
    for _ in range(_PRV_EVALS):
        if hi - lo < _SIGMA_RTOL * hi:
            break
        mid = (lo + hi) / 2
        if _epsilon(accountant, mid, sample_rate, steps, delta, reserved) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi
