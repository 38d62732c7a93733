"""Empirical privacy auditing: the one-run epsilon lower bound and membership-inference metrics.

One-run auditing (Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023, arXiv:2305.08846). ``m`` canaries are each included in the training data
independently with probability 1/2 (``S_i`` in {-1, +1}). After ONE training run an attacker
guesses ``T_i`` in {-1, 0, +1} for each canary (0: abstain), ``r`` guesses in all, ``v`` of
them correct. If training is (epsilon, delta)-DP, then (their main theorem in its
approximate-DP form, as computed by the p-value code printed in the paper; delta = 0 gives
the pure-DP form)::

    P[V >= v] <= beta + 2 m delta alpha,     q = e^eps / (1 + e^eps),
    beta  = P[Binomial(r, q) >= v],
    alpha = max_{i = 1..v} P[v > Binomial(r, q) >= v - i] / i.

:func:`one_run_p_value` computes the right-hand side; :func:`one_run_epsilon` the largest
epsilon that the observed ``(m, r, v)`` rejects at the given confidence (the empirical lower
bound; 0 when nothing is rejected). The number of guesses must be fixed before the scores are
seen: :func:`audit_scores` tries a fixed grid of guess counts and splits the error
probability over it (Bonferroni), so the reported bound keeps its confidence.

Membership-inference metrics: :func:`roc_auc` (Mann-Whitney, ties counted half),
:func:`tpr_at_fpr` (the largest true-positive rate whose false-positive rate stays at or below
the target), and the offline likelihood-ratio score of LiRA (Carlini et al., "Membership
Inference Attacks From First Principles", 2022): each target's observed statistic against a
Gaussian fitted to the same statistic under shadow models trained WITHOUT the targets.

Libraries considered (taken or left):

- jax-privacy's ``auditing`` module (Google DeepMind, maintained) has the same one-run
  p-value. Left at run time: the package needs JAX, a large dependency for a few lines of
  binomial arithmetic; the tests load its ``auditing`` module (installed without
  dependencies) as the peer of :func:`one_run_p_value` and :func:`one_run_epsilon`.
- Privacy Meter (ml_privacy_meter) and TensorFlow Privacy's membership-inference tests:
  left. Both train and query their own models on image/text datasets through their own
  drivers (TensorFlow for the latter); neither plugs into a federated DP-SGD round whose
  releases are per-node updates, and neither implements the one-run bound.
- dp-auditorium tests DP of black-box mechanisms on small inputs, not ML training; Opacus
  ships accountants but no audit. Left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import stats

from privacy.errors import AccountingError

__all__ = [
    "GUESS_FRACTIONS",
    "OneRunAudit",
    "audit_scores",
    "lira_offline_scores",
    "one_run_epsilon",
    "one_run_p_value",
    "roc_auc",
    "tpr_at_fpr",
]

# Guess counts tried by :func:`audit_scores`: k positive and k negative guesses with
# k = floor(fraction x m / 2) (at least 1), fixed before any score is seen.
GUESS_FRACTIONS: Final = (0.05, 0.1, 0.25, 0.5, 1.0)
_EPS_CAP: Final = 60.0  # beyond this e^eps overflows the binomial's precision; bounds cap here

FloatArray = npt.NDArray[np.float64]


def _check_counts(m: int, r: int, v: int) -> None:
    if not (0 <= v <= r <= m):
        raise AccountingError(f"one-run audit needs 0 <= v <= r <= m. Got m={m}, r={r}, v={v}.")


def one_run_p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[at least ``v`` of ``r`` guesses correct] under (epsilon, delta)-DP."""
    _check_counts(m, r, v)
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise AccountingError(f"epsilon must be finite and >= 0. Got {epsilon}.")
    if not 0 <= delta <= 1:
        raise AccountingError(f"delta must be in [0, 1]. Got {delta}.")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    below = 0.0  # P[v > Binomial(r, q) >= v - i]
    for i in range(1, v + 1):
        below += float(stats.binom.pmf(v - i, r, q))
        alpha = max(alpha, below / i)
    return min(1.0, beta + 2.0 * m * delta * alpha)


