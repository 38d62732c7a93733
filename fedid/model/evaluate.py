"""Metrics of a hardship recommendation against the truth (simulation) or held-out labels.

- identification accuracy: recommended in hardship (level > 0) versus truly in hardship;
- macro-F1 over the configured levels;
- missed rate: truly in hardship but not recommended, over all truly in hardship (漏帮);
- wrong-aid rate: recommended but not in hardship, over all recommended (错帮);
- hidden-hardship recall: recommended among students in hardship who never applied;
- expected calibration error (10 equal-width bins) of P(hardship);
- the same per group (rural/urban, east/central/west, special group or not, sex) and the
  largest gap between groups of each grouping.

Evaluating on private data spends privacy that no epsilon here covers (the model card says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from fedid.errors import DataValidationError
from fedid.model.features import ID_COLUMN, level_targets
from fedid.model.model import HardshipModel
from fedid.schema import Schema

__all__ = [
    "core_metrics",
    "evaluate",
    "evaluate_levels",
    "evaluate_recommendations",
    "group_columns",
    "macro_f1",
    "summary",
]

_GAP_KEYS = ("accuracy", "macro_f1", "missed_rate", "wrong_aid_rate", "hidden_recall")


def _rate(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def macro_f1(
    *, pred: npt.NDArray[np.int64], true: npt.NDArray[np.int64], n_levels: int
) -> float:
    """Macro-F1 over the level indices ``0..n_levels-1``; a class absent from both is skipped."""
    scores = []
    for c in range(n_levels):
        tp = float(np.sum((pred == c) & (true == c)))
        fp = float(np.sum((pred == c) & (true != c)))
        fn = float(np.sum((pred != c) & (true == c)))
        if tp + fp + fn == 0:
            continue  # class absent from both: not counted
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _ece(p: npt.NDArray[np.float64], y: npt.NDArray[np.bool_], bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += float(sel.sum()) * abs(float(p[sel].mean()) - float(y[sel].mean()))
    return total / max(len(p), 1)


def auc(score: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None with one class."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mid = first + (counts - 1) / 2.0 + 1.0  # average rank of each run of ties
    ranks[order] = np.repeat(mid, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def core_metrics(
    *,
    pred_level: npt.NDArray[np.int64],
    true_level: npt.NDArray[np.int64],
    p_hardship: npt.NDArray[np.float64],
    n_levels: int,
    hidden: npt.NDArray[np.bool_] | None = None,
) -> dict[str, Any]:
    """The headline metrics of one set of students (rates are None when undefined)."""
    rec = pred_level > 0
    hard = true_level > 0
    tp = float(np.sum(rec & hard))
    fp = float(np.sum(rec & ~hard))
    fn = float(np.sum(~rec & hard))
    n = len(pred_level)
    out: dict[str, Any] = {
        "n": n,
        "n_hardship": int(hard.sum()),
        "n_recommended": int(rec.sum()),
        "accuracy": _rate(float(np.sum(rec == hard)), n),
        "level_accuracy": _rate(float(np.sum(pred_level == true_level)), n),
        "auc": auc(p_hardship, hard) if n else None,
        "macro_f1": macro_f1(pred=pred_level, true=true_level, n_levels=n_levels) if n else None,
        "missed_rate": _rate(fn, tp + fn),
        "wrong_aid_rate": _rate(fp, tp + fp),
        "ece": _ece(p_hardship, hard) if n else None,
    }
    if hidden is not None:
        out["n_hidden"] = int(hidden.sum())
        out["hidden_recall"] = _rate(float(np.sum(rec & hidden)), float(hidden.sum()))
    return out


def group_columns(truth: pd.DataFrame, schema: Schema) -> dict[str, npt.NDArray[np.object_]]:
    """Group labels per grouping available in ``truth``: rural, region, special_group, sex."""
    groups: dict[str, npt.NDArray[np.object_]] = {}
    if "rural" in truth.columns:
        rural = truth["rural"].fillna(False).astype(bool).to_numpy()
        groups["rural"] = np.where(rural, "rural", "urban").astype(object)
    if "region" in truth.columns:
        groups["region"] = truth["region"].astype(object).fillna("unknown").to_numpy()
    special_cols = [
        ind.name
        for ind in schema.indicators
        if ind.dimension == "special_group" and ind.name in truth.columns
    ]
    if special_cols:
        any_special = np.zeros(len(truth), dtype=bool)
        for name in special_cols:
            col = truth[name].astype(object)
            vals = pd.to_numeric(col.where(col.notna(), 0), errors="coerce").to_numpy(dtype=float)
            any_special |= vals > 0
        groups["special_group"] = np.where(any_special, "special", "other").astype(object)
    if "sex" in truth.columns:
        groups["sex"] = truth["sex"].astype(object).fillna("unknown").to_numpy()
    return groups


def evaluate_levels(
    *,
    pred_level: npt.NDArray[np.int64],
    p_hardship: npt.NDArray[np.float64],
    truth: pd.DataFrame,
    schema: Schema,
    level_column: str = "true_level",
) -> dict[str, Any]:
    """Overall metrics, per-group metrics and the largest gaps; rows aligned with ``truth``."""
    if len(pred_level) != len(truth):
        raise DataValidationError(
            "predictions and truth must have the same rows."
            f" Got {len(pred_level)} and {len(truth)}."
        )
    k = len(schema.levels.names)
    true_level = level_targets(truth, schema, column=level_column)
    hidden = (
        truth["hidden_hardship"].fillna(False).astype(bool).to_numpy()
        if "hidden_hardship" in truth.columns
        else None
    )
    out: dict[str, Any] = {
        "overall": core_metrics(
            pred_level=pred_level,
            true_level=true_level,
            p_hardship=p_hardship,
            n_levels=k,
            hidden=hidden,
        )
    }
    per_group: dict[str, dict[str, Any]] = {}
    gaps: dict[str, dict[str, float]] = {}
    for grouping, labels in group_columns(truth, schema).items():
        per_group[grouping] = {}
        for value in sorted({str(v) for v in labels}):
            sel = labels == value
            per_group[grouping][value] = core_metrics(
                pred_level=pred_level[sel],
                true_level=true_level[sel],
                p_hardship=p_hardship[sel],
                n_levels=k,
                hidden=None if hidden is None else hidden[sel],
            )
        gaps[grouping] = {}
        for key in _GAP_KEYS:
            vals = [m[key] for m in per_group[grouping].values() if m.get(key) is not None]
            if len(vals) >= 2:
                gaps[grouping][key] = float(max(vals) - min(vals))
    out["groups"] = per_group
    out["gaps"] = gaps
    ranked = sorted(
        ((g, key, v) for g, d in gaps.items() for key, v in d.items()), key=lambda t: -t[2]
    )
    out["largest_gaps"] = [{"grouping": g, "metric": m, "gap": v} for g, m, v in ranked[:5]]
    return out


def evaluate(
    model: HardshipModel,
    inputs: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    *,
    level_column: str | None = None,
) -> dict[str, Any]:
    """Score ``inputs`` with ``model`` (rules + learned) and compare with the truth.

    ``truth`` (simulation ground truth) is joined on ``student_id`` and read from
    ``true_level``; without it the held-out labels of ``inputs`` (``label_level``) are used.
    """
    recs = model.recommend(inputs)
    return evaluate_recommendations(
        recs,
        inputs if truth is None else truth,
        model.schema,
        level_column=level_column or ("label_level" if truth is None else "true_level"),
    )


def evaluate_recommendations(
    recs: pd.DataFrame, truth: pd.DataFrame, schema: Schema, *, level_column: str = "true_level"
) -> dict[str, Any]:
    """Metrics of a recommendation frame (from ``recommend``) joined to ``truth`` by student."""
    if ID_COLUMN not in truth.columns or ID_COLUMN not in recs.columns:
        raise DataValidationError(f"truth and recommendations must have {ID_COLUMN!r}.")
    joined = recs[[ID_COLUMN, "level_index", "p_hardship"]].merge(
        truth, on=ID_COLUMN, how="inner", validate="one_to_one"
    )
    if len(joined) != len(recs):
        raise DataValidationError(
            f"every recommended student must be in the truth. Got {len(joined)} of {len(recs)}."
        )
    return evaluate_levels(
        pred_level=joined["level_index"].to_numpy(dtype=np.int64),
        p_hardship=joined["p_hardship"].to_numpy(dtype=np.float64),
        truth=joined,
        schema=schema,
        level_column=level_column,
    )


def summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison-table figures of one evaluation."""
    overall = metrics["overall"]
    rural_gap = metrics.get("gaps", {}).get("rural", {}).get("accuracy")
    return {
        "accuracy": overall["accuracy"],
        "level_accuracy": overall.get("level_accuracy"),
        "auc": overall.get("auc"),
        "macro_f1": overall["macro_f1"],
        "missed_rate": overall["missed_rate"],
        "wrong_aid_rate": overall["wrong_aid_rate"],
        "hidden_recall": overall.get("hidden_recall"),
        "ece": overall["ece"],
        "rural_urban_accuracy_gap": rural_gap,
    }
