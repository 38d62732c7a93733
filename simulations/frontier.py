"""How close a ranking of students comes to the rate targets, at its best threshold.

A diagnostic for simulations only: the threshold is chosen against the ground truth, so the
result is not a deployable operating point. It answers "could any threshold on this score
meet both the missed-rate and the wrong-aid targets?" for a learned model's P(hardship) or
for the generator's own noiseless rubric (:func:`simulations.province.truth.noiseless_score`,
the best ranking the observable indicators allow).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["operating_point"]


def operating_point(
    score: Any, recognised: Any, hard: Any, *, missed_target: float, wrong_target: float
) -> dict[str, Any]:
    """The threshold on ``score`` that minimises ``max(missed / target, wrong / target)``.

    ``recognised`` students (rule hits) are always recommended; the others when ``score >=``
    the threshold. Returns the ratio (<= 1: both targets met), the two rates and the
    threshold there, and the least wrong-aid rate among thresholds that meet the missed
    target (None: none does).
    """
    score = np.asarray(score, dtype=np.float64)
    recognised = np.asarray(recognised, dtype=bool)
    hard = np.asarray(hard, dtype=bool)
    free = score[~recognised & np.isfinite(score)]
    grid = np.quantile(free, np.linspace(0.0, 1.0, 1001)) if free.size else np.zeros(0)
    cuts = np.append(np.unique(grid), np.inf)  # inf: only the rule hits are recommended
    best = (np.inf, 0.0, 0.0, np.inf)
    min_wrong: float | None = None
    for cut in cuts:
        pred = recognised | (score >= cut)
        missed = float((hard & ~pred).sum() / max(int(hard.sum()), 1))
        wrong = float((pred & ~hard).sum() / max(int(pred.sum()), 1))
        ratio = max(missed / missed_target, wrong / wrong_target)
        if ratio < best[0]:
            best = (ratio, missed, wrong, float(cut))
        if missed <= missed_target and (min_wrong is None or wrong < min_wrong):
            min_wrong = wrong
    return {
        "target_ratio": best[0], "missed_rate": best[1], "wrong_aid_rate": best[2],
        "threshold": best[3], "min_wrong_aid_at_missed_target": min_wrong,
    }