def one_run_epsilon(
    *, m: int, r: int, v: int, delta: float, confidence: float = 0.95
) -> float:
    """The largest epsilon rejected at ``confidence`` by ``v`` correct of ``r`` guesses (>= 0).

    Bisection on the p-value, which grows with epsilon; the result is within 1e-6 of the
    boundary and on the rejected side (a lower bound).
    """
    _check_counts(m, r, v)
    if not 0 < confidence < 1:
        raise AccountingError(f"confidence must be in (0, 1). Got {confidence}.")
    significance = 1.0 - confidence
    if one_run_p_value(m=m, r=r, v=v, epsilon=0.0, delta=delta) >= significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while one_run_p_value(m=m, r=r, v=v, epsilon=hi, delta=delta) < significance:
        lo, hi = hi, 2 * hi
        if hi > _EPS_CAP:
            return _EPS_CAP
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if one_run_p_value(m=m, r=r, v=v, epsilon=mid, delta=delta) < significance:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True, slots=True)
class OneRunAudit:
    """The best bound over the fixed guess grid, and the guesses that gave it."""

    epsilon_lower_bound: float
    confidence: float
    delta: float
    canaries: int
    included: int
    guesses: int
    correct: int
    grid: tuple[int, ...]

    def to_dict(self) -> dict[str, float | int | list[int]]:
        """JSON-ready."""
        return {
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "confidence": self.confidence,
            "delta": self.delta,
            "canaries": self.canaries,
            "included": self.included,
            "guesses": self.guesses,
            "correct": self.correct,
            "guess_grid": list(self.grid),
        }


def audit_scores(
    scores: Sequence[float] | FloatArray,
    included: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    delta: float,
    confidence: float = 0.95,
) -> OneRunAudit:
    """One-run lower bound from attack scores (higher: more likely included).

    For each k in the fixed grid (:data:`GUESS_FRACTIONS`), guesses "in" for the k highest
    scores and "out" for the k lowest, abstaining on the rest; each bound is computed at
    significance ``(1 - confidence) / len(grid)`` and the largest is returned, so the result
    holds at ``confidence`` whatever k turned out best.
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included, dtype=bool)
    m = int(s.shape[0])
    if inc.shape != s.shape or m < 2:
        raise AccountingError(
            f"scores and inclusion flags must be two equal-length vectors of >= 2 canaries."
            f" Got {s.shape} and {inc.shape}."
        )
    if not np.all(np.isfinite(s)):
        raise AccountingError("attack scores must be finite. Got NaN or inf.")
    grid = tuple(sorted({max(1, int(f * m) // 2) for f in GUESS_FRACTIONS}))
    per_test = 1.0 - (1.0 - confidence) / len(grid)
    order = np.argsort(s, kind="stable")
    best = (0.0, 0, 0)
    for k in grid:
        low, high = order[:k], order[m - k :]
        correct = int(np.sum(inc[high]) + np.sum(~inc[low]))
        eps = one_run_epsilon(m=m, r=2 * k, v=correct, delta=delta, confidence=per_test)
        if eps > best[0] or best[1] == 0:
            best = (eps, 2 * k, correct)
    return OneRunAudit(
        epsilon_lower_bound=best[0],
        confidence=confidence,
        delta=delta,
        canaries=m,
        included=int(inc.sum()),
        guesses=best[1],
        correct=best[2],
        grid=grid,
    )


def roc_auc(scores: Sequence[float] | FloatArray, members: Sequence[bool] | npt.NDArray[np.bool_]
            ) -> float:
    """Area under the ROC curve of ``scores`` for ``members`` (ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(members, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise AccountingError(f"AUC needs members and non-members. Got {pos} and {neg}.")
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def tpr_at_fpr(
    scores: Sequence[float] | FloatArray,
    members: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    fpr: float,
) -> float:
    """The largest TPR over thresholds whose FPR is at most ``fpr`` (0 if none is)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(members, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise AccountingError(f"TPR needs members and non-members. Got {pos} and {neg}.")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    # a threshold can only sit between distinct scores: keep the last index of each run
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    ok = last & (fp <= fpr * neg)
    return float(tp[ok].max() / pos) if ok.any() else 0.0


def lira_offline_scores(
    target: Sequence[float] | FloatArray, shadow_out: FloatArray
) -> FloatArray:
    """Offline LiRA: how far each target's statistic sits above its shadow OUT distribution.

    ``target``: shape ``[n]``, the statistic (e.g. the logit of the model's confidence in the
    record's label) under the attacked model; ``shadow_out``: shape ``[k, n]``, the same
    statistic under ``k >= 2`` shadow models trained without any target. Returns the one-sided
    log-likelihood score ``-log P[Z > z]`` of ``z = (target - mean) / std`` (higher: more
    likely a member), with the per-record std floored at the global median to keep records
    that barely move from dominating.
    """
    t = np.asarray(target, dtype=np.float64)
    out = np.asarray(shadow_out, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] != t.shape[0] or out.shape[0] < 2:
        raise AccountingError(
            f"shadow statistics must have shape [k >= 2, {t.shape[0]}]. Got {out.shape}."
        )
    mean = out.mean(axis=0)
    std = out.std(axis=0, ddof=1)
    floor = float(np.median(std)) if np.any(std > 0) else 1.0
    std = np.maximum(std, max(floor, 1e-12))
    z = (t - mean) / std
    return np.asarray(-stats.norm.logsf(z), dtype=np.float64)
