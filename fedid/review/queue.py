"""The review queue: per agency, the students whose recognition most likely needs to change.

The node's main output next to its recommendations (``<out>/review_queue.parquet``, owner-only).
Every student's record (last year's recognition, and whether the student applied) is compared
with the probability of each true level (:func:`fedid.review.posterior.true_level_posterior`),
computed from the model's ``P(level >= 1)`` after Platt scaling to the agency's own records
(:func:`fedid.review.posterior.recalibrate`: the DP model's scale is off per agency, and the
ordering across the two error kinds depends on calibrated probabilities).

Expected error reduction. Reviewing a student whose record is wrong with probability ``e``
fixes ``e`` errors in expectation when reviewers reach the truth; with reviewers right with
probability ``acc`` it is ``acc e - (1 - acc)(1 - e) = e - (1 - acc)``, the same order. The
errors counted are the recognition status (hardship or not: a missed student or wrong aid) and,
with weight ``level_weight``, a wrong level of a student whose status is right::

    e_status = P(hardship | x, record)          if not recognised
             = P(no hardship | x, record)       if recognised
    e_level  = P(true level != recorded level | x, record)
    gain     = e_status + level_weight (e_level - e_status)

The queue holds the ``capacity`` students with the largest gain (ties: student order), so it
fills the capacity in the order that most reduces expected errors, and allocates it across
missed students and wrong aid by their calibrated probabilities, not by the size of the score's
disagreement. Kinds: ``hidden_hardship`` (not recognised, likely in hardship; ``applied`` tells a
refused applicant from one who never applied), ``wrong_aid`` (recognised, likely not) and
``level_change`` (status likely right, level likely wrong). Each entry carries the suggested
level, the probabilities, the recommendation's reasons and the departments whose evidence was
missing this year.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedid.errors import ConfigError
from fedid.model.features import level_targets
from fedid.model.model import HardshipModel
from fedid.model.rules import apply_rules
from fedid.review.posterior import agency_rates, recalibrate, true_level_posterior
from privacy.atomic import atomic_write_bytes

__all__ = ["KINDS", "QUEUE_FILE", "Capacity", "build_queue", "node_queue", "queue_counts",
           "rank_students", "write_queue"]

QUEUE_FILE = "review_queue.parquet"
KINDS = ("hidden_hardship", "wrong_aid", "level_change")
#: Weight of a level-only error against a status error (missed or wrong aid). Chosen on the
#: tuning province (seed 101, never reported): weights 0, 0.25, 0.5, 1 left missed 0.058,
#: 0.076, 0.094, 0.118 and wrong aid 0.028, 0.027, 0.047, 0.079 after review of 10 %, level
#: accuracy 0.949-0.952 for the first three. Level errors are still fixed when a queued
#: student's status is resolved, and ``level_change`` entries fill what status errors leave.
LEVEL_WEIGHT = 0.0
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many students the agency's reviewers can take: a count or a share of its students."""

    count: int | None = None
    share: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.share is None):
            raise ConfigError(f"capacity needs exactly one of count and share. Got {self}.")
        if self.count is not None and self.count < 0:
            raise ConfigError(f"capacity count must be >= 0. Got {self.count}.")
        if self.share is not None and not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"capacity share must be in [0, 1]. Got {self.share}.")

    @classmethod
    def parse(cls, text: str | float | int) -> Capacity:
        """``"10%"`` (a share of the agency's students) or ``"250"`` (a number of students)."""
        match = _SPEC.match(str(text))
        if match is None:
            raise ConfigError(f"review capacity must look like '10%' or '250'. Got {text!r}.")
        value, percent = match.groups()
        if percent:
            return cls(share=float(value) / 100.0)
        if "." in value:
            raise ConfigError(f"a review capacity count must be whole. Got {text!r}.")
        return cls(count=int(value))

    def slots(self, students: int) -> int:
        """Queue length for an agency of ``students`` students."""
        if self.count is not None:
            return min(self.count, students)
        return min(round(float(self.share or 0.0) * students), students)


