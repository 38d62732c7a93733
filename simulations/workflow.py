"""What the review queue achieves: simulated reviewers resolve queued students (truth needed).

A queue is a ranking of each agency's students (best first). At capacity ``c`` (a share of each
agency's students) the first ``round(c n_agency)`` students of every agency are reviewed; a
reviewer reaches the true level with probability ``accuracy`` and otherwise errs: a wrong record
stays as it was, a right one is changed to a wrong level (none becomes the lowest hardship
level, a hardship level becomes none). Everyone else keeps the recorded level. The outcome is
compared with the truth: missed rate (share of hardship students left unrecognised), wrong-aid
rate (share of recognised students not in hardship) and level accuracy.

Queues compared at the same capacity (none of them reads the truth):

- ``self_report``: nobody reviewed (today's process);
- ``random``: a uniform draw per agency (mean over :data:`RANDOM_DRAWS` draws);
- ``rules``: the rule layer alone: direct-rule hits whose record differs from the top level
  (unrecognised first), then recognised students with an exclusion signal; capacity the rules
  do not fill stays unused;
- ``federated``: the node's own queue (:mod:`fedid.review.queue`) from the federated DP model;
- ``centralized``: the same queue ranked by the centralized non-private model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "CAPACITIES",
    "HEADLINE_CAPACITY",
    "RANDOM_DRAWS",
    "Cohort",
    "after_review",
    "compact",
    "group_outcomes",
    "outcome",
    "rule_order",
    "workflow_curve",
]

IntArray = npt.NDArray[np.int64]
CAPACITIES = (0.02, 0.04, 0.05, 0.075, 0.10, 0.125, 0.15, 0.20)
ACCURACIES = (1.0, 0.9)
RANDOM_DRAWS = 5
HEADLINE_CAPACITY = 0.10  # the node's default capacity: groups are broken down there
_REVIEW_SEED = 0  # the simulated reviewers' mistakes (fixed, never tuned)


@dataclass(frozen=True)
class Cohort:
    """Every education agency's students: agency, record, truth and group columns."""

    agency: npt.NDArray[np.object_]
    recorded: IntArray
    truth: IntArray
    rural: npt.NDArray[np.bool_] | None = None
    groups: Mapping[str, npt.NDArray[np.object_]] | None = None  # e.g. region -> per student

    def __post_init__(self) -> None:
        n = len(self.recorded)
        if len(self.agency) != n or len(self.truth) != n:
            raise ValueError(f"cohort columns differ in length: {len(self.agency)}, {n}, "
                             f"{len(self.truth)}")

    @cached_property
    def rows_of(self) -> dict[str, IntArray]:
        """Each agency's rows (computed once: a county-scale cohort has 240,000 students)."""
        names, index = np.unique(self.agency.astype(str), return_inverse=True)
        order = np.argsort(index, kind="stable")
        bounds = np.cumsum(np.bincount(index, minlength=len(names)))[:-1]
        return {str(a): rows for a, rows in zip(names, np.split(order, bounds), strict=True)}


def after_review(
    recorded: IntArray, truth: IntArray, queued: npt.NDArray[np.bool_], *, accuracy: float,
    rng: np.random.Generator,
) -> IntArray:
    """Levels after reviewers resolved the ``queued`` students (see the module docstring)."""
    out = recorded.copy()
    right = rng.random(len(recorded)) < accuracy
    wrong_level = np.where(truth > 0, 0, 1)
    decided = np.where(right, truth, np.where(recorded != truth, recorded, wrong_level))
    out[queued] = decided[queued]
    return out


def outcome(truth: IntArray, level: IntArray) -> dict[str, float]:
    """Missed rate, wrong-aid rate and level accuracy of ``level`` against ``truth``."""
    hard, aided = truth > 0, level > 0
    return {
        "missed_rate": float(np.mean(~aided[hard])) if hard.any() else 0.0,
        "wrong_aid_rate": float(np.mean(~hard[aided])) if aided.any() else 0.0,
        "level_accuracy": float(np.mean(truth == level)) if len(truth) else 0.0,
    }


def group_outcomes(cohort: Cohort, level: IntArray) -> dict[str, dict[str, dict[str, float]]]:
    """Per group (rural/urban and ``cohort.groups``), missed and wrong-aid rates and size."""
    keys: dict[str, npt.NDArray[np.object_]] = dict(cohort.groups or {})
    if cohort.rural is not None:
        keys = {"rural": np.where(cohort.rural, "rural", "urban").astype(object), **keys}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, key in keys.items():
        out[name] = {}
        labels = np.asarray(key).astype(str)
        for value in sorted(set(labels.tolist())):
            rows = labels == value
            point = outcome(cohort.truth[rows], level[rows])
            out[name][value] = {"students": float(rows.sum()),
                                "missed_rate": point["missed_rate"],
                                "wrong_aid_rate": point["wrong_aid_rate"]}
    return out


def _rural_gap(cohort: Cohort, level: IntArray) -> float | None:
    if cohort.rural is None or cohort.rural.all() or not cohort.rural.any():
        return None
    r = outcome(cohort.truth[cohort.rural], level[cohort.rural])["missed_rate"]
    u = outcome(cohort.truth[~cohort.rural], level[~cohort.rural])["missed_rate"]
    return 100.0 * (r - u)


