"""Identification metrics against the synthetic ground truth (privacy reviewer only).

Levels are compared as names of the schema's ordered levels (index 0 = "none").
Definitions, per set of students:

- ``macro_f1``      mean F1 over the levels present in truth or prediction
- ``accuracy``      exact level agreement
- ``missed_rate``   share of students truly in hardship (level > none) predicted none
                    (漏帮)
- ``wrong_aid_rate`` share of students predicted in hardship who truly are not (错帮)
- ``hidden_found``  share of hidden-hardship students (in hardship, never applied)
                    that the prediction recognises

Group gaps are the differences of ``missed_rate`` between groups (rural minus
urban, west minus east ...), in points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["confusion", "group_gaps", "identification_metrics"]


def confusion(truth: Sequence[str], pred: Sequence[str], levels: Sequence[str]) -> list[list[int]]:
    """Confusion matrix, rows = true level, columns = predicted level."""
    index = {name: i for i, name in enumerate(levels)}
    mat = np.zeros((len(levels), len(levels)), dtype=np.int64)
    t = np.array([index[x] for x in truth], dtype=np.int64)
    p = np.array([index[x] for x in pred], dtype=np.int64)
    np.add.at(mat, (t, p), 1)
    return [[int(v) for v in row] for row in mat]


def _f1_macro(mat: np.ndarray[Any, Any]) -> float:
    scores = []
    for k in range(mat.shape[0]):
        tp = mat[k, k]
        support = mat[k, :].sum() + mat[:, k].sum()
        if support == 0:
            continue
        scores.append(2 * tp / support)
    return float(np.mean(scores)) if scores else 0.0


def identification_metrics(
    truth: Sequence[str], pred: Sequence[str], *, levels: Sequence[str],
    hidden: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Macro-F1, accuracy, missed and wrong-aid rates (and hidden found) for one prediction."""
    t = np.asarray(truth, dtype=object)
    p = np.asarray(pred, dtype=object)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction lengths differ: {t.shape} vs {p.shape}")
    none = levels[0]
    mat = np.array(confusion(list(t), list(p), levels))
    in_need = t != none
    aided = p != none
    out = {
        "n": float(len(t)),
        "macro_f1": _f1_macro(mat),
        "accuracy": float(np.mean(t == p)) if len(t) else 0.0,
        "missed_rate": float(np.mean(~aided[in_need])) if in_need.any() else 0.0,
        "wrong_aid_rate": float(np.mean(~in_need[aided])) if aided.any() else 0.0,
    }
    if hidden is not None:
        h = np.asarray(hidden, dtype=bool)
        out["hidden_found"] = float(np.mean(aided[h])) if h.any() else 0.0
        out["hidden_count"] = float(h.sum())
    return out


def group_gaps(
    frame: pd.DataFrame, *, pred_col: str, levels: Sequence[str],
) -> dict[str, Any]:
    """Missed and wrong-aid rates per group and the gaps between groups, in points."""
    groups: dict[str, pd.Series] = {
        "rural": frame["rural"].map({True: "rural", False: "urban"}),
        "region": frame["region"].astype(str),
        "sex": frame["sex"].astype(str),
        "stage": frame["stage"].astype(str),
    }
    per: dict[str, dict[str, dict[str, float]]] = {}
    for name, key in groups.items():
        per[name] = {}
        for value, part in frame.groupby(key.to_numpy(), sort=True):
            m = identification_metrics(
                part["true_level"].tolist(), part[pred_col].tolist(), levels=levels
            )
            per[name][str(value)] = {k: m[k] for k in ("n", "missed_rate", "wrong_aid_rate",
                                                       "macro_f1")}
    gaps: dict[str, float] = {}
    r = per["rural"]
    if "rural" in r and "urban" in r:
        gaps["rural_minus_urban_missed_points"] = 100 * (
            r["rural"]["missed_rate"] - r["urban"]["missed_rate"])
        gaps["rural_minus_urban_wrong_aid_points"] = 100 * (
            r["rural"]["wrong_aid_rate"] - r["urban"]["wrong_aid_rate"])
    reg = per["region"]
    if "west" in reg and "east" in reg:
        gaps["west_minus_east_missed_points"] = 100 * (
            reg["west"]["missed_rate"] - reg["east"]["missed_rate"])
    return {"groups": per, "gaps": gaps}
