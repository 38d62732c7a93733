"""Last year's recognition labels from a simulated self-report and review process.

Students apply, schools review, some are recognised. The process depends only on the true
level, never on the indicators, so label noise is independent of the indicators given the
truth: a model trained on these labels sees systematic-looking noise it cannot reproduce
and can therefore beat the self-report baseline (ARCHITECTURE.md, as defaults):

- ``hidden_rate`` of the true-hardship students, drawn at random, never apply (hidden
  hardship);
- of the applicants in hardship, enough are recognised that ``missed_rate`` of all
  hardship students are not;
- students not in hardship apply and 60 % of their applications pass review, so many that
  ``wrong_aid_rate`` of the aided are not in hardship;

Counts are drawn exactly (random subsets of fixed size), so the realised rates equal the
targets up to rounding whatever the province size.
- a recognised hardship student gets the true level with probability
  ``label_level_accuracy``, otherwise a neighbouring level; each dimension flag is recorded
  wrongly with probability ``label_flag_flip``; wrongly aided students mostly get the lowest
  level and the economic flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulations.scenario import Scenario

__all__ = ["Labels", "self_report"]

BoolArray = npt.NDArray[np.bool_]
_FALSE_PASS = 0.6  # share of non-hardship applications that pass review
_FP_FLAG_P = {"economic": 0.8, "academic": 0.15, "psychological": 0.15, "special_group": 0.03}


@dataclass(frozen=True, slots=True)
class Labels:
    """Applied mask, recorded level index (0 = none) and recorded flags per student."""

    applied: BoolArray
    level: npt.NDArray[np.int64]
    flags: dict[str, BoolArray]


def self_report(
    scn: Scenario,
    rng: np.random.Generator,
    *,
    true_level: npt.NDArray[np.int64],
    true_flags: dict[str, BoolArray],
    top_level: int,
) -> Labels:
    """Simulate application and review for every student (see module docstring)."""
    n = len(true_level)
    hard = true_level >= 1
    hard_idx = np.flatnonzero(hard)
    n_hard = hard_idx.size
    # exact counts: the realised rates equal the targets up to rounding
    ranked = hard_idx[rng.permutation(n_hard)]
    n_hidden = round(scn.hidden_rate * n_hard)
    n_recognised = round((1.0 - scn.missed_rate) * n_hard)
    applied = np.zeros(n, dtype=bool)
    applied[ranked[n_hidden:]] = True
    recognised_true = np.zeros(n, dtype=bool)
    recognised_true[ranked[n_hidden : n_hidden + n_recognised]] = True
    n_false = round(scn.wrong_aid_rate / (1.0 - scn.wrong_aid_rate) * n_recognised)
    not_idx = np.flatnonzero(~hard)
    n_apply_not = min(round(n_false / _FALSE_PASS), not_idx.size)
    chosen = not_idx[rng.permutation(not_idx.size)[:n_apply_not]]
    applied[chosen] = True
    recognised_false = np.zeros(n, dtype=bool)
    recognised_false[chosen[: min(n_false, chosen.size)]] = True

    shift = np.where(rng.random(n) < 0.5, -1, 1)
    exact = rng.random(n) < scn.label_level_accuracy
    level_true = np.where(exact, true_level, np.clip(true_level + shift, 1, top_level))
    fp_level = np.minimum(rng.choice(3, size=n, p=[0.6, 0.3, 0.1]) + 1, top_level)
    level = np.where(recognised_true, level_true, np.where(recognised_false, fp_level, 0))

    flags: dict[str, BoolArray] = {}
    for name, truth in true_flags.items():
        flip = rng.random(n) < scn.label_flag_flip
        fp_flag = rng.random(n) < _FP_FLAG_P.get(name, 0.1)
        flags[name] = np.where(
            recognised_true, truth ^ flip, np.where(recognised_false, fp_flag, False)
        )
    return Labels(applied=applied, level=level.astype(np.int64), flags=flags)