def _queued(cohort: Cohort, order: Mapping[str, IntArray], share: float) -> npt.NDArray[np.bool_]:
    """Mask of the first round(share n) rows of every agency's ranking (``order``: row indices)."""
    mask = np.zeros(len(cohort.recorded), dtype=bool)
    for agency, rows in order.items():
        n = len(cohort.rows_of.get(agency, ()))
        mask[rows[: round(share * n)]] = True
    return mask


def rule_order(cohort: Cohort, *, rule_level: IntArray, exclusion: npt.NDArray[np.bool_],
               rng: np.random.Generator) -> dict[str, IntArray]:
    """Per agency, the rule layer's queue (see the module docstring); random within a tier."""
    top = int(rule_level.max()) if rule_level.size else 0
    tier = np.full(len(cohort.recorded), 3)
    hit = rule_level > 0
    tier[hit & (cohort.recorded > 0) & (cohort.recorded != top)] = 1
    tier[hit & (cohort.recorded == 0)] = 0
    tier[~hit & exclusion & (cohort.recorded > 0)] = 2
    order: dict[str, IntArray] = {}
    for agency, rows in cohort.rows_of.items():
        rows = rows[tier[rows] < 3]
        order[agency] = rows[np.lexsort((rng.random(rows.size), tier[rows]))]
    return order


def _random_orders(cohort: Cohort, rng: np.random.Generator) -> dict[str, IntArray]:
    return {a: rng.permutation(rows) for a, rows in cohort.rows_of.items()}


def _point(cohort: Cohort, orders: Sequence[Mapping[str, IntArray]], share: float,
           accuracy: float) -> dict[str, float]:
    rows = []
    rng = np.random.default_rng(_REVIEW_SEED)
    for order in orders:
        queued = _queued(cohort, order, share)
        level = after_review(cohort.recorded, cohort.truth, queued, accuracy=accuracy, rng=rng)
        point = outcome(cohort.truth, level)
        point["reviewed_share"] = float(np.mean(queued))
        gap = _rural_gap(cohort, level)
        if gap is not None:
            point["rural_minus_urban_missed_points"] = gap
        rows.append(point)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def workflow_curve(
    cohort: Cohort, queues: Mapping[str, Mapping[str, IntArray]], *,
    capacities: Sequence[float] = CAPACITIES, accuracies: Sequence[float] = ACCURACIES,
    seed: int = 0,
) -> dict[str, Any]:
    """Outcomes after review per queue, capacity and reviewer accuracy, plus self-report.

    ``queues``: name -> per-agency row order (the ``random`` queue is added here).
    """
    rng = np.random.default_rng(seed)
    all_queues: dict[str, list[Mapping[str, IntArray]]] = {
        name: [order] for name, order in queues.items()}
    all_queues["random"] = [_random_orders(cohort, rng) for _ in range(RANDOM_DRAWS)]
    base = outcome(cohort.truth, cohort.recorded)
    gap = _rural_gap(cohort, cohort.recorded)
    if gap is not None:
        base["rural_minus_urban_missed_points"] = gap
    curves: dict[str, Any] = {}
    for acc in accuracies:
        per_queue: dict[str, list[dict[str, float]]] = {}
        for name, orders in all_queues.items():
            per_queue[name] = [{"capacity": c, **_point(cohort, orders, c, acc)}
                               for c in capacities]
        curves[f"{acc:g}"] = per_queue
    groups: dict[str, Any] = {"capacity": HEADLINE_CAPACITY,
                              "self_report": group_outcomes(cohort, cohort.recorded)}
    for name, order in queues.items():
        level = after_review(cohort.recorded, cohort.truth,
                             _queued(cohort, order, HEADLINE_CAPACITY), accuracy=1.0,
                             rng=np.random.default_rng(_REVIEW_SEED))
        groups[name] = group_outcomes(cohort, level)
    return {"self_report": base, "capacities": list(capacities),
            "accuracies": list(accuracies), "curves": curves,
            "students": len(cohort.recorded), "groups": groups}


def orders_from_rankings(rankings: Mapping[str, pd.DataFrame],
                         offsets: Mapping[str, IntArray]) -> dict[str, IntArray]:
    """Per agency, :func:`fedid.review.queue.rank_students` rows mapped to cohort rows."""
    return {a: offsets[a][r["row"].to_numpy(dtype=np.int64)] for a, r in rankings.items()}


def compact(result: Mapping[str, Any], capacities: Sequence[float] = (0.02, 0.05, 0.075, 0.10,
                                                                       0.15, 0.20),
            ) -> dict[str, Any]:
    """A small view of :func:`workflow_curve`'s result: rates per queue at a few capacities."""
    keys = ("missed_rate", "wrong_aid_rate", "level_accuracy", "rural_minus_urban_missed_points")
    view: dict[str, Any] = {"self_report": {k: round(v, 4) for k, v in
                                            result["self_report"].items()}}
    for acc, per_queue in result["curves"].items():
        for name, points in per_queue.items():
            for point in points:
                if any(abs(point["capacity"] - c) < 1e-9 for c in capacities):
                    view[f"{name}@{100 * point['capacity']:g}%/acc{acc}"] = {
                        k: round(point[k], 4) for k in keys if k in point}
    return view