def rank_students(
    p_greater: npt.NDArray[np.float64], *, recorded: npt.NDArray[np.int64],
    applied: npt.NDArray[np.bool_] | None, rule_level: npt.NDArray[np.int64],
    level_weight: float = LEVEL_WEIGHT, calibrate: bool = True,
) -> pd.DataFrame:
    """Every student's gain, kind, suggested level and probabilities, best first.

    Columns: ``row`` (position in the inputs), ``gain``, ``p_status_wrong``, ``p_level_wrong``,
    ``p_hardship``, ``kind``, ``suggested_index``, ``recorded_index``.
    """
    recorded = np.asarray(recorded, dtype=np.int64)
    if not 0.0 <= level_weight <= 1.0:
        raise ConfigError(f"level_weight must be in [0, 1]. Got {level_weight}.")
    rates = agency_rates(recorded=recorded, applied=applied)
    p_greater = np.array(p_greater, dtype=np.float64)
    if calibrate:
        rule_level = np.asarray(rule_level, dtype=np.int64)
        fitted = recalibrate(p_greater[:, 0], recorded > 0, fit=rule_level == 0)
        p_greater[:, 1:] = np.minimum(p_greater[:, 1:], fitted[:, None])
        p_greater[:, 0] = fitted
    post = true_level_posterior(p_greater, recorded=recorded, applied=applied,
                                rule_level=np.asarray(rule_level, dtype=np.int64), rates=rates)
    p_hard = 1.0 - post[:, 0]
    recognised = recorded > 0
    e_status = np.where(recognised, post[:, 0], p_hard)
    e_level = 1.0 - post[np.arange(len(recorded)), np.clip(recorded, 0, post.shape[1] - 1)]
    gain = e_status + level_weight * (e_level - e_status)
    kind = np.where(~recognised, KINDS[0],
                    np.where(e_status >= e_level - e_status, KINDS[1], KINDS[2]))
    order = np.lexsort((np.arange(len(gain)), -gain))
    frame = pd.DataFrame({
        "row": np.arange(len(gain)), "gain": gain, "p_status_wrong": e_status,
        "p_level_wrong": e_level, "p_hardship": p_hard, "kind": kind,
        "suggested_index": post.argmax(axis=1), "recorded_index": recorded,
    })
    return frame.iloc[order].reset_index(drop=True)


def build_queue(
    ranked: pd.DataFrame, *, capacity: Capacity, student_ids: npt.NDArray[np.object_],
    level_names: list[str], reasons: npt.NDArray[np.object_] | None = None,
    evidence_missing: list[str] | None = None, applied: npt.NDArray[np.bool_] | None = None,
) -> pd.DataFrame:
    """The first ``capacity.slots(n)`` students of ``ranked`` as the queue a reviewer reads."""
    top = ranked.head(capacity.slots(len(ranked)))
    rows = top["row"].to_numpy(dtype=np.int64)
    names = np.asarray(level_names, dtype=object)
    queue = pd.DataFrame({
        "rank": np.arange(1, len(top) + 1),
        "student_id": np.asarray(student_ids, dtype=object)[rows],
        "kind": top["kind"].to_numpy(),
        "recorded_level": names[top["recorded_index"].to_numpy(dtype=np.int64)],
        "suggested_level": names[top["suggested_index"].to_numpy(dtype=np.int64)],
        "expected_errors_fixed": top["gain"].to_numpy(),
        "p_recognition_wrong": top["p_status_wrong"].to_numpy(),
        "p_level_wrong": top["p_level_wrong"].to_numpy(),
        "p_hardship": top["p_hardship"].to_numpy(),
        "applied": np.asarray(applied, dtype=object)[rows] if applied is not None else None,
        "reasons": np.asarray(reasons, dtype=object)[rows] if reasons is not None else "",
        "evidence_missing": ",".join(evidence_missing or []),
    })
    return queue


def write_queue(out: Path, queue: pd.DataFrame) -> Path:
    """Write the queue next to the recommendations, readable by the node's owner only."""
    path = out / QUEUE_FILE
    atomic_write_bytes(path, queue.to_parquet(index=False), mode=0o600)
    os.chmod(path, 0o600)  # an earlier file may have had wider permissions
    return path


def queue_counts(queue: pd.DataFrame) -> dict[str, float]:
    """What the coordinator may learn: the queue's length and its count per kind."""
    counts = {"review_queue": float(len(queue))}
    for kind in KINDS:
        counts[f"review_queue_{kind}"] = float(np.sum(queue["kind"] == kind))
    return counts


def node_queue(
    *, out: Path, model: HardshipModel, inputs: pd.DataFrame, recommendations: pd.DataFrame,
    capacity: Capacity, evidence_missing: list[str],
) -> dict[str, float]:
    """Rank the node's students, write the queue (``out/review_queue.parquet``), return counts.

    ``inputs``: the node's model inputs (table + matched evidence) with the recorded
    recognition ``label_level`` (absent: nobody is recognised) and ``applied`` when known;
    ``recommendations``: :meth:`HardshipModel.recommend` on the same rows (for the reasons).
    """
    schema = model.schema
    if "label_level" in inputs.columns:
        recorded = level_targets(inputs, schema)
    else:
        recorded = np.zeros(len(inputs), dtype=np.int64)
    applied = inputs["applied"].fillna(False).astype(bool).to_numpy() \
        if "applied" in inputs.columns else None
    ranked = rank_students(model.score(inputs).p_greater, recorded=recorded, applied=applied,
                           rule_level=apply_rules(inputs, schema).levels())
    queue = build_queue(
        ranked, capacity=capacity, student_ids=recommendations["student_id"].to_numpy(),
        level_names=list(schema.levels.names),
        reasons=recommendations["reasons"].to_numpy(dtype=object),
        evidence_missing=evidence_missing, applied=applied)
    write_queue(out, queue)
    return queue_counts(queue)
